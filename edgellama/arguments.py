"""Checks of the public API's arguments: one rule per kind of value, and one error,
`InvalidArgumentError`, whose message names the argument.

The rules, the same wherever an argument of that kind appears:

- **Integers** are Python ints or numpy integer scalars. `bool` is never an integer here (nor a
  number): `top_k=True` or `eval([True])` is a mistake that numpy would silently read as 1.
- **Real numbers** are ints, floats or numpy integer/floating scalars (not bools, not strings).
  NaN is never accepted; infinity only where a rule says so (a `logit_bias` of -inf bans a token).
- **Flags** are bools (numpy bools included).
- **Token ids** are a flat sequence (list, tuple, range, 1-D numpy integer array) of integers in
  [0, n_vocab).
- **Stop strings**: None, one str, or a list, tuple or set of str (empty strings are ignored).
- **Seeds**: None or an integer in [0, 2**64).
- **logit_bias**: None or a mapping {token id: bias}. A token id is an integer or a string of ASCII
  digits (JSON object keys are strings, so OpenAI-style requests send "50256"), in [0, 2**31) and,
  once the model is known, in [0, n_vocab); the bias is a finite real number or -inf (the token is
  banned).

The checkers return the value in its canonical type (int, float, list of str, numpy int64 array),
so callers never convert again.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, Dict, List, Optional, Union

import numpy as np

from edgellama.errors import InvalidArgumentError

SEED_LIMIT = 2**64  # seeds are unsigned 64-bit: the widest a caller can reproduce elsewhere
TOKEN_ID_LIMIT = 2**31  # token ids are int32 in the core: no vocabulary is larger


def _shown(value: Any) -> str:
    """value for an error message: its repr (shortened), with its type unless that is plain."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return text if type(value) in (int, float) else f"{text} ({type(value).__name__})"


def is_integer(value: Any) -> bool:
    """Whether value is an integer by the rule above: int or numpy integer, never a bool."""
    return (type(value) is int or isinstance(value, np.integer)
            or (isinstance(value, numbers.Integral) and not isinstance(value, bool)))


def is_real(value: Any) -> bool:
    """Whether value is a real number by the rule above (NaN and infinities included: the range
    checks reject them)."""
    return (type(value) is float or is_integer(value)
            or (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))))


def _range_text(at_least=None, greater_than=None, at_most=None, less_than=None) -> str:
    parts = []
    if at_least is not None:
        parts.append(f">= {at_least}")
    if greater_than is not None:
        parts.append(f"> {greater_than}")
    if at_most is not None:
        parts.append(f"<= {at_most}")
    if less_than is not None:
        parts.append(f"< {less_than}")
    return " and ".join(parts)


def integer(name: str, value: Any, *, at_least: Optional[int] = None, at_most: Optional[int] = None,
            less_than: Optional[int] = None) -> int:
    """value as an int, or InvalidArgumentError naming `name` (wrong type or out of range)."""
    bounds = _range_text(at_least=at_least, at_most=at_most, less_than=less_than)
    wanted = f"an integer{' ' + bounds if bounds else ''}"
    if not is_integer(value):
        raise InvalidArgumentError(name, f"must be {wanted}, got {_shown(value)}")
    number = int(value)
    if ((at_least is not None and number < at_least) or (at_most is not None and number > at_most)
            or (less_than is not None and number >= less_than)):
        raise InvalidArgumentError(name, f"must be {wanted}, got {number}")
    return number


def optional_integer(name: str, value: Any, **bounds) -> Optional[int]:
    """None, or value checked as by integer()."""
    return None if value is None else integer(name, value, **bounds)


