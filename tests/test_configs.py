"""The config files: reference sizes and objectives as SPEC section 5 gives them, and every variant valid."""

import itertools

import pytest

from configs import drums_2bar, drums_16bar, groovae, mel_2bar, mel_16bar, trio
from musicvae_jax import train
from musicvae_jax.representations import get_representation

TEACHER_FORCING = ("constant", 0.0)
INVERSE_SIGMOID = ("inverse_sigmoid", 1000.0)
HIERARCHICAL_16BAR = dict(encoder=(2048, 2048), decoder=(1024, 1024), conductor=(1024, 1024), z=512)
# SPEC section 5, row by row: config, steps, sizes, batch, free bits, max beta, beta rate, sampling, dropout keep.
REFERENCE = [
    (mel_2bar, None, 32, dict(encoder=(512,), decoder=(256, 256), conductor=(), z=256), 512, 0, 0.2, 0.99999,
     INVERSE_SIGMOID, 1.0),
    (mel_2bar, "big", 32, dict(encoder=(2048,), decoder=(2048,) * 3, conductor=(), z=512), 512, 0, 0.5, 0.99999,
     INVERSE_SIGMOID, 1.0),
    (drums_2bar, None, 32, dict(encoder=(512,), decoder=(256, 256), conductor=(), z=256), 512, 48, 0.2, 0,
     INVERSE_SIGMOID, 1.0),
    (drums_2bar, "big", 32, dict(encoder=(2048,), decoder=(2048,) * 3, conductor=(), z=512), 512, 48, 0.2, 0,
     INVERSE_SIGMOID, 1.0),
    (mel_16bar, None, 256, HIERARCHICAL_16BAR, 512, 256, 0.2, 0, TEACHER_FORCING, 1.0),
    (trio, None, 256, HIERARCHICAL_16BAR, 256, 256, 0.2, 0, TEACHER_FORCING, 1.0),
    (trio, "flat", 256, dict(encoder=(2048, 2048), decoder=(2048,) * 3, conductor=(), z=512), 256, 0, 1.0, 0,
     TEACHER_FORCING, 1.0),
    (groovae, None, 32, dict(encoder=(512,), decoder=(256, 256), conductor=(), z=256), 512, 48, 0.2, 0,
     TEACHER_FORCING, 0.3),
    (groovae, "4bar", 64, dict(encoder=(512,), decoder=(256, 256), conductor=(), z=256), 512, 48, 0.2, 0,
     TEACHER_FORCING, 0.3),
]  # fmt: skip


@pytest.mark.parametrize(
    "row", REFERENCE, ids=[f"{r[0].__name__.split('.')[-1]}:{r[1] or 'default'}" for r in REFERENCE]
)
def test_reference_configs_are_the_spec_table(row):
    module, variant, steps, sizes, batch, free_bits, max_beta, beta_rate, sampling, keep = row
    config = module.get_config(variant)
    m, t = config.model, config.train
    assert get_representation(config.data.representation).num_steps == steps
    assert (m.encoder_sizes, m.decoder_sizes, m.conductor_sizes, m.z_size) == tuple(sizes.values())
    assert (config.batch_size, t.free_bits, t.max_beta, t.beta_rate) == (batch, free_bits, max_beta, beta_rate)
    assert (t.sampling_schedule, t.sampling_rate, m.dropout_keep) == (*sampling, keep)
    # SPEC section 4's optimiser, the same for every model.
    assert (t.learning_rate, t.decay_rate, t.min_learning_rate, t.clip_norm, t.skip_grad_norm) == (
        1e-3, 0.9999, 1e-5, 1.0, 10_000.0
    )  # fmt: skip


def test_groovae_humanizes_by_default_and_drums_16bar_is_the_16bar_melody_setup_on_drums():
    config = groovae.get_config()
    assert config.model.groove_input == "hits" and config.data.representation == "groove_2bar"
    for variant in (None, "flat"):
        drums, melody = drums_16bar.get_config(variant), mel_16bar.get_config(variant)
        assert drums.data.representation == "drums_16bar"
        drums.data.representation = melody.data.representation
        assert drums.to_dict() == melody.to_dict()


@pytest.mark.parametrize("module", [mel_2bar, drums_2bar, mel_16bar, drums_16bar, trio, groovae])
def test_every_combination_of_variants_is_a_valid_config(module):
    """... or, where two variants each set the task (groovae's TASKS), an error naming both."""
    tasks = set(getattr(module, "TASKS", ()))
    for n in range(len(module.VARIANTS) + 1):
        for combination in itertools.combinations(module.VARIANTS, n):
            if len(tasks & set(combination)) > 1:
                with pytest.raises(ValueError, match="each set the task; choose one"):
                    module.get_config(",".join(combination))
                continue
            config = module.get_config(",".join(combination))
            train.validate_config(config)
            assert ("tiny" in combination) == (config.model.z_size == 32)
