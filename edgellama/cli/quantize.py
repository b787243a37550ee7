"""`edgellama quantize`: export a GGUF or Hugging Face llama checkpoint to a quantized GGUF, or
write a synthetic model of a real model's shapes.

IN is a GGUF file or Hugging Face folder, or a model `-m` accepts (a name in the cache, OWNER/REPO).
OUT is the path of the file to write: an existing folder, a missing folder or one that cannot be
written to is refused with a one-line error before any work (the file name is never guessed).
Progress goes to stderr (a bar on a terminal, a line every tenth otherwise); the report, one line
per tensor and a total, goes to stdout."""

from __future__ import annotations

import argparse

from edgellama.cli.common import any_int, log

# The quantizer's threads; the bound Llama(n_threads) applies too, far above any machine's cores.
MAX_THREADS = 1024


def _thread_count(text: str) -> int:
    value = any_int(text)
    if not 1 <= value <= MAX_THREADS:
        raise argparse.ArgumentTypeError(f"must be in [1, {MAX_THREADS}], got {text}")
    return value


def _weights_seed(text: str) -> int:
    value = any_int(text)
    if not 0 <= value < 2**64:  # what numpy's generator takes as a seed
        raise argparse.ArgumentTypeError(f"must be in [0, 2**64), got {text}")
    return value


def add_parser(sub) -> None:
    from edgellama.quantize import TYPES
    from edgellama.synthetic import MODELS

    p = sub.add_parser("quantize", help="quantize a GGUF or Hugging Face llama checkpoint into a GGUF file",
                       description="edgellama quantize IN OUT --type TYPE, or "
                                   "edgellama quantize --synthetic MODEL OUT --type TYPE")
    p.add_argument("paths", nargs="+", metavar="IN OUT",
                   help="input (GGUF file, Hugging Face folder, or a model name in the cache or OWNER/REPO as "
                        "-m takes them) and output GGUF file (not a folder; its folder must exist); only OUT "
                        "with --synthetic")
    p.add_argument("--type", required=True, type=str.upper, choices=TYPES,
                   help="weight type or mix, in any case (q4_k_m is Q4_K_M)")
    p.add_argument("-t", "--threads", type=_thread_count, default=None,
                   help="quantizer threads (default: all)")
    p.add_argument("--synthetic", choices=sorted(MODELS), default=None,
                   help="write random weights with this model's exact shapes instead of reading IN")
    p.add_argument("--seed", type=_weights_seed, default=0, help="seed of --synthetic weights")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress (the final report is still printed)")
    p.set_defaults(handler=cmd_quantize)


def _exit_on_sigterm(signum, frame):
    # SystemExit unwinds like Ctrl-C does, so the temporary output is removed on `kill` too.
    raise SystemExit(128 + signum)


def cmd_quantize(args) -> int:
    import signal

    from edgellama.errors import QuantizeError
    from edgellama.quantize import quantize, write_gguf

    signal.signal(signal.SIGTERM, _exit_on_sigterm)

    if args.synthetic:
        if len(args.paths) != 1:
            raise QuantizeError("with --synthetic give only OUT")
        from edgellama.quantize import check_output_path
        from edgellama.synthetic import synthetic_source

        check_output_path(args.paths[0])  # before the weights are drawn
        report = write_gguf(synthetic_source(args.synthetic, seed=args.seed), args.paths[0], args.type,
                            threads=args.threads, progress=not args.quiet, log=log)
    else:
        if len(args.paths) != 2:
            raise QuantizeError("give IN and OUT (or --synthetic MODEL OUT)")
        report = quantize(_input_path(args.paths[0]), args.paths[1], args.type, threads=args.threads,
                          progress=not args.quiet, log=log)
    print(report.table())
    return 0


def _input_path(spec: str):
    """IN as given when it exists (a file or a Hugging Face folder); else a model as -m finds it."""
    import os

    from edgellama.models import resolve_model

    if os.path.exists(spec):
        return spec
    return resolve_model(spec, log=log, progress=True)
