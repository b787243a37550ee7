"""`edgellama quantize`: export a GGUF or Hugging Face llama checkpoint to a quantized GGUF, or
write a synthetic model of a real model's shapes."""

from __future__ import annotations

from edgellama.cli.common import log, positive_int


def add_parser(sub) -> None:
    from edgellama.quantize import TYPES
    from edgellama.synthetic import MODELS

    p = sub.add_parser("quantize", help="quantize a GGUF or Hugging Face llama checkpoint into a GGUF file",
                       description="edgellama quantize IN OUT --type TYPE, or "
                                   "edgellama quantize --synthetic MODEL OUT --type TYPE")
    p.add_argument("paths", nargs="+", metavar="IN OUT",
                   help="input (GGUF file or Hugging Face folder) and output GGUF; only OUT with --synthetic")
    p.add_argument("--type", required=True, choices=TYPES, help="weight type or mix")
    p.add_argument("-t", "--threads", type=positive_int, default=None, help="quantizer threads (default: all)")
    p.add_argument("--synthetic", choices=sorted(MODELS), default=None,
                   help="write random weights with this model's exact shapes instead of reading IN")
    p.add_argument("--seed", type=int, default=0, help="seed of --synthetic weights")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines (the final table is still shown)")
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
        from edgellama.synthetic import synthetic_source

        report = write_gguf(synthetic_source(args.synthetic, seed=args.seed), args.paths[0], args.type,
                            threads=args.threads, progress=not args.quiet, log=log)
    else:
        if len(args.paths) != 2:
            raise QuantizeError("give IN and OUT (or --synthetic MODEL OUT)")
        report = quantize(args.paths[0], args.paths[1], args.type, threads=args.threads,
                          progress=not args.quiet, log=log)
    log(report.table())
    return 0
