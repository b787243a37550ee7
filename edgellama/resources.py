"""What a context window costs, and whether the machine can hold it.

`Llama(path, n_ctx=..., n_threads=...)` calls `check_context_request` after loading the file and
before the backend allocates anything: the arguments are checked for type and range, a window
larger than the model's training context warns, and a window whose buffers need more memory than
the machine has raises InsufficientMemoryError with the bytes needed and available. The C++ core
checks its size arithmetic as well (an overflow raises there instead of wrapping around), so the
limits hold for any caller, but the message a user sees comes from here.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Iterator, Optional, Tuple

from edgellama import arguments
from edgellama.errors import EdgellamaError, InsufficientMemoryError, InvalidArgumentError

# The largest n_ctx accepted whatever the memory (the CLI's bound on counts too): far past any
# model's training context, and every position then fits a 32-bit int, as token ids do.
MAX_N_CTX = 2**31 - 1
MAX_PARALLEL = 256  # sequences one model may hold (Llama's n_parallel)

# The CPU engine's constants the estimate mirrors (csrc/model/llama_model.h, csrc/kernels/attention.h).
KEY_BLOCK = 16        # kAttentionKeyBlock: the KV cache rounds n_ctx up to whole blocks of positions
MAX_TILE_TOKENS = 4   # kMaxTileTokens: query rows per KV head in the attention scores scratch
MAX_BATCH = 64        # LlamaModel::kMaxBatch: tokens per internal batch
ACTIVATION_SLOTS = 4  # quantized/packed copies of a matmul input held at once (upper bound)


class ContextLengthWarning(UserWarning):
    """n_ctx is larger than the context the model was trained with (llama.context_length):
    positions past it were never seen in training, and output quality usually degrades there."""


# Bytes per 32 elements of each KV cache type (csrc/kernels/kv_blocks.h): halves, or GGUF blocks.
CACHE_TYPE_BYTES = {"f16": 64, "q8_0": 34, "q4_0": 18}
F16_CACHE = ("f16", "f16")


def check_cache_types(config, cache_type_k, cache_type_v, device: str = "cpu") -> Tuple[str, str]:
    """(cache_type_k, cache_type_v) after checking that this model's cache can hold them:
    InvalidArgumentError naming the argument otherwise."""
    types = []
    for name, value in (("cache_type_k", cache_type_k), ("cache_type_v", cache_type_v)):
        value = arguments.text(name, value)
        if value not in CACHE_TYPE_BYTES:
            raise InvalidArgumentError(name, f"must be one of {', '.join(CACHE_TYPE_BYTES)}, got {value!r}")
        if value != "f16" and device != "cpu":
            raise InvalidArgumentError(name, f"the {device} engine's KV cache holds f16 only, got {value!r}")
        if value != "f16" and (config.head_dim % 32 or config.head_dim > 1024):
            raise InvalidArgumentError(name, f"{value} needs a head size that is a multiple of 32 (at most 1024); "
                                             f"this model's is {config.head_dim}")
        types.append(value)
    return types[0], types[1]


def kv_cache_bytes(config, n_ctx: int, n_seq: int = 1, cache_types: Tuple[str, str] = F16_CACHE) -> int:
    """Bytes of the CPU engine's KV cache: n_seq windows of n_ctx tokens, keys and values in the
    given types (n_ctx rounded up to whole key tiles of 16 positions)."""
    padded_ctx = -(-n_ctx // KEY_BLOCK) * KEY_BLOCK
    per_position = sum(CACHE_TYPE_BYTES[t] for t in cache_types) * config.head_dim // 32
    return n_seq * config.n_layer * config.n_head_kv * padded_ctx * per_position


def context_bytes(config, n_ctx: int, n_threads: int, n_seq: int = 1,
                  cache_types: Tuple[str, str] = F16_CACHE) -> int:
    """Bytes the CPU engine allocates for n_seq sequences of n_ctx tokens each on n_threads threads
    (Python integers: no overflow, however large the arguments). config: a ModelConfig.

    KV cache (csrc/model/kv_cache.cpp), kv_cache_bytes: for keys and values as 2-byte halves
        2 * n_seq * n_layer * n_head_kv * ceil(n_ctx / 16) * 16 * head_dim * 2
    (q8_0: 34 bytes, q4_0: 18 bytes per 32 elements instead of 64);
    attention scores scratch (csrc/model/llama_model.cpp), float32:
        n_threads * 4 * (n_head / n_head_kv) * n_ctx * 4
    batch scratch for batch = min(64, n_ctx) tokens, float32:
        batch * (n_embd + max(n_embd, q_width) + 2 * q_width + 2 * kv_width + 2 * n_ff + rope_dim) * 4
        with q_width = n_head * head_dim, kv_width = n_head_kv * head_dim
    activation copies (an upper bound): 4 * batch * max(n_embd, q_width, n_ff) * 4

    The KV cache's pages are touched only as positions fill, but a window must fit when full.
    Weights are not counted: they are mapped from the file (and repacked at load) whatever n_ctx.
    """
    c = config
    kv_cache = kv_cache_bytes(c, n_ctx, n_seq, cache_types)
    scores = n_threads * MAX_TILE_TOKENS * (c.n_head // c.n_head_kv) * n_ctx * 4
    batch = min(MAX_BATCH, n_ctx)
    q_width, kv_width = c.n_head * c.head_dim, c.n_head_kv * c.head_dim
    batch_scratch = batch * (c.n_embd + max(c.n_embd, q_width) + 2 * q_width + 2 * kv_width + 2 * c.n_ff
                             + c.rope_dim) * 4
    activations = ACTIVATION_SLOTS * batch * max(c.n_embd, q_width, c.n_ff) * 4
    return kv_cache + scores + batch_scratch + activations


def available_memory_bytes() -> Optional[int]:
    """Memory a new allocation can use now: MemAvailable plus SwapFree from /proc/meminfo on
    Linux, else the free physical pages (os.sysconf); None where neither is known."""
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        kib = int(fields["MemAvailable"].split()[0]) + int(fields.get("SwapFree", "0 kB").split()[0])
        return kib * 1024
    except (OSError, KeyError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def max_threads() -> int:
    """The largest n_threads accepted: the number of logical CPUs (os.cpu_count()). More threads
    than CPUs only wait for each other (1000 threads took 9.6 s for 2 tokens)."""
    return os.cpu_count() or 1


def check_context_request(config, n_ctx, n_threads, check_memory: bool = True, n_seq: int = 1,
                          cache_types: Tuple[str, str] = F16_CACHE) -> Tuple[int, int]:
    """(n_ctx, n_threads) as ints after checking them for a model of this config (a ModelConfig),
    whose cache holds n_seq sequences of n_ctx tokens each.

    n_ctx: an int >= 1; a window whose buffers (context_bytes) exceed the available memory raises
    InsufficientMemoryError; above MAX_N_CTX InvalidArgumentError; above the model's training
    context a ContextLengthWarning. n_threads: an int in [1, max_threads()] (InvalidArgumentError
    naming the argument and the limit otherwise). check_memory=False skips the host-memory test
    (the CUDA engine keeps its cache on the GPU, and reports a shortage there itself).
    """
    n_ctx = arguments.integer("n_ctx", n_ctx)
    n_threads = arguments.integer("n_threads", n_threads)
    if n_ctx < 1:
        raise InvalidArgumentError("n_ctx", f"must be at least 1, got {n_ctx}")
    limit = max_threads()
    if not 1 <= n_threads <= limit:
        raise InvalidArgumentError("n_threads", f"must be in [1, {limit}] (the number of CPUs), got {n_threads}")
    if check_memory:
        needed, available = context_bytes(config, n_ctx, n_threads, n_seq, cache_types), available_memory_bytes()
        if available is not None and needed > available:
            raise InsufficientMemoryError(_window_text(n_ctx, n_seq), needed, available,
                                          "use a smaller n_ctx" + (" or n_parallel" if n_seq > 1 else ""))
    if n_ctx > MAX_N_CTX:
        raise InvalidArgumentError("n_ctx", f"must be at most {MAX_N_CTX}, got {n_ctx}")
    if n_ctx > config.context_length:
        warnings.warn(ContextLengthWarning(
            f"n_ctx={n_ctx} exceeds the model's training context of {config.context_length} tokens "
            "(llama.context_length): output past that position is usually degraded"), stacklevel=3)
    return n_ctx, n_threads


def _window_text(n_ctx: int, n_seq: int) -> str:
    window = f"a context window of n_ctx={n_ctx} tokens"
    return window if n_seq == 1 else f"{n_seq} sequences (n_parallel) of {window} each"


@contextlib.contextmanager
def allocation_errors(config, n_ctx: int, n_threads: int, n_seq: int = 1,
                      cache_types: Tuple[str, str] = F16_CACHE) -> Iterator[None]:
    """Turns an allocation failure of the backend (MemoryError from std::bad_alloc, OverflowError
    from the core's checked size arithmetic) into InsufficientMemoryError with the bytes the window
    needs; the backend's own EdgellamaErrors pass through unchanged."""
    try:
        yield
    except EdgellamaError:
        raise
    except (MemoryError, OverflowError) as exc:
        available = available_memory_bytes()
        raise InsufficientMemoryError(_window_text(n_ctx, n_seq),
                                      context_bytes(config, n_ctx, n_threads, n_seq, cache_types),
                                      0 if available is None else available,
                                      f"the allocation failed ({exc}); use a smaller n_ctx") from exc
