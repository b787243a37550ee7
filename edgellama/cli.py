"""The `edgellama` command line: `edgellama run -p PROMPT [-m MODEL] [-n N]`."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from edgellama.errors import EdgellamaError


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgellama", description="Run Llama-family GGUF models on-device.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="continue a prompt and print the text")
    run.add_argument("-p", "--prompt", required=True, help="the text to continue")
    run.add_argument("-m", "--model", help="GGUF file (default: SmolLM2-135M-Instruct, fetched on first use)")
    run.add_argument("-n", "--max-tokens", type=_non_negative_int, default=64, help="tokens to generate (default 64)")
    run.add_argument("-t", "--threads", type=_positive_int, default=None, help="CPU threads (default: all)")
    run.add_argument("-c", "--ctx", type=_positive_int, default=None, help="context window in tokens")
    run.add_argument("--temp", type=float, default=0.8, help="temperature; 0 is greedy (default 0.8)")
    run.add_argument("--top-k", type=int, default=40)
    run.add_argument("--top-p", type=float, default=0.95)
    run.add_argument("--seed", type=int, default=None)
    run.add_argument("--stats", action="store_true", help="print load time and tokens/s to stderr")
    return parser


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_run(args) -> int:
    import time

    from edgellama.model import Llama
    from edgellama.models import ensure_default_model

    model_path = args.model or ensure_default_model(log=_log)
    start = time.perf_counter()
    llm = Llama(model_path, n_ctx=args.ctx, n_threads=args.threads)
    load_seconds = time.perf_counter() - start
    sys.stdout.write(args.prompt)
    sys.stdout.flush()
    for piece in llm.generate(args.prompt, max_tokens=args.max_tokens, temperature=args.temp,
                              top_k=args.top_k, top_p=args.top_p, seed=args.seed, stream=True):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    if args.stats:
        s = llm.last_stats
        _log(f"load {load_seconds:.2f} s | prefill {s.prompt_tokens} tokens at {s.prefill_tokens_per_second:.1f} tok/s"
             f" | decode {s.generated_tokens} tokens at {s.decode_tokens_per_second:.1f} tok/s"
             f" | {llm.n_threads} threads")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return {"run": cmd_run}[args.command](args)
    except (EdgellamaError, FileNotFoundError, ValueError) as exc:
        _log(f"edgellama: error: {exc}")
        return 1
    except KeyboardInterrupt:
        _log("edgellama: interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
