"""Long context on the CPU engine: KV memory, decode speed against the context held, the cost of a
context shift, and saved state (size, save and load time).

    python benchmarks/bench_long_context.py [--model FILE] [-t 2] [--contexts 512 2048 4096]
        [--decode 32] [-r 3] [--json OUT]

1. KV cache: bytes per token and per window (2 × 2 B × n_layer × n_head_kv × head_dim a token).
2. Decode: tokens/s of --decode greedy steps after a prompt of each --contexts length (random
   tokens of the vocabulary; one sequence), and the prefill's tokens/s; medians of -r runs.
3. Context shift at a full window of each length: milliseconds of seq_shift dropping half of it
   (the rotation of every kept key), against the milliseconds a re-prefill of the kept half takes.
4. Saved state at each length: the session file's size, save_session and load_session times.

The default model is SmolLM2-135M-Instruct Q4_1; --model takes any GGUF (e.g. a synthetic
Llama-3.2-1B from `edgellama quantize --synthetic llama3.2-1b`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from edgellama import Llama
from edgellama.models import ensure_default_model


def median_of(runs, fn):
    return statistics.median(fn() for _ in range(runs))


def prompt_ids(llm, n, seed=0):
    return [int(t) for t in np.random.default_rng(seed).integers(10, llm.n_vocab, n)]


def decode_speed(llm, n_context, n_decode, runs):
    """(prefill tok/s, decode tok/s) after a prompt of n_context tokens."""
    prefill, decode = [], []
    for r in range(runs):
        llm.reset()
        ids = prompt_ids(llm, n_context, seed=r)
        start = time.perf_counter()
        llm.eval(ids)
        prefill.append(n_context / (time.perf_counter() - start))
        token = ids[-1]
        start = time.perf_counter()
        for _ in range(n_decode):
            token = int(np.argmax(llm.eval([token])))
        decode.append(n_decode / (time.perf_counter() - start))
    return statistics.median(prefill), statistics.median(decode)


def shift_cost(llm, n_context, runs):
    """(ms of a shift dropping half a full window, ms of re-prefilling the kept half instead)."""
    ids = prompt_ids(llm, n_context)
    shift, refill = [], []
    for _ in range(runs):
        llm.reset()
        llm.eval(ids)
        start = time.perf_counter()
        llm._core.seq_shift(0, 1, n_context // 2)
        shift.append(1e3 * (time.perf_counter() - start))
        llm.reset()
        start = time.perf_counter()
        llm.eval(ids[:1] + ids[1 + n_context // 2:])
        refill.append(1e3 * (time.perf_counter() - start))
    return statistics.median(shift), statistics.median(refill)


def state_cost(llm, n_context, runs):
    """(file bytes, ms to save, ms to load) of a session of n_context tokens."""
    llm.reset()
    llm.eval(prompt_ids(llm, n_context))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "s.session"
        save, load = [], []
        for _ in range(runs):
            start = time.perf_counter()
            llm.save_session(path)
            save.append(1e3 * (time.perf_counter() - start))
            start = time.perf_counter()
            llm.load_session(path)
            load.append(1e3 * (time.perf_counter() - start))
        return path.stat().st_size, statistics.median(save), statistics.median(load)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--contexts", type=int, nargs="+", default=[512, 2048, 4096])
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("-r", "--runs", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    path = args.model or str(ensure_default_model())
    llm = Llama(path, n_ctx=max(args.contexts) + args.decode + 8, n_threads=args.threads)
    c = llm.config
    per_token = 2 * 2 * c.n_layer * c.n_head_kv * c.head_dim
    print(f"model {Path(path).name}: KV cache {per_token / 1024:.1f} KiB per token "
          f"({per_token * 2048 / 2**20:.0f} MiB per 2048-token window), {args.threads} threads")
    print(f"{'context':>8}{'prefill tok/s':>15}{'decode tok/s':>14}{'shift ms':>10}{'re-prefill ms':>15}"
          f"{'state MiB':>11}{'save ms':>9}{'load ms':>9}")
    rows = []
    for n in args.contexts:
        prefill, decode = decode_speed(llm, n, args.decode, args.runs)
        shift, refill = shift_cost(llm, n, args.runs)
        size, save, load = state_cost(llm, n, args.runs)
        rows.append(dict(context=n, prefill_tok_s=prefill, decode_tok_s=decode, shift_ms=shift, refill_ms=refill,
                         state_bytes=size, save_ms=save, load_ms=load))
        print(f"{n:>8}{prefill:>15.1f}{decode:>14.1f}{shift:>10.2f}{refill:>15.1f}{size / 2**20:>11.1f}"
              f"{save:>9.1f}{load:>9.1f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(dict(model=path, threads=args.threads, kv_bytes_per_token=per_token,
                                                   rows=rows), indent=1))


if __name__ == "__main__":
    main()
