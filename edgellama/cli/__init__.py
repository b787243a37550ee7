"""The `edgellama` command line. Each subcommand lives in its own module with an
`add_parser(subparsers)` that registers it and sets `handler`."""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from edgellama.cli import bench, chat, list_models, perplexity, pull, quantize, run, serve
from edgellama.cli.common import EXPECTED_ERRORS, log, one_line

SUBCOMMANDS = [run, chat, serve, pull, list_models, bench, quantize, perplexity]


def package_version() -> str:
    """The installed distribution's version; edgellama.__version__ where there is none (a source
    tree on PYTHONPATH)."""
    from importlib import metadata

    try:
        return metadata.version("edgellama")
    except metadata.PackageNotFoundError:
        import edgellama

        return getattr(edgellama, "__version__", "unknown")


class _VersionAction(argparse.Action):
    """--version: prints the version (looked up only when asked) and exits."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, **kwargs):
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0,
                         help="print the version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"edgellama {package_version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgellama", description="Run Llama-family GGUF models on-device.")
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Runs one command; returns the exit status. Expected failures (EdgellamaError, a file that
    cannot be read or written, a bad value) are one line on stderr and status 1, also when they
    happen mid-answer; Ctrl-C is status 130 without a traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except BrokenPipeError:
        _silence_stdout()
        return 141
    except EXPECTED_ERRORS as exc:
        log(f"edgellama: error: {one_line(exc)}")
        return 1
    except KeyboardInterrupt:
        log("edgellama: interrupted")
        return 130



def _silence_stdout() -> None:
    """After the reader of stdout went away (`| head`): point stdout at /dev/null, so that the
    interpreter's final flush does not raise again, and stop quietly."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file descriptor (replaced in-process)
        pass
