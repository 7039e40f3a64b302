"""Record serialisation: exact round trip, and no pickle in either direction."""

import pickle

import msgpack
import numpy as np
import pytest

from musicvae_jax import records


def test_round_trip_keeps_dtypes_shapes_and_values():
    example = {
        "tokens": np.arange(32, dtype=np.uint16),
        "offsets": np.full((4, 9), -0.25, np.float16),
        "source": "a/b.mid",
        "window_start": 16,
    }
    back = records.deserialize(records.serialize(example))
    assert back["source"] == "a/b.mid" and back["window_start"] == 16
    for key in ("tokens", "offsets"):
        assert back[key].dtype == example[key].dtype
        np.testing.assert_array_equal(back[key], example[key])


def test_object_arrays_and_pickles_are_refused():
    with pytest.raises(TypeError):
        records.serialize({"x": np.array([object()])})
    with pytest.raises(ValueError):
        records.deserialize(pickle.dumps({"x": 1}))
    hostile = msgpack.packb({"x": {"__ndarray__": ["object", [1], b"\x00" * 8]}})
    with pytest.raises(ValueError, match="disallowed dtype"):
        records.deserialize(hostile)
