"""A bounded pre-scan of a GGUF file's header and tensor table.

GGUFReader trusts the counts, lengths, dimensions and offsets it reads; on a hostile file it fails
with an error that names neither the tensor nor the problem, or tries to map absurd sizes. This
scan walks the same structure first with every read bounds-checked in Python integers (no
wrap-around), so a malformed file raises InvalidGGUFError saying exactly what and where.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from edgellama.errors import InvalidGGUFError

SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4
# Fixed-size GGUF metadata value types: id -> byte size. 8 = string, 9 = array.
_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9


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

    def string(self, what: str) -> bytes:
        n = self.u64(f"length of {what}")
        start = self.take(n, what)
        return bytes(self.buf[start:start + n])


def scan_gguf_header(path: Path) -> None:
    """Raises InvalidGGUFError unless the header, metadata and tensor table are well-formed and
    every tensor's data lies inside the file."""
    with open(path, "rb") as f:
        if f.seek(0, 2) == 0:
            raise InvalidGGUFError(path, "the file is empty")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            _scan(_Cursor(path, buf))


def read_gguf_summary(path: Path, keys=("general.architecture", "general.file_type", "general.name")) -> dict:
    """The values of the given scalar or string metadata keys (absent keys are left out) and
    "tensor_types": {type name: tensor count}, read with the same bounded scan (no tokenizer
    arrays are decoded, so this is fast even for 128k-token vocabularies)."""
    out: dict = {}
    with open(path, "rb") as f:
        if f.seek(0, 2) == 0:
            raise InvalidGGUFError(path, "the file is empty")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            _scan(_Cursor(path, buf), wanted=frozenset(keys), out=out)
    return out


_SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q",
                   12: "<d"}


def _scan(c: _Cursor, wanted=frozenset(), out=None) -> None:
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
    alignment = DEFAULT_ALIGNMENT
    for _ in range(n_kv):
        key = c.string("metadata key").decode("utf-8", "replace")
        value_type = c.u32(f"type of metadata '{key}'")
        if key == "general.alignment" and value_type == 4:
            alignment = struct.unpack_from("<I", c.buf, c.pos)[0]
            if alignment == 0 or alignment & (alignment - 1):
                c.fail(f"general.alignment {alignment} is not a power of two")
        if key in wanted and (value_type in _SCALAR_FORMATS or value_type == _STRING):
            if value_type == _STRING:
                out[key] = c.string(f"value of metadata '{key}'").decode("utf-8", "replace")
                continue
            out[key] = struct.unpack_from(_SCALAR_FORMATS[value_type], c.buf, c.pos)[0]
        _skip_value(c, value_type, key)
    tensors = [_tensor_info(c) for _ in range(n_tensors)]
    if out is not None:
        types: dict = {}
        for _, _, _, type_name in tensors:
            types[type_name] = types.get(type_name, 0) + 1
        out["tensor_types"] = types
    data_start = -(-c.pos // alignment) * alignment
    for name, n_bytes, offset, _ in tensors:
        end = data_start + offset + n_bytes
        if end > c.size:
            c.fail(f"tensor data [{data_start + offset}, {end}) lies past the end of the file ({c.size} bytes): "
                   "the file is truncated or corrupt", name)


def _skip_value(c: _Cursor, value_type: int, key: str) -> None:
    if value_type in _SCALAR_SIZES:
        c.take(_SCALAR_SIZES[value_type], f"value of metadata '{key}'")
    elif value_type == _STRING:
        c.take(c.u64(f"length of metadata '{key}'"), f"value of metadata '{key}'")
    elif value_type == _ARRAY:
        item_type = c.u32(f"item type of metadata '{key}'")
        count = c.u64(f"item count of metadata '{key}'")
        if item_type in _SCALAR_SIZES:
            c.take(count * _SCALAR_SIZES[item_type], f"items of metadata '{key}'")
        elif item_type == _STRING:
            if count * 8 > c.size - c.pos:
                c.fail(f"metadata '{key}' claims {count} strings, more than the file can hold")
            for _ in range(count):
                c.take(c.u64(f"length of a string in metadata '{key}'"), f"string in metadata '{key}'")
        else:
            c.fail(f"metadata '{key}' is an array of unsupported item type {item_type}")
    else:
        c.fail(f"metadata '{key}' has unknown value type {value_type}")


def _tensor_info(c: _Cursor):
    name = c.string("tensor name").decode("utf-8", "replace")
    n_dims = c.u32(f"dimension count of tensor '{name}'")
    if not 1 <= n_dims <= MAX_DIMS:
        c.fail(f"{n_dims} dimensions (expected 1 to {MAX_DIMS})", name)
    dims = [c.u64(f"dimensions of tensor '{name}'") for _ in range(n_dims)]
    type_id = c.u32(f"type of tensor '{name}'")
    offset = c.u64(f"data offset of tensor '{name}'")
    try:
        qtype = GGMLQuantizationType(type_id)
    except ValueError:
        c.fail(f"unknown tensor type id {type_id}", name)
    if qtype not in GGML_QUANT_SIZES:
        c.fail(f"tensor type {qtype.name} has no known block layout", name)
    if any(d == 0 for d in dims):
        c.fail(f"zero dimension in shape {dims}", name)
    block_size, block_bytes = GGML_QUANT_SIZES[qtype]
    if dims[0] % block_size:
        c.fail(f"row length {dims[0]} is not a multiple of the {qtype.name} block size {block_size}", name)
    n_elements = 1
    for d in dims:
        n_elements *= d
    n_bytes = n_elements // block_size * block_bytes
    if n_bytes > c.size:
        c.fail(f"shape {dims} of type {qtype.name} needs {n_bytes} bytes, more than the whole file", name)
    return name, n_bytes, offset, qtype.name
