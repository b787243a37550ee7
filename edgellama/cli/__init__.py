"""The `edgellama` command line. Each subcommand lives in its own module with an
`add_parser(subparsers)` that registers it and sets `handler`."""

from __future__ import annotations

import argparse
from typing import List, Optional

from edgellama.cli import bench, chat, list_models, pull, quantize, run
from edgellama.cli.common import log
from edgellama.errors import EdgellamaError

SUBCOMMANDS = [run, chat, pull, list_models, bench, quantize]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgellama", description="Run Llama-family GGUF models on-device.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except (EdgellamaError, FileNotFoundError, ValueError) as exc:
        log(f"edgellama: error: {exc}")
        return 1
    except KeyboardInterrupt:
        log("edgellama: interrupted")
        return 130
