"""2-bar melodies (mel_2bar_small by default).

Variants: `big` (mel_2bar_big), `tiny` (trains on a CPU in minutes).
"""

from configs.base import apply_tiny, get_base_config, parse_variants

VARIANTS = ("big", "tiny")


def get_config(arg: str | None = None):
    variants = parse_variants(arg, VARIANTS)
    config = get_base_config()
    config.data.representation = "melody_2bar"
    config.train.max_beta = 0.2
    config.train.beta_rate = 0.99999
    config.train.sampling_schedule = "inverse_sigmoid"
    config.train.sampling_rate = 1000.0
    if "big" in variants:
        config.model.encoder_sizes = (2048,)
        config.model.decoder_sizes = (2048, 2048, 2048)
        config.model.z_size = 512
        config.train.max_beta = 0.5
    if "tiny" in variants:
        apply_tiny(config)
    return config
