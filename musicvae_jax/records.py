"""Example <-> bytes for ArrayRecord shards, with msgpack (never pickle).

An example is a flat dict of numpy arrays, strings and ints. Arrays are
stored as (dtype, shape, raw bytes) and only the numeric dtypes listed here
are accepted on the way back, so a record from an untrusted shard can at
worst fail to decode.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

ALLOWED_DTYPES = frozenset({"uint8", "int8", "uint16", "int16", "int32", "int64", "float16", "float32"})
_ARRAY_KEY = "__ndarray__"


def _pack_value(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype.name not in ALLOWED_DTYPES:
            raise TypeError(f"dtype {value.dtype} cannot be stored in a record")
        return {_ARRAY_KEY: [value.dtype.name, list(value.shape), np.ascontiguousarray(value).tobytes()]}
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"{type(value).__name__} cannot be stored in a record")


def serialize(example: dict[str, Any]) -> bytes:
    return msgpack.packb({key: _pack_value(v) for key, v in example.items()}, use_bin_type=True)


def _unpack_value(value: Any) -> Any:
    if isinstance(value, dict) and _ARRAY_KEY in value:
        dtype, shape, data = value[_ARRAY_KEY]
        if dtype not in ALLOWED_DTYPES:
            raise ValueError(f"record holds an array of disallowed dtype {dtype!r}")
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    return value


def deserialize(data: bytes) -> dict[str, Any]:
    raw = msgpack.unpackb(data, raw=False)
    if not isinstance(raw, dict):
        raise ValueError("record is not a map")
    return {key: _unpack_value(v) for key, v in raw.items()}
