"""16-bar drums (the paper's Table 1 has flat and hierarchical rows), hierarchical decoder by default.

The reference configurations (SPEC section 5) have no 16-bar drums row: the
sizes and objective are the 16-bar melody model's, as the paper trains its
16-bar models alike. Variants: `flat`, `tiny` (CPU in minutes).
"""

from configs import mel_16bar

VARIANTS = mel_16bar.VARIANTS


def get_config(arg: str | None = None):
    config = mel_16bar.get_config(arg)
    config.data.representation = "drums_16bar"
    return config
