"""A lenient GGUF document model for the structure-aware mutator: parse, edit, serialize.

Unlike the runtime's parser this one is built to *lie*: every length and count can carry an
override that the serializer writes instead of the true one, a value can be raw bytes under any
type id, and the padding before the data section can be off. Parsing is bounded (counts larger than
the remaining bytes fail), and only files that parse are mutated structurally; everything else
falls back to byte-level mutation.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, List, Optional

SCALAR_FORMATS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
INT_TYPES = (0, 1, 2, 3, 4, 5, 10, 11)
FLOAT_TYPES = (6, 12)
BOOL, STRING, ARRAY = 7, 8, 9
DEFAULT_ALIGNMENT = 32


class ParseError(Exception):
    pass


@dataclass
class Str:
    data: bytes
    length: Optional[int] = None  # written instead of len(data) when set (a lie)

    @classmethod
    def of(cls, text: str) -> "Str":
        return cls(text.encode("utf-8", "surrogatepass"))


@dataclass
class Raw:
    """Bytes written as they are where a value belongs (a value whose type id lies)."""
    data: bytes


@dataclass
class Array:
    item_type: int
    items: List[Any]
    count: Optional[int] = None  # written instead of len(items) when set


@dataclass
class KV:
    key: Str
    vtype: int
    value: Any  # int / float / bool for scalars, Str, Array, or Raw


@dataclass
class TensorInfo:
    name: Str
    dims: List[int]
    type_id: int
    offset: int
    n_dims: Optional[int] = None  # written instead of len(dims) when set


@dataclass
class Document:
    version: int
    kvs: List[KV]
    tensors: List[TensorInfo]
    data: bytes  # the data section (after the padding)
    magic: bytes = b"GGUF"
    n_tensors: Optional[int] = None  # header count overrides
    n_kv: Optional[int] = None
    pad_delta: int = 0  # bytes added to (or, negative, removed from) the padding before the data
    extra: List[bytes] = field(default_factory=list)

    def kv(self, key: str) -> Optional[KV]:
        raw = key.encode()
        return next((kv for kv in self.kvs if kv.key.data == raw), None)

    def alignment(self) -> int:
        """The alignment a reader derives from general.alignment (the default when it is unusable)."""
        kv = self.kv("general.alignment")
        if kv is None or kv.vtype != 4 or not isinstance(kv.value, int) or kv.value <= 0 or kv.value & (kv.value - 1):
            return DEFAULT_ALIGNMENT
        return min(kv.value, 1 << 16)  # a padding this program can still afford to write


# ---------------------------------------------------------------------------------------------
# Parsing


class _Reader:
    def __init__(self, blob: bytes):
        self.blob, self.pos = blob, 0

    def take(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.blob):
            raise ParseError("truncated")
        value = struct.unpack_from("<" + fmt, self.blob, self.pos)[0]
        self.pos += size
        return value

    def bytes(self, n: int) -> bytes:
        if n > len(self.blob) - self.pos:
            raise ParseError("string past the end")
        out = self.blob[self.pos:self.pos + n]
        self.pos += n
        return out

    def string(self) -> Str:
        return Str(self.bytes(self.take("Q")))

    def value(self, vtype: int, depth: int = 0):
        if vtype in SCALAR_FORMATS:
            return self.take(SCALAR_FORMATS[vtype])
        if vtype == STRING:
            return self.string()
        if vtype == ARRAY and depth == 0:
            item_type, count = self.take("I"), self.take("Q")
            if count > len(self.blob) - self.pos:
                raise ParseError("array count past the end")
            return Array(item_type, [self.value(item_type, depth + 1) for _ in range(count)])
        raise ParseError(f"value type {vtype}")


def parse(blob: bytes) -> Document:
    r = _Reader(blob)
    if r.bytes(4) != b"GGUF":
        raise ParseError("magic")
    version, n_tensors, n_kv = r.take("I"), r.take("Q"), r.take("Q")
    if n_tensors > len(blob) // 8 or n_kv > len(blob) // 8:
        raise ParseError("counts")
    kvs = []
    for _ in range(n_kv):
        key = r.string()
        vtype = r.take("I")
        kvs.append(KV(key, vtype, r.value(vtype)))
    tensors = []
    for _ in range(n_tensors):
        name = r.string()
        n_dims = r.take("I")
        if n_dims > 8:
            raise ParseError("dims")
        dims = [r.take("Q") for _ in range(n_dims)]
        tensors.append(TensorInfo(name, dims, r.take("I"), r.take("Q")))
    doc = Document(version, kvs, tensors, b"")
    start = -(-r.pos // doc.alignment()) * doc.alignment()
    doc.data = blob[start:]
    return doc


# ---------------------------------------------------------------------------------------------
# Serializing


def _pack_scalar(vtype: int, value) -> bytes:
    fmt = SCALAR_FORMATS[vtype]
    if vtype in FLOAT_TYPES:
        try:
            return struct.pack("<" + fmt, float(value))
        except (OverflowError, TypeError, ValueError):
            return struct.pack("<" + fmt, float("inf"))
    if vtype == BOOL:
        return struct.pack("<B", int(bool(value)) if not isinstance(value, int) else value & 0xFF)
    bits = struct.calcsize("<" + fmt) * 8
    try:
        number = int(value)
    except (OverflowError, TypeError, ValueError):
        number = 0
    unsigned = number % (1 << bits)
    return unsigned.to_bytes(bits // 8, "little")


def _pack_str(s: Str) -> bytes:
    length = len(s.data) if s.length is None else s.length
    return struct.pack("<Q", length % (1 << 64)) + s.data


def pack_value(vtype: int, value, depth: int = 0) -> bytes:
    if isinstance(value, Raw):
        return value.data
    if vtype in SCALAR_FORMATS:
        return _pack_scalar(vtype, value)
    if vtype == STRING:
        return _pack_str(value if isinstance(value, Str) else Str.of(str(value)))
    if vtype == ARRAY and isinstance(value, Array) and depth == 0:
        count = len(value.items) if value.count is None else value.count
        body = b"".join(pack_value(value.item_type, item, depth + 1) for item in value.items)
        return struct.pack("<IQ", value.item_type % (1 << 32), count % (1 << 64)) + body
    return b""  # an unknown type id: nothing the reader could skip anyway


def serialize(doc: Document) -> bytes:
    parts = [doc.magic, struct.pack("<I", doc.version % (1 << 32)),
             struct.pack("<Q", (len(doc.tensors) if doc.n_tensors is None else doc.n_tensors) % (1 << 64)),
             struct.pack("<Q", (len(doc.kvs) if doc.n_kv is None else doc.n_kv) % (1 << 64))]
    for kv in doc.kvs:
        parts += [_pack_str(kv.key), struct.pack("<I", kv.vtype % (1 << 32)), pack_value(kv.vtype, kv.value)]
    for t in doc.tensors:
        n_dims = len(t.dims) if t.n_dims is None else t.n_dims
        parts += [_pack_str(t.name), struct.pack("<I", n_dims % (1 << 32)),
                  b"".join(struct.pack("<Q", d % (1 << 64)) for d in t.dims),
                  struct.pack("<I", t.type_id % (1 << 32)), struct.pack("<Q", t.offset % (1 << 64))]
    head = b"".join(parts)
    alignment = doc.alignment()
    pad = (-len(head)) % alignment + doc.pad_delta
    if pad < 0:
        head = head[:len(head) + pad]
        pad = 0
    return head + b"\0" * pad + doc.data + b"".join(doc.extra)
