"""The long fuzz campaign, one command:

    nice python -m fuzz.campaign --out /tmp/edgellama-fuzz --sanitized-mutants 5000

Defaults: at least 25,000 GGUF inputs (structure-aware and byte-level mutants, coverage-guided),
then one CPU-hour shared by the safetensors, tokenizer and chat targets (--gguf-runs, --cpu-hours
change that; --targets picks some). Every target runs in --keep-going mode: a Python finding is
saved once per distinct signature and fuzzing goes on; a crash, hang or memory blow-up ends the
fuzzing process, its reproducer is kept, and the target restarts on the same corpus until its
budget is spent. --sanitized-mutants N then runs N inputs derived from the GGUF corpus (the same
structure-aware mutator, and byte flips; not coverage-guided, as libFuzzer's coverage hooks do
not work with a preloaded ASan runtime) against the ASan+UBSan core (fuzz/sanitized.py).

Results: OUT/summary.json and a table on stdout (executions, wall and CPU seconds, crashes, hangs,
out-of-memory, sanitizer reports, Python exceptions outside the EdgellamaError family), with the
reproducers under OUT/artifacts/TARGET/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from fuzz import run
from fuzz.targets import TARGETS

MAX_RESTARTS = 500


def _kind(path: Path) -> str:
    for prefix, kind in (("crash-", "crashes"), ("timeout-", "hangs"), ("oom-", "out_of_memory"),
                         ("slow-unit-", "slow")):
        if path.name.startswith(prefix):
            return kind
    return "python_exceptions"


def campaign_target(target: str, out: Path, *, runs: Optional[int] = None, seconds: Optional[float] = None) -> dict:
    """Fuzz one target until `runs` executions or `seconds` of CPU time (on a busy machine a
    niced run gets less CPU than wall time), restarting after crashes."""
    corpus, artifacts = out / "corpus" / target, out / "artifacts" / target
    totals = {"executions": 0, "wall_seconds": 0.0, "cpu_seconds": 0.0, "restarts": 0, "crashes": 0,
              "hangs": 0, "out_of_memory": 0, "sanitizer_reports": 0, "findings": {}, "mutations": {},
              "reproducers": []}
    for _ in range(MAX_RESTARTS):
        left_runs = None if runs is None else runs - totals["executions"]
        left_seconds = None if seconds is None else int(seconds - totals["cpu_seconds"])
        if (left_runs is not None and left_runs <= 0) or (left_seconds is not None and left_seconds <= 5):
            break
        result = run.fuzz(target, runs=left_runs, seconds=left_seconds, corpus=corpus, artifacts=artifacts,
                          keep_going=True, quiet=True)
        _add(totals, result)
        if result.returncode == 0 and not result.artifacts and runs is not None:
            break  # all runs done (a time budget is CPU time: the loop checks it)
        totals["restarts"] += 1
    return totals


def _add(totals: dict, result: run.RunResult) -> None:
    totals["executions"] += result.executions
    totals["wall_seconds"] += result.seconds
    totals["cpu_seconds"] += result.cpu_seconds
    for sig, count in result.findings.items():
        totals["findings"][sig] = max(totals["findings"].get(sig, 0), count)
    for key, count in result.counters.items():
        totals["mutations"][key] = totals["mutations"].get(key, 0) + count
    for path in result.artifacts:
        kind = _kind(path)
        if kind in ("crashes", "hangs", "out_of_memory"):
            totals[kind] += 1
            totals["reproducers"].append(str(path))
    from fuzz.sanitized import has_report

    if has_report(result.log_tail):
        totals["sanitizer_reports"] += 1


def report_signature(output: str) -> str:
    """What tells one finding of a mutants run apart: the sanitizer's report line, else the
    exception and its innermost frame."""
    lines = output.splitlines()
    for line in lines:
        if "runtime error:" in line or "ERROR: AddressSanitizer" in line:
            return line.split(" (pc ")[0].strip()
    frames = [line.strip() for line in lines if line.strip().startswith("File ")]
    error = next((line for line in reversed(lines) if line and not line.startswith(" ")), "no output")
    return f"{error} at {frames[-1] if frames else '?'}"


def sanitized_mutants(target: str, out: Path, count: int) -> dict:
    """`count` inputs (the coverage-guided corpus, mutated structure-aware or byte-level) through
    the target against the ASan+UBSan core, restarting after each finding."""
    from fuzz import sanitized, seeds

    sanitized.build()
    env = sanitized.environment(sanitized.package(out / "sanitized"))
    inputs = out / "sanitized-inputs" / target
    seeds.write_seeds(target, inputs)
    corpus = out / "corpus" / target
    for path in (corpus.iterdir() if corpus.is_dir() else []):
        shutil.copy(path, inputs / f"corpus-{path.name}")
    files = sorted(p for p in inputs.iterdir() if not p.name.startswith(("current-", "finding-")))
    artifacts = out / "artifacts" / f"{target}-sanitized"
    artifacts.mkdir(parents=True, exist_ok=True)
    totals = {"executions": 0, "wall_seconds": 0.0, "cpu_seconds": 0.0, "restarts": 0, "crashes": 0, "hangs": 0,
              "out_of_memory": 0, "sanitizer_reports": 0, "findings": {}, "reproducers": [], "inputs": len(files)}
    seen = set()
    stats_path = out / f"{target}-sanitized-stats.json"
    for attempt in range(MAX_RESTARTS):
        left = count - totals["executions"]
        if left <= 0:
            break
        stats_path.unlink(missing_ok=True)
        start, cpu = time.monotonic(), run._children_cpu()
        cmd = [sys.executable, str(run.WORKER), target, "mutants", "--count", str(left), "--seed", str(attempt),
               "--timeout", "60", "--stats", str(stats_path), *map(str, files)]
        scratch = run._scratch_dir()  # an aborted process cannot remove its own
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, env=run._child_env(scratch, env), cwd=out)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        totals["wall_seconds"] += time.monotonic() - start
        totals["cpu_seconds"] += run._children_cpu() - cpu
        stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {"executions": 0}
        output = done.stdout + done.stderr
        if done.returncode == 0:
            totals["executions"] += left
            break
        totals["executions"] += max(int(stats["executions"]), 1)
        totals["restarts"] += 1
        signature = report_signature(output)
        kind = ("sanitizer_reports" if sanitized.has_report(output) else "hangs" if "InputTimeout" in output
                else "python_exceptions" if "FINDING in" in output else "crashes")
        leftovers = sorted(inputs.glob("finding-*")) + sorted(inputs.glob("current-mutant-*"))
        if signature not in seen:
            seen.add(signature)
            if kind == "python_exceptions":
                totals["findings"][signature] = 1
            else:
                totals[kind] += 1
            if leftovers:
                kept = artifacts / f"{kind}-{len(seen)}{leftovers[0].suffix}"
                shutil.move(str(leftovers[0]), kept)
                kept.with_suffix(".txt").write_text(signature + "\n\n" + output[-6000:])
                totals["reproducers"].append(str(kept))
        elif kind == "python_exceptions":
            totals["findings"][signature] += 1
        for path in inputs.glob("finding-*"):
            path.unlink()
        for path in inputs.glob("current-mutant-*"):
            path.unlink()
    return totals


def table(summary: Dict[str, dict]) -> str:
    head = f"{'target':<18}{'executions':>11}{'wall s':>8}{'CPU s':>8}{'crash':>6}{'hang':>5}{'oom':>5}{'san':>5}{'exc':>5}"
    rows = [head]
    for name, t in summary.items():
        if "executions" not in t:
            continue
        rows.append(f"{name:<18}{t['executions']:>11}{t['wall_seconds']:>8.0f}{t['cpu_seconds']:>8.0f}{t['crashes']:>6}"
                    f"{t['hangs']:>5}{t['out_of_memory']:>5}{t['sanitizer_reports']:>5}{len(t['findings']):>5}")
        for sig, count in t["findings"].items():
            rows.append(f"    exception ({count}x): {sig}")
        for path in t["reproducers"]:
            rows.append(f"    reproducer: {path}")
    return "\n".join(rows)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.campaign", description="The long fuzz campaign.")
    parser.add_argument("--out", type=Path, default=Path("/tmp/edgellama-fuzz"))
    parser.add_argument("--gguf-runs", type=int, default=25_000)
    parser.add_argument("--cpu-hours", type=float, default=1.0, help="CPU time shared by the targets other than gguf")
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    parser.add_argument("--sanitized-mutants", type=int, default=0, metavar="N",
                        help="then N mutants of the gguf corpus against the ASan+UBSan core")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    summary: Dict[str, dict] = {}
    summary_path = args.out / "summary.json"
    others = [t for t in args.targets if t != "gguf"]
    for target in args.targets:
        if target == "gguf":
            summary[target] = campaign_target(target, args.out, runs=args.gguf_runs)
        else:
            summary[target] = campaign_target(target, args.out, seconds=args.cpu_hours * 3600 / len(others))
        summary_path.write_text(json.dumps(summary, indent=1))
        print(table({target: summary[target]}), flush=True)
        if target == "gguf" and args.sanitized_mutants:
            summary["gguf-sanitized"] = sanitized_mutants(target, args.out, args.sanitized_mutants)
            summary_path.write_text(json.dumps(summary, indent=1))
            print(table({"gguf-sanitized": summary["gguf-sanitized"]}), flush=True)
    print("\n" + table(summary))
    clean = all(t["crashes"] + t["hangs"] + t["out_of_memory"] + t["sanitizer_reports"] + len(t["findings"]) == 0
                for t in summary.values())
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
