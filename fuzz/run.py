"""Run a fuzz target.

    python -m fuzz.run TARGET --seconds N        fuzz for N seconds (TARGET: gguf, safetensors,
    python -m fuzz.run TARGET --runs N           tokenizer, chat, or all), or for N inputs
    python -m fuzz.run TARGET --replay FILE...   run saved inputs once each (a reproducer)

Options: --corpus DIR keeps the corpus between runs (default: a fresh temporary one, seeded by
fuzz/seeds.py); --artifacts DIR is where libFuzzer writes crash-/timeout-/oom- reproducers;
--timeout S overrides the target's per-input hang limit; --keep-going records each distinct
Python finding under --artifacts and fuzzes on (the long campaign uses it).

Exit status 0 when nothing was found, 1 otherwise; the report names each reproducer, prints it
(base64, for small ones) and the command that replays it.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "fuzz" / "worker.py"
RSS_LIMIT_MB = 2048
SETUP_SLACK_S = 120  # building vocabularies and importing, before libFuzzer's clock starts
# Reproducers libFuzzer writes for findings (it also writes slow-unit-* for inputs slower than
# -report_slow_units: not a finding, as -timeout is the hang limit; a loaded machine makes them).
ARTIFACT_PREFIXES = ("crash-", "timeout-", "oom-", "leak-")


@dataclass
class RunResult:
    target: str
    returncode: int
    executions: int
    seconds: float
    cpu_seconds: float
    artifacts: List[Path] = field(default_factory=list)
    findings: dict = field(default_factory=dict)  # signature -> count (keep-going mode)
    counters: dict = field(default_factory=dict)
    log_tail: str = ""

    @property
    def clean(self) -> bool:
        return self.returncode == 0 and not self.artifacts and not self.findings

    def report(self) -> str:
        lines = [f"{self.target}: {self.executions} executions in {self.seconds:.0f} s "
                 f"({self.cpu_seconds:.0f} CPU s), exit status {self.returncode}"
                 + (f", mutations {self.counters}" if self.counters else "")]
        for sig, count in self.findings.items():
            lines.append(f"  finding ({count}x): {sig}")
        for path in self.artifacts:
            lines.append(f"  reproducer: {path}")
            lines.append(f"    replay: python -m fuzz.run {self.target} --replay {path}")
            data = path.read_bytes()
            if len(data) <= 2048:
                lines.append(f"    base64: {base64.b64encode(data).decode()}")
        if not self.clean:
            lines.append("  --- last output ---\n" + self.log_tail)
        return "\n".join(lines)


def _child_env(scratch: Path, base: Optional[dict] = None) -> dict:
    env = dict(os.environ if base is None else base)
    env["EDGELLAMA_FUZZ_SCRATCH"] = str(scratch)
    return env


def _scratch_dir() -> Path:
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="edgellama-fuzz-", dir=base))


def _executions(log: str, stats: Optional[dict]) -> int:
    done = re.findall(r"Done (\d+) runs in", log) or re.findall(r"stat::number_of_executed_units: *(\d+)", log)
    if done:
        return int(done[-1])
    return int(stats["executions"]) if stats else 0  # killed before libFuzzer's own summary


def fuzz(target: str, *, seconds: Optional[int] = None, runs: Optional[int] = None,
         corpus: Optional[Path] = None, artifacts: Optional[Path] = None, timeout: Optional[int] = None,
         keep_going: bool = False, quiet: bool = False) -> RunResult:
    """Fuzz one target in a child process; returns what happened."""
    from fuzz import seeds, targets

    module = targets.load(target)
    work = Path(tempfile.mkdtemp(prefix=f"edgellama-fuzz-{target}-"))
    scratch = _scratch_dir()
    try:
        corpus = corpus or work / "corpus"
        artifacts = artifacts or Path(tempfile.mkdtemp(prefix=f"edgellama-fuzz-{target}-artifacts-"))
        seed_dir = work / "seeds"
        for folder in (corpus, artifacts):
            folder.mkdir(parents=True, exist_ok=True)
        seeds.write_seeds(target, seed_dir)
        per_input = timeout or module.TIMEOUT
        libfuzzer = [f"-timeout={per_input}", f"-max_len={module.MAX_LEN}", f"-rss_limit_mb={RSS_LIMIT_MB}",
                     f"-artifact_prefix={artifacts}/", "-print_final_stats=1", "-reload=0",
                     f"-report_slow_units={per_input}"]
        libfuzzer += [f"-max_total_time={seconds}"] if seconds else []
        libfuzzer += [f"-runs={runs}"] if runs else []
        stats_path = work / "stats.json"
        cmd = [sys.executable, str(WORKER), target, "fuzz", "--stats", str(stats_path), "--timeout", str(per_input)]
        if keep_going:
            cmd += ["--keep-going", "--findings", str(artifacts)]
        cmd += ["--", *libfuzzer, str(corpus), str(seed_dir)]
        known = {p.name for p in artifacts.iterdir()}
        log_path = work / "log.txt"
        start, cpu_start = time.monotonic(), _children_cpu()
        with open(log_path, "wb") as log:
            limit = (seconds or 0) + SETUP_SLACK_S + (3600 * 24 if runs else 0) + 4 * per_input
            rc = _run_from_a_small_process(cmd, log, _child_env(scratch), limit)
        text = log_path.read_text(errors="replace")
        if not quiet:
            sys.stderr.write(text[-4000:])
        stats = json.loads(stats_path.read_text()) if stats_path.is_file() else None
        new = sorted(p for p in artifacts.iterdir() if p.name not in known
                     and p.name.startswith(ARTIFACT_PREFIXES + (target + "-",)) and p.suffix not in (".txt", ".log"))
        for path in new:
            if path.name.startswith(ARTIFACT_PREFIXES):  # libFuzzer's report (traceback, signal) with it
                path.with_name(path.name + ".log").write_text(text[-20000:])
        return RunResult(target, rc, _executions(text, stats), time.monotonic() - start,
                         _children_cpu() - cpu_start, new, (stats or {}).get("findings", {}),
                         (stats or {}).get("counters", {}), text[-6000:])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        if artifacts is not None and artifacts.is_dir() and not any(artifacts.iterdir()):
            artifacts.rmdir()  # nothing found: leave no empty folder behind


# libFuzzer's -rss_limit_mb reads getrusage's peak RSS, which Linux carries into a process from the
# memory of the one that spawned it (exec records the old address space's peak): spawned straight
# from a test run that once held 2.6 GB, the worker would start "out of memory". A small
# intermediate Python spawns it instead, so that its peak starts from a few MB.
_TRAMPOLINE = "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)"


def _run_from_a_small_process(cmd: List[str], log, env, limit: float) -> int:
    """The worker's exit status (-9 when it ran past `limit` seconds and was killed, with its
    intermediate: they share a process group)."""
    import signal

    proc = subprocess.Popen([sys.executable, "-c", _TRAMPOLINE, *cmd], stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    try:
        return proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return -9


def replay(target: str, files: List[Path], timeout: Optional[int] = None) -> subprocess.CompletedProcess:
    """Run saved inputs once each through the target, in a child process (a crash kills only it)."""
    from fuzz import targets

    per_input = timeout or targets.load(target).TIMEOUT
    scratch = _scratch_dir()
    try:
        cmd = [sys.executable, str(WORKER), target, "replay", "--timeout", str(per_input), *map(str, files)]
        return subprocess.run(cmd, capture_output=True, text=True, env=_child_env(scratch),
                              timeout=SETUP_SLACK_S + per_input * (len(files) + 1))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _children_cpu() -> float:
    usage = os.times()
    return usage.children_user + usage.children_system


def main(argv=None) -> int:
    from fuzz.targets import TARGETS

    parser = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=[*TARGETS, "all"])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--seconds", type=int, help="fuzz for this long (each target, with 'all')")
    budget.add_argument("--runs", type=int, help="fuzz this many inputs (each target, with 'all')")
    budget.add_argument("--replay", type=Path, nargs="+", metavar="FILE", help="run these inputs once each")
    parser.add_argument("--corpus", type=Path)
    parser.add_argument("--artifacts", type=Path)
    parser.add_argument("--timeout", type=int, help="seconds per input before it counts as a hang")
    parser.add_argument("--keep-going", action="store_true")
    args = parser.parse_args(argv)
    names = list(TARGETS) if args.target == "all" else [args.target]
    if args.replay:
        failed = 0
        for name in names:
            done = replay(name, args.replay, args.timeout)
            sys.stdout.write(done.stdout)
            sys.stderr.write(done.stderr[-6000:])
            failed |= done.returncode != 0
        return int(failed)
    if not (args.seconds or args.runs):
        parser.error("give --seconds N or --runs N (or --replay FILE...)")
    results = [fuzz(name, seconds=args.seconds, runs=args.runs, corpus=args.corpus and args.corpus / name,
                    artifacts=args.artifacts and args.artifacts / name, timeout=args.timeout,
                    keep_going=args.keep_going) for name in names]
    print("\n".join(r.report() for r in results))
    return int(not all(r.clean for r in results))


if __name__ == "__main__":
    sys.exit(main())
