"""What every tokenizer family shares: token types, errors, and checks of the text and metadata."""

from __future__ import annotations

import re

from typing import Mapping, Optional

from edgellama.errors import EdgellamaError, InvalidArgumentError, InvalidMetadataError


class TokenizerError(EdgellamaError, ValueError):
    """The GGUF tokenizer metadata is missing, malformed or describes something unsupported
    (an unknown ``tokenizer.ggml.model`` or ``tokenizer.ggml.pre``), or a call cannot be served
    (e.g. ``add_bos=True`` on a vocabulary without a BOS token, a token id out of range)."""


class TokenizerMetadataError(TokenizerError, InvalidMetadataError):
    """A tokenizer metadata value has the wrong type or lies outside its range (a token list of
    integers, a score that is NaN, a token id past the vocabulary). Both a TokenizerError and a
    ModelLoadError (InvalidMetadataError): attributes path, key, value."""


class TokenType:
    """Values of ``tokenizer.ggml.token_type``."""

    NORMAL = 1
    UNKNOWN = 2
    CONTROL = 3
    USER_DEFINED = 4
    UNUSED = 5
    BYTE = 6


SUPPORTED_MODELS = ("gpt2", "llama")

# Control-token texts that end a generation turn in common chat formats.
STOP_TEXTS = frozenset({"<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "</s>", "<|endoftext|>"})


_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def parse_byte_token(text: str) -> Optional[int]:
    """``<0xAB>`` (two ASCII hex digits, as SentencePiece writes them) -> 0xAB, else None: a
    BYTE-typed token of another form ("<0x-1>", "<0x A>", non-ASCII digits) decodes as its text.
    The native tokenizer (csrc/tokenizer/bpe.h) applies the same rule."""
    match = _BYTE_TOKEN.fullmatch(text)
    return int(match.group(1), 16) if match else None


def check_text(text: object) -> None:
    """Text to tokenize must be a str with a UTF-8 encoding (no lone surrogate, which a string
    decoded with errors="surrogateescape" or read from broken UTF-16 may hold)."""
    if not isinstance(text, str):
        raise InvalidArgumentError("text", f"must be a str, got {type(text).__name__}")
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise TokenizerError(
            f"the text is not valid Unicode: a lone surrogate U+{ord(text[exc.start]):04X} at "
            f"character {exc.start} has no UTF-8 encoding, so the text cannot be tokenized"
        ) from None


def optional_id(meta: Mapping[str, object], key: str) -> Optional[int]:
    """An optional token id that check_tokenizer_metadata has already validated."""
    value = meta.get(key)
    return None if value is None else int(value)  # type: ignore[call-overload]


def load_core(backend: str):
    """The C++ core module for the merge loops, or None (backend "python", or not built)."""
    if backend not in ("auto", "core", "python"):
        raise ValueError(f"backend must be 'auto', 'core' or 'python', got {backend!r}")
    if backend == "python":
        return None
    try:
        from edgellama import _core
    except ImportError:
        if backend == "core":
            raise TokenizerError("backend='core' but edgellama._core is not built") from None
        return None
    return _core
