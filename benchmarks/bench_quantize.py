"""Time and peak RSS of `edgellama quantize` on the synthetic Llama-3.2-1B (F16 source).

    python benchmarks/bench_quantize.py [--model llama3.2-1b] [--types Q4_0,Q8_0,Q4_K_M] [-t 2] [--dir DIR]

First writes the synthetic model as F16 (its exact shapes, random weights; nothing downloaded),
then quantizes that file to each type, every run in its own process so its peak RSS is its own
(os.wait4's ru_maxrss). Prints one line per type and a JSON summary. The files live in --dir
(default: a temporary folder removed afterwards; they need ~2.5 GB for the F16 source).
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


def timed_cli(*args):
    """(seconds, peak RSS in MiB, stderr) of one `edgellama` run in a fresh process."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "edgellama.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"edgellama {' '.join(args)} failed:\n{stderr}")
    return seconds, usage.ru_maxrss / 1024.0, stderr


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="llama3.2-1b")
    ap.add_argument("--types", default="Q4_0,Q8_0,Q4_K_M")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--dir", default=None, help="keep the files here instead of a temporary folder")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.dir or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        source = folder / f"{args.model}.F16.gguf"
        results = {"model": args.model, "threads": args.threads, "cpu": os.cpu_count(), "runs": {}}
        if not source.exists():
            s, rss, _ = timed_cli("quantize", "-q", "--synthetic", args.model, str(source), "--type", "F16",
                                  "-t", str(args.threads))
            results["synthetic_f16"] = {"seconds": round(s, 1), "peak_rss_mib": round(rss), "bytes": source.stat().st_size}
            print(f"synthetic {args.model} F16: {s:7.1f} s  peak RSS {rss:7.0f} MiB  "
                  f"{source.stat().st_size / 2**30:.2f} GiB", flush=True)
        for type_name in args.types.split(","):
            out = folder / f"{args.model}.{type_name}.gguf"
            s, rss, stderr = timed_cli("quantize", "-q", str(source), str(out), "--type", type_name,
                                       "-t", str(args.threads))
            total = stderr.strip().splitlines()[-1]
            results["runs"][type_name] = {"seconds": round(s, 1), "peak_rss_mib": round(rss),
                                          "bytes": out.stat().st_size, "summary": total}
            print(f"{type_name:>7}: {s:7.1f} s  peak RSS {rss:7.0f} MiB  {out.stat().st_size / 2**30:.2f} GiB  | {total}",
                  flush=True)
            if not args.dir:
                out.unlink()
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
