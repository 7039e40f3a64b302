"""Reads TensorFlow checkpoints (the V2 "tensor bundle" format) without TensorFlow.

A checkpoint `PREFIX` is `PREFIX.index`, a LevelDB-style sorted table that
maps each variable's name to where its bytes are (a BundleEntryProto: dtype,
shape, shard, offset, size, CRC32C), and `PREFIX.data-SSSSS-of-NNNNN`, the
raw little-endian bytes. The released Magenta checkpoints are in this format;
reading it here lets them load on a machine where TensorFlow 1 code no
longer installs. Every tensor's CRC32C is checked, so a truncated or
corrupted download is named, not loaded.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48
_BLOCK_TRAILER_SIZE = 5  # compression type byte + CRC32C

# tensorflow/core/framework/types.proto: the numeric dtypes a variable can have.
_DTYPES = {
    1: np.float32,
    2: np.float64,
    3: np.int32,
    4: np.uint8,
    5: np.int16,
    6: np.int8,
    9: np.int64,
    10: np.bool_,
    17: np.uint16,
    19: np.float16,
    22: np.uint32,
    23: np.uint64,
}
_STRING = 7


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, naming its file and, where one is at fault, the variable."""


def index_path(prefix: str | Path) -> Path:
    """The index file of a checkpoint given as its prefix (`model.ckpt`) or as the index itself."""
    path = Path(prefix)
    return path if path.name.endswith(".index") else path.with_name(path.name + ".index")


def read_checkpoint(prefix: str | Path) -> dict[str, np.ndarray]:
    """Every numeric variable of a checkpoint, by name (string variables are left out); read-only arrays."""
    index = index_path(prefix)
    if not index.is_file():
        raise CheckpointError(f"no TensorFlow checkpoint at {prefix}: {index} does not exist")
    entries = _table_entries(index.read_bytes(), index)
    header = _fields(entries.pop(b"", b""))
    num_shards = int(header.get(1, [1])[0])
    if header.get(2, [0])[0] != 0:
        raise CheckpointError(f"{index}: a big-endian checkpoint; only little-endian ones are read")
    stem = str(index)[: -len(".index")]
    shards: dict[int, bytes] = {}
    variables = {}
    for raw_name, value in entries.items():
        name = raw_name.decode()
        entry = _fields(value)
        dtype = int(entry.get(1, [0])[0])
        if dtype == _STRING:
            continue
        if dtype not in _DTYPES:
            raise CheckpointError(f"{index}: variable {name} has TensorFlow dtype {dtype}, which is not read here")
        if 7 in entry:
            raise CheckpointError(f"{index}: variable {name} is saved in slices (a partitioned variable)")
        shape = _shape(entry.get(2, [b""])[0])
        shard, offset, size = (int(entry.get(k, [0])[0]) for k in (3, 4, 5))
        if shard not in shards:
            data = Path(f"{stem}.data-{shard:05d}-of-{num_shards:05d}")
            if not data.is_file():
                raise CheckpointError(f"{index}: variable {name} is in {data}, which does not exist")
            shards[shard] = data.read_bytes()
        raw = memoryview(shards[shard])[offset : offset + size]
        expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(_DTYPES[dtype]).itemsize
        if len(raw) != size or size != expected:
            raise CheckpointError(
                f"{index}: variable {name} {list(shape)} should have {expected} bytes, its data file holds {len(raw)}"
                " (a truncated download?)"
            )
        if 6 in entry and _unmask(int(entry[6][0])) != crc32c(raw):
            raise CheckpointError(f"{index}: variable {name}'s bytes fail their CRC32C check (a corrupted file?)")
        variables[name] = np.frombuffer(raw, _DTYPES[dtype]).reshape(shape)
    return variables


# --- the sorted-table file (LevelDB's format, which TensorFlow's index uses) ---


def _table_entries(data: bytes, where: Path) -> dict[bytes, bytes]:
    if len(data) < _FOOTER_SIZE or struct.unpack("<Q", data[-8:])[0] != _TABLE_MAGIC:
        raise CheckpointError(f"{where} is not a TensorFlow checkpoint index (no table footer)")
    footer = data[-_FOOTER_SIZE:]
    _, pos = _block_handle(footer, 0)  # the meta-index block: unused
    index_block, _ = _block_handle(footer, pos)
    entries = {}
    for _, handle in _block_entries(_block(data, index_block, where)):
        for key, value in _block_entries(_block(data, _block_handle(handle, 0)[0], where)):
            entries[key] = value
    return entries


