"""edgellama's C ABI (include/edgellama.h, libedgellama) driven from Python through cffi.

cffi runs in ABI mode: the header is read at run time (its declarations, without the
preprocessor lines) and the library opened with ``ffi.dlopen``; nothing is compiled. This is how
the tests prove the ABI a native app uses: the same library, through nothing but its C functions.

- :func:`load_library` gives ``(ffi, lib)`` with every function of the header.
- :class:`Model` and :class:`Sampler` wrap the handles: a failing call raises :class:`CapiError`
  carrying the status and the library's message, and the handles are freed on ``close()`` or
  garbage collection.

The library is looked up in the package folder (a wheel ships it there), then in the build folder
of a source checkout; ``EDGELLAMA_LIBRARY`` names another file (a standalone install, say).
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np

from edgellama.errors import EdgellamaError

LIBRARY_ENV_VAR = "EDGELLAMA_LIBRARY"
_PACKAGE = Path(__file__).resolve().parent
_SOURCE_ROOT = _PACKAGE.parent


class CapiError(EdgellamaError, RuntimeError):
    """A C ABI call failed. Attributes: status (the edgellama_status value), status_name, message."""

    def __init__(self, status: int, status_name: str, message: str, call: str):
        self.status = status
        self.status_name = status_name
        self.message = message
        super().__init__(f"{call}: {status_name}: {message}")


def header_path() -> Path:
    """include/edgellama.h: the wheel's copy, else the source tree's."""
    for candidate in (_PACKAGE / "include" / "edgellama.h", _SOURCE_ROOT / "include" / "edgellama.h"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("include/edgellama.h is in neither the package nor the source tree")


def library_path() -> Path:
    """The libedgellama to open (see the module docstring for the order)."""
    override = os.environ.get(LIBRARY_ENV_VAR)
    if override:
        return Path(override)
    candidate = _PACKAGE / "libedgellama.so"
    if candidate.is_file():
        return candidate
    raise FileNotFoundError(f"libedgellama.so is not in {_PACKAGE}; build the package (pip install .) "
                            f"or set {LIBRARY_ENV_VAR}")


def cdef_source(header: str) -> str:
    """The header's C declarations as cffi's cdef takes them: no preprocessor lines (except the
    integer #defines cffi understands), no extern "C" wrapper, no export macro."""
    lines = []
    for line in header.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            if re.fullmatch(r"#define\s+EDGELLAMA_[A-Z_]+\s+\d+", stripped):
                lines.append(stripped)
            continue
        if stripped in ('extern "C" {', "}") and not line.startswith(" "):
            continue  # the C++ wrapper's braces (struct bodies close with "} name;")
        lines.append(line.replace("EDGELLAMA_API ", ""))
    return "\n".join(lines)


def load_library(path: Optional[str] = None):
    """(ffi, lib) for the library at path (default: library_path()), one pair per file."""
    return _open_library(str(Path(path or library_path()).resolve()))


@functools.lru_cache(maxsize=None)
def _open_library(path: str):
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(cdef_source(header_path().read_text()))
    return ffi, ffi.dlopen(path)


def _check(ffi, lib, status: int, call: str) -> None:
    if status != lib.EDGELLAMA_OK:
        raise CapiError(int(status), ffi.string(lib.edgellama_status_name(status)).decode(),
                        ffi.string(lib.edgellama_last_error()).decode("utf-8", "replace"), call)


def _text(ffi, value) -> str:
    return ffi.string(value).decode("utf-8", "replace")


class Model:
    """A model loaded through edgellama_model_load. Keyword arguments are edgellama_model_params
    fields (n_threads, n_ctx, n_seq, cpu_level, activations, cache_type_k, cache_type_v)."""

    def __init__(self, path, *, library: Optional[str] = None, **params):
        self._library = library
        self.ffi, self.lib = load_library(library)
        ffi, lib = self.ffi, self.lib
        p = ffi.new("edgellama_model_params*")
        lib.edgellama_model_default_params(p)
        keep = []  # the C strings must outlive the call
        for name, value in params.items():
            if isinstance(value, str):
                value = ffi.new("char[]", value.encode())
                keep.append(value)
            setattr(p, name, value)
        out = ffi.new("edgellama_model**")
        _check(ffi, lib, lib.edgellama_model_load(str(path).encode(), p, out), "edgellama_model_load")
        self._handle = ffi.gc(out[0], lib.edgellama_model_free)

    @property
    def handle(self):
        if self._handle is None:
            raise ValueError("the model is closed")
        return self._handle

    def close(self) -> None:
        if self._handle is not None:
            self.ffi.release(self._handle)  # runs edgellama_model_free now
            self._handle = None

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- queries ------------------------------------------------------------------------------
    @property
    def n_vocab(self) -> int:
        return self.lib.edgellama_model_n_vocab(self.handle)

    @property
    def n_embd(self) -> int:
        return self.lib.edgellama_model_n_embd(self.handle)

    @property
    def n_layer(self) -> int:
        return self.lib.edgellama_model_n_layer(self.handle)

    @property
    def n_ctx(self) -> int:
        return self.lib.edgellama_model_n_ctx(self.handle)

    @property
    def n_ctx_train(self) -> int:
        return self.lib.edgellama_model_n_ctx_train(self.handle)

    @property
    def n_seq(self) -> int:
        return self.lib.edgellama_model_n_seq(self.handle)

    @property
    def n_threads(self) -> int:
        return self.lib.edgellama_model_n_threads(self.handle)

    @property
    def cpu_level(self) -> str:
        return _text(self.ffi, self.lib.edgellama_model_cpu_level(self.handle))

    def meta_string(self, key: str) -> str:
        return self._sized_text(lambda buf, n, size: self.lib.edgellama_model_meta_string(
            self.handle, key.encode(), buf, n, size), "edgellama_model_meta_string", terminated=True).decode()

    @property
    def bos(self) -> int:
        return self.lib.edgellama_token_bos(self.handle)

    @property
    def eos(self) -> int:
        return self.lib.edgellama_token_eos(self.handle)

    @property
    def eot(self) -> int:
        return self.lib.edgellama_token_eot(self.handle)

    @property
    def add_bos(self) -> bool:
        return bool(self.lib.edgellama_vocab_add_bos(self.handle))

    def is_end(self, token: int) -> bool:
        return bool(self.lib.edgellama_token_is_end(self.handle, token))

    def is_control(self, token: int) -> bool:
        return bool(self.lib.edgellama_token_is_control(self.handle, token))

    def token_text(self, token: int) -> str:
        return self._sized_text(lambda buf, n, size: self.lib.edgellama_token_text(self.handle, token, buf, n, size),
                                "edgellama_token_text", terminated=True).decode("utf-8", "replace")

    # -- text -----------------------------------------------------------------------------------
    def tokenize(self, text, *, add_special: bool = False, special: bool = False) -> List[int]:
        """Token ids of text (str, or bytes passed as they are). add_special: BOS/EOS where the file
        says; special: control-token strings become those tokens."""
        ffi, lib = self.ffi, self.lib
        data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
        flags = (lib.EDGELLAMA_TOKENIZE_ADD_SPECIAL if add_special else 0) | (lib.EDGELLAMA_TOKENIZE_SPECIAL if special else 0)
        count = ffi.new("size_t*")
        capacity = len(data) + 2
        while True:
            tokens = ffi.new("edgellama_token[]", max(1, capacity))
            status = lib.edgellama_tokenize(self.handle, data, len(data), flags, tokens, capacity, count)
            if status != lib.EDGELLAMA_ERR_BUFFER_TOO_SMALL:
                break
            capacity = count[0]
        _check(ffi, lib, status, "edgellama_tokenize")
        return list(ffi.unpack(tokens, count[0]))

    def detokenize(self, tokens: Sequence[int], *, special: bool = False) -> bytes:
        """The bytes of the tokens' text."""
        ffi, lib = self.ffi, self.lib
        ids = ffi.new("edgellama_token[]", list(tokens))
        flags = lib.EDGELLAMA_DETOKENIZE_SPECIAL if special else 0
        return self._sized_text(lambda buf, n, size: lib.edgellama_detokenize(self.handle, ids, len(tokens), flags,
                                                                               buf, n, size),
                                "edgellama_detokenize", terminated=False)

    def _sized_text(self, call, name: str, terminated: bool) -> bytes:
        """Runs a call that writes into a char buffer, growing it once when it is too small."""
        ffi, lib = self.ffi, self.lib
        size = ffi.new("size_t*")
        capacity = 256
        for _ in range(2):
            buf = ffi.new("char[]", capacity)
            status = call(buf, capacity, size)
            if status != lib.EDGELLAMA_ERR_BUFFER_TOO_SMALL:
                break
            capacity = size[0]
        _check(ffi, lib, status, name)
        return ffi.unpack(buf, size[0] - (1 if terminated else 0))

    # -- decoding and the cache -------------------------------------------------------------------
    def decode(self, tokens: Sequence[int], seq_ids: Optional[Sequence[int]] = None,
               positions: Optional[Sequence[int]] = None, logits: Optional[Sequence[bool]] = None) -> np.ndarray:
        """Evaluates a batch; returns float32 [rows][n_vocab] for the entries that ask (default: the
        last). seq_ids default to 0, positions to the sequence's current length onwards."""
        ffi, lib = self.ffi, self.lib
        n = len(tokens)
        seq_ids = [0] * n if seq_ids is None else list(seq_ids)
        if positions is None:
            start = {s: lib.edgellama_seq_length(self.handle, s) for s in set(seq_ids)}
            positions = []
            for s in seq_ids:
                positions.append(start[s])
                start[s] += 1
        want = [0] * n if logits is None else [1 if w else 0 for w in logits]
        if logits is None and n:
            want[-1] = 1
        keep = (ffi.new("edgellama_token[]", list(tokens)), ffi.new("int32_t[]", seq_ids),
                ffi.new("int64_t[]", list(positions)), ffi.new("uint8_t[]", want))
        batch = ffi.new("edgellama_batch*", {"n": n, "token": keep[0], "seq_id": keep[1], "pos": keep[2],
                                             "logits": keep[3]})
        out = np.empty((sum(want), self.n_vocab), dtype=np.float32)
        status = lib.edgellama_decode(self.handle, batch, ffi.cast("float*", out.ctypes.data), out.size)
        _check(ffi, lib, status, "edgellama_decode")
        return out

    def seq_length(self, seq: int = 0) -> int:
        return self.lib.edgellama_seq_length(self.handle, seq)

    def seq_clear(self, seq: int = 0) -> None:
        _check(self.ffi, self.lib, self.lib.edgellama_seq_clear(self.handle, seq), "edgellama_seq_clear")

    def seq_truncate(self, seq: int, n: int) -> None:
        _check(self.ffi, self.lib, self.lib.edgellama_seq_truncate(self.handle, seq, n), "edgellama_seq_truncate")

    def seq_copy_prefix(self, src: int, dst: int, n: int) -> None:
        _check(self.ffi, self.lib, self.lib.edgellama_seq_copy_prefix(self.handle, src, dst, n),
               "edgellama_seq_copy_prefix")

    def generate_greedy(self, prompt: Sequence[int], max_tokens: int, seq: int = 0) -> List[int]:
        """Greedy continuation of prompt through edgellama_decode and a temperature-0 sampler,
        stopping at an end token or after max_tokens."""
        with Sampler(temperature=0.0, library=self._library) as sampler:
            logits = self.decode(list(prompt), [seq] * len(prompt))
            out: List[int] = []
            while len(out) < max_tokens:
                token = sampler.sample(logits[-1])
                out.append(token)
                if self.is_end(token):
                    break
                logits = self.decode([token], [seq])
            return out


class Sampler:
    """A sampling chain made by edgellama_sampler_new. Keyword arguments are
    edgellama_sampler_params fields (temperature, top_k, top_p, min_p, repeat_penalty,
    frequency_penalty, presence_penalty, penalty_last_n, seed)."""

    def __init__(self, *, library: Optional[str] = None, **params):
        self.ffi, self.lib = load_library(library)
        ffi, lib = self.ffi, self.lib
        p = ffi.new("edgellama_sampler_params*")
        lib.edgellama_sampler_default_params(p)
        for name, value in params.items():
            setattr(p, name, value)
        out = ffi.new("edgellama_sampler**")
        _check(ffi, lib, lib.edgellama_sampler_new(p, out), "edgellama_sampler_new")
        self._handle = ffi.gc(out[0], lib.edgellama_sampler_free)

    def sample(self, logits: np.ndarray) -> int:
        row = np.ascontiguousarray(logits, dtype=np.float32)
        token = self.ffi.new("edgellama_token*")
        status = self.lib.edgellama_sampler_sample(self._handle, self.ffi.cast("float*", row.ctypes.data), row.size,
                                                   token)
        _check(self.ffi, self.lib, status, "edgellama_sampler_sample")
        return int(token[0])

    def accept(self, tokens: Iterable[int]) -> None:
        for t in ([tokens] if isinstance(tokens, int) else tokens):
            _check(self.ffi, self.lib, self.lib.edgellama_sampler_accept(self._handle, t), "edgellama_sampler_accept")

    def reset(self) -> None:
        self.lib.edgellama_sampler_reset(self._handle)

    def close(self) -> None:
        if self._handle is not None:
            self.ffi.release(self._handle)
            self._handle = None

    def __enter__(self) -> "Sampler":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def cpu_levels(library: Optional[str] = None) -> List[str]:
    """The levels edgellama_cpu_levels() reports, best first."""
    ffi, lib = load_library(library)
    return [name for name in _text(ffi, lib.edgellama_cpu_levels()).split(",") if name]


def abi_version(library: Optional[str] = None) -> Tuple[int, int]:
    """(the header's EDGELLAMA_ABI_VERSION, the library's edgellama_abi_version())."""
    _, lib = load_library(library)
    return lib.EDGELLAMA_ABI_VERSION, lib.edgellama_abi_version()
