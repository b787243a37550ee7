"""Parallel decoding side by side: `edgellama bench --parallel` against llama.cpp's
`llama-batched-bench` on the same GGUF file, threads, prompt and generation lengths.

llama-batched-bench must be built outside the package (e.g. from the llama.cpp tree vendored by
the llama_cpp_python sdist):

    cmake -S <llama.cpp> -B /tmp/lcpp/build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF
    cmake --build /tmp/lcpp/build -j2 --target llama-batched-bench

then:

    python benchmarks/compare_batched.py --batched-bench /tmp/lcpp/build/bin/llama-batched-bench \\
        -m MODEL.gguf -t 2 -p 128 -n 64 --parallel 1,2,4,8,16 -r 3

Both sides prefill P prompts of p tokens and decode n tokens per sequence; the decode rate is the
aggregate over all sequences in the decode phase (llama.cpp's S_TG). Rounds alternate between the
two programs so machine noise hits both alike; medians are reported with the ratio ours/theirs.
llama-batched-bench decodes fixed tokens without sampling; our figure includes sampling and the
scheduler (what an API caller gets).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys


def llamacpp_round(binary: str, model: str, threads: int, n_prompt: int, n_gen: int, parallel: list) -> dict:
    """{P: (S_TG aggregate decode tok/s, T_PP seconds)} from one llama-batched-bench run."""
    n_ctx = max(parallel) * (n_prompt + n_gen) + 16
    cmd = [binary, "-m", model, "-c", str(n_ctx), "-b", "2048", "-ub", "512", "-npp", str(n_prompt),
           "-ntg", str(n_gen), "-npl", ",".join(map(str, parallel)), "-t", str(threads), "-tb", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"llama-batched-bench failed: {out.stderr[-800:]}")
    rows = {}
    for line in out.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 10 and re.fullmatch(r"\d+", cells[2] or ""):
            rows[int(cells[2])] = (float(cells[7]), float(cells[4]))
    return rows


def ours_round(model: str, threads: int, n_prompt: int, n_gen: int, parallel: list) -> dict:
    """{P: (aggregate decode tok/s, median time to first token s)} from one child process."""
    cmd = [sys.executable, "-m", "edgellama.bench_parallel", model, str(threads), str(n_prompt), str(n_gen),
           ",".join(map(str, parallel)), "1"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"edgellama bench failed: {out.stderr[-800:]}")
    rows = {}
    for line in out.stdout.strip().splitlines():
        r = json.loads(line)
        rows[r["parallel"]] = (r["aggregate_tok_s"], r["ttft_s"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batched-bench", required=True, help="path of llama.cpp's llama-batched-bench")
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-p", "--prompt-tokens", type=int, default=128)
    ap.add_argument("-n", "--gen-tokens", type=int, default=64)
    ap.add_argument("--parallel", default="1,2,4,8,16")
    ap.add_argument("-r", "--reps", type=int, default=3)
    args = ap.parse_args()
    parallel = [int(p) for p in args.parallel.split(",")]
    ours, theirs = {p: [] for p in parallel}, {p: [] for p in parallel}
    # A throwaway llama.cpp pass: its first row otherwise absorbs page-in and thread start-up.
    llamacpp_round(args.batched_bench, args.model, args.threads, 8, 4, [1])
    for _ in range(args.reps):
        for p, v in ours_round(args.model, args.threads, args.prompt_tokens, args.gen_tokens, parallel).items():
            ours[p].append(v)
        for p, v in llamacpp_round(args.batched_bench, args.model, args.threads, args.prompt_tokens,
                                   args.gen_tokens, parallel).items():
            theirs[p].append(v)
    base = statistics.median(v[0] for v in ours[parallel[0]])
    print(f"{args.model}: {args.threads} threads, prompt {args.prompt_tokens}, generate {args.gen_tokens}, "
          f"medians of {args.reps}")
    print(f"{'P':>3} {'ours tok/s':>11} {'x P=' + str(parallel[0]):>7} {'llama.cpp':>10} {'ratio':>6} "
          f"{'ours TTFT s':>11} {'llama.cpp T_PP s':>16}")
    for p in parallel:
        o = statistics.median(v[0] for v in ours[p])
        t = statistics.median(v[0] for v in theirs[p])
        print(f"{p:>3} {o:>11.1f} {o / base:>7.2f} {t:>10.1f} {o / t:>6.2f} "
              f"{statistics.median(v[1] for v in ours[p]):>11.3f} {statistics.median(v[1] for v in theirs[p]):>16.3f}")


if __name__ == "__main__":
    main()
