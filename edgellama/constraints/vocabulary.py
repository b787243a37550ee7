"""The model's vocabulary as llguidance sees it: every token's bytes, which tokens are control
tokens (llguidance never lets grammar text produce them), the tokens that end a turn (allowed
exactly where the grammar may end), and our own tokenizer for the text a grammar forces.

Building it takes 0.1 s for a 49k vocabulary and 0.3 s for a 128k one; it is built once per
tokenizer and shared by every generation (llguidance's tokenizer is immutable and thread-safe).
"""

from __future__ import annotations

import threading
import weakref
from typing import List

from edgellama.errors import EdgellamaError
from edgellama.tokenizer import TokenType

_built: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_lock = threading.Lock()


class MissingConstraintEngineError(EdgellamaError, ImportError):
    """Structured output needs the llguidance package (the `structured` extra)."""


def llguidance_module():
    try:
        import llguidance
        import llguidance.numpy  # noqa: F401 - the bitmask helpers
    except ImportError:
        raise MissingConstraintEngineError(
            'structured output (response_format, grammar, regex, tool calls) needs llguidance: '
            'pip install "edgellama[structured]"') from None
    return llguidance


class _Vocabulary:
    """What llguidance.TokenizerWrapper reads: tokens (bytes by id), special_token_ids,
    eos_token_id, bos_token_id, and a call that tokenizes bytes."""

    def __init__(self, tokenizer, n_logits: int):
        self._tokenizer = tokenizer
        self.tokens: List[bytes] = [tokenizer.token_bytes(i) for i in range(tokenizer.n_vocab)]
        # Rows of the logits past the tokenizer's vocabulary are tokens no text makes.
        self.tokens += [b""] * max(0, n_logits - len(self.tokens))
        self.special_token_ids = [i for i in range(tokenizer.n_vocab) if _is_control(tokenizer, i)]
        self.eos_token_id = end_of_turn_ids(tokenizer)[0]
        self.bos_token_id = tokenizer.bos_id

    def __call__(self, data: bytes) -> List[int]:
        # The text a grammar forces (a key, a literal), tokenized as our tokenizer would; its
        # control-token spellings stay text.
        return self._tokenizer.encode(bytes(data).decode("utf-8", errors="replace"), add_bos=False,
                                      add_eos=False, special=False)


def _is_control(tokenizer, token_id: int) -> bool:
    if tokenizer.is_special(token_id):
        return True
    raw = tokenizer.token_bytes(token_id)  # user-defined markup such as <tool_call>
    return tokenizer.token_type(token_id) == TokenType.USER_DEFINED and raw[:1] == b"<" and raw[-1:] == b">"


def end_of_turn_ids(tokenizer) -> List[int]:
    """The tokens that end a generation, the tokenizer's EOS first."""
    first = tokenizer.eos_id if tokenizer.eos_id is not None else min(tokenizer.stop_ids)
    return [first] + sorted(t for t in tokenizer.stop_ids if t != first)


def ll_tokenizer(tokenizer, n_logits: int):
    """llguidance's LLTokenizer for `tokenizer`, whose masks cover `n_logits` logits."""
    llguidance = llguidance_module()
    with _lock:
        cached = _built.get(tokenizer)
        if cached is not None and cached[0] == n_logits:
            return cached[1]
        wrapper = llguidance.TokenizerWrapper(_Vocabulary(tokenizer, n_logits))
        built = llguidance.LLTokenizer(wrapper, eos_token=end_of_turn_ids(tokenizer))
        _built[tokenizer] = (n_logits, built)
        return built
