"""Saved state: the tokens and KV cache of sequence 0, in memory (LlamaState) and in a file.

A state belongs to one model: `model_identity` hashes what decides the cache's meaning (the
hyper-parameters with the RoPE scaling, every tensor's name, type and shape, the norm and RoPE
vectors, the start of the embedding and the vocabulary). Loading another model's state is a
StateError, as is a file that is corrupt, cut short or of an unknown version.

Session file (version 1), written atomically (a temporary file beside it, flushed to disk, then
renamed over the target, so a crash leaves the old file or the new one, never half of one):
    b"edgellama-session\\n"
    one line of JSON: {"version": 1, "model": identity, "n_tokens": n,
                       "shape": [n_layer, n_head_kv, n, head_dim], "sha256": of the body}
    body: the tokens (little-endian int32), then the keys, then the values (little-endian uint16:
    fp16 bits, [n_layer][n_head_kv][n][head_dim] each).
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

MAGIC = b"edgellama-session\n"
VERSION = 1
MAX_HEADER_BYTES = 4096
EMBEDDING_SAMPLE_BYTES = 1 << 16


@dataclass(frozen=True, eq=False)
class LlamaState:
    """Sequence 0 of a model's KV cache: its tokens and their keys and values (uint16 arrays of fp16
    bits, [n_layer][n_head_kv][n_tokens][head_dim]). model: the model_identity it belongs to."""

    model: str
    tokens: Tuple[int, ...]
    keys: np.ndarray
    values: np.ndarray

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


def check_state(state, identity: str, shape: Tuple[int, int, int], n_ctx: int) -> LlamaState:
    """state if it fits a model of this identity, cache shape (n_layer, n_head_kv, head_dim) and
    window; StateError otherwise."""
    if not isinstance(state, LlamaState):
        raise StateError(f"expected a LlamaState (from Llama.save_state), got {type(state).__name__}")
    if state.model != identity:
        raise StateError("this state was saved from another model (its identity differs); load it into the "
                         "model it came from")
    n = state.n_tokens
    want = (shape[0], shape[1], n, shape[2])
    for name, array in (("keys", state.keys), ("values", state.values)):
        if not isinstance(array, np.ndarray) or array.dtype != np.uint16 or array.shape != want:
            raise StateError(f"the state's {name} are not a uint16 array of shape {want}")
    if n > n_ctx:
        raise StateError(f"the state holds {n} tokens, more than this model's n_ctx={n_ctx}")
    return state


def write_session(path: Union[str, Path], state: LlamaState) -> None:
    """state to path, atomically (the module notes)."""
    path = Path(path)
    tokens = np.asarray(state.tokens, dtype="<i4")
    body = [tokens.tobytes(), state.keys.astype("<u2").tobytes(), state.values.astype("<u2").tobytes()]
    digest = hashlib.sha256()
    for part in body:
        digest.update(part)
    header = {"version": VERSION, "model": state.model, "n_tokens": state.n_tokens,
              "shape": list(state.keys.shape), "sha256": digest.hexdigest()}
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
    intact version-1 file (FileNotFoundError when there is none)."""
    path = Path(path)
    with open(path, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise StateError(f"{path}: not an edgellama session file")
        header = _header(path, f.readline(MAX_HEADER_BYTES))
        n, shape = header["n_tokens"], header["shape"]
        body_bytes = os.fstat(f.fileno()).st_size - f.tell()
        if body_bytes != 4 * n + 4 * math.prod(shape):  # checked before anything that size is allocated
            raise StateError(f"{path}: the file is cut short or has extra bytes ({body_bytes} body bytes, "
                             f"{4 * n + 4 * math.prod(shape)} expected)")
        # Read straight into the arrays, hashing as it goes: no second copy of a large cache.
        digest = hashlib.sha256()
        tokens = _read_array(f, np.dtype("<i4"), (n,), digest)
        keys = _read_array(f, np.dtype("<u2"), tuple(shape), digest)
        values = _read_array(f, np.dtype("<u2"), tuple(shape), digest)
    if digest.hexdigest() != header["sha256"]:
        raise StateError(f"{path}: the checksum does not match: the file is corrupt")
    return LlamaState(header["model"], tuple(int(t) for t in tokens), keys.astype(np.uint16, copy=False),
                      values.astype(np.uint16, copy=False))


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
    if not isinstance(header, dict) or header.get("version") != VERSION:
        version = header.get("version") if isinstance(header, dict) else None
        raise StateError(f"{path}: session format version {version!r} is not supported (this edgellama reads "
                         f"version {VERSION})")
    n, shape = header.get("n_tokens"), header.get("shape")
    good_n = isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**31
    good_shape = (isinstance(shape, list) and len(shape) == 4
                  and all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**31 for d in shape))
    if not (good_n and good_shape and shape[2] == n and isinstance(header.get("model"), str)
            and isinstance(header.get("sha256"), str)):
        raise StateError(f"{path}: the header's fields are missing or malformed")
    return header
