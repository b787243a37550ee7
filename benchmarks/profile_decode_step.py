"""Where a CUDA decode step's time goes: each kernel of one step of a synthetic model, timed by
Nsight Compute (the ncu profiler must be on the PATH).

    python3 benchmarks/profile_decode_step.py [--shape llama-3-8b] [--quant Q4_0] [--context 128]
                                              [--variant grouped_rows+fused_attention]

Runs its own workload under `ncu --metrics gpu__time_duration.sum` (kernels one by one, graphs
off: ncu times kernels, not graphs; caches not flushed between them), then takes the last decode step (from its embedding lookup,
the step's first kernel, to the end) and sums its kernels by launch (kernel and grid): microseconds
and share of the step. The sum is the step's GPU time without launch gaps; bench_cuda.py's decode
ms/token less this sum is what launches, the host and the logits' copy cost.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
import subprocess
import sys
from collections import OrderedDict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_cuda  # noqa: E402  (the synthetic models)

CHILD = "EDGELLAMA_PROFILE_DECODE_CHILD"
STEP_START = "dequantize_rows_kernel"  # the embedding lookup begins every step


def run_workload(args) -> None:
    from edgellama import _cuda

    syn = bench_cuda.SyntheticModel(args.shape, args.quant)
    model = _cuda.CudaLlamaModel(syn.config, syn.tensors, args.context + 16, 1,
                                 **bench_cuda.variant_options(args.variant))
    model.cuda_graphs = False
    rng = np.random.default_rng(1)
    vocab = syn.config["n_vocab"]
    model.forward(rng.integers(0, vocab, args.context).astype(np.int32), False)
    for tok in rng.integers(0, vocab, args.steps):
        model.forward(np.array([tok], np.int32), False)


def demangled(names: list[str]) -> dict[str, str]:
    """C++ names for mangled ones (ncu prints either, by version), through c++filt where installed."""
    mangled = sorted({n for n in names if n.startswith("_Z")})
    if not mangled:
        return {}
    try:
        out = subprocess.run(["c++filt"], input="\n".join(mangled), capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    return dict(zip(mangled, out.splitlines()))


def short_name(kernel: str) -> str:
    name = kernel.replace("(anonymous namespace)::", "").replace("edgellama::cuda::", "").replace("edgellama::", "")
    name = re.sub(r"^void ", "", name)
    return re.sub(r"\(.*$", "", name)  # drop the parameter list


def to_us(value: str, unit: str) -> float:
    # ncu spells units out (nsecond) or short (ns), by version
    scale = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3, "second": 1e6,
             "s": 1e6}[unit]
    return float(value.replace(",", "")) * scale


def parse(ncu_csv: str) -> list[tuple[str, str, float]]:
    """(kernel, grid, microseconds) in launch order, from ncu's --csv output."""
    start = ncu_csv.find('"ID"')
    if start < 0:
        raise SystemExit("ncu printed no kernel table:\n" + ncu_csv[-3000:])
    records = [r for r in csv.DictReader(io.StringIO(ncu_csv[start:])) if r.get("Metric Name") == "gpu__time_duration.sum"]
    names = demangled([r["Kernel Name"] for r in records])
    return [(short_name(names.get(r["Kernel Name"], r["Kernel Name"])), r.get("Grid Size", ""),
             to_us(r["Metric Value"], r["Metric Unit"])) for r in records]


def report(rows: list[tuple[str, str, float]]) -> None:
    starts = [i for i, (name, _, _) in enumerate(rows) if STEP_START in name]
    if not starts:
        names = sorted({name for name, _, _ in rows})
        raise SystemExit(f"no {STEP_START} launch among {len(rows)} kernels; kernels seen: {names[:12]}")
    step = rows[starts[-1]:]
    total = sum(us for _, _, us in step)
    groups: OrderedDict[tuple[str, str], list[float]] = OrderedDict()
    for name, grid, us in step:
        groups.setdefault((name, grid), []).append(us)
    print(f"one decode step: {len(step)} kernels, {total:.1f} us of GPU time (launch gaps not counted)")
    print(f"{'launches':>8}{'us each':>9}{'us total':>10}{'share':>7}  kernel [grid]")
    for (name, grid), times in sorted(groups.items(), key=lambda kv: -sum(kv[1])):
        print(f"{len(times):>8}{np.median(times):>9.1f}{sum(times):>10.1f}{100 * sum(times) / total:>6.1f}%  {name} [{grid}]")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="llama-3-8b", choices=list(bench_cuda.SHAPES))
    ap.add_argument("--quant", default="Q4_0", choices=["Q4_0", "Q4_K_M", "Q8_0"])
    ap.add_argument("--context", type=int, default=128, help="tokens in the cache before the decode steps")
    ap.add_argument("--steps", type=int, default=2, help="decode steps run (the last is reported)")
    ap.add_argument("--variant", default="default",
                    help="engine options joined by + (bench_cuda.py --variants), or default")
    ap.add_argument("--raw", help="also write ncu's CSV output to this file")
    args = ap.parse_args(argv)
    bench_cuda.variant_options(args.variant)  # an unknown option fails here, not under ncu
    if os.environ.get(CHILD):
        run_workload(args)
        return
    # No cache flush between kernels: in a real step the activations a kernel reads were just
    # written by the kernel before it and sit in L2 (the weights stream from HBM either way).
    cmd = ["ncu", "--csv", "--clock-control", "none", "--cache-control", "none", "--metrics", "gpu__time_duration.sum",
           sys.executable, os.path.abspath(__file__), "--shape", args.shape, "--quant", args.quant,
           "--context", str(args.context), "--steps", str(args.steps), "--variant", args.variant]
    done = subprocess.run(cmd, env=dict(os.environ, **{CHILD: "1"}), capture_output=True, text=True)
    if args.raw:
        with open(args.raw, "w") as fh:
            fh.write(done.stdout)
    if done.returncode != 0:
        raise SystemExit(f"ncu failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    print(f"{args.shape} {args.quant} ({args.variant}), {args.context} tokens of context")
    report(parse(done.stdout))


if __name__ == "__main__":
    main()
