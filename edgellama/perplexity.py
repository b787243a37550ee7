"""Perplexity and KL divergence of a model over a text: the instrument for numerical fidelity and
quantization quality (`edgellama perplexity`).

The text's tokens are cut into chunks of n_ctx tokens, each evaluated from an empty cache (its first
token replaced by BOS when the vocabulary asks for one), and only the second half of each chunk is
scored, so that every scored token has at least n_ctx/2 tokens of context: llama.cpp's perplexity
tool does the same, so the figures compare.

KL divergence compares this model's next-token distributions with a base model's (e.g. the F16
file a quantized one came from) at the same positions, with top-1 agreement. With `kld_base` both
models run here and the divergence is exact, over the whole vocabulary. A base's distributions can
also be saved (`save_logits`) and used later (`kld_logits`): the file keeps, per scored position, the
base's TOP_K most likely tokens and their log-probabilities, and the divergence is computed over
those K tokens plus one bucket for all the others. That is a lower bound of the exact divergence
(merging outcomes never raises it) and within about 1e-4 of it in practice; it keeps a 128k
vocabulary's file at 512 bytes per position instead of 256 KiB.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from edgellama.errors import InvalidArgumentError

TOP_K = 64
LOGITS_FORMAT = "edgellama-logits/1"


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 (rows of logits)."""
    x = np.asarray(logits, dtype=np.float64)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def chunks_of(ids: Sequence[int], n_ctx: int, n_chunks: Optional[int]) -> List[List[int]]:
    """The text's whole chunks of n_ctx tokens (at most n_chunks); the tail that does not fill a
    chunk is left out, as llama.cpp does."""
    available = len(ids) // n_ctx
    if available == 0:
        raise InvalidArgumentError("text", f"has {len(ids)} tokens, fewer than one chunk of {n_ctx}")
    count = available if n_chunks is None else min(available, n_chunks)
    return [list(ids[i * n_ctx:(i + 1) * n_ctx]) for i in range(count)]


def scored_log_probs(llm, chunk: List[int]) -> np.ndarray:
    """log-softmax (n_ctx - n_ctx/2, n_vocab) of the positions that predict the chunk's second
    half, from an empty sequence 0; only those positions' logits are made."""
    tokens = list(chunk)
    if llm.tokenizer.add_bos and llm.tokenizer.bos_id is not None:
        tokens[0] = llm.tokenizer.bos_id
    half = len(tokens) // 2
    llm.reset()
    first = llm.eval(tokens[:half])                         # predicts tokens[half]
    rest = llm.eval(tokens[half:-1], all_logits=True)       # predict tokens[half + 1:]
    return log_softmax(np.vstack([first[None, :], rest]))


@dataclass
class Accumulator:
    """Per-position figures, gathered chunk by chunk."""

    nll: List[float] = field(default_factory=list)
    kld: List[float] = field(default_factory=list)
    agree: List[bool] = field(default_factory=list)

    def summary(self) -> Dict[str, object]:
        nll = np.asarray(self.nll)
        mean = float(nll.mean())
        result: Dict[str, object] = {
            "tokens_scored": int(nll.size),
            "perplexity": math.exp(mean),
            # exp(mean ± se): the uncertainty of the mean negative log-likelihood, carried over.
            "perplexity_error": math.exp(mean) * float(nll.std(ddof=1) / math.sqrt(nll.size)) if nll.size > 1 else 0.0,
        }
        if self.kld:
            kld = np.asarray(self.kld)
            agree = np.asarray(self.agree, dtype=np.float64)
            result.update({
                "kld_mean": float(kld.mean()),
                "kld_error": float(kld.std(ddof=1) / math.sqrt(kld.size)) if kld.size > 1 else 0.0,
                "kld_median": float(np.median(kld)), "kld_p99": float(np.percentile(kld, 99)),
                "kld_max": float(kld.max()),
                "top1_agreement": float(agree.mean()),
                "top1_agreement_error": float(math.sqrt(agree.mean() * (1 - agree.mean()) / agree.size)),
            })
        return result


def exact_kld(base: np.ndarray, model: np.ndarray) -> np.ndarray:
    """KL(base || model) per row of two log-softmax arrays."""
    return np.maximum(0.0, (np.exp(base) * (base - model)).sum(axis=-1))


def top_k_summary(log_probs: np.ndarray, k: int = TOP_K):
    """(ids (rows, k) int32, their log-probabilities (rows, k) float32) of each row's k most likely."""
    k = min(k, log_probs.shape[-1])
    ids = np.argpartition(-log_probs, k - 1, axis=-1)[:, :k]
    return ids.astype(np.int32), np.take_along_axis(log_probs, ids, axis=-1).astype(np.float32)


