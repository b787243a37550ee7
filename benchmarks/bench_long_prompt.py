"""Long prompts: prefill and decode at 4k, 16k and 32k tokens of context against llama.cpp, peak
memory, and the share of a decode step that attention takes.

    python benchmarks/bench_long_prompt.py --model FILE [--contexts 4096 16384 32768] [-t 2]
        [--cache-type f16] [--llama-batched-bench PATH [--llama-contexts N ...]] [--json OUT]

For each context length N, in a fresh process (so that its peak RSS is its own):
- prefill: tok/s of one N-token prompt (random tokens of the vocabulary);
- decode: tok/s of 32 greedy steps after it, median of 3 rounds (the cache truncated back to N);
- attention share: 1 - (ms of a decode step at 64 tokens of context) / (ms of one at N), both in
  that process: what the N held positions add to a step, which is attention's reading of them
  (the weights' work does not depend on the context);
- memory: peak RSS against the RSS after loading (the weights, mapped and repacked) plus the KV
  cache's bytes for the window.
With --llama-batched-bench, llama.cpp on the same file, threads and cache type:
`llama-batched-bench -npp N -ntg 32 -npl 1 -c N+64 -fa on` (its S_PP and S_TG: the prefill of the
N-token prompt and the decode after it).
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import statistics
import subprocess
import sys
import time

DECODE_STEPS = 32
SHORT_CONTEXT = 64


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024


def decode_rate(llm, n_context, rounds):
    rates = []
    for _ in range(rounds):
        llm.truncate(n_context)
        start = time.perf_counter()
        for step in range(DECODE_STEPS):
            llm.eval([100 + step])
        rates.append(DECODE_STEPS / (time.perf_counter() - start))
    return statistics.median(rates)


def measure_one(model, n_context, threads, cache_type):
    """Runs in its own process; prints one JSON object."""
    import numpy as np

    from edgellama import Llama

    llm = Llama(model, n_ctx=n_context + DECODE_STEPS + 8, n_threads=threads, cache_type_k=cache_type,
                cache_type_v=cache_type)
    loaded = rss_mib()
    ids = [int(t) for t in np.random.default_rng(0).integers(10, llm.n_vocab, n_context)]
    start = time.perf_counter()
    llm.eval(ids)
    prefill = n_context / (time.perf_counter() - start)
    decode = decode_rate(llm, n_context, 3)
    short = decode_rate(llm, SHORT_CONTEXT, 3)
    kv_mib = llm.kv_cache_bytes / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"context": n_context, "cache": cache_type, "prefill_tok_s": prefill, "decode_tok_s": decode,
                      "decode_tok_s_at_64": short, "attention_share": 1 - decode / short,
                      "rss_after_load_mib": loaded, "kv_cache_mib": kv_mib, "peak_rss_mib": peak,
                      "peak_over_weights_plus_kv": peak / (loaded + kv_mib)}))


def llama_cpp(batched_bench, model, n_context, threads, cache_type):
    out = subprocess.run([batched_bench, "-m", model, "-t", str(threads), "-c", str(n_context + 64),
                          "-b", "2048", "-ub", "512", "-npp", str(n_context), "-ntg", str(DECODE_STEPS), "-npl", "1",
                          "-fa", "on", "-ctk", cache_type, "-ctv", cache_type],
                         capture_output=True, text=True, check=True)
    # The results table: |    PP |     TG |    B |   N_KV |   T_PP s | S_PP t/s |   T_TG s | S_TG t/s | ...
    for line in out.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 8 and cells[0] == str(n_context):
            return {"llama_cpp_prefill_tok_s": float(cells[5]), "llama_cpp_decode_tok_s": float(cells[7])}
    raise RuntimeError(f"no result row in llama-batched-bench's output:\n{out.stdout[-2000:]}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--contexts", type=int, nargs="+", default=[4096, 16384, 32768])
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--cache-type", default="f16", choices=("f16", "q8_0", "q4_0"))
    ap.add_argument("--llama-batched-bench", default=None)
    ap.add_argument("--llama-contexts", type=int, nargs="*", default=None,
                    help="the context lengths llama.cpp runs at (default: all of --contexts)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    rows = []
    for n in args.contexts:
        out = subprocess.run([sys.executable, __file__, "_one", args.model, str(n), str(args.threads), args.cache_type],
                             capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        if args.llama_batched_bench and (args.llama_contexts is None or n in args.llama_contexts):
            row.update(llama_cpp(args.llama_batched_bench, args.model, n, args.threads, args.cache_type))
            row["prefill_vs_llama_cpp"] = row["prefill_tok_s"] / row["llama_cpp_prefill_tok_s"]
            row["decode_vs_llama_cpp"] = row["decode_tok_s"] / row["llama_cpp_decode_tok_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "threads": args.threads, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["_one"]:
        model, n, threads, cache_type = sys.argv[2:6]
        measure_one(model, int(n), int(threads), cache_type)
    else:
        main()