def real(name: str, value: Any, *, at_least: Optional[float] = None, greater_than: Optional[float] = None,
         at_most: Optional[float] = None) -> float:
    """value as a finite float, or InvalidArgumentError naming `name` (wrong type, NaN, infinite or
    out of range)."""
    bounds = _range_text(at_least=at_least, greater_than=greater_than, at_most=at_most)
    wanted = f"a finite number{' ' + bounds if bounds else ''}"
    if not is_real(value):
        raise InvalidArgumentError(name, f"must be {wanted}, got {_shown(value)}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond float's range
        raise InvalidArgumentError(name, f"must be {wanted}, got {_shown(value)}") from None
    if (not math.isfinite(number) or (at_least is not None and number < at_least)
            or (greater_than is not None and number <= greater_than)
            or (at_most is not None and number > at_most)):
        raise InvalidArgumentError(name, f"must be {wanted}, got {_shown(value)}")
    return number


def flag(name: str, value: Any) -> bool:
    """value as a bool (True/False or a numpy bool), or InvalidArgumentError."""
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidArgumentError(name, f"must be True or False, got {_shown(value)}")
    return bool(value)


def optional_flag(name: str, value: Any) -> Optional[bool]:
    return None if value is None else flag(name, value)


def text(name: str, value: Any) -> str:
    """value, which must be a str (not bytes, not None)."""
    if not isinstance(value, str):
        raise InvalidArgumentError(name, f"must be a str, got {_shown(value)}")
    return value


def seed(value: Any, name: str = "seed") -> Optional[int]:
    """None (a fresh, unpredictable seed) or an integer in [0, 2**64)."""
    return optional_integer(name, value, at_least=0, less_than=SEED_LIMIT)


def max_tokens(value: Any, name: str = "max_tokens") -> Optional[int]:
    """None (until the context window is full) or an integer >= 0."""
    return optional_integer(name, value, at_least=0)


def stop_strings(value: Any, name: str = "stop") -> List[str]:
    """The stop strings: None gives [], one str gives [it], a list, tuple or set of str gives its
    non-empty members. Anything else (a number, bytes, a list holding a non-str) is an InvalidArgumentError."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, (bytes, bytearray, Mapping)) or not isinstance(value, (Sequence, set, frozenset)):
        raise InvalidArgumentError(name, f"must be None, a str or a sequence of str, got {_shown(value)}")
    stops = list(value)
    for item in stops:
        if not isinstance(item, str):
            raise InvalidArgumentError(name, f"must hold only str, got {_shown(item)} among {_shown(value)}")
    return [s for s in stops if s]


def context_shift(value: Any) -> Union[None, bool, int]:
    """context_shift checked: False (off) gives None; True, or an integer >= 0 (the tokens kept),
    as given."""
    if value is False or value is None:
        return None
    if value is True:
        return True
    return integer("context_shift", value, at_least=0)


def token_ids(name: str, value: Any, n_vocab: int, *, allow_empty: bool = False) -> np.ndarray:
    """value as a 1-D int64 array of token ids in [0, n_vocab): a list, tuple or range of integers,
    or a 1-D numpy integer array. Floats, bools, nested sequences, strings and ids outside the
    vocabulary are InvalidArgumentErrors (checked before anything is converted, so no id is ever
    rounded, wrapped or read as an index from the end)."""
    if isinstance(value, np.ndarray):
        if value.ndim != 1 or value.dtype.kind not in "iu":
            raise InvalidArgumentError(name, "must be a flat sequence of integer token ids, got a numpy array "
                                             f"of shape {value.shape} and dtype {value.dtype}")
        ids = value
    else:
        if isinstance(value, (str, bytes, bytearray, Mapping)) or not isinstance(value, Sequence):
            raise InvalidArgumentError(name, f"must be a flat sequence of integer token ids, got {_shown(value)}")
        for item in value:
            if not is_integer(item):
                raise InvalidArgumentError(name, "must be a flat sequence of integer token ids, got "
                                                 f"{_shown(item)} among them")
        ids = value
    if len(ids) == 0:
        if allow_empty:
            return np.zeros(0, dtype=np.int64)
        raise InvalidArgumentError(name, "holds no token ids (at least one is needed)")
    # Compared as Python ints or in the array's own dtype: exact, never wrapped or rounded.
    low, high = (ids.min(), ids.max()) if isinstance(ids, np.ndarray) else (min(ids), max(ids))
    if low < 0 or high >= n_vocab:
        raise InvalidArgumentError(name, f"token id {int(low if low < 0 else high)} is outside the "
                                         f"vocabulary [0, {n_vocab})")
    return np.asarray(ids, dtype=np.int64)


def _bias_key(key: Any) -> int:
    if isinstance(key, str) and key.isascii() and key.isdigit():
        token = int(key)
    elif is_integer(key):
        token = int(key)
    else:
        token = -1
    if not 0 <= token < TOKEN_ID_LIMIT:
        raise InvalidArgumentError("logit_bias", f"key {_shown(key)} is not a token id (an integer in "
                                                 f"[0, {TOKEN_ID_LIMIT}), or a string of such digits)")
    return token


def _bias_value(key: int, value: Any) -> float:
    problem = f"the bias of token {key} must be a finite number or -inf (a ban), got {_shown(value)}"
    if not is_real(value):
        raise InvalidArgumentError("logit_bias", problem)
    try:
        number = float(value)
    except OverflowError:  # an int beyond float's range
        raise InvalidArgumentError("logit_bias", problem) from None
    if not (math.isfinite(number) or number == -math.inf):
        raise InvalidArgumentError("logit_bias", problem)
    return number


def logit_bias(value: Any, n_vocab: Optional[int] = None) -> Optional[Dict[int, float]]:
    """{token id: bias} with int keys and float values, or None when value is None or empty.
    With n_vocab, every id must be below it. A token named twice ("5" and 5) is an error."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidArgumentError("logit_bias", f"must be a mapping {{token id: bias}}, got {_shown(value)}")
    bias: Dict[int, float] = {}
    for key, amount in value.items():
        token = _bias_key(key)
        if n_vocab is not None and token >= n_vocab:
            raise InvalidArgumentError("logit_bias", f"token id {token} is outside the vocabulary [0, {n_vocab})")
        if token in bias:
            raise InvalidArgumentError("logit_bias", f"token {token} is named twice")
        bias[token] = _bias_value(token, amount)
    return bias or None


def check_bias_leaves_a_token(bias: Optional[Mapping[int, float]], n_vocab: int) -> None:
    """InvalidArgumentError when bias bans (-inf) every token of a vocabulary of n_vocab tokens:
    nothing could ever be chosen, greedy or sampled. bias: as logit_bias() returns it (each id once)."""
    banned = sum(1 for token, amount in (bias or {}).items() if amount == -math.inf and token < n_vocab)
    if banned >= n_vocab:
        raise InvalidArgumentError("logit_bias", f"every token of the vocabulary ({n_vocab}) is banned (-inf): "
                                                 "nothing is left to generate")


MAX_CHOICES = 16  # n: choices of one request, each a parallel sequence


def choices(value: Any, name: str = "n") -> int:
    """None (one) or an integer in [1, MAX_CHOICES]."""
    return 1 if value is None else integer(name, value, at_least=1, at_most=MAX_CHOICES)


def choice_seeds(value: Any, n: int) -> List[Optional[int]]:
    """The seed of each of n choices: choice i samples with seed + i (mod 2**64), so that n
    choices are n different answers; all None without a seed."""
    base = seed(value)
    return [None if base is None else (base + i) % SEED_LIMIT for i in range(n)]


def include_usage(stream_options: Any, stream: bool) -> bool:
    """OpenAI's stream_options: None, or {"include_usage": bool} with stream=True."""
    if stream_options is None:
        return False
    if not isinstance(stream_options, Mapping) or set(stream_options) - {"include_usage"}:
        raise InvalidArgumentError("stream_options", f"must be {{'include_usage': bool}}, got {_shown(stream_options)}")
    if not stream:
        raise InvalidArgumentError("stream_options", "needs stream=True")
    return flag("stream_options.include_usage", stream_options.get("include_usage", False))
