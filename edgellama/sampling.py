"""Token sampling from logits, vectorised with numpy.

The chain, in order (each step is skipped when it is disabled):

1. penalties over the last `penalty_last_n` tokens of the sequence (prompt and generated):
   repetition (a positive logit is divided by `repeat_penalty`, a negative one multiplied),
   frequency (`frequency_penalty` × occurrences subtracted) and presence (`presence_penalty`
   subtracted once from every token that occurs);
2. `logit_bias` ({token id: added value}; -inf bans a token);
3. greedy: temperature 0 takes the argmax here;
4. temperature: logits / temperature, then the softmax;
5. top-k: the k most likely tokens;
6. min-p: tokens whose probability is at least min_p × the largest;
7. typical-p: tokens ordered by how close their surprisal -log p is to the entropy, the smallest
   such set whose probability reaches typical_p (locally typical sampling);
8. top-p: the smallest set of most likely tokens whose probability reaches top_p (nucleus);
9. a draw from what is left, renormalised, with the sampler's seeded generator.

Steps 6-8 see the distribution renormalised over the tokens the previous steps kept. Everything
works on a candidate subset as soon as one step narrows it, and the full vocabulary (128k
entries for Llama 3) is touched only by O(n) passes (masks, a histogram) and never sorted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from edgellama import _core, arguments
from edgellama.errors import InvalidArgumentError, ModelOutputError


@dataclass(frozen=True)
class SamplingParams:
    """The sampling settings (and their defaults, for every entry point), checked when they are made: a wrong type or a value out of range is
    an InvalidArgumentError naming the field (bools are not numbers). Values are stored in their
    canonical types (float, int, {int: float}).

    temperature: a finite number >= 0; 0 is greedy (the largest adjusted logit).
    top_k: an integer >= 0; 0 disables it.
    top_p: in (0, 1]; 1 disables it.      min_p: in [0, 1]; 0 disables it.
    typical_p: in (0, 1]; 1 disables it.
    repeat_penalty: a finite number > 0; 1 disables it.
    frequency_penalty, presence_penalty: finite numbers (negative ones encourage repeats); 0 disables.
    penalty_last_n: an integer >= -1: the window of recent tokens the penalties look at; 0 disables
        them, -1 looks at the whole sequence.
    logit_bias: None or {token id: bias}; an id is an integer >= 0 or a string of digits (as JSON
        sends it), a bias is a finite number or -inf (bans the token). Ids are checked against the
        vocabulary when a Sampler is made for a model (Sampler(..., n_vocab=)).
    """

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.0
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    penalty_last_n: int = 64
    logit_bias: Optional[Mapping[int, float]] = field(default=None, hash=False, compare=False)

    def __post_init__(self):
        checked = {
            "temperature": arguments.real("temperature", self.temperature, at_least=0.0),
            "top_k": arguments.integer("top_k", self.top_k, at_least=0),
            "top_p": arguments.real("top_p", self.top_p, greater_than=0.0, at_most=1.0),
            "min_p": arguments.real("min_p", self.min_p, at_least=0.0, at_most=1.0),
            "typical_p": arguments.real("typical_p", self.typical_p, greater_than=0.0, at_most=1.0),
            "repeat_penalty": arguments.real("repeat_penalty", self.repeat_penalty, greater_than=0.0),
            "frequency_penalty": arguments.real("frequency_penalty", self.frequency_penalty),
            "presence_penalty": arguments.real("presence_penalty", self.presence_penalty),
            "penalty_last_n": arguments.integer("penalty_last_n", self.penalty_last_n, at_least=-1),
            "logit_bias": arguments.logit_bias(self.logit_bias),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)  # frozen: the canonical value replaces the given one

    @property
    def has_penalties(self) -> bool:
        return self.penalty_last_n != 0 and (
            self.repeat_penalty != 1.0 or self.frequency_penalty != 0.0 or self.presence_penalty != 0.0)


class Sampler:
    """Callable logits -> token id. The same seed, settings and history give the same choices.

    `sample(logits, history)` also returns the log-probability of the chosen token under the
    model's own distribution (log-softmax of the raw logits, before penalties and temperature).

    seed: None (unpredictable) or an integer in [0, 2**64). n_vocab: the model's vocabulary size,
    when known: logit_bias ids must lie below it, and a bias that bans every token is refused here,
    before anything is generated. Without it the logits' length is the vocabulary, checked at each
    call. Either way a wrong argument is an InvalidArgumentError that names it."""

    def __init__(self, params: SamplingParams, seed: Optional[int] = None, n_vocab: Optional[int] = None):
        if not isinstance(params, SamplingParams):
            raise InvalidArgumentError("params", f"must be a SamplingParams, got {type(params).__name__}")
        self.params = params
        self.rng = np.random.default_rng(arguments.seed(seed))
        self._bias_ids = self._bias_values = None
        if params.logit_bias:
            if n_vocab is not None:
                arguments.logit_bias(params.logit_bias, n_vocab)  # ids below n_vocab
                arguments.check_bias_leaves_a_token(params.logit_bias, n_vocab)
            items = sorted(params.logit_bias.items())
            self._bias_ids = np.array([k for k, _ in items], dtype=np.int64)
            self._bias_values = np.array([v for _, v in items], dtype=np.float32)

    @property
    def is_plain_greedy(self) -> bool:
        """Whether every choice is the first largest raw logit (greedy, no penalties, no bias):
        what an engine can choose by itself (Llama.eval_greedy)."""
        p = self.params
        return p.temperature == 0.0 and not p.has_penalties and not p.logit_bias

    def __call__(self, logits: np.ndarray, history: Optional[Sequence[int]] = None) -> int:
        return self.choose(logits, history)

    def sample(self, logits: np.ndarray, history: Optional[Sequence[int]] = None) -> Tuple[int, float]:
        token = self.choose(logits, history)
        return token, log_softmax_at(logits, token)

    def adjusted_logits(self, logits: np.ndarray, history: Optional[Sequence[int]] = None) -> np.ndarray:
        """The logits after penalties and logit bias (a copy when anything changed them)."""
        p = self.params
        x = np.asarray(logits, dtype=np.float32).reshape(-1)
        copied = False
        if history is not None and len(history) and p.has_penalties:
            window = history if p.penalty_last_n < 0 else history[-p.penalty_last_n:]
            ids, counts = np.unique(np.asarray(window, dtype=np.int64), return_counts=True)
            ids_ok = (ids >= 0) & (ids < x.shape[0])
            ids, counts = ids[ids_ok], counts[ids_ok]
            x, copied = x.copy(), True
            vals = x[ids]
            if p.repeat_penalty != 1.0:
                vals = np.where(vals > 0, vals / p.repeat_penalty, vals * p.repeat_penalty)
            vals = vals - counts.astype(np.float32) * p.frequency_penalty - p.presence_penalty
            x[ids] = vals
        if self._bias_ids is not None:
            if self._bias_ids[-1] >= x.shape[0]:  # sorted: the last is the largest
                raise InvalidArgumentError("logit_bias", f"token id {int(self._bias_ids[-1])} is outside the "
                                                         f"vocabulary [0, {x.shape[0]})")
            if not copied:
                x = x.copy()
            x[self._bias_ids] += self._bias_values
        return x

    def _nothing_to_choose(self) -> Exception:
        """The error for logits that leave no token to choose (every one -inf after the bias)."""
        if self._bias_ids is not None:
            return InvalidArgumentError("logit_bias", "every token is banned (-inf): nothing is left to choose")
        return ValueError("every logit is -inf: nothing is left to choose")

    def choose(self, logits: np.ndarray, history: Optional[Sequence[int]] = None) -> int:
        p = self.params
        x = self.adjusted_logits(logits, history)
        if p.temperature == 0.0:
            token = int(np.argmax(x))  # the first NaN, if any: refused below as the sampling path does
            if x[token] == -np.inf:
                raise self._nothing_to_choose()
            if np.isnan(x[token]):
                raise ModelOutputError("a logit is NaN: the model's weights hold NaN or infinite values")
            return token
        n = x.shape[0]
        # Candidates: token ids with their logits (the whole vocabulary until a step narrows it).
        if 0 < p.top_k < n:
            if np.isnan(x.max()):  # a NaN outside the k candidates must not pass unnoticed
                raise ModelOutputError("a logit is NaN: the model's weights hold NaN or infinite values")
            cand = top_k_indices(x, p.top_k)
        else:
            cand = None
        # float32 throughout: the large passes are memory-bound, and sampling needs no more precision.
        scaled = x if cand is None else x[cand]
        top = scaled.max()
        if top == -np.inf:
            raise self._nothing_to_choose()
        if not np.isfinite(top):
            raise ModelOutputError(f"a logit is {top}: the model's weights hold NaN or infinite values")
        # Shifted by the largest logit before the 1/temperature scale (capped at float32's largest),
        # so that however small the temperature the top stays at 0 and only the others can reach -inf.
        with np.errstate(over="ignore"):  # far below the top, -inf is the right value
            z = (scaled - top) * np.float32(min(1.0 / p.temperature, float(np.finfo(np.float32).max)))
        zmax = np.float32(0.0)
        if p.min_p > 0.0:
            # p_i >= min_p * p_max  <=>  z_i >= z_max + log(min_p): an O(n) mask, no softmax needed.
            keep = np.flatnonzero(z >= zmax + np.float32(np.log(p.min_p)))
            cand = keep if cand is None else cand[keep]
            z = z[keep]
        elif self._bias_ids is not None or z.min() == -np.inf:
            keep = np.flatnonzero(z > -np.inf)  # banned (or, at a tiny temperature, hopeless) tokens leave
            cand = keep if cand is None else cand[keep]
            z = z[keep]
        probs = np.exp(z - zmax)
        total = probs.sum(dtype=np.float64)
        probs *= np.float32(1.0 / total)
        if p.typical_p < 1.0 and probs.shape[0] > 1:
            logp = z - np.float32(zmax + np.log(total))
            # (no -inf here: such tokens were dropped; not np.dot, whose BLAS threads cost more)
            entropy = -float(np.sum(probs * logp, dtype=np.float64))
            keep = smallest_set_reaching(np.abs(logp + np.float32(entropy)), probs, p.typical_p)
            cand = keep if cand is None else cand[keep]
            z = z[keep]
            probs = probs[keep] / probs[keep].sum()
        if p.top_p < 1.0 and probs.shape[0] > 1:
            # Tokens below (1 - top_p) / m each sum to less than 1 - top_p all together, so the
            # nucleus lies among the others: an O(n) mask shrinks the set before any ordering.
            sub = np.flatnonzero(probs >= (1.0 - p.top_p) / probs.shape[0])
            keep = sub[smallest_set_reaching(-z[sub], probs[sub], p.top_p)]
            cand = keep if cand is None else cand[keep]
            probs = probs[keep] / probs[keep].sum()
        cdf = np.cumsum(probs, dtype=np.float64)
        i = min(int(np.searchsorted(cdf, self.rng.random() * cdf[-1], side="right")), probs.shape[0] - 1)
        return int(i if cand is None else cand[i])


def top_k_indices(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest entries of x (in no particular order; ties broken arbitrarily).

    A strided subsample's k-th largest value is a lower bound of the full k-th largest, so the
    entries at or above it are a small superset of the answer; only that superset is partitioned."""
    n = x.shape[0]
    if k >= n:
        return np.arange(n)
    stride = max(1, min(16, n // (4 * k)))
    bound = -np.inf
    if stride > 1:
        sub = x[::stride]
        sub = sub[sub != -np.inf]  # banned entries, all equal, are numpy partition's slow case (NaN stays)
        if sub.shape[0] >= k:
            bound = np.partition(sub, sub.shape[0] - k)[sub.shape[0] - k]
    if bound == -np.inf:
        # Most entries are banned (a grammar's mask): partitioning them all, equal as they are,
        # would take 18 ms at 128k; the allowed ones are few.
        pool = np.flatnonzero(x != -np.inf)  # NaN stays, for the caller to refuse
        if pool.shape[0] <= k:
            return pool if pool.shape[0] else np.arange(min(k, n))
    else:
        pool = np.flatnonzero(x >= bound)
    if pool.shape[0] == k:
        return pool
    part = np.argpartition(x[pool], pool.shape[0] - k)[pool.shape[0] - k:]
    return pool[part]


def smallest_set_reaching(key: np.ndarray, probs: np.ndarray, mass: float) -> np.ndarray:
    """Indices of the shortest prefix of the tokens ordered by ascending key whose probability sum
    reaches mass (at least one token); ties in key are taken in index order. The indices come in
    no particular order.

    Sorting a 128k vocabulary costs milliseconds, so large inputs are bucketed instead: a weighted
    histogram of the keys finds the bucket where the cumulative probability crosses mass; every
    token of the earlier buckets is in, and only the crossing bucket (a few tokens) is sorted."""
    n = key.shape[0]
    target = mass * (1.0 - 1e-12)  # reaching mass exactly must not need one more token
    lo, hi = float(key.min()), float(key.max())
    if n <= 2048 or not hi > lo:
        order = np.argsort(key, kind="stable")
        hit = int(np.searchsorted(np.cumsum(probs[order], dtype=np.float64), target))
        return order[:min(hit, n - 1) + 1]
    n_bins = 2048
    # float64: n_bins / (hi - lo) overflows float32 when the keys are very close (a huge temperature)
    bins = ((key - lo).astype(np.float64) * (n_bins / (hi - lo))).astype(np.int32)
    np.minimum(bins, n_bins - 1, out=bins)
    cum = np.cumsum(np.bincount(bins, weights=probs, minlength=n_bins))  # float64 sums
    crossing = min(int(np.searchsorted(cum, target)), n_bins - 1)
    before = float(cum[crossing - 1]) if crossing > 0 else 0.0
    edge = np.flatnonzero(bins == crossing)
    edge = edge[np.lexsort((edge, key[edge]))]
    hit = int(np.searchsorted(before + np.cumsum(probs[edge], dtype=np.float64), target))
    return np.concatenate([np.flatnonzero(bins < crossing), edge[:min(hit, edge.shape[0] - 1) + 1]])


def log_softmax_at(logits: np.ndarray, token: int) -> float:
    """log softmax(logits)[token], computed stably (within 1e-6) by the core in two vectorized
    passes: once per generated token over the whole vocabulary, where numpy's exp pass alone took
    most of a greedy step's sampling time."""
    return _core.log_softmax_at(np.asarray(logits, dtype=np.float32).reshape(-1), int(token))


# The one place sampling defaults live: every API signature, the CLI and the server take them from here.
DEFAULTS = SamplingParams()
SAMPLING_FIELDS = tuple(SamplingParams.__dataclass_fields__)


def top_log_probs(logits: np.ndarray, k: int) -> List[Tuple[int, float]]:
    """The k most likely tokens of the raw distribution, most likely first, with their
    log-probabilities (log-softmax of the logits; ties in index order)."""
    x = np.asarray(logits, dtype=np.float32).reshape(-1)
    k = min(k, x.shape[0])
    top = top_k_indices(x, k)
    top = top[np.lexsort((top, -x[top]))]
    shift = float(x.max())
    log_total = shift + float(np.log(np.sum(np.exp(x.astype(np.float64) - shift))))
    return [(int(t), float(x[t]) - log_total) for t in top]


def params_from(defaults: Optional[SamplingParams] = None, **overrides) -> SamplingParams:
    """SamplingParams with the given fields replaced (None values are ignored)."""
    base = defaults or SamplingParams()
    values: Dict[str, object] = {f: getattr(base, f) for f in base.__dataclass_fields__}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return SamplingParams(**values)
