"""GrooVAE: expressive drums (hits, velocities, offsets); 2-bar humanize by default.

Variants: `4bar` (4-bar windows, the encoder reads the whole performance:
groovae_4bar), `tap` (tap2drum: the encoder reads one line of taps),
`tap_fixed_velocity` (taps without velocities), `infill` (the encoder reads
the beat without its hi-hats: they are made up), `tiny` (CPU in minutes).
GrooVAE paper, section 4; models/groove_input.py says what each reads.
"""

from configs.base import apply_tiny, get_base_config, parse_variants

VARIANTS = ("4bar", "tap", "tap_fixed_velocity", "infill", "tiny")
TASKS = {
    "tap": "taps",
    "tap_fixed_velocity": "taps_fixed_velocity",
    "infill": "without:closed_hihat,open_hihat",
}


def get_config(arg: str | None = None):
    variants = parse_variants(arg, VARIANTS)
    tasks = sorted(v for v in variants if v in TASKS)
    if len(tasks) > 1:
        raise ValueError(f"configs/groovae.py: variants {', '.join(tasks)} each set the task; choose one")
    config = get_base_config()
    config.data.representation = "groove_2bar"
    config.model.groove_input = "hits"
    config.model.dropout_keep = 0.3
    config.train.free_bits = 48.0
    config.train.max_beta = 0.2
    if "4bar" in variants:
        config.data.representation = "groove_4bar"
        config.model.groove_input = "performance"
    if tasks:
        config.model.groove_input = TASKS[tasks[0]]
    if "tiny" in variants:
        apply_tiny(config)
    return config
