"""16-bar melodies.

Variants: `configs/mel_16bar.py:tiny` (small batch, trains on a CPU in minutes).
"""

from configs.base import get_base_config, parse_variants

VARIANTS = ("tiny",)


def get_config(arg: str | None = None):
    variants = parse_variants(arg, VARIANTS)
    config = get_base_config()
    config.data.representation = "melody_16bar"
    config.batch_size = 512
    if "tiny" in variants:
        config.batch_size = 32
    return config
