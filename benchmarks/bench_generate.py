"""Prefill and decode speed, load time and peak RSS of one model, per thread count.

    python benchmarks/bench_generate.py [-m MODEL] [-p 128] [-n 64] [-t 1,2] [-r 3]

Each thread count runs in its own process, so peak RSS is that configuration's alone. Prefill
evaluates a synthetic prompt of -p token ids in one call; decode evaluates -n single tokens (greedy
argmax of the previous logits, sampling cost excluded). Figures are medians over -r repetitions.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def measure(model: str, n_prompt: int, n_gen: int, threads: int, reps: int) -> dict:
    import numpy as np

    from edgellama import Llama

    start = time.perf_counter()
    llm = Llama(model, n_ctx=n_prompt + n_gen + 8, n_threads=threads)
    load_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    prompt = rng.integers(100, llm.n_vocab - 100, size=n_prompt).tolist()
    prefill, decode = [], []
    for _ in range(reps):
        llm.reset()
        t0 = time.perf_counter()
        logits = llm.eval(prompt)
        t1 = time.perf_counter()
        for _ in range(n_gen):
            logits = llm.eval([int(np.argmax(logits))])
        t2 = time.perf_counter()
        prefill.append(n_prompt / (t1 - t0))
        decode.append(n_gen / (t2 - t1))
    return {
        "threads": threads,
        "load_s": load_s,
        "prefill_tok_s": statistics.median(prefill),
        "prefill_spread": [min(prefill), max(prefill)],
        "decode_tok_s": statistics.median(decode),
        "decode_spread": [min(decode), max(decode)],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "file_mb": os.path.getsize(model) / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--model")
    parser.add_argument("-p", "--prompt-tokens", type=int, default=128)
    parser.add_argument("-n", "--gen-tokens", type=int, default=64)
    parser.add_argument("-t", "--threads", default="1,2")
    parser.add_argument("-r", "--reps", type=int, default=3)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # child-process mode
    args = parser.parse_args()
    if args.model is None:
        from edgellama.models import ensure_default_model

        args.model = str(ensure_default_model(log=print))
    if args.one:
        print(json.dumps(measure(args.model, args.prompt_tokens, args.gen_tokens, int(args.threads), args.reps)))
        return
    print(f"model {args.model}  prompt {args.prompt_tokens}  gen {args.gen_tokens}  reps {args.reps}")
    print(f"{'threads':>7} {'load s':>7} {'prefill tok/s':>14} {'decode tok/s':>13} {'peak RSS MB':>12} {'file MB':>8}")
    for threads in args.threads.split(","):
        out = subprocess.run([sys.executable, __file__, "--one", "-m", args.model, "-p", str(args.prompt_tokens),
                              "-n", str(args.gen_tokens), "-t", threads, "-r", str(args.reps)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['threads']:>7} {r['load_s']:>7.2f} {r['prefill_tok_s']:>14.1f} {r['decode_tok_s']:>13.1f} "
              f"{r['peak_rss_mb']:>12.1f} {r['file_mb']:>8.1f}")


if __name__ == "__main__":
    main()
