"""One fuzzing process (started by fuzz.run; not meant to be called by hand).

    python fuzz/worker.py TARGET --stats FILE [--keep-going --findings DIR] fuzz -- LIBFUZZER_ARGS...
    python fuzz/worker.py TARGET replay --timeout S FILE...
    python fuzz/worker.py TARGET mutants --count N --seed S --timeout S FILE...

`fuzz` hands the target to atheris (libFuzzer) with coverage instrumentation of edgellama (and of
jinja2 for the chat target); libFuzzer itself detects crashes, hangs (-timeout) and memory blow-ups
(-rss_limit_mb). `replay` runs the given inputs once each through the same oracle, without
atheris, a per-input alarm standing in for -timeout: the sanitizer tests use it on the seeds.
`mutants` derives N mutants from the given inputs (the target's structure-aware mutator, or byte
flips) and runs them the same way: the campaign uses it against the sanitized core, under which
libFuzzer's coverage hooks do not work (the preloaded ASan runtime takes them over).

It is started as a script, not with -m: the repository root is then *appended* to sys.path, so
`import edgellama` finds the installed package (or one put first on PYTHONPATH, like the sanitized
build) and never the source tree's copy, which has no compiled core in a fresh clone.
"""

from __future__ import annotations

import argparse
import signal
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)
sys.path.append(str(ROOT))

INSTRUMENTED = {"chat": ["edgellama", "jinja2"]}


class InputTimeout(Exception):
    pass


def _alarm(_signum, _frame):
    raise InputTimeout("the input ran past its time limit (a hang)")


def check(oracle, data: bytes, timeout: int):
    """None when the input passes the oracle within `timeout` seconds, else the traceback."""
    signal.alarm(timeout)
    try:
        oracle(data)
        return None
    except BaseException:  # noqa: BLE001 - reported by the caller
        return traceback.format_exc()
    finally:
        signal.alarm(0)


def replay(target, one_input, files, timeout: int) -> int:
    """0 when every input passes the oracle; else prints the first failure and returns 1."""
    from fuzz.oracle import Oracle

    signal.signal(signal.SIGALRM, _alarm)
    oracle = Oracle(target, one_input)
    for path in files:
        failure = check(oracle, Path(path).read_bytes(), timeout)
        if failure:
            print(f"FINDING in {path}:\n{failure}", file=sys.stderr, flush=True)
            return 1
    print(f"replayed {len(files)} inputs through {target}: no finding", flush=True)
    return 0


def byte_mutant(data: bytes, rng) -> bytes:
    """A byte-level mutant for `mutants` mode (libFuzzer's own mutator needs its coverage hooks,
    which a preloaded ASan runtime takes over): random bytes, interesting integers, cuts."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(out) + 1)
        action = rng.randrange(4)
        if action == 0 and out:
            out[min(at, len(out) - 1)] = rng.randrange(256)
        elif action == 1:
            value = rng.choice([0, 1, 0x7F, 0xFF, 2**31, 2**32 - 1, 2**63, 2**64 - 1])
            out[at:at + 8] = value.to_bytes(8, "little")
        elif action == 2:
            del out[at:at + rng.choice([1, 8, 64, 4096])]
        else:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.choice([1, 4, 8])))
    return bytes(out)


def _mutant(data: bytes, rng, structure) -> bytes:
    try:
        if structure is not None and rng.random() < 0.75:
            return structure(data, rng.getrandbits(32))
    except Exception:  # noqa: BLE001 - an unparseable input gets byte-level mutation
        pass
    return byte_mutant(data, rng)


def mutants(target, module, one_input, files, count: int, seed: int, timeout: int, stats_path=None) -> int:
    """`count` mutants of the given inputs (the target's structure-aware mutator three times in
    four where it has one, else byte-level), each through the oracle; the first failing one is
    saved next to the inputs as finding-<target>-<seed>-<n> and ends the run (status 1). The one
    running is current-mutant-<target>-<seed> there: a crash or sanitizer abort leaves it."""
    import random

    from fuzz.oracle import Oracle

    signal.signal(signal.SIGALRM, _alarm)
    oracle = Oracle(target, one_input, stats_path=stats_path)
    rng = random.Random(seed)
    corpus = [Path(f).read_bytes() for f in files]
    structure = getattr(module, "mutate_structure", None)
    # Each mutant is on disk while it runs: a sanitizer abort or a crash leaves it behind.
    current = Path(files[0]).parent / f"current-mutant-{target}-{seed}"
    for n in range(count):
        data = rng.choice(corpus)
        if rng.random() >= 0.05:  # else the input as it is: the corpus is replayed along the way
            data = _mutant(data, rng, structure)
        current.write_bytes(data)
        failure = check(oracle, data, timeout)
        if failure:
            kept = current.with_name(f"finding-{target}-{seed}-{n}")
            current.rename(kept)
            print(f"FINDING in {kept}:\n{failure}", file=sys.stderr, flush=True)
            return 1
    current.unlink(missing_ok=True)
    oracle.write_stats()
    print(f"ran {count} mutants of {len(files)} inputs through {target}: no finding", flush=True)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("mode", choices=["fuzz", "replay", "mutants"])
    parser.add_argument("--count", type=int, default=1000, help="mutants: how many")
    parser.add_argument("--seed", type=int, default=0, help="mutants: random seed")
    parser.add_argument("--stats", type=Path)
    parser.add_argument("--findings", type=Path)
    parser.add_argument("--keep-going", action="store_true")
    parser.add_argument("--timeout", type=int, default=20)
    parser.add_argument("files", nargs="*", help="replay: the inputs")
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after "--" goes to libFuzzer untouched (its flags start with a single dash).
    libfuzzer = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_intermixed_args(argv[:argv.index("--")] if "--" in argv else argv)

    from fuzz import targets

    module = targets.load(args.target)
    if args.mode == "replay":
        return replay(args.target, module.setup(), args.files, args.timeout)
    if args.mode == "mutants":
        return mutants(args.target, module, module.setup(), args.files, args.count, args.seed, args.timeout,
                       args.stats)

    import atheris

    with atheris.instrument_imports(include=INSTRUMENTED.get(args.target, ["edgellama"])):
        from fuzz.oracle import Oracle

        one_input = module.setup()
    oracle = Oracle(args.target, one_input, keep_going=args.keep_going, findings_dir=args.findings,
                    stats_path=args.stats, counters=getattr(module, "counters", None))
    oracle.write_stats()
    mutator = getattr(module, "custom_mutator", None)
    atheris.Setup([sys.argv[0], *libfuzzer], oracle, **({"custom_mutator": mutator} if mutator else {}))
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
