"""GrooVAE: expressive drums (hits, velocities, offsets); 2-bar humanize by default.

Variants: `4bar` (4-bar windows, groovae_4bar), `tiny` (CPU in minutes).
"""

from configs.base import apply_tiny, get_base_config, parse_variants

VARIANTS = ("4bar", "tiny")


def get_config(arg: str | None = None):
    variants = parse_variants(arg, VARIANTS)
    config = get_base_config()
    config.data.representation = "groove_2bar"
    config.model.humanize = True
    config.model.dropout_keep = 0.3
    config.train.free_bits = 48.0
    config.train.max_beta = 0.2
    if "4bar" in variants:
        config.data.representation = "groove_4bar"
        config.model.humanize = False
    if "tiny" in variants:
        apply_tiny(config)
    return config
