"""Llama Guard: a conversation's last user prompt or last reply classified as safe or unsafe.

The verdict needs one forward pass: "safe" and "unsafe" begin with different single tokens of the
Llama 3 vocabulary, so P(unsafe) is the probability of the unsafe token first, read from the
logits after the prompt; the model cards flag at P(unsafe) >= 0.5. Only an unsafe verdict needs a
short greedy generation, for the violated categories ("unsafe\\nS1,S10").

The guard runs its own Llama (given, or loaded from a path) on sequence 0, keeping the prompt's
shared beginning (instructions and categories) in the KV cache between checks; checks from many
threads take turns. A chat model and its guard are two Llama objects in one process.
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from edgellama.errors import EdgellamaError, InvalidArgumentError
from edgellama.guard.prompts import FORMATS, GuardPrompt, Taxonomy, guard_turns

DEFAULT_THRESHOLD = 0.5  # the model cards' threshold
MAX_CATEGORY_TOKENS = 24  # "\nS1,S2,S3,..." after "unsafe"
_VERDICT_WORDS = ("safe", "unsafe")


class GuardError(EdgellamaError, RuntimeError):
    """The guard could not classify (its model failed, or the file is not a Llama Guard model)."""


@dataclass
class Verdict:
    """safe, the violated categories (codes and names), P(unsafe), the threshold applied, the
    seconds the check took, and what the model wrote after its verdict (for an unsafe one)."""

    safe: bool
    categories: List[str] = field(default_factory=list)
    category_names: List[str] = field(default_factory=list)
    p_unsafe: float = 0.0
    threshold: float = DEFAULT_THRESHOLD
    seconds: float = 0.0
    checked: str = "User"  # "User" (a prompt) or "Agent" (a reply)
    raw: str = ""

    def as_dict(self) -> Dict[str, Any]:
        return {"safe": self.safe, "categories": self.categories, "category_names": self.category_names,
                "p_unsafe": self.p_unsafe, "threshold": self.threshold, "seconds": self.seconds,
                "checked": self.checked}


def parse_categories(text: str, taxonomy: Taxonomy) -> List[str]:
    """The category codes of the line after "unsafe" ("S1,S10"), those the taxonomy has, in order,
    once each; anything else on that line is ignored (a malformed answer gives no codes)."""
    lines = text.strip().split("\n")
    if not lines or lines[0].strip() != "unsafe":
        return []
    found: List[str] = []
    for part in (lines[1] if len(lines) > 1 else "").split(","):
        code = part.strip()
        if code in taxonomy.codes and code not in found:
            found.append(code)
    return found


class LlamaGuard:
    """check_input(messages) judges the last user message, check_output(messages) the last
    assistant message (with the conversation before it as context). model: a Llama Guard GGUF
    path or a loaded edgellama Llama; guard_format: "lg2", "lg3-8b", "lg3-1b", or None to tell
    from the file (its name, vocabulary and depth); taxonomy: the categories (default: the
    format's own; see Taxonomy for custom ones); threshold: P(unsafe) at which a verdict is unsafe."""

    def __init__(self, model: Union[str, Path, Any], guard_format: Optional[str] = None,
                 taxonomy: Optional[Taxonomy] = None, threshold: float = DEFAULT_THRESHOLD,
                 n_threads: Optional[int] = None):
        from edgellama.model import Llama

        self.llm = model if isinstance(model, Llama) else Llama(model, n_threads=n_threads)
        name = guard_format or detect_format(self.llm)
        if name not in FORMATS:
            raise InvalidArgumentError("guard_format", f"must be one of {', '.join(FORMATS)}, got {name!r}")
        self.format = FORMATS[name]
        tokenizer = self.llm.tokenizer
        bos = tokenizer.token_text(tokenizer.bos_id) if tokenizer.bos_id is not None else ""
        self.prompt = GuardPrompt(self.format, taxonomy, bos_token=bos)
        self.taxonomy = self.prompt.taxonomy
        if not (isinstance(threshold, (int, float)) and not isinstance(threshold, bool) and 0 <= threshold <= 1):
            raise InvalidArgumentError("threshold", f"must be a number in [0, 1], got {threshold!r}")
        self.threshold = float(threshold)
        self._unsafe_ids = _word_ids(tokenizer, "unsafe")
        self._lock = threading.Lock()

    # --- the checks ------------------------------------------------------------------------------
    def check_input(self, messages: Sequence[Mapping[str, Any]]) -> Verdict:
        """The verdict on the conversation's last user message (the conversation up to it)."""
        return self._check(messages, "User")

    def check_output(self, messages: Sequence[Mapping[str, Any]]) -> Verdict:
        """The verdict on the conversation's last assistant message."""
        return self._check(messages, "Agent")

    def _check(self, messages: Sequence[Mapping[str, Any]], role: str) -> Verdict:
        turns = guard_turns(messages)
        if not turns or turns[-1]["role"] != role:
            what = "a user message" if role == "User" else "an assistant message"
            raise InvalidArgumentError("messages", f"the conversation must end with {what} to check")
        started = time.perf_counter()
        ids = self.prompt.encode(self.llm.tokenizer, turns)
        with self._lock:
            try:
                logits = self._logits_after(ids)
                p_unsafe = unsafe_probability(logits, self._unsafe_ids)
                unsafe = p_unsafe >= self.threshold
                raw = self._categories_text() if unsafe else "safe"
            except EdgellamaError:
                raise
            except Exception as exc:  # noqa: BLE001 - the guard's own failure, named as such
                raise GuardError(f"the guard model failed: {type(exc).__name__}: {exc}") from exc
        codes = parse_categories(raw, self.taxonomy) if unsafe else []
        return Verdict(not unsafe, codes, [self.taxonomy.name_of(c) or c for c in codes], p_unsafe, self.threshold,
                       time.perf_counter() - started, role, raw)

    def _logits_after(self, ids: List[int]) -> np.ndarray:
        """The logits after `ids` on sequence 0, evaluating only what the cache does not hold."""
        cached = self.llm.cached_tokens
        keep = 0
        while keep < min(len(cached), len(ids) - 1) and cached[keep] == ids[keep]:
            keep += 1
        self.llm.truncate(keep)
        return self.llm.eval(ids[keep:])

    def _categories_text(self) -> str:
        """After an unsafe verdict: "unsafe" and the model's greedy continuation (its categories)."""
        first = self._unsafe_ids[0]
        pieces, token = [], first
        stops = self.llm.tokenizer.stop_ids
        for _ in range(MAX_CATEGORY_TOKENS):
            pieces.append(token)
            token, _ = self.llm.eval_greedy([token])
            if token in stops:
                break
        return self.llm.tokenizer.decode(pieces)


def unsafe_probability(logits: np.ndarray, unsafe_ids: Sequence[int]) -> float:
    """P(the first generated token spells "unsafe"): a softmax over the whole vocabulary, in
    float64, summed over the tokens that begin the word."""
    x = np.asarray(logits, dtype=np.float64)
    top = float(np.max(x))
    if not math.isfinite(top):
        raise GuardError("the guard model's logits are not finite")
    weights = np.exp(x - top)
    return float(weights[list(unsafe_ids)].sum() / weights.sum())


def _word_ids(tokenizer, word: str) -> List[int]:
    """The single tokens that spell `word`, with or without a leading space (the verdict's first
    token); an error when the vocabulary has none (not a Llama Guard vocabulary)."""
    ids = []
    for text in (word, " " + word):
        encoded = tokenizer.encode(text, add_bos=False)
        if len(encoded) == 1:
            ids.append(encoded[0])
    if not ids:
        raise GuardError(f"{word!r} is not one token in this vocabulary: not a Llama Guard model")
    return ids


def detect_format(llm) -> str:
    """The format of a Llama Guard file: its name first ("Guard 2", "Guard-3-1B", ...), else the
    vocabulary (<|python_tag|>: Llama 3.1 or later, so Llama Guard 3) and the depth (16 layers:
    the 1B)."""
    name = str(llm.model.metadata.get("general.name", "")) + " " + Path(str(llm.model.path)).name
    compact = re.sub(r"[^a-z0-9]", "", name.lower())
    if "guard2" in compact:
        return "lg2"
    if "guard3" in compact:
        return "lg3-1b" if "1b" in compact else "lg3-8b"
    if llm.tokenizer.token_id("<|python_tag|>") is None:
        return "lg2"
    return "lg3-1b" if llm.config.n_layer <= 16 else "lg3-8b"
