"""GrooVAE: expressive drums (hits, velocities, offsets).

Variants: `configs/groovae.py:tiny` (small batch, trains on a CPU in minutes),
`configs/groovae.py:4bar` (4-bar windows).
"""

from configs.base import get_base_config, parse_variants

VARIANTS = ("tiny", "4bar")


def get_config(arg: str | None = None):
    variants = parse_variants(arg, VARIANTS)
    config = get_base_config()
    config.data.representation = "groove_2bar"
    config.batch_size = 512
    if "4bar" in variants:
        config.data.representation = "groove_4bar"
    if "tiny" in variants:
        config.batch_size = 32
    return config
