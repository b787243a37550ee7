"""The batched-step interface the scheduler drives, and its adapter for single-sequence engines.

A backend offers:

- ``forward_batch(tokens, seq_ids, positions, want_logits)``: 1-D arrays of one length (int32,
  int32, int64, uint8); entry i evaluates tokens[i] at positions[i] of sequence seq_ids[i]. Each
  sequence's entries are consecutive and continue its cache. Returns float32 logits
  [rows, n_vocab] of the entries whose want_logits is set, in entry order.
- ``seq_n_past(seq)``, ``seq_clear(seq)``, ``seq_truncate(seq, n)``, ``seq_copy_prefix(src, dst, n)``.
- ``seq_shift(seq, n_keep, n_discard)`` (context shift), ``seq_read(seq, n=None)`` -> (keys,
  values) of the first n positions (default all) and ``seq_write(seq, keys, values)`` (saved
  state: uint16 fp16 bits [n_layer][n_head_kv][n][head_dim] for an f16 cache; for a quantized one,
  uint8 rows of the format's GGUF blocks [n_layer][n_head_kv][n][row bytes]).
- ``cache_types`` -> (keys, values): the cache's element formats ("f16", "q8_0", "q4_0").
- ``forward(tokens, all_logits)`` on sequence 0, and ``n_ctx``, ``n_threads``, ``n_seq``.
- optionally ``greedy_on_device`` (true) with ``greedy_choice(tokens)``: the engine chooses the
  first largest logit after tokens itself and returns (token, log-probability).

The CPU core (_core.LlamaModel) implements it natively for any number of sequences.
"""

from __future__ import annotations

from typing import Optional

import numpy as np


class SingleSequenceBackend:
    """The interface over an engine that holds one sequence (the CUDA engine: forward, truncate,
    reset, n_past): every entry must belong to sequence 0.

    greedy_on_device: the engine's forward_greedy makes a plain greedy choice itself
    (greedy_choice), so that only the token and its log-probability come back."""

    n_seq = 1

    def __init__(self, engine, greedy_on_device: bool = False):
        self.engine = engine
        self.greedy_on_device = greedy_on_device

    cache_types = ("f16", "f16")  # the GPU engine's cache holds halves

    def greedy_choice(self, tokens: np.ndarray):
        """Evaluates tokens (sequence 0) and returns (token, log-probability) of the first largest logit."""
        token, logprob = self.engine.forward_greedy(tokens)
        return int(token), float(logprob)

    def __getattr__(self, name):  # forward, forward_greedy, n_ctx, n_threads, options ...
        return getattr(self.engine, name)

    def forward_batch(self, tokens, seq_ids, positions, want_logits) -> np.ndarray:
        if np.any(seq_ids != 0):
            raise ValueError("this engine holds one sequence (0)")
        if positions.size and positions[0] != self.engine.n_past:
            raise ValueError(f"position {positions[0]} where {self.engine.n_past} comes next")
        rows = np.flatnonzero(want_logits)
        if rows.size == 0 or (rows.size == 1 and rows[0] == tokens.size - 1):  # a prefill chunk, a decode token
            return self.engine.forward(tokens, all_logits=False).reshape(1, -1)[:rows.size]
        logits = self.engine.forward(tokens, all_logits=True)
        return logits[rows]

    def _check(self, seq: int) -> None:
        if seq != 0:
            raise ValueError(f"sequence {seq} outside [0, 1)")

    def seq_n_past(self, seq: int) -> int:
        self._check(seq)
        return self.engine.n_past

    def seq_clear(self, seq: int) -> None:
        self._check(seq)
        self.engine.reset()

    def seq_truncate(self, seq: int, n: int) -> None:
        self._check(seq)
        self.engine.truncate(n)

    def seq_copy_prefix(self, src: int, dst: int, n: int) -> None:
        self._check(src)
        self._check(dst)
        self.engine.truncate(n)

    def seq_shift(self, seq: int, n_keep: int, n_discard: int) -> None:
        self._check(seq)
        self.engine.shift(n_keep, n_discard)

    def seq_read(self, seq: int, n: Optional[int] = None):
        self._check(seq)
        return self.engine.read_cache(n)

    def seq_write(self, seq: int, keys, values) -> None:
        self._check(seq)
        self.engine.write_cache(keys, values)
