"""SentencePiece-style BPE (``tokenizer.ggml.model = "llama"``: Llama 2, TinyLlama).

Spaces become ``▁`` (U+2581), a ``▁`` is prefixed to the text when
``tokenizer.ggml.add_space_prefix`` says so (the default), the UTF-8 characters are the initial
symbols and adjacent symbols merge when their concatenation is a token, highest
``tokenizer.ggml.scores`` first (leftmost on ties); a character without a token becomes its bytes
as ``<0xNN>`` tokens (byte fallback), or the unknown token.
"""

from __future__ import annotations

import math
from typing import Dict, FrozenSet, List, Optional, Sequence

from edgellama.tokenizer.vocabulary import TokenizerError, TokenType, parse_byte_token

#: SentencePiece's visible space.
SPM_SPACE = "\u2581"


class SentencePieceBPE:
    model = "llama"

    def __init__(self, tokens: Sequence[str], types: Sequence[int], scores: Optional[Sequence[float]],
                 unk_id: Optional[int], add_space_prefix: bool, core) -> None:
        if scores is None:
            raise TokenizerError("tokenizer.ggml.scores is required for a llama (SentencePiece) vocabulary")
        if len(scores) != len(tokens):
            raise TokenizerError(f"tokenizer.ggml.scores has {len(scores)} entries but tokenizer.ggml.tokens has "
                                 f"{len(tokens)}")
        if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in scores):
            raise TokenizerError("tokenizer.ggml.scores must be a list of finite numbers")
        self.add_space_prefix = add_space_prefix
        self._unk_id = unk_id
        self._scores: List[float] = [float(x) for x in scores]
        self._byte_ids: Dict[int, int] = {}
        for i, text in enumerate(tokens):
            if types[i] == TokenType.BYTE:
                b = parse_byte_token(text)
                if b is not None:
                    self._byte_ids.setdefault(b, i)
        #: Bytes without a <0xNN> token (a character that needs one becomes the unknown token).
        self.missing_bytes: FrozenSet[int] = frozenset(b for b in range(256) if b not in self._byte_ids)
        self._pieces: Dict[str, int] = {}
        for i, text in enumerate(tokens):
            if types[i] in (TokenType.NORMAL, TokenType.USER_DEFINED):
                self._pieces.setdefault(text, i)
        self._core_spm = None
        if core is not None:
            self._core_spm = core.SentencePieceBpe(list(tokens), self._scores, list(types),
                                                   -1 if unk_id is None else unk_id)

    def __repr__(self) -> str:
        return "model='llama'"

    # -- decoding ---------------------------------------------------------------------------------
    @staticmethod
    def normal_bytes(text: str) -> bytes:
        return text.replace(SPM_SPACE, " ").encode("utf-8")

    @staticmethod
    def unparsed_byte_token_bytes(text: str) -> bytes:
        return text.encode("utf-8")

    # -- encoding ---------------------------------------------------------------------------------
    @staticmethod
    def pre_tokenize(text: str) -> List[str]:
        """No pre-tokenization: the text is one piece."""
        return [text] if text else []

    def encode(self, text: str, out: List[int], at_start: bool) -> None:
        escaped = text.replace(" ", SPM_SPACE)
        if self.add_space_prefix and at_start and text:
            escaped = SPM_SPACE + escaped
        if self._core_spm is not None:
            out.extend(self._core_spm.encode(escaped))
        else:
            self._merge_python(escaped, out)

    def _merge_python(self, escaped: str, out: List[int]) -> None:
        """The merges in Python: the highest-scoring adjacent pair whose concatenation is a token
        merges first (leftmost on ties)."""
        pieces = self._pieces
        scores = self._scores
        symbols = list(escaped)
        while len(symbols) > 1:
            best_score = None
            best_at = -1
            for i in range(len(symbols) - 1):
                tid = pieces.get(symbols[i] + symbols[i + 1])
                if tid is None or symbols[i] not in pieces or symbols[i + 1] not in pieces:
                    continue
                if best_score is None or scores[tid] > best_score:
                    best_score = scores[tid]
                    best_at = i
            if best_at < 0:
                break
            symbols[best_at:best_at + 2] = [symbols[best_at] + symbols[best_at + 1]]
        for sym in symbols:
            tid = pieces.get(sym)
            if tid is not None:
                out.append(tid)
                continue
            data = sym.encode("utf-8")
            if all(b in self._byte_ids for b in data):
                out.extend(self._byte_ids[b] for b in data)
            elif self._unk_id is not None:
                out.append(self._unk_id)
