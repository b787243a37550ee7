"""`edgellama bench`: prefill/decode tokens/s, load time, peak RSS and the bandwidth roofline."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict

from edgellama.cli.common import add_engine_arguments, add_device_argument, log, positive_int
from edgellama.errors import EdgellamaError

MAX_REPS = 1000  # more is a typing mistake that would run for hours: each one is a whole prefill and decode


def _thread_list(text: str):
    try:
        values = [int(v) for v in text.split(",") if v]
    except ValueError:
        values = []
    if not values or min(values) < 1 or len(values) > 64:
        raise argparse.ArgumentTypeError(f"wants a comma-separated list of at most 64 positive integers, "
                                         f"got {text!r}")
    return values


def _parallel_list(text: str):
    from edgellama.resources import MAX_PARALLEL

    values = _thread_list(text)
    if max(values) > MAX_PARALLEL:
        raise argparse.ArgumentTypeError(f"counts must be at most {MAX_PARALLEL}, got {max(values)}")
    return values


def _reps(text: str) -> int:
    value = positive_int(text)
    if value > MAX_REPS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_REPS}, got {text}")
    return value


def _child_failure(exc: RuntimeError) -> EdgellamaError:
    """One line from a failed measurement process: the last line of its stderr, the error itself."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    last = lines[-1] if lines else str(exc)
    return EdgellamaError(f"bench: {last.removeprefix('edgellama.errors.')}")


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="measure prefill and decode speed of a model")
    p.add_argument("-m", "--model", help="GGUF file (default: the default model)")
    p.add_argument("-p", "--prompt-tokens", type=positive_int, default=512, help="prefill length (default 512)")
    p.add_argument("-n", "--gen-tokens", type=positive_int, default=128, help="decode steps (default 128)")
    p.add_argument("-t", "--threads", type=_thread_list, default=None,
                   help="thread counts, e.g. 1,2 (default 1,2 on the CPU; 1 with --device cuda)")
    p.add_argument("-r", "--reps", type=_reps, default=3, help="repetitions (default 3; medians reported)")
    p.add_argument("--parallel", type=_parallel_list, default=None,
                   help="parallel generation counts, e.g. 1,2,4,8,16: aggregate and per-sequence decode "
                        "tok/s and time to first token of that many concurrent greedy generations")
    p.add_argument("--json", action="store_true", help="print one JSON object per measurement")
    add_device_argument(p)
    add_engine_arguments(p)
    p.set_defaults(handler=cmd_bench)


def cmd_bench(args) -> int:
    from edgellama.bench import format_table, run_bench
    from edgellama.models import resolve_model

    threads = args.threads or ([1] if args.device == "cuda" else [1, 2])
    model = str(resolve_model(args.model, log=log, progress=True))
    if not os.path.isfile(model):
        raise FileNotFoundError(f"model file not found: {model}")
    if args.device == "cuda":
        from edgellama.cuda import cuda_status
        from edgellama.errors import DeviceUnavailableError

        usable, why = cuda_status()  # said once here rather than from each child process
        if not usable:
            raise DeviceUnavailableError(f"--device cuda: {why}")
    if args.parallel and args.device == "cuda":
        raise EdgellamaError("bench --parallel: the CUDA engine runs one sequence; use --device cpu")
    try:
        if args.parallel:
            from edgellama.bench_parallel import format_parallel_table, run_parallel_bench

            results = run_parallel_bench(model, threads, args.prompt_tokens, args.gen_tokens, args.parallel,
                                         args.reps, (args.cache_type_k, args.cache_type_v), args.activations)
            table = format_parallel_table(results)
        else:
            results = run_bench(model, threads, args.prompt_tokens, args.gen_tokens, args.reps, args.device,
                                (args.cache_type_k, args.cache_type_v), args.activations)
            table = format_table(results)
    except RuntimeError as exc:  # the report of a measurement process that failed
        raise _child_failure(exc) from None
    if args.json:
        for r in results:
            print(json.dumps(asdict(r)))
    else:
        print(table)
    return 0
