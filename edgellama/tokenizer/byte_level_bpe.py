"""Byte-level BPE (``tokenizer.ggml.model = "gpt2"``: Llama 3, SmolLM2).

The text (after special tokens are cut out) is pre-tokenized by the regular expression(s) that
``tokenizer.ggml.pre`` names (edgellama/pretokenizer.py); each pre-token's UTF-8 bytes are mapped
to printable characters (the gpt2 byte<->unicode map); merges are applied by rank within the
pre-token, and the resulting symbols are looked up. Where the pre-tokenizer says so
(IGNORE_MERGES: Llama 3), a pre-token that is a token whole is that token, unmerged.
"""

from __future__ import annotations

import functools
from typing import Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

import regex

from edgellama.pretokenizer import (BYTE_TO_CHAR, IGNORE_MERGES, PRE_TOKENIZERS, _split_keep_gaps, bytes_to_symbols,
                                    symbols_to_bytes)
from edgellama.tokenizer.vocabulary import TokenizerError


class ByteLevelBPE:
    model = "gpt2"

    def __init__(self, tokens: Sequence[str], vocab: Mapping[str, int], merges: Optional[Sequence[str]],
                 pre: Optional[str], byte_fallback_id: Optional[int], core, cache_size: int) -> None:
        if pre not in PRE_TOKENIZERS:
            raise TokenizerError(f"unsupported tokenizer.ggml.pre {pre!r}; edgellama supports "
                                 f"{', '.join(sorted(PRE_TOKENIZERS))}")
        if merges is None:
            raise TokenizerError("tokenizer.ggml.merges is required for a gpt2 (byte-level BPE) vocabulary")
        self.pre = pre
        self._vocab = vocab
        self._byte_fallback_id = byte_fallback_id
        self._ignore_merges = pre in IGNORE_MERGES
        # (left, right) -> rank; lower rank merges first.
        self._ranks: Dict[Tuple[str, str], int] = {}
        for rank, line in enumerate(merges):
            if not isinstance(line, str):
                raise TokenizerError(f"tokenizer.ggml.merges[{rank}] is not a string: {line!r}")
            parts = line.split(" ")
            if len(parts) != 2 or not parts[0] or not parts[1]:
                raise TokenizerError(f"tokenizer.ggml.merges[{rank}] is not 'left right': {line!r}")
            self._ranks.setdefault((parts[0], parts[1]), rank)
        self._patterns = [regex.compile(p) for p in PRE_TOKENIZERS[pre]]
        #: Bytes that have no token of their own (encode drops them, see _bpe_uncached).
        self.missing_bytes: FrozenSet[int] = frozenset(b for b in range(256) if BYTE_TO_CHAR[b] not in vocab)
        self._bpe_cached = functools.lru_cache(maxsize=cache_size)(self._bpe_uncached)
        self._core_bpe = None
        if core is not None:
            fallback = -1 if byte_fallback_id is None else byte_fallback_id
            self._core_bpe = core.ByteLevelBpe(list(tokens), list(BYTE_TO_CHAR), list(merges), fallback)

    def __repr__(self) -> str:
        return f"pre={self.pre!r}, merges={len(self._ranks)}"

    # -- decoding: a token's stored text in the byte<->unicode map ---------------------------
    normal_bytes = staticmethod(symbols_to_bytes)
    unparsed_byte_token_bytes = staticmethod(symbols_to_bytes)

    # -- encoding -------------------------------------------------------------------------------
    def pre_tokenize(self, text: str) -> List[str]:
        if not text:
            return []
        if len(self._patterns) == 1:
            # Every pattern ends in an alternative that matches any run of whitespace, and its
            # other alternatives cover letters, digits and the rest: the matches tile the text.
            return self._patterns[0].findall(text)
        pieces = [text]
        for pattern in self._patterns:
            next_pieces: List[str] = []
            for piece in pieces:
                next_pieces.extend(_split_keep_gaps(pattern, piece))
            pieces = next_pieces
        return pieces

    def encode(self, text: str, out: List[int], at_start: bool) -> None:
        pieces = self.pre_tokenize(text)
        if self._ignore_merges:
            self._encode_whole_first(pieces, out)
        else:
            self._merge_run(pieces, out)

    def _encode_whole_first(self, pieces: List[str], out: List[int]) -> None:
        """BPE where a pre-token that is a token whole is that token (IGNORE_MERGES): merging
        could split it differently ("Cửa Việt" -> 3 tokens, not 5). The others merge as usual,
        in runs, so that the core's loop keeps its batches."""
        vocab = self._vocab
        run: List[str] = []
        for piece in pieces:
            whole = vocab.get("".join(bytes_to_symbols(piece.encode("utf-8"))))
            if whole is None:
                run.append(piece)
                continue
            self._merge_run(run, out)
            run = []
            out.append(whole)
        self._merge_run(run, out)

    def _merge_run(self, pieces: List[str], out: List[int]) -> None:
        if not pieces:
            return
        if self._core_bpe is not None:
            out.extend(self._core_bpe.encode_pieces(pieces))
        else:
            for piece in pieces:
                out.extend(self._bpe_cached(piece))

    def _bpe_uncached(self, piece: str) -> Tuple[int, ...]:
        """Apply merges by rank to one pre-token and return its token ids."""
        # A byte with no token of its own is removed before merging (so its neighbours may
        # merge, as in the BPE that trained these vocabularies), or, if the file has a genuine
        # unknown token (type UNKNOWN), kept as a placeholder that never merges. The "unknown"
        # id of many vocabularies is a control token such as <|endoftext|>; injecting that into
        # a prompt would end the text, so it is never used here.
        vocab = self._vocab
        symbols: List[Optional[str]] = []
        for ch in bytes_to_symbols(piece.encode("utf-8")):
            if ch in vocab:
                symbols.append(ch)
            elif self._byte_fallback_id is not None:
                symbols.append(None)
        ranks = self._ranks
        while len(symbols) > 1:
            # The lowest-ranked adjacent pair present whose result is a token.
            best_rank = None
            best_pair = None
            for pair in zip(symbols, symbols[1:]):
                rank = ranks.get(pair)  # type: ignore[arg-type]
                if rank is not None and (best_rank is None or rank < best_rank):
                    if pair[0] + pair[1] not in vocab:  # type: ignore[operator]
                        continue  # a merge into nothing (malformed file) is ignored
                    best_rank = rank
                    best_pair = pair
            if best_pair is None:
                break
            left, right = best_pair
            merged = left + right  # type: ignore[operator]
            # Merge every occurrence, left to right (non-overlapping).
            new_symbols: List[Optional[str]] = []
            i = 0
            n = len(symbols)
            while i < n:
                if i + 1 < n and symbols[i] == left and symbols[i + 1] == right:
                    new_symbols.append(merged)
                    i += 2
                else:
                    new_symbols.append(symbols[i])
                    i += 1
            symbols = new_symbols
        return tuple(self._byte_fallback_id if sym is None else vocab[sym] for sym in symbols)  # type: ignore[misc]
