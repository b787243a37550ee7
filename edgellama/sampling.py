"""Token sampling from logits: greedy, temperature, top-k, top-p (nucleus), with a seeded generator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.8  # <= 0 means greedy (argmax)
    top_k: int = 40           # <= 0 disables
    top_p: float = 0.95       # >= 1 disables

    def __post_init__(self):
        if not np.isfinite(self.temperature):
            raise ValueError(f"temperature must be finite, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


class Sampler:
    """Callable logits -> token id. The same seed and settings give the same sequence of choices."""

    def __init__(self, params: SamplingParams, seed: Optional[int] = None):
        self.params = params
        self.rng = np.random.default_rng(seed)

    def __call__(self, logits: np.ndarray) -> int:
        p = self.params
        if p.temperature <= 0.0:
            return int(np.argmax(logits))
        candidates = _top_k_indices(logits, p.top_k)
        scaled = logits[candidates].astype(np.float64) / p.temperature
        probs = np.exp(scaled - scaled.max())
        probs /= probs.sum()
        order = np.argsort(-probs, kind="stable")
        candidates, probs = candidates[order], probs[order]
        if p.top_p < 1.0:
            # Keep the smallest prefix whose mass reaches top_p (always at least one token).
            keep = int(np.searchsorted(np.cumsum(probs), p.top_p) + 1)
            candidates, probs = candidates[:keep], probs[:keep] / probs[:keep].sum()
        return int(candidates[self.rng.choice(len(probs), p=probs)])


def _top_k_indices(logits: np.ndarray, top_k: int) -> np.ndarray:
    if top_k <= 0 or top_k >= logits.shape[0]:
        return np.arange(logits.shape[0])
    return np.argpartition(-logits, top_k - 1)[:top_k]
