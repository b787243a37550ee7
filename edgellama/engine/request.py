"""One generation as the scheduler drives it: a small state machine that is given the logits of
its sequence after each step and turns them into records.

A request is WAITING until the scheduler gives it a sequence slot, then PREFILL while its prompt
(past the prefix the slot already holds) is evaluated in chunks, then DECODE: each step evaluates
the token it sampled last and hands it the next logits. It ends with a record whose finish_reason
is set, with a failure, or when its consumer cancels it. Everything here but `records` (taken by
the consumer under the scheduler's lock) is touched only by the thread running a step.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Deque, List, Optional, Sequence

import numpy as np

from edgellama.generate import GenerationStats, StopStringMatcher, TokenRecord
from edgellama.sampling import top_log_probs

WAITING, PREFILL, DECODE, FINISHED = "waiting", "prefill", "decode", "finished"


class GenerationRequest:
    """prompt_ids: the prompt (checked token ids); max_tokens: None (until the window is full) or
    an integer >= 0; sampler: an edgellama.sampling.Sampler of its own; stops: stop strings;
    tokenizer: turns tokens into text (its stop_ids end a turn); n_ctx: the sequence's window;
    grammar: None, or an edgellama.constraints.GrammarState the output must follow (the tokens it
    forbids are banned before sampling; the generation stops with "stop" where it is complete).
    keep: None, or the context shift's kept prefix: when the window is full the scheduler drops
    half of the tokens after the first `keep` (Scheduler._shift) instead of ending with "length";
    max_tokens None then means one window of new tokens."""

    def __init__(self, prompt_ids: Sequence[int], max_tokens: Optional[int], sampler, stops: Sequence[str],
                 tokenizer, n_ctx: int, top_logprobs: int = 0, grammar=None, keep: Optional[int] = None):
        from edgellama.tokenizer import StreamDecoder

        self.prompt: List[int] = list(prompt_ids)
        self.top_logprobs = top_logprobs  # alternatives recorded per token (0: none)
        self._top: Optional[list] = None
        self.sampler = sampler
        self.grammar = grammar
        self.n_ctx = n_ctx
        self.keep = keep
        if max_tokens is not None:
            self.limit = max_tokens
        else:
            self.limit = n_ctx if keep is not None else max(0, n_ctx - len(self.prompt) + 1)
        self.stats = GenerationStats(prompt_tokens=len(self.prompt))
        self._decoder = StreamDecoder(tokenizer)
        self._matcher = StopStringMatcher(stops)
        self._stop_ids = tokenizer.stop_ids
        self._history = list(self.prompt)  # the penalty window looks at the prompt and the answer
        self.state = WAITING
        self.slot = None                   # the scheduler's Slot while the request holds one
        self.to_evaluate: List[int] = []   # the tokens its sequence evaluates next
        self.records: Deque[TokenRecord] = deque()  # produced, not yet taken by the consumer
        self.error: Optional[BaseException] = None
        self.cancelled = False
        self.consumer_thread: Optional[int] = None  # the thread that last advanced it (None: async)
        self.consuming = False             # its consumer is inside next() now
        self.waker = None                  # async consumers: called (any thread) when it may proceed
        self.submitted_at = self._started = self._decode_start = 0.0

    @property
    def done(self) -> bool:
        return self.state == FINISHED

    def start(self, reused: int) -> None:
        """It holds a slot whose first `reused` positions are its prompt's: the rest is to evaluate."""
        self.state = PREFILL
        self.stats.reused_tokens = reused
        self.to_evaluate = self.prompt[reused:]
        self._started = time.perf_counter()

    @property
    def plain_greedy(self) -> bool:
        """Whether every choice is the first largest raw logit and nothing else of the logits is
        needed: what an engine can make itself."""
        return self.sampler.is_plain_greedy and not self.top_logprobs and self.grammar is None

    def on_logits(self, logits: np.ndarray, n_past: int) -> None:
        """The logits after its last evaluated token (n_past tokens now in its sequence): sample the
        next token and record it. Sampling errors propagate (the scheduler fails the request)."""
        if self._begin_token():
            if self.grammar is not None:
                self.grammar.mask(logits)
            token, logprob = self.sampler.sample(logits, self._history)
            if self.top_logprobs:
                self._top = top_log_probs(logits, self.top_logprobs)
            self._accept(token, logprob, n_past)

    def on_choice(self, token: int, logprob: float, n_past: int) -> None:
        """The engine's own greedy choice after its last evaluated token (plain_greedy requests)."""
        if self._begin_token():
            self._accept(token, logprob, n_past)

    def _begin_token(self) -> bool:
        """Bookkeeping before a token is chosen; False when none is to be (max_tokens 0)."""
        self.to_evaluate = []
        if self.state == PREFILL:
            now = time.perf_counter()
            self.stats.prefill_seconds = now - self._started
            self._decode_start = now
            self.state = DECODE
            if self.limit <= 0:
                self.finish()
                return False
        return True

    def _accept(self, token: int, logprob: float, n_past: int) -> None:
        self.stats.decode_seconds = time.perf_counter() - self._decode_start
        if token in self._stop_ids:
            tail = self._matcher.feed(self._decoder.flush())[0] + self._matcher.flush()
            self._emit(self._record(token, tail, logprob, "stop"))
            return
        self.stats.generated_tokens += 1
        self._history.append(token)
        text, stopped = self._matcher.feed(self._decoder.push(token))
        complete = self.grammar is not None and self.grammar.advance(token)
        if stopped:
            self._emit(self._record(token, text, logprob, "stop"))
        elif (complete or self.stats.generated_tokens >= self.limit
              or (n_past >= self.n_ctx and not self.can_shift(n_past))):
            # The grammar is complete, max_tokens, or the window is full: release what was held back.
            text += self._matcher.feed(self._decoder.flush())[0] + self._matcher.flush()
            self._emit(self._record(token, text, logprob, "stop" if complete else "length"))
        else:
            self.records.append(self._record(token, text, logprob, None))
            self.to_evaluate = [token]

    def can_shift(self, n_past: int) -> bool:
        """Whether a context shift can make room in a sequence of n_past tokens: it is on and keeps
        fewer than n_past - 1 of them (at least two go, so that a token fits and one remains)."""
        return self.keep is not None and n_past - self.keep >= 2

    def _record(self, token: int, text: str, logprob: float, finish: Optional[str]) -> TokenRecord:
        return TokenRecord(token, text, logprob, finish, self.stats, self._top)

    def _emit(self, last: TokenRecord) -> None:
        self.records.append(last)
        self.finish()

    def finish(self) -> None:
        self.state = FINISHED
        self.to_evaluate = []
        if self.grammar is not None:
            self.grammar.close()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.finish()
