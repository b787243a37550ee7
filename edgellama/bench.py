"""Speed measurements of a model: prefill and decode tokens/s, load time, peak RSS, and decode as a
fraction of the memory-bandwidth roofline measured in the same run (on the CPU, or on GPU 0 with
device="cuda": the roofline then uses the device's measured copy bandwidth).

The roofline. Decode reads every weight once per token, so it can go no faster than the rate at
which this machine reads bytes_per_token bytes. On the CPU that rate comes from a read probe with
the same thread count over a buffer of the same size as the weights (within [1 MiB, 512 MiB]).
The probe used to read a fixed 512 MiB, which always measures DRAM; but weights that fit, wholly
or partly, in the last-level cache are read from there, faster, and decode then beat "the
roofline" (issue #24 saw 119% at 1 thread). On a 2-core AMD EPYC with a 32 MiB L3, 1 thread:
a 16 MiB model decoded at 116-157% of the 512 MiB probe, a 125 MiB one at 46-66%, SmolLM2's
92 MiB at 53-61%. The numerator (every weight matrix and norm, the output projection, one
embedding row) is right, and leaves out only the KV cache, which would lower the figure; the probe
already ran with the same thread count. Reading a buffer of the weights' size puts both through
the same caches. A figure still above 100% (one thread's plain loads in the probe against the
kernels' software prefetches, or timing noise on a busy machine) is no fraction of anything: it
is flagged, not shown as one.

Each thread count runs in a fresh child process (edgellama.child_process: the same package as the
parent, whatever the working directory) so that its load time and peak RSS are its own.
Prefill evaluates n_prompt token ids in one call; decode then evaluates n_gen single tokens fed
from a fixed random sequence (sampling excluded, as in the side-by-side comparison). Figures are
medians over `reps` repetitions, with min and max alongside.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import List, Optional, Sequence

from edgellama.child_process import run_child

PROBE_MIN_BYTES, PROBE_MAX_BYTES = 1 << 20, 512 << 20  # the CPU probe's buffer (the module notes)
PROBE_READ_BYTES = 2 << 30  # each probe reads about this much in all: a small buffer is read more times
ABOVE_ROOFLINE_NOTE = ("decode read its weights faster than the probe read a buffer of their size, so the probe "
                       "is no bound here (one thread's plain loads against the kernels' prefetches, or noise): "
                       "not a fraction of the roofline")


@dataclass
class BenchResult:
    model: str
    threads: int
    n_prompt: int
    n_gen: int
    load_s: float
    prefill_tok_s: float
    prefill_min_max: List[float]
    decode_tok_s: float
    decode_min_max: List[float]
    peak_rss_mib: float
    file_mib: float
    kv_cache_mib: float
    bytes_per_token: int          # weight bytes one decode step reads
    bandwidth_gb_s: float         # read bandwidth of a bytes_per_token buffer, same threads (GPU: device copy)
    roofline_fraction: float      # decode_tok_s / (bandwidth / bytes_per_token); see roofline_note
    roofline_note: str = ""       # why roofline_fraction means nothing, when it does not (above 100%)
    cpu_level: str = ""           # the core's instruction-set level that ran (edgellama._core.LEVEL)
    device: str = "cpu"           # "cpu", or the GPU that ran the forward step
    cache_types: List[str] = field(default_factory=lambda: ["f16", "f16"])  # the KV cache's (keys, values)
    activations: str = "precise"  # how the matmuls rounded their input (Llama.activations)


def weight_bytes_per_token(model) -> int:
    """Bytes of weights a decode step reads: every matrix and norm, the output projection (the
    embedding matrix when tied), and one embedding row."""
    total = 0
    for name, t in model.tensors.items():
        if name == "token_embd.weight":
            continue
        total += t.data.nbytes
    embd = model.tensors["token_embd.weight"]
    total += embd.data.nbytes // embd.rows
    if "output.weight" not in model.tensors:
        total += embd.data.nbytes
    return total


def device_bandwidth(device: str, threads: int, weight_bytes: int = PROBE_MAX_BYTES) -> tuple:
    """(GB/s the forward step's weights can stream at, description of the device). CPU: the read
    probe with the same thread count over a buffer of weight_bytes (see the module notes); GPU: a
    device-to-device copy (bytes read + written) of the CUDA module's default size."""
    from edgellama import _core

    if device == "cuda":
        from edgellama import _cuda

        return _cuda.measure_copy_bandwidth() / 1e9, _cuda.device_description(0)
    size = min(max(weight_bytes, PROBE_MIN_BYTES), PROBE_MAX_BYTES)
    reps = min(max(PROBE_READ_BYTES // size, 5), 2000)
    return _core.measure_read_bandwidth(threads, size, reps), "cpu"


def measure(model_path: str, threads: int, n_prompt: int, n_gen: int, reps: int, seed: int = 0,
            device: str = "cpu", cache_types: Sequence[str] = ("f16", "f16"),
            activations: Optional[str] = None) -> BenchResult:
    """Runs in the current process; see run_bench for the per-process driver."""
    import numpy as np

    from edgellama import _core
    from edgellama.model import Llama

    start = time.perf_counter()
    llm = Llama(model_path, n_ctx=n_prompt + n_gen, n_threads=threads, device=device, cache_type_k=cache_types[0],
                cache_type_v=cache_types[1], activations=activations)
    load_s = time.perf_counter() - start
    rng = np.random.default_rng(seed)
    prompt = rng.integers(0, llm.n_vocab, size=n_prompt).tolist()
    decode_ids = rng.integers(0, llm.n_vocab, size=n_gen).tolist()
    llm.eval(prompt[: min(8, n_prompt)])  # warm up: page in the weights, spin up the threads
    prefill, decode = [], []
    for _ in range(reps):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        t1 = time.perf_counter()
        for token in decode_ids:
            llm.eval([token])
        t2 = time.perf_counter()
        prefill.append(n_prompt / (t1 - t0))
        decode.append(n_gen / (t2 - t1))
    kv_bytes = llm.kv_cache_bytes
    bytes_per_token = weight_bytes_per_token(llm.model)
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the probe's buffer
    bandwidth, device_name = device_bandwidth(device, threads, bytes_per_token)
    decode_median = statistics.median(decode)
    roofline = decode_median * bytes_per_token / (bandwidth * 1e9)
    return BenchResult(
        model=os.path.basename(model_path), threads=threads, n_prompt=n_prompt, n_gen=n_gen, load_s=load_s,
        prefill_tok_s=statistics.median(prefill), prefill_min_max=[min(prefill), max(prefill)],
        decode_tok_s=decode_median, decode_min_max=[min(decode), max(decode)],
        peak_rss_mib=peak_rss_mib,
        file_mib=os.path.getsize(model_path) / 2**20, kv_cache_mib=kv_bytes / 2**20,
        bytes_per_token=bytes_per_token, bandwidth_gb_s=bandwidth,
        roofline_fraction=roofline, roofline_note=ABOVE_ROOFLINE_NOTE if roofline > 1 else "",
        cpu_level=_core.LEVEL, device=device_name, cache_types=list(llm.cache_types),
        activations=llm.activations,
    )


def run_bench(model_path: str, threads: List[int], n_prompt: int, n_gen: int, reps: int,
              device: str = "cpu", cache_types: Sequence[str] = ("f16", "f16"),
              activations: Optional[str] = None) -> List[BenchResult]:
    """One child process per thread count (fresh RSS and load time)."""
    results = []
    for t in threads:
        out = run_child("edgellama.bench", [model_path, str(t), str(n_prompt), str(n_gen), str(reps), device,
                                            *cache_types, activations or "default"])
        if out.returncode != 0:
            raise RuntimeError(f"benchmark with {t} threads failed: {out.stderr.strip()[-800:]}")
        results.append(BenchResult(**json.loads(out.stdout.strip().splitlines()[-1])))
    return results


def format_table(results: List[BenchResult]) -> str:
    head = (f"{'model':<34} {'thr':>3} {'load s':>6} {'pp tok/s':>16} {'tg tok/s':>16} "
            f"{'roofline':>8} {'GB/s':>6} {'RSS MiB':>8} {'KV MiB':>12} {'file+KV':>8}  device")
    lines = [head]
    for r in results:
        pp = f"{r.prefill_tok_s:.1f} ({r.prefill_min_max[0]:.0f}-{r.prefill_min_max[1]:.0f})"
        tg = f"{r.decode_tok_s:.1f} ({r.decode_min_max[0]:.0f}-{r.decode_min_max[1]:.0f})"
        roofline = f"{r.roofline_fraction:.0%}" if not r.roofline_note else ">100%*"
        types = r.cache_types[0] if r.cache_types[0] == r.cache_types[1] else "/".join(r.cache_types)
        kv = f"{r.kv_cache_mib:.1f} {types}"
        lines.append(f"{r.model[:34]:<34} {r.threads:>3} {r.load_s:>6.2f} {pp:>16} {tg:>16} "
                     f"{roofline:>8} {r.bandwidth_gb_s:>6.1f} {r.peak_rss_mib:>8.0f} {kv:>12} "
                     f"{r.file_mib + r.kv_cache_mib:>8.0f}  {r.cpu_level if r.device == 'cpu' else r.device}")
    if any(r.roofline_note for r in results):
        lines.append(f"* {ABOVE_ROOFLINE_NOTE}")
    return "\n".join(lines)


def _child(argv: Optional[List[str]] = None) -> None:
    model, threads, n_prompt, n_gen, reps, device, cache_k, cache_v, activations = (argv or sys.argv[1:])[:9]
    result = measure(model, int(threads), int(n_prompt), int(n_gen), int(reps), device=device,
                     cache_types=(cache_k, cache_v), activations=None if activations == "default" else activations)
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    _child()
