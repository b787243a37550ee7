"""Byte-level BPE tokenizer for gpt2-style GGUF vocabularies, and a streaming detokenizer.

The loader hands us the GGUF tokenizer metadata as a plain dict (keys exactly as stored in the
file: ``tokenizer.ggml.tokens``, ``tokenizer.ggml.merges``, ...). Encoding runs in four steps:

1. with ``special=True``, control and user-defined token strings (``<|im_start|>``) are cut out of
   the text and become single tokens; with ``special=False`` they are ordinary text;
2. the remaining text is pre-tokenized by the regular expression(s) that ``tokenizer.ggml.pre``
   names; each regex splits every piece produced by the previous one, and text between matches
   is kept as its own piece, so no character is ever dropped;
3. each pre-token's UTF-8 bytes are mapped to printable characters (the gpt2 byte<->unicode map);
4. merges are applied by rank within the pre-token, and the resulting symbols are looked up.

This is pure Python (plus the ``regex`` package for ``\\p{L}``/``\\p{N}``); a C++ merge loop can
replace step 4 later without changing the API.
"""

from __future__ import annotations

import codecs
import functools
from typing import Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Tuple

import regex

from edgellama.errors import EdgellamaError

__all__ = ["Tokenizer", "StreamDecoder", "TokenizerError", "TokenType", "PRE_TOKENIZERS"]


class TokenizerError(EdgellamaError, ValueError):
    """The GGUF tokenizer metadata is missing, malformed or describes something unsupported
    (an unknown ``tokenizer.ggml.model`` or ``tokenizer.ggml.pre``), or a call cannot be served
    (e.g. ``add_bos=True`` on a vocabulary without a BOS token, a token id out of range)."""


class TokenType:
    """Values of ``tokenizer.ggml.token_type``."""

    NORMAL = 1
    UNKNOWN = 2
    CONTROL = 3
    USER_DEFINED = 4
    UNUSED = 5
    BYTE = 6


# ---------------------------------------------------------------------------------------------
# Pre-tokenizer patterns, by the name stored in ``tokenizer.ggml.pre``.

# The gpt2 pattern. The trailing ``|\s+`` only matters for Python's findall-style matching: it
# catches a lone non-space whitespace character followed by a non-space (e.g. "\n" in "\nx"),
# which the other alternatives leave unmatched. Our splitter keeps unmatched gaps anyway, so the
# two forms give identical pieces; spelling it out keeps the intent obvious.
_GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

# Llama 3's pattern: case-insensitive contractions, letters with one optional leading
# non-letter/non-digit (not a newline), digits in groups of at most three, punctuation runs
# swallowing trailing newlines, newline runs.
_LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Every digit on its own (applied first for SmolLM vocabularies).
_SINGLE_DIGIT_PATTERN = r"\p{N}"

#: ``tokenizer.ggml.pre`` name -> regexes applied in sequence.
PRE_TOKENIZERS: Mapping[str, Tuple[str, ...]] = {
    "gpt2": (_GPT2_PATTERN,),
    "llama-bpe": (_LLAMA3_PATTERN,),
    "smollm": (_SINGLE_DIGIT_PATTERN, _GPT2_PATTERN),
}

SUPPORTED_MODELS = ("gpt2",)

