"""A bounded parser of a GGUF file's header, metadata and tensor table.

Every read is bounds-checked in Python integers (no wrap-around) before it happens, so a malformed
or hostile file raises InvalidGGUFError saying exactly what is wrong and where (which key, which
tensor), and nothing is ever read or mapped past the end of the file. It is also fast: numeric
arrays are decoded with numpy in one step, and a caller that needs only a few keys skips the
rest, so a 128k-token vocabulary costs tens of milliseconds, not seconds.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, FrozenSet, List, Optional

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from edgellama.errors import InvalidGGUFError, InvalidMetadataError

SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4
# GGUF metadata value types: fixed-size ones by id, then string (8) and array (9).
_SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q",
                   12: "<d"}
_SCALAR_SIZES = {k: struct.calcsize(v) for k, v in _SCALAR_FORMATS.items()}
_SCALAR_DTYPES = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "?", 10: "<u8",
                  11: "<i8", 12: "<f8"}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dims: tuple          # GGUF order: ne0 (the row length) first
    type: GGMLQuantizationType
    offset: int          # absolute byte offset of the data in the file
    n_bytes: int


@dataclass
class GGUFHeader:
    version: int
    metadata: Dict[str, Any] = field(default_factory=dict)  # decoded values (all, or the keys asked for)
    value_types: Dict[str, tuple] = field(default_factory=dict)  # key -> (GGUF value type, item type or None)
    tensors: List[TensorInfo] = field(default_factory=list)
    file_size: int = 0


class _Cursor:
    def __init__(self, path: Path, buf):
        self.path, self.buf, self.pos, self.size = path, buf, 0, len(buf)

    def fail(self, problem: str, tensor=None):
        raise InvalidGGUFError(self.path, problem, tensor)

    def take(self, n: int, what: str) -> int:
        if n < 0 or self.pos + n > self.size:
            self.fail(f"{what} at byte {self.pos} needs {n} bytes but the file ends at {self.size} (truncated?)")
        start, self.pos = self.pos, self.pos + n
        return start

    def u32(self, what: str) -> int:
        return struct.unpack_from("<I", self.buf, self.take(4, what))[0]

    def u64(self, what: str) -> int:
        return struct.unpack_from("<Q", self.buf, self.take(8, what))[0]

    def string(self, what: str) -> str:
        n = self.u64(f"length of {what}")
        start = self.take(n, what)
        return bytes(self.buf[start:start + n]).decode("utf-8", "replace")


def read_gguf_header(path, keys: Optional[FrozenSet[str]] = None) -> GGUFHeader:
    """Parses and validates the whole header. keys=None decodes every metadata value; otherwise only
    those keys are decoded (the others are skipped, still bounds-checked)."""
    path = Path(path)
    with open(path, "rb") as f:
        if f.seek(0, 2) == 0:
            raise InvalidGGUFError(path, "the file is empty")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _parse(_Cursor(path, buf), keys)


def scan_gguf_header(path) -> None:
    """Raises InvalidGGUFError unless the file's header and tensor table are well-formed."""
    read_gguf_header(path, keys=frozenset())


def read_gguf_summary(path, keys=("general.architecture", "general.file_type", "general.name")) -> dict:
    """The given metadata keys (absent ones left out) and "tensor_types": {type name: tensor count},
    without decoding the tokenizer arrays."""
    header = read_gguf_header(path, keys=frozenset(keys))
    out = dict(header.metadata)
    types: Dict[str, int] = {}
    for t in header.tensors:
        types[t.type.name] = types.get(t.type.name, 0) + 1
    out["tensor_types"] = types
    return out


