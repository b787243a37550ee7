"""Compatibility both ways with llama.cpp (through llama-cpp-python), and quantizer quality next to it.

llama-cpp-python lives in its own virtualenv, outside edgellama's dependencies and outside CI
(see benchmarks/compare_llamacpp.py for how to build one). Run this script with edgellama's python:

    python benchmarks/check_llamacpp_compat.py --other-python /tmp/lcpp-venv/bin/python [--dir DIR]

It checks, on small models:
  1. files edgellama writes load and run in llama.cpp: the synthetic SmolLM2-135M (exact shapes,
     random weights, written as F16 by `edgellama quantize --synthetic`) is quantized by edgellama
     to each type; both runtimes evaluate the same token ids and their logits are compared
     (max |delta| / max |logit| over all positions, and how often the argmax agrees). The cached
     real SmolLM2-135M-Instruct Q4_1 file, if present, is compared as it is and requantized by us.
  2. files llama.cpp writes load here: the same F16 source quantized by llama.cpp's quantizer,
     then run by both runtimes.
  3. quantizer quality: for each type, every tensor of both outputs is dequantized with
     gguf.quants.dequantize and its RMSE against the F16 source computed; tensors both tools gave
     the same type are compared one to one (mean and median of RMSE ours/theirs). Also the
     quantize time and peak RSS of both tools on --threads threads, each run in a fresh process.

llama.cpp's Q4_K_M/Q5_K_M mixes of models whose rows are not multiples of 256 (SmolLM2's 576) use
Q5_0/Q5_1 for those tensors; edgellama runs them (on scalar kernels) since this script found the gap.

Both runtimes quantize activations differently in their dot products (and accumulate in a
different order), so their logits differ slightly even on the same file; the tables show by how much.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REAL_MODEL = Path.home() / ".cache/edgellama/SmolLM2-135M-Instruct.Q4_1.gguf"

# llama.cpp's file-type numbers (enum llama_ftype) for the types both tools write.
LLAMACPP_FTYPES = {"F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9,
                   "Q4_K_M": 15, "Q5_K_M": 17, "Q6_K": 18}

OTHER_SIDE = r'''
import json, sys, time
import numpy as np
import llama_cpp
cmd = sys.argv[1]
if cmd == "quantize":
    src, dst, ftype, threads = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    t0 = time.perf_counter()
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params)
    print(json.dumps({"rc": int(rc), "seconds": time.perf_counter() - t0}))
elif cmd == "logits":
    model, ids, out, threads = sys.argv[2], json.loads(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    llm = llama_cpp.Llama(model_path=model, n_ctx=max(64, len(ids)), n_batch=len(ids), n_ubatch=len(ids),
                          n_threads=threads, n_threads_batch=threads, logits_all=True, verbose=False)
    llm.eval(ids)
    np.save(out, np.asarray(llm.scores[:len(ids)], dtype=np.float32))
    print(json.dumps({"n_vocab": llm.n_vocab()}))
'''


class Runner:
    def __init__(self, other_python: str, workdir: Path, threads: int):
        self.other_python = other_python
        self.dir = workdir
        self.threads = threads
        self.other_script = workdir / "llamacpp_side.py"
        self.other_script.write_text(OTHER_SIDE)

    def timed_rss(self, cmd):
        """(seconds, peak RSS MiB, stdout, stderr, exit code) of one command in a fresh process."""
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
            _, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - start
            out.seek(0)
            err.seek(0)
            return seconds, usage.ru_maxrss / 1024.0, out.read(), err.read(), os.waitstatus_to_exitcode(status)

    def ours_quantize(self, src: Path, dst: Path, qtype: str):
        secs, rss, out, err, rc = self.timed_rss([sys.executable, "-m", "edgellama.cli", "quantize", str(src),
                                                  str(dst), "--type", qtype, "-t", str(self.threads), "-q"])
        if rc != 0:
            raise RuntimeError(f"edgellama quantize {qtype} failed:\n{err[-2000:]}")
        return secs, rss

    def theirs_quantize(self, src: Path, dst: Path, qtype: str):
        secs, rss, out, err, rc = self.timed_rss([self.other_python, str(self.other_script), "quantize", str(src),
                                                  str(dst), str(LLAMACPP_FTYPES[qtype]), str(self.threads)])
        if rc != 0 or json.loads(out.strip().splitlines()[-1])["rc"] != 0:
            raise RuntimeError(f"llama.cpp quantize {qtype} failed:\n{err[-2000:]}")
        # the quantizer's own time, without the interpreter and library start
        return json.loads(out.strip().splitlines()[-1])["seconds"], secs, rss

    def theirs_logits(self, model: Path, ids):
        out_path = self.dir / "llamacpp_logits.npy"
        proc = subprocess.run([self.other_python, str(self.other_script), "logits", str(model),
                               json.dumps([int(i) for i in ids]), str(out_path), str(self.threads)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            return None, proc.stderr.strip()[-600:] or f"exit {proc.returncode}"
        return np.load(out_path), ""

    def ours_logits(self, model: Path, ids):
        from edgellama import Llama
        try:
            llm = Llama(model, n_ctx=max(64, len(ids)), n_threads=self.threads)
            return np.asarray(llm.eval(ids, all_logits=True), dtype=np.float32), ""
        except Exception as exc:  # report, keep going with the other types
            return None, f"{type(exc).__name__}: {exc}"


def compare_logits(ours, theirs):
    rel = float(np.abs(ours - theirs).max() / np.abs(theirs).max())
    agree = float((ours.argmax(-1) == theirs.argmax(-1)).mean())
    return rel, agree


def logits_row(runner: Runner, label: str, path: Path, ids):
    ours, err_o = runner.ours_logits(path, ids)
    theirs, err_t = runner.theirs_logits(path, ids)
    loads = f"{'yes' if ours is not None else 'NO'}/{'yes' if theirs is not None else 'NO'}"
    if ours is None or theirs is None:
        print(f"  {label:<34} {loads:>9}   {err_o or err_t}")
        return None
    rel, agree = compare_logits(ours, theirs)
    print(f"  {label:<34} {loads:>9} {rel:>12.2e} {agree * 100:>9.1f}%")
    return rel, agree


def logits_header(title: str):
    print(f"\n{title}")
    print(f"  {'file':<34} {'loads e/l':>9} {'max|d|/max':>12} {'argmax=':>10}")


def dequantized_tensors(path: Path):
    """{name: (type name, float32 array)} of every tensor of a GGUF file."""
    import gguf
    from gguf.quants import dequantize
    reader = gguf.GGUFReader(str(path))
    out = {}
    for t in reader.tensors:
        values = dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32).reshape(-1)
        out[t.name] = (t.tensor_type.name, values)
    return out


def rmse_by_tensor(source, path: Path):
    out = {}
    for name, (tname, values) in dequantized_tensors(path).items():
        ref = source[name][1]
        out[name] = (tname, float(np.sqrt(np.mean((values - ref) ** 2))), values.size)
    return out


def overall_rmse(rmses):
    sq = sum(r * r * n for _, r, n in rmses.values())
    return float(np.sqrt(sq / sum(n for _, _, n in rmses.values())))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--other-python", required=True, help="python of the virtualenv with llama-cpp-python")
    ap.add_argument("--ours-types", default="Q8_0,Q4_0,Q4_1,Q5_0,Q5_1,Q4_K_M,Q5_K_M,Q6_K")
    ap.add_argument("--theirs-types", default="Q8_0,Q4_0,Q4_1,Q5_0,Q5_1,Q4_K_M,Q5_K_M,Q6_K")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-n", "--tokens", type=int, default=32, help="length of the evaluated token sequence")
    ap.add_argument("--dir", default=None, help="work folder (default: a temporary one, removed afterwards)")
    args = ap.parse_args()

    tmp = None
    if args.dir:
        workdir = Path(args.dir)
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="edgellama-compat-")
        workdir = Path(tmp.name)
    runner = Runner(args.other_python, workdir, args.threads)
    ours_types = [t for t in args.ours_types.split(",") if t]
    theirs_types = [t for t in args.theirs_types.split(",") if t]

    src = workdir / "smollm2-135m-synthetic-F16.gguf"
    if not src.exists():
        subprocess.run([sys.executable, "-m", "edgellama.cli", "quantize", "--synthetic", "smollm2-135m",
                        str(src), "--type", "F16", "-q"], check=True, stderr=subprocess.DEVNULL)
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 49152, size=args.tokens).tolist()
    print(f"source: synthetic SmolLM2-135M, F16 ({src.stat().st_size / 2**20:.0f} MiB); "
          f"{args.tokens} random token ids; {args.threads} threads")

    # All quantizing first, while this process is still small: a child's peak RSS (ru_maxrss) starts
    # from its parent's at fork and survives exec, so it must not inherit loaded models.
    ours_q, theirs_q = {}, {}
    for qtype in ours_types:
        dst = workdir / f"ours-{qtype}.gguf"
        ours_q[qtype] = (dst, *runner.ours_quantize(src, dst, qtype))
    for qtype in theirs_types:
        dst = workdir / f"theirs-{qtype}.gguf"
        theirs_q[qtype] = (dst, *runner.theirs_quantize(src, dst, qtype))

    # 1. our files in llama.cpp
    logits_header("1. files edgellama writes, run by edgellama (e) and llama.cpp (l)")
    logits_row(runner, "F16 source (ours)", src, ids)
    for qtype in ours_types:
        logits_row(runner, f"{qtype} (ours)", ours_q[qtype][0], ids)
    if REAL_MODEL.exists():
        from edgellama import Llama
        real_ids = Llama(REAL_MODEL, n_ctx=64).tokenize("The capital of France is Paris, and the capital of "
                                                       "Italy is Rome. Water boils at")
        logits_header(f"   real SmolLM2-135M-Instruct ({len(real_ids)} tokens of English)")
        logits_row(runner, "Q4_1 as downloaded", REAL_MODEL, real_ids)
        requant = workdir / "real-requant-Q8_0.gguf"
        runner.ours_quantize(REAL_MODEL, requant, "Q8_0")
        logits_row(runner, "Q4_1 -> Q8_0 (ours)", requant, real_ids)

    # 2. llama.cpp's files here
    logits_header("2. files llama.cpp writes, run by edgellama (e) and llama.cpp (l)")
    for qtype in theirs_types:
        logits_row(runner, f"{qtype} (llama.cpp)", theirs_q[qtype][0], ids)

    # 3. quality and cost
    print("\n3. quantizer quality vs the F16 source (RMSE of dequantized tensors) and cost, "
          f"{args.threads} threads")
    print(f"  {'type':<7} {'same-type':>9} {'ours/theirs RMSE':>17} {'(median)':>9} {'overall RMSE o/t':>17} "
          f"{'MiB o/t':>13} {'time s o/t':>13} {'peak RSS MiB o/t':>17}  per-ggml-type ratio")
    source = dequantized_tensors(src)
    for qtype in ours_types:
        if qtype not in theirs_q:
            continue
        ours_path, o_secs, o_rss = ours_q[qtype]
        theirs_path, t_secs, t_wall, t_rss = theirs_q[qtype]
        ro, rt = rmse_by_tensor(source, ours_path), rmse_by_tensor(source, theirs_path)
        ratios, by_type, differing = [], {}, 0
        for name, (tname, r_o, _) in ro.items():
            t_tname, r_t, _ = rt[name]
            if tname != t_tname:
                differing += 1
                continue
            if tname in ("F32", "F16") or r_t == 0:
                continue
            ratios.append(r_o / r_t)
            by_type.setdefault(tname, []).append(r_o / r_t)
        per = " ".join(f"{k}:{np.mean(v):.4f}(n={len(v)})" for k, v in sorted(by_type.items()))
        n_same = len(ro) - differing
        print(f"  {qtype:<7} {n_same:>4}/{len(ro):<4} {np.mean(ratios):>17.4f} {np.median(ratios):>9.4f} "
              f"{overall_rmse(ro):>8.2e}/{overall_rmse(rt):<8.2e} "
              f"{ours_path.stat().st_size / 2**20:>6.1f}/{theirs_path.stat().st_size / 2**20:<6.1f} "
              f"{o_secs:>6.2f}/{t_secs:<6.2f} {o_rss:>8.0f}/{t_rss:<8.0f}  {per}")
        if differing:
            kinds = {}
            for name, (tname, _, _) in ro.items():
                if rt[name][0] != tname:
                    key = f"{name.split('.')[-2] if name.startswith('blk.') else name}: {tname} vs {rt[name][0]}"
                    kinds[key] = kinds.get(key, 0) + 1
            print("          type differs: " + "; ".join(f"{k} x{v}" for k, v in sorted(kinds.items())))
    print("\n  time: ours = whole `edgellama quantize` process; theirs = llama_model_quantize call "
          "(its process adds interpreter start). RSS: each process's peak (wait4 ru_maxrss).")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
