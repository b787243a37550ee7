"""The generation loop: sample, stream-detokenize, stop on end-of-turn tokens or stop strings."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple


@dataclass
class GenerationStats:
    """Counts and timings of the last generation (seconds of wall time)."""

    prompt_tokens: int = 0
    reused_tokens: int = 0  # prompt tokens whose keys/values were already cached
    prefill_seconds: float = 0.0
    generated_tokens: int = 0
    decode_seconds: float = 0.0

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


def iter_tokens(llm, prompt_ids: List[int], max_tokens: Optional[int], sampler, stops: Sequence[str],
                stats: GenerationStats) -> Iterator[TokenRecord]:
    """The generation loop: yields one TokenRecord per sampled token; fills stats as it goes.

    The prompt is prefilled reusing the cached prefix it shares with the previous sequence. A
    sampled end-of-turn token is yielded (with the held-back tail as its text) but not counted in
    stats.generated_tokens and not evaluated. max_tokens=None runs until the context is full.

    It uses llm's cache between its steps, so it must run as the model's owner (api.run_records
    wraps it so); it touches the model no more once it has yielded the record with a finish_reason."""
    from edgellama.tokenizer import StreamDecoder

    decoder = StreamDecoder(llm.tokenizer)
    matcher = StopStringMatcher(stops)
    stop_ids = llm.tokenizer.stop_ids
    history = list(prompt_ids)  # the penalty window looks at the prompt and the answer
    stats.prompt_tokens = len(prompt_ids)
    start = time.perf_counter()
    logits, stats.reused_tokens = llm._prefill_reusing_cache(prompt_ids)
    stats.prefill_seconds = time.perf_counter() - start
    decode_start = time.perf_counter()
    limit = max_tokens if max_tokens is not None else max(0, llm.n_ctx - len(prompt_ids) + 1)
    if limit <= 0:
        return
    token, logprob = sampler.sample(logits, history)
    engine_chooses = sampler.is_plain_greedy  # the engine's own greedy choice (on a GPU, only it comes back)
    while True:
        if token in stop_ids:
            stats.decode_seconds = time.perf_counter() - decode_start
            yield TokenRecord(token, matcher.feed(decoder.flush())[0] + matcher.flush(), logprob, "stop")
            return
        stats.generated_tokens += 1
        history.append(token)
        text, stopped = matcher.feed(decoder.push(token))
        if stopped:
            stats.decode_seconds = time.perf_counter() - decode_start
            yield TokenRecord(token, text, logprob, "stop")
            return
        if stats.generated_tokens >= limit or llm.n_past >= llm.n_ctx:
            # max_tokens, or the context window is full: release what was held back.
            text += matcher.feed(decoder.flush())[0] + matcher.flush()
            stats.decode_seconds = time.perf_counter() - decode_start
            yield TokenRecord(token, text, logprob, "length")
            return
        yield TokenRecord(token, text, logprob)
        if engine_chooses:
            token, logprob = llm.eval_greedy([token])
        else:
            token, logprob = sampler.sample(llm.eval([token]), history)
        stats.decode_seconds = time.perf_counter() - decode_start


def text_pieces(records: Iterator[TokenRecord]) -> Iterator[str]:
    """The non-empty texts of records (Llama.generate with stream=True); closing this generator
    closes records at once, which gives the model back."""
    try:
        for record in records:
            if record.text:
                yield record.text
    finally:
        records.close()
