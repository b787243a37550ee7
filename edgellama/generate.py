"""The pieces of a generation: its statistics, its records, and stop-string matching (the loop that
drives them is edgellama.engine)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Sequence, Tuple


@dataclass
class GenerationStats:
    """Counts and timings of one generation (seconds of wall time). queue_seconds: from its first
    next() until a sequence slot was free; prefill_seconds: from then to the first token's logits
    (the time to the first token is their sum); decode_seconds: from then to the last token."""

    prompt_tokens: int = 0
    reused_tokens: int = 0  # prompt tokens whose keys/values were already cached
    prefill_seconds: float = 0.0
    generated_tokens: int = 0
    decode_seconds: float = 0.0
    queue_seconds: float = 0.0

    @property
    def prefill_tokens_per_second(self) -> float:
        evaluated = self.prompt_tokens - self.reused_tokens
        return evaluated / self.prefill_seconds if self.prefill_seconds > 0 else 0.0

    @property
    def decode_tokens_per_second(self) -> float:
        return self.generated_tokens / self.decode_seconds if self.decode_seconds > 0 else 0.0


class StopStringMatcher:
    """Finds stop strings in streamed text, even when one spans several tokens.

    feed(piece) returns (text safe to emit, stopped). Text that could still be the start of a stop
    string is held back until it is decided; a matched stop string is never emitted."""

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self.pending = ""

    def feed(self, piece: str) -> Tuple[str, bool]:
        self.pending += piece
        if not self.stops:
            out, self.pending = self.pending, ""
            return out, False
        first = min((i for i in (self.pending.find(s) for s in self.stops) if i >= 0), default=-1)
        if first >= 0:
            out, self.pending = self.pending[:first], ""
            return out, True
        hold = self._longest_partial_suffix()
        cut = len(self.pending) - hold
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out

    def _longest_partial_suffix(self) -> int:
        """Length of the longest suffix of pending that is a proper prefix of some stop string."""
        best = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(self.pending)), best, -1):
                if self.pending.endswith(stop[:n]):
                    best = n
                    break
        return best


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@dataclass
class TokenRecord:
    """One step of generation. text is what this token releases to the output (possibly "" while
    a multi-byte character or a possible stop string is held back, or more than one token's worth
    when held text is released). finish_reason is None until the last record: "stop" (an
    end-of-turn token or a stop string) or "length" (max_tokens or a full context window)."""

    token: int
    text: str
    logprob: float
    finish_reason: Optional[str] = None
    # The generation's own statistics (one object shared by its records, complete on the last).
    stats: Optional[GenerationStats] = field(default=None, repr=False, compare=False)
    # With top_logprobs=k: the k most likely tokens of the raw distribution and their log-probabilities.
    top_logprobs: Optional[List[Tuple[int, float]]] = field(default=None, compare=False)


def text_pieces(records: Iterator[TokenRecord]) -> Iterator[str]:
    """The non-empty texts of records (Llama.generate with stream=True); closing this generator
    closes records at once, which gives the model back."""
    try:
        for record in records:
            if record.text:
                yield record.text
    finally:
        records.close()
