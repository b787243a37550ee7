"""`edgellama bench`: prefill/decode tokens/s, load time, peak RSS and the bandwidth roofline."""

from __future__ import annotations

import json
from dataclasses import asdict

from edgellama.cli.common import add_device_argument, log, positive_int


def _thread_list(text: str):
    try:
        values = [int(v) for v in text.split(",") if v]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise ValueError(f"-t/--threads wants a comma-separated list of positive integers, got {text!r}")
    return values


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="measure prefill and decode speed of a model")
    p.add_argument("-m", "--model", help="GGUF file (default: the default model)")
    p.add_argument("-p", "--prompt-tokens", type=positive_int, default=512, help="prefill length (default 512)")
    p.add_argument("-n", "--gen-tokens", type=positive_int, default=128, help="decode steps (default 128)")
    p.add_argument("-t", "--threads", default=None,
                   help="thread counts, e.g. 1,2 (default 1,2 on the CPU; 1 with --device cuda)")
    p.add_argument("-r", "--reps", type=positive_int, default=3, help="repetitions (default 3; medians reported)")
    p.add_argument("--json", action="store_true", help="print one JSON object per thread count")
    add_device_argument(p)
    p.set_defaults(handler=cmd_bench)


def cmd_bench(args) -> int:
    from edgellama.bench import format_table, run_bench
    from edgellama.models import ensure_default_model

    threads = _thread_list(args.threads or ("1" if args.device == "cuda" else "1,2"))
    model = str(args.model or ensure_default_model(log=log))
    if args.device == "cuda":
        from edgellama.cuda import cuda_status
        from edgellama.errors import DeviceUnavailableError

        usable, why = cuda_status()  # said once here rather than from each child process
        if not usable:
            raise DeviceUnavailableError(f"--device cuda: {why}")
    results = run_bench(model, threads, args.prompt_tokens, args.gen_tokens, args.reps, args.device)
    if args.json:
        for r in results:
            print(json.dumps(asdict(r)))
    else:
        print(format_table(results))
    return 0