# Control-token texts that end a generation turn in common chat formats.
_STOP_TEXTS = frozenset({"<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "</s>", "<|endoftext|>"})


# ---------------------------------------------------------------------------------------------
# The gpt2 byte <-> unicode map.


def _build_byte_map() -> Tuple[Tuple[str, ...], Dict[str, int]]:
    """Bytes 33-126, 161-172 and 174-255 map to the code point of the same value; the remaining
    68 bytes map, in increasing byte order, to U+0100, U+0101, ... so that every byte becomes a
    printable, non-space character."""
    printable = set(range(33, 127)) | set(range(161, 173)) | set(range(174, 256))
    to_char: List[str] = []
    extra = 0
    for b in range(256):
        if b in printable:
            to_char.append(chr(b))
        else:
            to_char.append(chr(256 + extra))
            extra += 1
    return tuple(to_char), {c: b for b, c in enumerate(to_char)}


BYTE_TO_CHAR, CHAR_TO_BYTE = _build_byte_map()


def bytes_to_symbols(data: bytes) -> str:
    """Map raw bytes to the printable string the vocabulary is written in."""
    return "".join(BYTE_TO_CHAR[b] for b in data)


def symbols_to_bytes(text: str) -> bytes:
    """Inverse of :func:`bytes_to_symbols`. A character outside the map (which a well-formed
    vocabulary never contains) is passed through as its own UTF-8 encoding."""
    out = bytearray()
    for ch in text:
        b = CHAR_TO_BYTE.get(ch)
        if b is None:
            out += ch.encode("utf-8")
        else:
            out.append(b)
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# Helpers.


def _split_keep_gaps(pattern: "regex.Pattern[str]", text: str) -> List[str]:
    """Split ``text`` into regex matches, keeping the text between matches as pieces too, so the
    pieces always concatenate back to ``text``."""
    pieces: List[str] = []
    pos = 0
    for m in pattern.finditer(text):
        start, end = m.span()
        if start == end:
            continue
        if start > pos:
            pieces.append(text[pos:start])
        pieces.append(text[start:end])
        pos = end
    if pos < len(text):
        pieces.append(text[pos:])
    return pieces


def _parse_byte_token(text: str) -> Optional[int]:
    """``<0xAB>`` -> 0xAB, else None."""
    if len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
        try:
            return int(text[3:5], 16)
        except ValueError:
            return None
    return None


def _opt_int(meta: Mapping[str, object], key: str) -> Optional[int]:
    value = meta.get(key)
    if value is None:
        return None
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TokenizerError(f"{key} must be an integer token id, got {value!r}") from None


# ---------------------------------------------------------------------------------------------


class Tokenizer:
    """A byte-level BPE tokenizer built from GGUF tokenizer metadata.

    Build it with :meth:`from_metadata`. Token ids are list indices into
    ``tokenizer.ggml.tokens``.
    """

    def __init__(
        self,
        tokens: Sequence[str],
        token_types: Sequence[int],
        merges: Sequence[str],
        pre: str,
        *,
        bos_id: Optional[int] = None,
        eos_id: Optional[int] = None,
        eot_id: Optional[int] = None,
        pad_id: Optional[int] = None,
        unk_id: Optional[int] = None,
        add_bos: bool = False,
        add_eos: bool = False,
        cache_size: int = 1 << 16,
    ) -> None:
        if pre not in PRE_TOKENIZERS:
            raise TokenizerError(
                f"unsupported tokenizer.ggml.pre {pre!r}; edgellama supports "
                f"{', '.join(sorted(PRE_TOKENIZERS))}"
            )
        if len(token_types) != len(tokens):
            raise TokenizerError(
                f"tokenizer.ggml.token_type has {len(token_types)} entries but "
                f"tokenizer.ggml.tokens has {len(tokens)}"
            )
        self._tokens: List[str] = list(tokens)
        self._types: List[int] = [int(t) for t in token_types]
        self._pre = pre
        n = len(self._tokens)
        for key, value in (("bos", bos_id), ("eos", eos_id), ("eot", eot_id), ("padding", pad_id),
                           ("unknown", unk_id)):
            if value is not None and not 0 <= value < n:
                raise TokenizerError(
                    f"tokenizer.ggml.{key}_token_id {value} is outside the vocabulary (n_vocab={n})"
                )
        self._bos_id = bos_id
        self._eos_id = eos_id
        self._eot_id = eot_id
        self._pad_id = pad_id
        self._unk_id = unk_id
        self._add_bos = bool(add_bos)
        self._add_eos = bool(add_eos)

        # Symbol -> id for the BPE lookup. The first occurrence wins if a string repeats.
        self._vocab: Dict[str, int] = {}
        for i, text in enumerate(self._tokens):
            self._vocab.setdefault(text, i)

        # (left, right) -> rank; lower rank merges first.
        self._ranks: Dict[Tuple[str, str], int] = {}
        for rank, line in enumerate(merges):
            parts = line.split(" ")
            if len(parts) != 2 or not parts[0] or not parts[1]:
                raise TokenizerError(f"tokenizer.ggml.merges[{rank}] is not 'left right': {line!r}")
            self._ranks.setdefault((parts[0], parts[1]), rank)

        self._patterns = [regex.compile(p) for p in PRE_TOKENIZERS[pre]]

        # Special tokens matched as single tokens when encode(special=True).
        special = {
            text: i
            for i, text in enumerate(self._tokens)
            if self._types[i] in (TokenType.CONTROL, TokenType.USER_DEFINED) and text
        }
        self._special: Dict[str, int] = special
        if special:
            # Longest first, so a token that is a prefix of another never shadows it.
            alternatives = sorted(special, key=lambda s: (-len(s), s))
            self._special_re: Optional["regex.Pattern[str]"] = regex.compile(
                "|".join(regex.escape(s) for s in alternatives)
            )
        else:
            self._special_re = None

        stops = set()
        for tid in (eos_id, eot_id):
            if tid is not None:
                stops.add(tid)
        for i, text in enumerate(self._tokens):
            if self._types[i] == TokenType.CONTROL and text in _STOP_TEXTS:
                stops.add(i)
        self._stop_ids: FrozenSet[int] = frozenset(stops)

        # Bytes each token contributes to decoded text (control tokens: their own text).
        self._bytes: List[bytes] = [self._compute_token_bytes(i) for i in range(n)]

        self._byte_fallback_id: Optional[int] = (
            unk_id if unk_id is not None and self._types[unk_id] == TokenType.UNKNOWN else None
        )
        #: Bytes that have no token of their own (encode drops them, see _bpe_uncached).
        self.missing_bytes: FrozenSet[int] = frozenset(
            b for b in range(256) if BYTE_TO_CHAR[b] not in self._vocab
        )

        self._bpe_cached = functools.lru_cache(maxsize=cache_size)(self._bpe_uncached)

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_metadata(cls, meta: Mapping[str, object]) -> "Tokenizer":
        """Build a tokenizer from GGUF tokenizer metadata (keys exactly as in the file).

        Raises :class:`TokenizerError` for an unknown ``tokenizer.ggml.model`` or
        ``tokenizer.ggml.pre``, or missing / inconsistent arrays. There is no silent fallback.
        """
        model = meta.get("tokenizer.ggml.model")
        if model is None:
            raise TokenizerError("GGUF metadata has no tokenizer.ggml.model")
        if model not in SUPPORTED_MODELS:
            raise TokenizerError(
                f"unsupported tokenizer.ggml.model {model!r}; edgellama's BPE tokenizer handles "
                f"{', '.join(repr(m) for m in SUPPORTED_MODELS)}"
            )
        pre = meta.get("tokenizer.ggml.pre")
        if pre is None:
            raise TokenizerError(
                "GGUF metadata has no tokenizer.ggml.pre; the pre-tokenizer cannot be guessed "
                f"(supported: {', '.join(sorted(PRE_TOKENIZERS))})"
            )
        tokens = meta.get("tokenizer.ggml.tokens")
        if not tokens:
            raise TokenizerError("GGUF metadata has no tokenizer.ggml.tokens")
        token_types = meta.get("tokenizer.ggml.token_type")
        if token_types is None:
            token_types = [TokenType.NORMAL] * len(tokens)  # type: ignore[arg-type]
        merges = meta.get("tokenizer.ggml.merges")
        if merges is None:
            raise TokenizerError("GGUF metadata has no tokenizer.ggml.merges (required for gpt2 BPE)")
        return cls(
            tokens,  # type: ignore[arg-type]
            token_types,  # type: ignore[arg-type]
            merges,  # type: ignore[arg-type]
            str(pre),
            bos_id=_opt_int(meta, "tokenizer.ggml.bos_token_id"),
            eos_id=_opt_int(meta, "tokenizer.ggml.eos_token_id"),
            eot_id=_opt_int(meta, "tokenizer.ggml.eot_token_id"),
            pad_id=_opt_int(meta, "tokenizer.ggml.padding_token_id"),
            unk_id=_opt_int(meta, "tokenizer.ggml.unknown_token_id"),
            add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", False)),
            add_eos=bool(meta.get("tokenizer.ggml.add_eos_token", False)),
        )

    # -- properties ---------------------------------------------------------------------------

    @property
    def n_vocab(self) -> int:
        """Number of tokens in the vocabulary."""
        return len(self._tokens)

    @property
    def bos_id(self) -> Optional[int]:
        """Beginning-of-sequence token id, or None."""
        return self._bos_id

    @property
    def eos_id(self) -> Optional[int]:
        """End-of-sequence token id, or None."""
        return self._eos_id

    @property
    def eot_id(self) -> Optional[int]:
        """End-of-turn token id, or None."""
        return self._eot_id

    @property
    def pad_id(self) -> Optional[int]:
        """Padding token id, or None."""
        return self._pad_id

    @property
    def unk_id(self) -> Optional[int]:
        """Unknown token id, or None."""
        return self._unk_id

    @property
    def pre(self) -> str:
        """The pre-tokenizer name (``tokenizer.ggml.pre``)."""
        return self._pre

    @property
    def stop_ids(self) -> FrozenSet[int]:
        """Token ids that end generation: eos, eot (if present), and control tokens whose text
        is one of ``<|im_end|>``, ``<|eot_id|>``, ``<|end_of_text|>``, ``</s>``, ``<|endoftext|>``."""
        return self._stop_ids

    def token_text(self, token_id: int) -> str:
        """The token's string as stored in the GGUF vocabulary."""
        self._check_id(token_id)
        return self._tokens[token_id]

    def token_type(self, token_id: int) -> int:
        """The token's ``tokenizer.ggml.token_type`` value."""
        self._check_id(token_id)
        return self._types[token_id]

    def is_special(self, token_id: int) -> bool:
        """True for control, unknown and unused tokens (those ``decode`` skips by default)."""
        self._check_id(token_id)
        return self._types[token_id] in (TokenType.CONTROL, TokenType.UNKNOWN, TokenType.UNUSED)

    # -- encoding -----------------------------------------------------------------------------

    def encode(
        self,
        text: str,
        add_bos: Optional[bool] = None,
        special: bool = False,
        add_eos: Optional[bool] = None,
    ) -> List[int]:
        """Tokenize ``text``.

        ``add_bos``/``add_eos``: None follows the file's ``tokenizer.ggml.add_bos_token`` /
        ``add_eos_token`` (False when absent). ``special=True`` turns control and user-defined
        token strings found in the text (e.g. ``<|im_start|>``) into their single tokens;
        ``special=False`` tokenizes them as plain text, so untrusted input cannot inject them.

        A byte with no token in the vocabulary (see :attr:`missing_bytes`; SmolLM2 lacks e.g.
        0x04 and the lead bytes of planes 4-11) is encoded as the unknown token if the file has
        one of type UNKNOWN, and otherwise dropped, as the reference BPE implementations do.
        """
        if add_bos is None:
            add_bos = self._add_bos
        if add_eos is None:
            add_eos = self._add_eos
        ids: List[int] = []
        if add_bos:
            if self._bos_id is None:
                raise TokenizerError("add_bos requested but the vocabulary has no bos_token_id")
            ids.append(self._bos_id)
        if special and self._special_re is not None:
            pos = 0
            for m in self._special_re.finditer(text):
                if m.start() > pos:
                    self._encode_plain(text[pos:m.start()], ids)
                ids.append(self._special[m.group()])
                pos = m.end()
            if pos < len(text):
                self._encode_plain(text[pos:], ids)
        else:
            self._encode_plain(text, ids)
        if add_eos:
            if self._eos_id is None:
                raise TokenizerError("add_eos requested but the vocabulary has no eos_token_id")
            ids.append(self._eos_id)
        return ids

    def pre_tokenize(self, text: str) -> List[str]:
        """Split text into pre-tokens with this vocabulary's regex sequence."""
        pieces = [text] if text else []
        for pattern in self._patterns:
            next_pieces: List[str] = []
            for piece in pieces:
                next_pieces.extend(_split_keep_gaps(pattern, piece))
            pieces = next_pieces
        return pieces

    def _encode_plain(self, text: str, out: List[int]) -> None:
        for piece in self.pre_tokenize(text):
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
            # The lowest-ranked adjacent pair present.
            best_rank = None
            best_pair = None
            for pair in zip(symbols, symbols[1:]):
                rank = ranks.get(pair)
                if rank is not None and (best_rank is None or rank < best_rank):
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
        ids: List[int] = []
        for sym in symbols:
            if sym is None:
                ids.append(self._byte_fallback_id)  # type: ignore[arg-type]
                continue
            tid = vocab.get(sym)
            if tid is not None:
                ids.append(tid)
            else:
                # A merge whose result is not in the vocabulary (malformed file): its parts.
                ids.extend(vocab[ch] for ch in sym)
        return tuple(ids)

    # -- decoding -----------------------------------------------------------------------------

    def _compute_token_bytes(self, token_id: int) -> bytes:
        text = self._tokens[token_id]
        ttype = self._types[token_id]
        if ttype == TokenType.BYTE:
            b = _parse_byte_token(text)
            if b is not None:
                return bytes([b])
            return symbols_to_bytes(text)
        if ttype == TokenType.NORMAL:
            return symbols_to_bytes(text)
        # Control, user-defined, unknown and unused tokens are stored as plain text, not in the
        # byte<->unicode encoding.
        return text.encode("utf-8")

    def _check_id(self, token_id: int) -> None:
        if not 0 <= token_id < len(self._tokens):
            raise TokenizerError(
                f"token id {token_id} is outside the vocabulary (n_vocab={len(self._tokens)})"
            )

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes token ``token_id`` stands for: the byte-decoded text of a normal token,
        the single byte of a byte token, and the UTF-8 of the stored text for control,
        user-defined, unknown and unused tokens. May be an incomplete UTF-8 sequence."""
        self._check_id(token_id)
        return self._bytes[token_id]

    def piece_bytes(self, token_id: int, render_special: bool = False) -> bytes:
        """The bytes ``token_id`` contributes to :meth:`decode` output: empty for control,
        unknown and unused tokens unless ``render_special``."""
        self._check_id(token_id)
        if not render_special and self._types[token_id] in (
            TokenType.CONTROL, TokenType.UNKNOWN, TokenType.UNUSED
        ):
            return b""
        return self._bytes[token_id]

    def decode(self, ids: Iterable[int], render_special: bool = False) -> str:
        """Turn token ids back into text (UTF-8, invalid sequences replaced by U+FFFD).

        Control, unknown and unused tokens are skipped unless ``render_special=True``, in which
        case their stored text appears."""
        return b"".join(self.piece_bytes(int(i), render_special) for i in ids).decode(
            "utf-8", errors="replace"
        )

    def __repr__(self) -> str:
        return f"Tokenizer(pre={self._pre!r}, n_vocab={self.n_vocab}, merges={len(self._ranks)})"


class StreamDecoder:
    """Incremental detokenizer for generation.

    ``push(id)`` returns only text whose UTF-8 is complete, holding back a multi-byte character
    split across tokens (emoji often are) until its last byte arrives; ``flush()`` returns the
    rest. The concatenation of every ``push`` result and ``flush()`` equals
    ``tokenizer.decode(ids, render_special)`` for the same ids.
    """

    def __init__(self, tokenizer: Tokenizer, render_special: bool = False) -> None:
        self._tokenizer = tokenizer
        self._render_special = render_special
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        """Feed one token id; return the newly completed text (possibly empty)."""
        data = self._tokenizer.piece_bytes(int(token_id), self._render_special)
        return self._decoder.decode(data)

    def flush(self) -> str:
        """Return whatever is held back (an incomplete tail becomes U+FFFD) and reset."""
        text = self._decoder.decode(b"", final=True)
        self._decoder.reset()
        return text

    def reset(self) -> None:
        """Drop held-back bytes without emitting them."""
        self._decoder.reset()
