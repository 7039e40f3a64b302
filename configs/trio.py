"""Trio (melody, bass, drums), 16 bars; hierarchical with one bottom decoder per instrument.

Variants: `flat` (one LSTM with three heads, the paper's baseline), `tiny`
(trains on a CPU in minutes).
"""

from configs.base import apply_tiny, get_base_config, parse_variants

VARIANTS = ("flat", "tiny")


def get_config(arg: str | None = None):
    variants = parse_variants(arg, VARIANTS)
    config = get_base_config()
    config.data.representation = "trio_16bar"
    config.batch_size = 256
    config.model.encoder_sizes = (2048, 2048)
    config.model.decoder_sizes = (1024, 1024)
    config.model.conductor_sizes = (1024, 1024)
    config.model.z_size = 512
    config.train.free_bits = 256.0
    config.train.max_beta = 0.2
    if "flat" in variants:
        config.model.decoder_sizes = (2048, 2048, 2048)
        config.model.conductor_sizes = ()
        config.train.free_bits = 0.0
        config.train.max_beta = 1.0
    if "tiny" in variants:
        apply_tiny(config, hierarchical="flat" not in variants)
    return config
