"""Argument types and output helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import sys


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the forward step runs: cpu (default) or cuda, GPU 0 (needs edgellama's CUDA "
                             "module and an NVIDIA GPU)")


def log(message: str) -> None:
    """A status line for the user, on stderr (stdout carries only generated text)."""
    print(message, file=sys.stderr, flush=True)
