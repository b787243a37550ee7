"""One generation's place in its grammar, and the mask of the tokens it may take next.

The next mask is computed on a small thread pool as soon as a token is accepted: llguidance
releases the GIL while it computes, so the work overlaps the forward step that evaluates that
token, and the sampler usually finds the mask ready.
"""

from __future__ import annotations

import atexit
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Optional

import numpy as np

from edgellama.errors import ModelOutputError

_pool: Optional[ThreadPoolExecutor] = None


def _masks() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="edgellama-grammar")
        atexit.register(_pool.shutdown, wait=False)
    return _pool


class GrammarState:
    """mask(logits) bans (-inf) every token the grammar does not allow next; advance(token) moves
    past a sampled token and says whether the grammar is complete (nothing may follow it)."""

    def __init__(self, constraint):
        import llguidance
        import llguidance.numpy as llnp

        self._llnp = llnp
        self._matcher = llguidance.LLMatcher(constraint.tokenizer, constraint.grammar, log_level=0)
        self._check()
        self._bitmask = llnp.allocate_token_bitmask(1, constraint.tokenizer.vocab_size)
        self._next: Optional[Future] = _masks().submit(self._fill)

    def _fill(self) -> None:
        self._llnp.fill_next_token_bitmask(self._matcher, self._bitmask, 0)

    def _check(self) -> None:
        if self._matcher.is_error():
            raise ModelOutputError(f"the output left its grammar: {self._matcher.get_error()}")

    def mask(self, logits: np.ndarray) -> None:
        """Sets the logits of the tokens the grammar forbids next to -inf, in place."""
        if self._next is not None:
            self._next.result()
            self._next = None
        self._check()
        allowed = np.unpackbits(self._bitmask[0].view(np.uint8), bitorder="little")
        n = min(allowed.shape[0], logits.shape[0])
        logits[:n][allowed[:n] == 0] = -np.inf
        logits[n:] = -np.inf

    def advance(self, token: int) -> bool:
        """Accepts `token` (one the mask allowed); True when the grammar is complete."""
        if not self._matcher.consume_token(int(token)):
            self._check()
            raise ModelOutputError(f"token {int(token)} does not fit the grammar")
        if self._matcher.is_stopped():
            return True
        self._next = _masks().submit(self._fill)
        return False

    def close(self) -> None:
        """The generation ended early: drop the mask being computed."""
        if self._next is not None:
            self._next.cancel()
            self._next = None