def _parse(c: _Cursor, keys: Optional[FrozenSet[str]]) -> GGUFHeader:
    if bytes(c.buf[c.take(4, "magic"):4]) != b"GGUF":
        c.fail("not a GGUF file (bad magic)")
    version = c.u32("version")
    if version & 0xFFFF == 0:
        c.fail("big-endian GGUF files are not supported")
    if version not in SUPPORTED_VERSIONS:
        c.fail(f"GGUF version {version} is not supported (supported: {SUPPORTED_VERSIONS})")
    n_tensors = c.u64("tensor count")
    n_kv = c.u64("metadata count")
    # Every entry takes at least 8 bytes: a larger count cannot be real.
    for count, what in ((n_tensors, "tensor count"), (n_kv, "metadata count")):
        if count * 8 > c.size:
            c.fail(f"{what} {count} is impossible for a file of {c.size} bytes")
    header = GGUFHeader(version=version, file_size=c.size)
    alignment = DEFAULT_ALIGNMENT
    for _ in range(n_kv):
        key = c.string("metadata key")
        value_type = c.u32(f"type of metadata '{key}'")
        decode = keys is None or key in keys or key == "general.alignment"
        value, item_type = _read_value(c, value_type, key, decode)
        if key == "general.alignment":
            alignment = _check_alignment(c, value_type, value)
        if decode and (keys is None or key in keys):
            header.metadata[key] = value
            header.value_types[key] = (value_type, item_type)
    infos = [_tensor_info(c) for _ in range(n_tensors)]
    data_start = -(-c.pos // alignment) * alignment
    for name, dims, qtype, offset, n_bytes in infos:
        start = data_start + offset
        if start % alignment:
            c.fail(f"tensor data offset {offset} is not aligned to {alignment} bytes", name)
        if start + n_bytes > c.size:
            c.fail(f"tensor data [{start}, {start + n_bytes}) lies past the end of the file ({c.size} bytes): "
                   "the file is truncated or corrupt", name)
        header.tensors.append(TensorInfo(name, dims, qtype, start, n_bytes))
    return header


def _check_alignment(c: _Cursor, value_type: int, value) -> int:
    """general.alignment: the GGUF spec requires a uint32 multiple of 8 (the block readers rely on
    tensor data aligned at least that far)."""
    if value_type != 4 or value == 0 or value % 8:
        raise InvalidMetadataError(c.path, "general.alignment", value,
                                   "must be a non-zero multiple of 8 stored as uint32 (GGUF spec)")
    return value


def _read_value(c: _Cursor, value_type: int, key: str, decode: bool):
    """(value or None when not decoded, the item type of an array or None)."""
    what = f"value of metadata '{key}'"
    if value_type in _SCALAR_FORMATS:
        start = c.take(_SCALAR_SIZES[value_type], what)
        return (struct.unpack_from(_SCALAR_FORMATS[value_type], c.buf, start)[0] if decode else None), None
    if value_type == _STRING:
        n = c.u64(f"length of {what}")
        start = c.take(n, what)
        return (bytes(c.buf[start:start + n]).decode("utf-8", "replace") if decode else None), None
    if value_type != _ARRAY:
        c.fail(f"metadata '{key}' has unknown value type {value_type}")
    item_type = c.u32(f"item type of metadata '{key}'")
    count = c.u64(f"item count of metadata '{key}'")
    if item_type in _SCALAR_SIZES:
        start = c.take(count * _SCALAR_SIZES[item_type], f"items of metadata '{key}'")
        if not decode:
            return None, item_type
        return np.frombuffer(c.buf, dtype=_SCALAR_DTYPES[item_type], count=count, offset=start).tolist(), item_type
    if item_type != _STRING:
        c.fail(f"metadata '{key}' is an array of unsupported item type {item_type}")
    if count * 8 > c.size - c.pos:
        c.fail(f"metadata '{key}' claims {count} strings, more than the file can hold")
    items = [] if decode else None
    for _ in range(count):
        n = c.u64(f"length of a string in metadata '{key}'")
        start = c.take(n, f"string in metadata '{key}'")
        if decode:
            items.append(bytes(c.buf[start:start + n]).decode("utf-8", "replace"))
    return items, item_type


def _tensor_info(c: _Cursor):
    name = c.string("tensor name")
    n_dims = c.u32(f"dimension count of tensor '{name}'")
    if not 1 <= n_dims <= MAX_DIMS:
        c.fail(f"{n_dims} dimensions (expected 1 to {MAX_DIMS})", name)
    dims = tuple(c.u64(f"dimensions of tensor '{name}'") for _ in range(n_dims))
    type_id = c.u32(f"type of tensor '{name}'")
    offset = c.u64(f"data offset of tensor '{name}'")
    try:
        qtype = GGMLQuantizationType(type_id)
    except ValueError:
        c.fail(f"unknown tensor type id {type_id}", name)
    if qtype not in GGML_QUANT_SIZES:
        c.fail(f"tensor type {qtype.name} has no known block layout", name)
    if any(d == 0 for d in dims):
        c.fail(f"zero dimension in shape {list(dims)}", name)
    block_size, block_bytes = GGML_QUANT_SIZES[qtype]
    if dims[0] % block_size:
        c.fail(f"row length {dims[0]} is not a multiple of the {qtype.name} block size {block_size}", name)
    n_elements = 1
    for d in dims:
        n_elements *= d
    n_bytes = n_elements // block_size * block_bytes
    if n_bytes > c.size:
        c.fail(f"shape {list(dims)} of type {qtype.name} needs {n_bytes} bytes, more than the whole file", name)
    return name, dims, qtype, offset, n_bytes