def _block_handle(data: bytes, pos: int) -> tuple[tuple[int, int], int]:
    offset, pos = _varint(data, pos)
    size, pos = _varint(data, pos)
    return (offset, size), pos


def _block(data: bytes, handle: tuple[int, int], where: Path) -> bytes:
    offset, size = handle
    if offset + size + _BLOCK_TRAILER_SIZE > len(data):
        raise CheckpointError(f"{where}: a table block runs past the end of the file (a truncated index?)")
    if data[offset + size] != 0:
        raise CheckpointError(f"{where}: a compressed table block; TensorFlow writes its index uncompressed")
    return data[offset : offset + size]


def _block_entries(block: bytes):
    """(key, value) pairs of one block: keys share prefixes with the key before them."""
    num_restarts = struct.unpack("<I", block[-4:])[0]
    end = len(block) - 4 * (num_restarts + 1)
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_size, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + value_size]
        pos += value_size


# --- protocol buffers, only as far as BundleHeaderProto and BundleEntryProto need ---


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(message: bytes) -> dict[int, list]:
    """Field number -> values (ints for varint and fixed fields, bytes for length-delimited ones)."""
    fields: dict[int, list] = {}
    pos = 0
    while pos < len(message):
        tag, pos = _varint(message, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(message, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", message, pos)[0], pos + 8
        elif wire == 2:
            size, pos = _varint(message, pos)
            value, pos = message[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = struct.unpack_from("<I", message, pos)[0], pos + 4
        else:
            raise CheckpointError(f"unexpected protocol buffer wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def _shape(message: bytes) -> tuple[int, ...]:
    """TensorShapeProto -> dims (field 2, each a Dim whose field 1 is its size)."""
    return tuple(int(_fields(dim).get(1, [0])[0]) for dim in _fields(message).get(2, []))


# --- CRC32C (Castagnoli), as TensorFlow checks its tensors ---


def _crc_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0x82F63B78), table >> 1).astype(np.uint32)
    return table


_CRC_TABLE = _crc_table()
_CRC_TABLE_LIST = _CRC_TABLE.tolist()
_CHUNK = 4096  # bytes per lane of the vectorised CRC


def _crc_bytes(state: int, data: bytes) -> int:
    table = _CRC_TABLE_LIST
    for byte in data:
        state = table[(state ^ byte) & 0xFF] ^ (state >> 8)
    return state


def _zeros_operator(length: int) -> list[list[int]]:
    """Byte tables of the linear map 'feed `length` zero bytes' on the CRC register: four lookups apply it."""
    basis = np.uint32(1) << np.arange(32, dtype=np.uint32)
    for _ in range(length):
        basis = _CRC_TABLE[basis & 0xFF] ^ (basis >> 8)
    columns = basis.tolist()
    tables = []
    for byte_index in range(4):
        table = []
        for value in range(256):
            out = 0
            for bit in range(8):
                if value >> bit & 1:
                    out ^= columns[8 * byte_index + bit]
            table.append(out)
        tables.append(table)
    return tables


_ZEROS_TABLES: list[list[int]] | None = None


def crc32c(data: bytes) -> int:
    """CRC32C of `data`. Long inputs run as many 4 KiB lanes at once in numpy, joined by the CRC's linearity."""
    global _ZEROS_TABLES
    lanes = len(data) // _CHUNK
    if lanes < 8:
        return _crc_bytes(0xFFFFFFFF, data) ^ 0xFFFFFFFF
    columns = np.frombuffer(data, np.uint8, lanes * _CHUNK).reshape(lanes, _CHUNK).T.copy()
    registers = np.zeros(lanes, np.uint32)
    for column in columns:  # each lane's register from zero: CRC is linear, the start state is added below
        registers = _CRC_TABLE[(registers ^ column) & 0xFF] ^ (registers >> 8)
    if _ZEROS_TABLES is None:
        _ZEROS_TABLES = _zeros_operator(_CHUNK)
    t0, t1, t2, t3 = _ZEROS_TABLES
    state = 0xFFFFFFFF
    for register in registers.tolist():
        state = t0[state & 0xFF] ^ t1[state >> 8 & 0xFF] ^ t2[state >> 16 & 0xFF] ^ t3[state >> 24] ^ register
    return _crc_bytes(state, data[lanes * _CHUNK :]) ^ 0xFFFFFFFF


def _unmask(masked: int) -> int:
    """TensorFlow stores CRCs masked (rotated and offset), so that a CRC of data holding CRCs stays strong."""
    rotated = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rotated >> 17) | (rotated << 15)) & 0xFFFFFFFF
