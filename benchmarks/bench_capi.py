"""The C ABI's cost: the same model decoded through libedgellama (edgellama.capi, cffi) and through
the Python package's engine (edgellama.Llama.eval, pybind11), and its load time.

    python benchmarks/bench_capi.py --model FILE [-t 2] [--rounds 7] [--prompt 128] [--decode 32]

Each round loads both paths fresh, then runs a prefill of --prompt tokens and --decode single-token
steps (greedy, through each path's own sampler) on each, the paths interleaved round by round;
medians of tokens/s and of the load time. The two paths run the same core at the same CPU level,
so the ratio measures what the C layer adds per call (tokenization and sampling are not timed).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def run_python(model, threads, prompt, steps, n_ctx):
    from edgellama import Llama

    t0 = time.perf_counter()
    llm = Llama(model, n_threads=threads, n_ctx=n_ctx)
    loaded = time.perf_counter() - t0
    t0 = time.perf_counter()
    logits = llm.eval(prompt)
    prefill = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        logits = llm.eval([int(np.argmax(logits))])
    decode = time.perf_counter() - t0
    return loaded, len(prompt) / prefill, steps / decode


def run_capi(model, threads, prompt, steps, n_ctx):
    from edgellama import capi

    t0 = time.perf_counter()
    m = capi.Model(model, n_threads=threads, n_ctx=n_ctx)
    loaded = time.perf_counter() - t0
    with m, capi.Sampler(temperature=0.0) as sampler:
        t0 = time.perf_counter()
        logits = m.decode(prompt)
        prefill = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(steps):
            logits = m.decode([sampler.sample(logits[-1])])
        decode = time.perf_counter() - t0
    return loaded, len(prompt) / prefill, steps / decode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("-t", "--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--decode", type=int, default=32)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    from edgellama import capi

    with capi.Model(args.model, n_threads=1, n_ctx=8) as probe:
        n_vocab, level = probe.n_vocab, probe.cpu_level
    prompt = rng.integers(0, n_vocab, args.prompt).tolist()
    n_ctx = args.prompt + args.decode + 1
    results = {"python": [], "capi": []}
    for _ in range(args.rounds):
        results["python"].append(run_python(args.model, args.threads, prompt, args.decode, n_ctx))
        results["capi"].append(run_capi(args.model, args.threads, prompt, args.decode, n_ctx))
    print(f"{args.model}, {args.threads} threads, level {level}, {args.rounds} rounds (medians)")
    print(f"{'path':<8} {'load s':>8} {'pp tok/s':>10} {'tg tok/s':>10}")
    medians = {}
    for path, rows in results.items():
        medians[path] = [statistics.median(column) for column in zip(*rows)]
        load, pp, tg = medians[path]
        print(f"{path:<8} {load:>8.3f} {pp:>10.1f} {tg:>10.1f}")
    ratio = [c / p for c, p in zip(medians["capi"], medians["python"])]
    print(f"capi / python: load {ratio[0]:.2f}, pp {ratio[1]:.3f}, tg {ratio[2]:.3f}")


if __name__ == "__main__":
    main()
