"""Cost of sampling one token on Llama-3.2-1B-shaped logits (128256 entries), against a decode step.

    python benchmarks/bench_sampling.py [--vocab 128256] [--decode-ms 30] [-r 2000]

Each configuration draws -r tokens from fresh-looking logits (a fixed set of 16 random logit
vectors with a Llama-like spread, cycled) with a 64-token history for the penalties, and reports
the median and 95th-percentile microseconds per token (Sampler.sample: the chain plus the chosen
token's log-probability) and that as a percentage of a decode step of --decode-ms milliseconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from edgellama.sampling import Sampler, SamplingParams

CONFIGS = {
    "greedy": dict(temperature=0.0),
    "default (T 0.8, top-k 40, top-p 0.95)": dict(),
    "chat CLI (T 0.7, top-k 40, top-p 0.95, min-p 0.05, repeat 1.1/64)": dict(
        temperature=0.7, min_p=0.05, repeat_penalty=1.1),
    "top-p 0.95 alone (no top-k)": dict(top_k=0),
    "min-p 0.05 alone": dict(top_k=0, top_p=1.0, min_p=0.05),
    "typical 0.9 alone": dict(top_k=0, top_p=1.0, typical_p=0.9),
    "everything (top-k 0, min-p, typical, top-p, 3 penalties, bias)": dict(
        top_k=0, min_p=0.02, typical_p=0.95, top_p=0.9, repeat_penalty=1.1, frequency_penalty=0.2,
        presence_penalty=0.2, logit_bias={1: -5.0, 2: 3.0}),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--decode-ms", type=float, default=30.0, help="decode step to compare with (ms)")
    ap.add_argument("-r", "--reps", type=int, default=2000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    # Real logits have a heavy upper tail: a few tokens far above a broad bulk.
    bank = []
    for _ in range(16):
        x = rng.standard_normal(args.vocab).astype(np.float32) * 2.0
        x[rng.integers(0, args.vocab, 20)] += rng.uniform(4, 12, 20).astype(np.float32)
        bank.append(x)
    history = rng.integers(0, args.vocab, 64).tolist()
    results = []
    for name, kw in CONFIGS.items():
        sampler = Sampler(SamplingParams(**kw), seed=0)
        for x in bank:  # warm-up
            sampler.sample(x, history)
        times = []
        for i in range(args.reps):
            x = bank[i % len(bank)]
            t0 = time.perf_counter()
            sampler.sample(x, history)
            times.append(time.perf_counter() - t0)
        times.sort()
        median_us = statistics.median(times) * 1e6
        p95_us = times[int(0.95 * len(times))] * 1e6
        results.append({"config": name, "median_us": median_us, "p95_us": p95_us,
                        "percent_of_decode": 100 * median_us / (args.decode_ms * 1000)})
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"vocab {args.vocab}, decode step {args.decode_ms} ms, {args.reps} draws per configuration")
    for r in results:
        print(f"{r['config']:<70} median {r['median_us']:7.0f} us  p95 {r['p95_us']:7.0f} us"
              f"  = {r['percent_of_decode']:.2f}% of a decode step")


if __name__ == "__main__":
    main()
