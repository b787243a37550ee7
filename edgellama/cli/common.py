"""Argument types, text checks and output helpers shared by the subcommands.

Text rule (the same for arguments and standard input): text the model reads (a prompt, a system
prompt, a chat message) must be valid UTF-8. Python hands undecodable argument and stdin bytes over
as lone surrogates (U+DC80..U+DCFF, "surrogateescape"); such text is refused with a one-line error
naming where it came from and the first bad byte, never decoded with replacement behind the user's
back. File paths (-m, IN, OUT) are exempt: undecodable bytes are legal in POSIX file names.
"""

from __future__ import annotations

import argparse
import math
import re
import sys

from edgellama.errors import EdgellamaError, InvalidArgumentError

# Counts given on the command line (tokens, repetitions) beyond this are typing mistakes, not
# requests: no context window or benchmark comes near 2**31.
MAX_COUNT = 2**31 - 1

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def _at_most_max_count(value: int, text: str) -> int:
    if value > MAX_COUNT:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_COUNT}, got {text}")
    return value


def positive_int(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return _at_most_max_count(value, text)


def non_negative_int(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return _at_most_max_count(value, text)


def any_int(text: str) -> int:
    """An integer whose range the API checks (top-k, seed): argparse only rejects non-integers."""
    return _integer(text)


def finite_float(text: str) -> float:
    """A number; "nan", "inf" and values that overflow to infinity mean nothing for a setting."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def check_text(text: str, source: str) -> str:
    """`text` unchanged when it is valid Unicode; InvalidArgumentError naming `source` (e.g.
    "-p/--prompt", "input line 3") and the first bad character otherwise (see the module's rule)."""
    bad = _LONE_SURROGATE.search(text)
    if bad is None:
        return text
    code = ord(bad.group())
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte carried through by surrogateescape
        problem = f"is not valid UTF-8 (byte 0x{code - 0xDC00:02x} at character {bad.start()})"
    else:
        problem = f"holds a lone surrogate U+{code:04X} at character {bad.start()}, which is not text"
    raise InvalidArgumentError(source, problem)


def read_stdin_text(source: str = "standard input") -> str:
    """All of stdin as text, decoded as UTF-8; InvalidArgumentError naming the first bad byte."""
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgumentError(
            source, f"is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


MAX_TEXT_FILE_BYTES = 16 << 20  # a schema or grammar file; anything larger is not one


def read_text_file(path: str, source: str) -> str:
    """A small UTF-8 text file given by a flag (a schema, a grammar); InvalidArgumentError naming
    the flag when it cannot be read, is too large or is not UTF-8."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TEXT_FILE_BYTES + 1)
    except OSError as exc:
        raise InvalidArgumentError(source, f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_TEXT_FILE_BYTES:
        raise InvalidArgumentError(source, f"{path} is over {MAX_TEXT_FILE_BYTES >> 20} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgumentError(source, f"{path} is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset "
                                           f"{exc.start})") from None


def has_tokenizer(llm) -> bool:
    """Whether the model file carries a tokenizer (a GGUF may hold the weights alone)."""
    return "tokenizer.ggml.model" in llm.model.tokenizer_metadata


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the forward step runs: cpu (default) or cuda, GPU 0 (needs edgellama's CUDA "
                             "module and an NVIDIA GPU)")


# resources.CACHE_TYPE_BYTES's names, spelled out: importing resources would load numpy at every CLI start.
CACHE_TYPES = ("f16", "q8_0", "q4_0")


# edgellama.model.ACTIVATIONS, spelled out for the same reason.
ACTIVATIONS = ("precise", "int8")


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """--cache-type-k / --cache-type-v (-ctk / -ctv, as llama.cpp spells them) and --activations:
    Llama's cache_type_k, cache_type_v and activations; engine_options(args) gives them as keyword
    arguments."""
    for which, name in (("k", "keys"), ("v", "values")):
        parser.add_argument(f"--cache-type-{which}", f"-ct{which}", choices=CACHE_TYPES, default="f16",
                            help=f"how the KV cache stores {name}: f16 (default), q8_0 (53%% of the memory) or "
                                 "q4_0 (28%%); CPU only")
    parser.add_argument("--activations", choices=ACTIVATIONS, default=None,
                        help="how matmuls round their input: precise (the CPU default: int8 plus an int8 "
                             "residual, logits close to exact arithmetic) or int8 (as llama.cpp; about twice "
                             "the prefill speed; the only choice on CUDA)")


def engine_options(args: argparse.Namespace) -> dict:
    return {"cache_type_k": args.cache_type_k, "cache_type_v": args.cache_type_v, "activations": args.activations}


# What a command may fail with on purpose (reported in one line, no traceback): our own errors, a
# file that cannot be read or written, a bad value, memory that ran out.
EXPECTED_ERRORS = (EdgellamaError, OSError, ValueError, MemoryError)


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (a bare MemoryError has none)."""
    text = " ".join(str(exc).split())
    if not text:
        return "out of memory" if isinstance(exc, MemoryError) else type(exc).__name__
    return text


def log(message: str) -> None:
    """A status line for the user, on stderr (stdout carries only generated text)."""
    print(message, file=sys.stderr, flush=True)


def add_prompt_cache_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt-cache", metavar="FILE", default=None,
                        help="a session file (Llama.save_session) holding the evaluated prompt: read at start when "
                             "it belongs to this model, so a prompt starting with the same tokens is not evaluated "
                             "again; written (atomically) with this run's prompt")


def load_prompt_cache(llm, path) -> int:
    """Loads a --prompt-cache file into sequence 0; returns how many tokens it held. A missing
    file gives 0; one from another model, or a corrupt one, gives 0 with a note (it is rewritten
    later), since a cache is never worth failing the command for."""
    from edgellama.errors import StateError

    try:
        llm.load_session(path)
    except FileNotFoundError:
        return 0
    except StateError as exc:
        log(f"note: not using the prompt cache: {one_line(exc)}")
        return 0
    return llm.n_past


def save_prompt_cache(llm, path, n_tokens: int) -> None:
    """The first n_tokens of sequence 0 written to a --prompt-cache file (atomically); an engine
    that cannot save its cache gives a note instead."""
    from edgellama.errors import StateError

    try:
        llm.save_session(path, n_tokens=n_tokens)
    except StateError as exc:
        log(f"note: the prompt cache was not written: {one_line(exc)}")
