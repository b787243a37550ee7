"""Saved state: the tokens and KV cache of sequence 0, in memory (LlamaState) and in a file.

A state belongs to one model: `model_identity` hashes what decides the cache's meaning (the
hyper-parameters with the RoPE scaling, every tensor's name, type and shape, the norm and RoPE
vectors, the start of the embedding and the vocabulary). Loading another model's state is a
StateError, as is a file that is corrupt, cut short or of an unknown version.

A state also names its cache's types (Llama's cache_type_k / cache_type_v): a model whose cache
stores keys or values otherwise cannot load it (StateError).

Session file (version 2), written atomically (a temporary file beside it, flushed to disk, then
renamed over the target, so a crash leaves the old file or the new one, never half of one):
    b"edgellama-session\\n"
    one line of JSON: {"version": 2, "model": identity, "n_tokens": n, "cache_types": [k, v],
                       "key_shape": [n_layer, n_head_kv, n, width], "value_shape": [...],
                       "sha256": of the body}
    body: the tokens (little-endian int32), then the keys, then the values, each
    [n_layer][n_head_kv][n][width]: for an f16 cache little-endian uint16 fp16 bits (width
    head_dim), for a q8_0 / q4_0 cache the bytes of the format's GGUF blocks (width the row's bytes).
Version 1 files (f16 caches, one "shape" for both) are read as well.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Tuple, Union

import numpy as np

from edgellama.errors import StateError
from edgellama.resources import CACHE_TYPE_BYTES, F16_CACHE

MAGIC = b"edgellama-session\n"
VERSION = 2
READABLE_VERSIONS = (1, 2)
MAX_HEADER_BYTES = 4096
EMBEDDING_SAMPLE_BYTES = 1 << 16


@dataclass(frozen=True, eq=False)
class LlamaState:
    """Sequence 0 of a model's KV cache: its tokens and their keys and values,
    [n_layer][n_head_kv][n_tokens][width] each (row_format). model: the model_identity it belongs
    to; cache_types: how its cache stores (keys, values)."""

    model: str
    tokens: Tuple[int, ...]
    keys: np.ndarray
    values: np.ndarray
    cache_types: Tuple[str, str] = F16_CACHE

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    @property
    def nbytes(self) -> int:
        return 4 * len(self.tokens) + self.keys.nbytes + self.values.nbytes


def model_identity(model) -> str:
    """A hex digest naming the model a cache belongs to (model: an edgellama.gguf_loader.GGUFModel)."""
    digest = hashlib.sha256()
    digest.update(json.dumps(model.config.core_dict(), sort_keys=True).encode())
    for name in sorted(model.tensors):
        t = model.tensors[name]
        digest.update(f"{name}:{int(t.type)}:{tuple(t.dims)};".encode())
        if t.rows == 1:  # norms and RoPE factors: small, and different in every fine-tune
            digest.update(np.ascontiguousarray(t.data).tobytes())
    embedding = np.ascontiguousarray(model.tensors["token_embd.weight"].data).reshape(-1).view(np.uint8)
    digest.update(embedding[:EMBEDDING_SAMPLE_BYTES].tobytes())
    divisors = model.rope_divisors()
    if divisors is not None:
        digest.update(divisors.tobytes())
    tokens = model.tokenizer_metadata.get("tokenizer.ggml.tokens") or []
    digest.update("\0".join(map(str, tokens)).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:32]


def row_format(cache_type: str, head_dim: int) -> Tuple[np.dtype, int]:
    """(dtype, width) of one position's row of a cache of that type: uint16 fp16 bits × head_dim,
    or the bytes of head_dim / 32 GGUF blocks."""
    if cache_type == "f16":
        return np.dtype(np.uint16), head_dim
    return np.dtype(np.uint8), head_dim // 32 * CACHE_TYPE_BYTES[cache_type]


def check_state(state, identity: str, shape: Tuple[int, int, int], n_ctx: int,
                cache_types: Tuple[str, str] = F16_CACHE) -> LlamaState:
    """state if it fits a model of this identity, cache shape (n_layer, n_head_kv, head_dim),
    window and cache types; StateError otherwise."""
    if not isinstance(state, LlamaState):
        raise StateError(f"expected a LlamaState (from Llama.save_state), got {type(state).__name__}")
    if state.model != identity:
        raise StateError("this state was saved from another model (its identity differs); load it into the "
                         "model it came from")
    if tuple(state.cache_types) != tuple(cache_types):
        raise StateError(f"this state holds a {'/'.join(state.cache_types)} cache (keys/values); this model's is "
                         f"{'/'.join(cache_types)}: create the Llama with cache_type_k={state.cache_types[0]!r}, "
                         f"cache_type_v={state.cache_types[1]!r} to load it")
    n = state.n_tokens
    for name, array, cache_type in (("keys", state.keys, cache_types[0]), ("values", state.values, cache_types[1])):
        dtype, width = row_format(cache_type, shape[2])
        want = (shape[0], shape[1], n, width)
        if not isinstance(array, np.ndarray) or array.dtype != dtype or array.shape != want:
            raise StateError(f"the state's {name} are not a {dtype.name} array of shape {want}")
    if n > n_ctx:
        raise StateError(f"the state holds {n} tokens, more than this model's n_ctx={n_ctx}")
    return state


def write_session(path: Union[str, Path], state: LlamaState) -> None:
    """state to path, atomically (the module notes)."""
    path = Path(path)
    tokens = np.asarray(state.tokens, dtype="<i4")
    little = lambda a: a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()  # noqa: E731
    body = [tokens.tobytes(), little(state.keys), little(state.values)]
    digest = hashlib.sha256()
    for part in body:
        digest.update(part)
    header = {"version": VERSION, "model": state.model, "n_tokens": state.n_tokens,
              "cache_types": list(state.cache_types), "key_shape": list(state.keys.shape),
              "value_shape": list(state.values.shape), "sha256": digest.hexdigest()}
    folder = path.parent if str(path.parent) else Path(".")
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(MAGIC + json.dumps(header).encode() + b"\n")
            for part in body:
                out.write(part)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_session(path: Union[str, Path]) -> LlamaState:
    """The state in a session file; StateError naming the problem for anything but a whole,
    intact file of a version this edgellama reads (FileNotFoundError when there is none)."""
    path = Path(path)
    with open(path, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise StateError(f"{path}: not an edgellama session file")
        header = _header(path, f.readline(MAX_HEADER_BYTES))
        n, types = header["n_tokens"], tuple(header["cache_types"])
        dtypes = [np.dtype("<u2") if t == "f16" else np.dtype(np.uint8) for t in types]
        shapes = [tuple(header["key_shape"]), tuple(header["value_shape"])]
        expected = 4 * n + sum(math.prod(shape) * dtype.itemsize for shape, dtype in zip(shapes, dtypes))
        body_bytes = os.fstat(f.fileno()).st_size - f.tell()
        if body_bytes != expected:  # checked before anything that size is allocated
            raise StateError(f"{path}: the file is cut short or has extra bytes ({body_bytes} body bytes, "
                             f"{expected} expected)")
        # Read straight into the arrays, hashing as it goes: no second copy of a large cache.
        digest = hashlib.sha256()
        tokens = _read_array(f, np.dtype("<i4"), (n,), digest)
        keys, values = (_read_array(f, dtype, shape, digest) for dtype, shape in zip(dtypes, shapes))
    if digest.hexdigest() != header["sha256"]:
        raise StateError(f"{path}: the checksum does not match: the file is corrupt")
    native = lambda a: a.astype(a.dtype.newbyteorder("="), copy=False)  # noqa: E731
    return LlamaState(header["model"], tuple(int(t) for t in tokens), native(keys), native(values), types)


def _read_array(f, dtype: np.dtype, shape: tuple, digest) -> np.ndarray:
    array = np.empty(shape, dtype=dtype)
    view = memoryview(array.reshape(-1).view(np.uint8))
    if f.readinto(view) != len(view):
        raise StateError(f"{f.name}: the file is cut short")
    digest.update(view)
    return array


def _header(path: Path, line: bytes) -> dict:
    if not line.endswith(b"\n"):
        raise StateError(f"{path}: the header is missing or longer than {MAX_HEADER_BYTES} bytes")
    try:
        header = json.loads(line)
    except ValueError:
        raise StateError(f"{path}: the header is not JSON") from None
    version = header.get("version") if isinstance(header, dict) else None
    if version not in READABLE_VERSIONS:
        raise StateError(f"{path}: session format version {version!r} is not supported (this edgellama reads "
                         f"versions {', '.join(map(str, READABLE_VERSIONS))})")
    if version == 1:  # an f16 cache, one shape for keys and values
        header = dict(header, cache_types=list(F16_CACHE), key_shape=header.get("shape"),
                      value_shape=header.get("shape"))
    n, types = header.get("n_tokens"), header.get("cache_types")
    good_n = isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**31
    good_types = isinstance(types, list) and len(types) == 2 and all(t in CACHE_TYPE_BYTES for t in types)
    good_shapes = all(_good_shape(header.get(key), n) for key in ("key_shape", "value_shape"))
    if not (good_n and good_types and good_shapes and isinstance(header.get("model"), str)
            and isinstance(header.get("sha256"), str)):
        raise StateError(f"{path}: the header's fields are missing or malformed")
    return header


def _good_shape(shape, n) -> bool:
    return (isinstance(shape, list) and len(shape) == 4 and shape[2] == n
            and all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**31 for d in shape))
