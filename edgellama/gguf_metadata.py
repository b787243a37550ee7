"""Typed, range-checked readers of GGUF metadata values.

A GGUF file says what type each value has, and a hostile or broken file can say anything: a
context length that is a string, a block count of 2**32-1, an epsilon that is NaN, a token list of
integers. Every metadata value the runtime uses is read through `MetadataReader`, which checks the
type and the range before the value reaches any arithmetic, loop or allocation, and raises one
error class (`InvalidMetadataError` by default) naming the file, the key and the value.

`check_tokenizer_metadata` validates the tokenizer's arrays and token ids with the same readers;
the model loader runs it at load and `Tokenizer.from_metadata` before building a tokenizer.
"""

from __future__ import annotations

import math
from typing import Any, Callable, List, Mapping, NoReturn, Optional, Type

from edgellama.errors import InvalidMetadataError

# Marks a key without a default: reading it when absent is an error.
REQUIRED: Any = object()

# The largest finite float32: the C++ core receives hyper-parameters and scores as float32, where a
# larger double would become inf.
FLOAT32_MAX = 3.4028234663852886e38
# The smallest positive normal float32: a smaller epsilon would become 0 (or a denormal) there.
FLOAT32_TINY = 1.1754943508222875e-38
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def _is_int(value: Any) -> bool:
    # bool is an int subclass in Python, but a GGUF bool is not a count.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class MetadataReader:
    """Reads one file's metadata values by key, each checked for type and range.

    path: the file (or a description of where the metadata came from), for messages.
    error: the exception class raised, called as error(path, key, value, problem); an
        InvalidMetadataError subclass (the tokenizer uses one that is also a TokenizerError).
    A key whose value is None counts as absent (plain dicts built by hand use None so).
    """

    def __init__(self, path, metadata: Mapping[str, Any],
                 error: Type[InvalidMetadataError] = InvalidMetadataError):
        self.path = path
        self.metadata = metadata
        self.error = error

    def fail(self, key: str, value: Any, problem: str) -> NoReturn:
        raise self.error(self.path, key, value, problem)

    def has(self, key: str) -> bool:
        return self.metadata.get(key) is not None

    def _get(self, key: str, default: Any) -> Any:
        value = self.metadata.get(key)
        if value is None and default is REQUIRED:
            self.fail(key, None, "this required key is missing")
        return value

    def integer(self, key: str, default: Any = REQUIRED, *, low: int = 0, high: int = INT32_MAX) -> Any:
        """An int in [low, high] (bool and float are refused), or default when the key is absent."""
        value = self._get(key, default)
        if value is None:
            return default
        if not _is_int(value):
            self.fail(key, value, f"must be an integer, not {type(value).__name__}")
        if not low <= value <= high:
            self.fail(key, value, f"must be in [{low}, {high}]")
        return int(value)

    def real(self, key: str, default: Any = REQUIRED, *, low: float = -FLOAT32_MAX, high: float = FLOAT32_MAX,
             low_open: bool = False, high_open: bool = False) -> Any:
        """A finite number in [low, high] (an open end with low_open/high_open) as float, or default."""
        value = self._get(key, default)
        if value is None:
            return default
        if not _is_real(value):
            self.fail(key, value, f"must be a number, not {type(value).__name__}")
        value = float(value)
        if not math.isfinite(value):
            self.fail(key, value, "must be a finite number")
        too_low = value <= low if low_open else value < low
        too_high = value >= high if high_open else value > high
        if too_low or too_high:
            self.fail(key, value, f"must be in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}")
        return value

    def text(self, key: str, default: Any = REQUIRED) -> Any:
        """A string, or default when the key is absent."""
        value = self._get(key, default)
        if value is None:
            return default
        if not isinstance(value, str):
            self.fail(key, value, f"must be a string, not {type(value).__name__}")
        return value

    def flag(self, key: str, default: Any = REQUIRED) -> Any:
        """A bool (0 and 1 stored as integers are read as False and True), or default."""
        value = self._get(key, default)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if _is_int(value) and value in (0, 1):
            return bool(value)
        self.fail(key, value, "must be a boolean")

    def _array(self, key: str, default: Any, item_ok: Callable[[Any], bool], item_kind: str,
               length: Optional[int], length_of: str) -> Any:
        value = self._get(key, default)
        if value is None:
            return default
        if not isinstance(value, (list, tuple)):
            self.fail(key, value, f"must be an array of {item_kind}, not {type(value).__name__}")
        bad = next((i for i, item in enumerate(value) if not item_ok(item)), None)
        if bad is not None:
            self.fail(key, value, f"item {bad} ({value[bad]!r}) is not {item_kind}")
        if length is not None and len(value) != length:
            self.fail(key, value, f"has {len(value)} items but {length_of} has {length}")
        return value

    def strings(self, key: str, default: Any = REQUIRED, *, length: Optional[int] = None,
                length_of: str = "") -> Any:
        """A list of str (of `length` items, the length of `length_of`, when given), or default."""
        return self._array(key, default, lambda s: isinstance(s, str), "strings", length, length_of)

    def integers(self, key: str, default: Any = REQUIRED, *, low: int = INT32_MIN, high: int = INT32_MAX,
                 length: Optional[int] = None, length_of: str = "") -> Any:
        """A list of ints in [low, high], or default."""
        return self._array(key, default, lambda v: _is_int(v) and low <= v <= high,
                           f"an integer in [{low}, {high}]", length, length_of)

    def reals(self, key: str, default: Any = REQUIRED, *, length: Optional[int] = None,
              length_of: str = "") -> Any:
        """A list of finite numbers that fit a float32, or default."""
        return self._array(key, default, lambda v: _is_real(v) and math.isfinite(v) and abs(v) <= FLOAT32_MAX,
                           "a finite float32 number", length, length_of)


TOKENS = "tokenizer.ggml.tokens"
# The special token ids a vocabulary may name: each must be a valid token index.
SPECIAL_TOKEN_KEYS = tuple(f"tokenizer.ggml.{name}_token_id"
                           for name in ("bos", "eos", "eot", "padding", "unknown"))


def check_tokenizer_metadata(reader: MetadataReader) -> Optional[List[str]]:
    """Checks the types, lengths and ranges of the tokenizer keys that are present (none is
    required here: a model file may carry no tokenizer). Returns the token list, or None.

    tokens: list of str; token_type: ints (int32), one per token; scores: finite float32
    numbers, one per token; merges: list of str; model, pre: strings; the add_* flags: booleans;
    the special token ids: ints in [0, number of tokens).
    """
    reader.text("tokenizer.ggml.model", None)
    reader.text("tokenizer.ggml.pre", None)
    tokens = reader.strings(TOKENS, None)
    n_tokens = None if tokens is None else len(tokens)
    reader.integers("tokenizer.ggml.token_type", None, length=n_tokens, length_of=TOKENS)
    reader.reals("tokenizer.ggml.scores", None, length=n_tokens, length_of=TOKENS)
    reader.strings("tokenizer.ggml.merges", None)
    for key in ("add_space_prefix", "add_bos_token", "add_eos_token"):
        reader.flag(f"tokenizer.ggml.{key}", None)
    for key in SPECIAL_TOKEN_KEYS:
        if n_tokens is None:
            reader.integer(key, None, low=0, high=INT32_MAX)
        elif reader.has(key):
            value = reader.metadata[key]
            if not _is_int(value) or not 0 <= value < n_tokens:
                reader.fail(key, value, f"must be a token id in [0, {n_tokens}) (the size of {TOKENS})")
    return tokens