def bucketed_kld(base_ids: np.ndarray, base_lp: np.ndarray, model: np.ndarray) -> np.ndarray:
    """KL(base || model) over the base's top-k tokens plus one bucket for the rest of each row."""
    p = np.exp(base_lp.astype(np.float64))
    q_lp = np.take_along_axis(model, base_ids.astype(np.int64), axis=-1)
    q = np.exp(q_lp)
    p_rest = np.clip(1.0 - p.sum(axis=-1), 0.0, 1.0)
    q_rest = np.clip(1.0 - q.sum(axis=-1), 1e-300, 1.0)
    head = (p * (base_lp - q_lp)).sum(axis=-1)
    tail = np.where(p_rest > 0, p_rest * (np.log(np.maximum(p_rest, 1e-300)) - np.log(q_rest)), 0.0)
    return np.maximum(0.0, head + tail)


def text_fingerprint(chunks: List[List[int]]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(np.asarray(chunk, dtype=np.int64).tobytes())
    return digest.hexdigest()


class SavedLogits:
    """A base model's top-k log-probabilities for a text, in one .npz file written atomically."""

    @staticmethod
    def write(path: Path, model_name: str, n_ctx: int, fingerprint: str, ids: np.ndarray, lp: np.ndarray) -> None:
        header = {"format": LOGITS_FORMAT, "model": model_name, "n_ctx": n_ctx, "text": fingerprint,
                  "top_k": int(ids.shape[-1])}
        partial = Path(str(path) + ".partial")
        with open(partial, "wb") as f:
            np.savez(f, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), ids=ids, log_probs=lp)
        os.replace(partial, path)

    @staticmethod
    def read(path: Path, n_ctx: int, fingerprint: str):
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(bytes(data["header"]).decode())
                ids, lp = data["ids"], data["log_probs"]
        except (OSError, ValueError, KeyError) as exc:
            raise InvalidArgumentError("kld_logits", f"{path} is not an edgellama logits file: {exc}") from None
        if header.get("format") != LOGITS_FORMAT:
            raise InvalidArgumentError("kld_logits", f"{path}: unknown format {header.get('format')!r}")
        if header.get("n_ctx") != n_ctx or header.get("text") != fingerprint:
            raise InvalidArgumentError("kld_logits", f"{path} was saved for another text or context size "
                                                     f"(n_ctx {header.get('n_ctx')}); use the same -f and -c")
        return header, ids, lp


def evaluate(llm, ids: Sequence[int], n_ctx: int, n_chunks: Optional[int] = None, base=None,
             save_logits: Optional[Path] = None, kld_logits: Optional[Path] = None,
             on_chunk: Optional[Callable[[int, int], None]] = None) -> Dict[str, object]:
    """Perplexity of `llm` over token ids, and KL divergence against `base` (a Llama) or a saved
    logits file; save_logits writes this model's top-k for later comparisons. on_chunk(i, n) is
    called after each chunk (progress)."""
    chunks = chunks_of(ids, n_ctx, n_chunks)
    fingerprint = text_fingerprint(chunks)
    saved = SavedLogits.read(kld_logits, n_ctx, fingerprint) if kld_logits is not None else None
    acc = Accumulator()
    kept_ids, kept_lp = [], []
    start, row = time.perf_counter(), 0
    for index, chunk in enumerate(chunks):
        log_probs = scored_log_probs(llm, chunk)
        targets = np.asarray(chunk[len(chunk) // 2:])
        acc.nll.extend((-log_probs[np.arange(targets.size), targets]).tolist())
        if base is not None:
            base_lp = scored_log_probs(base, chunk)
            acc.kld.extend(exact_kld(base_lp, log_probs).tolist())
            acc.agree.extend((base_lp.argmax(-1) == log_probs.argmax(-1)).tolist())
        if saved is not None:
            _, s_ids, s_lp = saved
            part_ids, part_lp = s_ids[row:row + targets.size], s_lp[row:row + targets.size]
            acc.kld.extend(bucketed_kld(part_ids, part_lp, log_probs).tolist())
            best = part_ids[np.arange(targets.size), part_lp.argmax(-1)]
            acc.agree.extend((best == log_probs.argmax(-1)).tolist())
        if save_logits is not None:
            k_ids, k_lp = top_k_summary(log_probs)
            kept_ids.append(k_ids)
            kept_lp.append(k_lp)
        row += targets.size
        if on_chunk is not None:
            on_chunk(index + 1, len(chunks))
    if save_logits is not None:
        SavedLogits.write(save_logits, llm.model_name, n_ctx, fingerprint, np.vstack(kept_ids), np.vstack(kept_lp))
    result = acc.summary()
    result.update({"chunks": len(chunks), "n_ctx": n_ctx, "seconds": time.perf_counter() - start,
                   "model": llm.model_name})
    return result

