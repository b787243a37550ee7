"""Tokenizers for GGUF vocabularies, and a streaming detokenizer.

Two families, chosen by ``tokenizer.ggml.model``:

* ``gpt2``: byte-level BPE (Llama 3, SmolLM2), described step by step below;
* ``llama``: SentencePiece-style BPE (Llama 2, TinyLlama): spaces become ``▁`` (U+2581), a ``▁``
  is prefixed to the text when ``tokenizer.ggml.add_space_prefix`` says so (the default), the
  UTF-8 characters are the initial symbols and adjacent symbols merge when their concatenation is
  a token, highest ``tokenizer.ggml.scores`` first (leftmost on ties); a character without a token
  becomes its bytes as ``<0xNN>`` tokens (byte fallback), or the unknown token.

The loader hands us the GGUF tokenizer metadata as a plain dict (keys exactly as stored in the
file: ``tokenizer.ggml.tokens``, ``tokenizer.ggml.merges``, ...). Encoding runs in four steps:

1. with ``special=True``, control and user-defined token strings (``<|im_start|>``) are cut out of
   the text and become single tokens; with ``special=False`` they are ordinary text;
2. the remaining text is pre-tokenized by the regular expression(s) that ``tokenizer.ggml.pre``
   names; each regex splits every piece produced by the previous one, and text between matches
   is kept as its own piece, so no character is ever dropped;
3. each pre-token's UTF-8 bytes are mapped to printable characters (the gpt2 byte<->unicode map);
4. merges are applied by rank within the pre-token, and the resulting symbols are looked up.

Pre-tokenization is Python (the ``regex`` package for ``\\p{L}``/``\\p{N}``); the merge loops run in
the C++ core (``csrc/tokenizer``, ``_core.ByteLevelBpe`` / ``_core.SentencePieceBpe``). A pure
Python implementation of the same loops remains (``backend="python"``) for builds without the
core and as a cross-check in the tests; both give identical ids.
"""

from __future__ import annotations

import bisect
import codecs
import functools
import math
from typing import Dict, FrozenSet, Iterable, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import regex

from edgellama.errors import EdgellamaError, InvalidArgumentError, InvalidMetadataError
from edgellama.gguf_metadata import MetadataReader, check_tokenizer_metadata
from edgellama.pretokenizer import (  # noqa: F401 (BYTE_TO_CHAR, PRE_TOKENIZERS: part of this module's API)
    BYTE_TO_CHAR, CHAR_TO_BYTE, IGNORE_MERGES, PRE_TOKENIZERS, _split_keep_gaps, bytes_to_symbols, symbols_to_bytes)

__all__ = ["Tokenizer", "StreamDecoder", "TokenizerError", "TokenizerMetadataError", "TokenType", "PRE_TOKENIZERS"]


class TokenizerError(EdgellamaError, ValueError):
    """The GGUF tokenizer metadata is missing, malformed or describes something unsupported
    (an unknown ``tokenizer.ggml.model`` or ``tokenizer.ggml.pre``), or a call cannot be served
    (e.g. ``add_bos=True`` on a vocabulary without a BOS token, a token id out of range)."""


class TokenizerMetadataError(TokenizerError, InvalidMetadataError):
    """A tokenizer metadata value has the wrong type or lies outside its range (a token list of
    integers, a score that is NaN, a token id past the vocabulary). Both a TokenizerError and a
    ModelLoadError (InvalidMetadataError): attributes path, key, value."""


class TokenType:
    """Values of ``tokenizer.ggml.token_type``."""

    NORMAL = 1
    UNKNOWN = 2
    CONTROL = 3
    USER_DEFINED = 4
    UNUSED = 5
    BYTE = 6


SUPPORTED_MODELS = ("gpt2", "llama")

#: SentencePiece's visible space.
SPM_SPACE = "\u2581"

# Control-token texts that end a generation turn in common chat formats.
_STOP_TEXTS = frozenset({"<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "</s>", "<|endoftext|>"})


# ---------------------------------------------------------------------------------------------
# Helpers.


def _parse_byte_token(text: str) -> Optional[int]:
    """``<0xAB>`` -> 0xAB, else None."""
    if len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
        try:
            return int(text[3:5], 16)
        except ValueError:
            return None
    return None


class _ControlFragments(NamedTuple):
    """What tells quickly whether a text holds a control-token string or a piece of one."""

    heads: FrozenSet[str]  # proper prefixes of the control-token strings ("<|im_")
    tails: FrozenSet[str]  # proper suffixes ("end|>")
    first_chars: str  # their first characters ("<")
    last_chars: str  # their last characters (">")
    longest: int


def _check_text(text: object) -> None:
    """Text to tokenize must be a str with a UTF-8 encoding (no lone surrogate, which a string
    decoded with errors="surrogateescape" or read from broken UTF-16 may hold)."""
    if not isinstance(text, str):
        raise InvalidArgumentError("text", f"must be a str, got {type(text).__name__}")
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise TokenizerError(
            f"the text is not valid Unicode: a lone surrogate U+{ord(text[exc.start]):04X} at "
            f"character {exc.start} has no UTF-8 encoding, so the text cannot be tokenized"
        ) from None


def _opt_int(meta: Mapping[str, object], key: str) -> Optional[int]:
    """An optional token id that check_tokenizer_metadata has already validated."""
    value = meta.get(key)
    return None if value is None else int(value)  # type: ignore[call-overload]


# ---------------------------------------------------------------------------------------------


class Tokenizer:
    """A tokenizer built from GGUF tokenizer metadata (byte-level BPE or SentencePiece-style BPE).

    Build it with :meth:`from_metadata`. Token ids are list indices into
    ``tokenizer.ggml.tokens``. ``backend``: ``"auto"`` (the C++ core when it is built, else
    Python), ``"core"`` or ``"python"``.
    """

    def __init__(
        self,
        tokens: Sequence[str],
        token_types: Sequence[int],
        merges: Optional[Sequence[str]],
        pre: Optional[str],
        *,
        model: str = "gpt2",
        scores: Optional[Sequence[float]] = None,
        add_space_prefix: bool = True,
        bos_id: Optional[int] = None,
        eos_id: Optional[int] = None,
        eot_id: Optional[int] = None,
        pad_id: Optional[int] = None,
        unk_id: Optional[int] = None,
        add_bos: bool = False,
        add_eos: bool = False,
        cache_size: int = 1 << 16,
        backend: str = "auto",
    ) -> None:
        if model not in SUPPORTED_MODELS:
            raise TokenizerError(
                f"unsupported tokenizer.ggml.model {model!r}; edgellama handles "
                f"{', '.join(repr(m) for m in SUPPORTED_MODELS)}"
            )
        self._model = model
        if model == "gpt2":
            if pre not in PRE_TOKENIZERS:
                raise TokenizerError(
                    f"unsupported tokenizer.ggml.pre {pre!r}; edgellama supports "
                    f"{', '.join(sorted(PRE_TOKENIZERS))}"
                )
            if merges is None:
                raise TokenizerError("tokenizer.ggml.merges is required for a gpt2 (byte-level BPE) vocabulary")
        else:
            if scores is None:
                raise TokenizerError("tokenizer.ggml.scores is required for a llama (SentencePiece) vocabulary")
            if len(scores) != len(tokens):
                raise TokenizerError(
                    f"tokenizer.ggml.scores has {len(scores)} entries but tokenizer.ggml.tokens has {len(tokens)}"
                )
        if len(token_types) != len(tokens):
            raise TokenizerError(
                f"tokenizer.ggml.token_type has {len(token_types)} entries but "
                f"tokenizer.ggml.tokens has {len(tokens)}"
            )
        if backend not in ("auto", "core", "python"):
            raise ValueError(f"backend must be 'auto', 'core' or 'python', got {backend!r}")
        # from_metadata has checked every item (check_tokenizer_metadata); a direct caller gets
        # the same checks here, cheaply, as one TokenizerError rather than a TypeError deep inside.
        if not all(isinstance(t, str) for t in tokens):
            raise TokenizerError("tokenizer.ggml.tokens must be a list of strings")
        if not all(isinstance(t, int) for t in token_types):
            raise TokenizerError("tokenizer.ggml.token_type must be a list of integers")
        self._tokens: List[str] = list(tokens)
        self._types: List[int] = [int(t) for t in token_types]
        self._pre = pre if model == "gpt2" else None
        self._ignore_merges = self._pre in IGNORE_MERGES
        self._add_space_prefix = bool(add_space_prefix) and model == "llama"
        n = len(self._tokens)
        for key, value in (("bos", bos_id), ("eos", eos_id), ("eot", eot_id), ("padding", pad_id),
                           ("unknown", unk_id)):
            if value is not None and (not isinstance(value, int) or not 0 <= value < n):
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
        core = None
        if backend != "python":
            try:
                from edgellama import _core as core  # type: ignore[no-redef]
            except ImportError:
                if backend == "core":
                    raise TokenizerError("backend='core' but edgellama._core is not built") from None
                core = None

        if model == "gpt2":
            # (left, right) -> rank; lower rank merges first.
            self._ranks: Dict[Tuple[str, str], int] = {}
            for rank, line in enumerate(merges):  # type: ignore[arg-type]
                if not isinstance(line, str):
                    raise TokenizerError(f"tokenizer.ggml.merges[{rank}] is not a string: {line!r}")
                parts = line.split(" ")
                if len(parts) != 2 or not parts[0] or not parts[1]:
                    raise TokenizerError(f"tokenizer.ggml.merges[{rank}] is not 'left right': {line!r}")
                self._ranks.setdefault((parts[0], parts[1]), rank)
            self._patterns = [regex.compile(p) for p in PRE_TOKENIZERS[pre]]  # type: ignore[index]
            #: Bytes that have no token of their own (encode drops them, see _bpe_uncached).
            self.missing_bytes: FrozenSet[int] = frozenset(
                b for b in range(256) if BYTE_TO_CHAR[b] not in self._vocab
            )
            self._bpe_cached = functools.lru_cache(maxsize=cache_size)(self._bpe_uncached)
            self._core_bpe = None
            if core is not None:
                fallback = -1 if self._byte_fallback_id is None else self._byte_fallback_id
                self._core_bpe = core.ByteLevelBpe(self._tokens, list(BYTE_TO_CHAR), list(merges), fallback)  # type: ignore[arg-type]
        else:
            if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in scores):  # type: ignore[union-attr]
                raise TokenizerError("tokenizer.ggml.scores must be a list of finite numbers")
            self._scores: List[float] = [float(x) for x in scores]  # type: ignore[union-attr]
            self._patterns = []
            self._byte_ids: Dict[int, int] = {}
            for i, text in enumerate(self._tokens):
                if self._types[i] == TokenType.BYTE:
                    b = _parse_byte_token(text)
                    if b is not None:
                        self._byte_ids.setdefault(b, i)
            #: Bytes without a <0xNN> token (a character that needs one becomes the unknown token).
            self.missing_bytes = frozenset(b for b in range(256) if b not in self._byte_ids)
            self._spm_pieces: Dict[str, int] = {}
            for i, text in enumerate(self._tokens):
                if self._types[i] in (TokenType.NORMAL, TokenType.USER_DEFINED):
                    self._spm_pieces.setdefault(text, i)
            self._core_spm = None
            if core is not None:
                self._core_spm = core.SentencePieceBpe(
                    self._tokens, self._scores, self._types, -1 if unk_id is None else unk_id
                )
        self._backend = "core" if core is not None else "python"

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_metadata(cls, meta: Mapping[str, object], backend: str = "auto",
                      source: str = "GGUF tokenizer metadata") -> "Tokenizer":
        """Build a tokenizer from GGUF tokenizer metadata (keys exactly as in the file).

        Raises :class:`TokenizerError` for an unknown ``tokenizer.ggml.model`` or (for gpt2
        vocabularies) ``tokenizer.ggml.pre``, or missing arrays, and
        :class:`TokenizerMetadataError` (also a ModelLoadError) naming the key and the value for a
        value of the wrong type, arrays of different lengths, or a token id outside the
        vocabulary. source names where the metadata came from in those messages. There is no
        silent fallback.
        """
        check_tokenizer_metadata(MetadataReader(source, meta, TokenizerMetadataError))
        model = meta.get("tokenizer.ggml.model")
        if model is None:
            raise TokenizerError("this model file has no tokenizer (no tokenizer.ggml.model in its GGUF metadata): "
                                 "it takes token ids, not text")
        if model not in SUPPORTED_MODELS:
            raise TokenizerError(
                f"unsupported tokenizer.ggml.model {model!r}; edgellama handles "
                f"{', '.join(repr(m) for m in SUPPORTED_MODELS)}"
            )
        pre = meta.get("tokenizer.ggml.pre")
        if pre is None and model == "gpt2":
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
        if merges is None and model == "gpt2":
            raise TokenizerError("GGUF metadata has no tokenizer.ggml.merges (required for gpt2 BPE)")
        scores = meta.get("tokenizer.ggml.scores")
        if scores is None and model == "llama":
            raise TokenizerError("GGUF metadata has no tokenizer.ggml.scores (required for llama SentencePiece)")
        return cls(
            tokens,  # type: ignore[arg-type]
            token_types,  # type: ignore[arg-type]
            merges,  # type: ignore[arg-type]
            None if pre is None else str(pre),
            model=str(model),
            scores=scores,  # type: ignore[arg-type]
            add_space_prefix=bool(meta.get("tokenizer.ggml.add_space_prefix", True)),
            bos_id=_opt_int(meta, "tokenizer.ggml.bos_token_id"),
            eos_id=_opt_int(meta, "tokenizer.ggml.eos_token_id"),
            eot_id=_opt_int(meta, "tokenizer.ggml.eot_token_id"),
            pad_id=_opt_int(meta, "tokenizer.ggml.padding_token_id"),
            unk_id=_opt_int(meta, "tokenizer.ggml.unknown_token_id"),
            add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", False)),
            add_eos=bool(meta.get("tokenizer.ggml.add_eos_token", False)),
            backend=backend,
        )

    # -- properties ---------------------------------------------------------------------------

    @property
    def model(self) -> str:
        """``tokenizer.ggml.model``: ``"gpt2"`` or ``"llama"``."""
        return self._model

    @property
    def backend(self) -> str:
        """Where the merge loop runs: ``"core"`` (C++) or ``"python"``."""
        return self._backend

    @property
    def add_space_prefix(self) -> bool:
        """SentencePiece vocabularies: whether a ``▁`` is prefixed to the text (False for gpt2)."""
        return self._add_space_prefix

    @property
    def add_bos(self) -> bool:
        """Whether encode adds the BOS token by default (``tokenizer.ggml.add_bos_token``)."""
        return self._add_bos

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
    def pre(self) -> Optional[str]:
        """The pre-tokenizer name (``tokenizer.ggml.pre``); None for llama vocabularies."""
        return self._pre

    @property
    def stop_ids(self) -> FrozenSet[int]:
        """Token ids that end generation: eos, eot (if present), and control tokens whose text
        is one of ``<|im_end|>``, ``<|eot_id|>``, ``<|eom_id|>``, ``<|end_of_text|>``, ``</s>``,
        ``<|endoftext|>`` (so generation ends at every chat family's end of turn)."""
        return self._stop_ids

    def token_id(self, text: str) -> Optional[int]:
        """The id of the token stored as ``text`` (first occurrence), or None."""
        return self._vocab.get(text)

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
        *,
        split_special_at: Iterable[int] = (),
    ) -> List[int]:
        """Tokenize ``text``.

        ``add_bos``/``add_eos``: None follows the file's ``tokenizer.ggml.add_bos_token`` /
        ``add_eos_token`` (False when absent). ``special=True`` turns control and user-defined
        token strings found in the text (e.g. ``<|im_start|>``) into their single tokens;
        ``special=False`` tokenizes them as plain text, so untrusted input cannot inject them.

        gpt2 vocabularies: a byte with no token in the vocabulary (see :attr:`missing_bytes`;
        SmolLM2 lacks e.g. 0x04 and the lead bytes of planes 4-11) is encoded as the unknown
        token if the file has one of type UNKNOWN, and otherwise dropped, as the reference BPE
        implementations do.

        llama vocabularies: the ``▁`` space prefix goes before the text only (with
        ``special=True``, before the first piece of text when the text does not start with a
        special token).

        ``split_special_at`` (with ``special=True``): character offsets in ``text`` that no
        special token may straddle. A special-token string that starts before such an offset and
        ends after it stays plain text (a shorter special token that starts at the same place and
        ends by the offset is still recognised); the text around it is tokenized exactly as
        before. Chat rendering passes an offset inside every control-token string that came from
        a message, so that only the template's own markup becomes control tokens. Without
        offsets the result is that of ``special=True`` alone.

        Raises :class:`~edgellama.errors.InvalidArgumentError` when ``text`` is not a ``str``, and
        :class:`TokenizerError` when it is not valid Unicode (a lone surrogate such as
        ``"a\\ud800"``, which has no UTF-8 encoding).
        """
        _check_text(text)
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
            for start, end, token_id in self._special_matches(text, split_special_at):
                if start > pos:
                    self._encode_plain(text[pos:start], ids, pos == 0)
                ids.append(token_id)
                pos = end
            if pos < len(text):
                self._encode_plain(text[pos:], ids, pos == 0)
        else:
            self._encode_plain(text, ids, True)
        if add_eos:
            if self._eos_id is None:
                raise TokenizerError("add_eos requested but the vocabulary has no eos_token_id")
            ids.append(self._eos_id)
        return ids

    def _special_matches(self, text: str, split_at: Iterable[int]) -> Iterator[Tuple[int, int, int]]:
        """(start, end, id) of the special tokens encode(special=True) cuts out of text, leftmost
        first, longest at each place; none straddles an offset of ``split_at``."""
        pattern = self._special_re
        assert pattern is not None
        cuts = sorted(set(split_at))
        if not cuts:
            for m in pattern.finditer(text):
                yield m.start(), m.end(), self._special[m.group()]
            return
        pos = 0
        while True:
            m = pattern.search(text, pos)
            if m is None:
                return
            start, end = m.span()
            i = bisect.bisect_right(cuts, start)
            if i < len(cuts) and cuts[i] < end:
                # It straddles an offset: the longest special token that ends by the offset, if
                # any starts here; otherwise this place is text and the search goes on after it.
                m = pattern.match(text, start, cuts[i])
                if m is None:
                    pos = start + 1
                    continue
                end = m.end()
            yield start, end, self._special[m.group()]
            pos = end

    def control_token_spans(self, text: str) -> List[Tuple[int, int]]:
        """(start, end) of each control-token string (type CONTROL, e.g. ``<|im_end|>``) that
        ``encode(text, special=True)`` would turn into its token."""
        _check_text(text)
        fragments = self._control_fragments
        if self._special_re is None or not any(c in text for c in fragments.first_chars):
            return []  # the common case, decided without the regex of every special token
        return [(start, end) for start, end, token_id in self._special_matches(text, ())
                if self._types[token_id] == TokenType.CONTROL]

    def control_token_edges(self, text: str) -> Tuple[bool, bool]:
        """Whether ``text`` starts with the end of a control-token string (``end|>``) and whether
        it ends with the start of one (``<|im_``): text that could complete a control token with
        what is put before or after it."""
        fragments = self._control_fragments
        reach = min(len(text), fragments.longest - 1)
        # A fragment at the start ends with some token's last character, one at the end starts
        # with some token's first character: most texts are decided by those alone.
        starts = (any(c in text[:reach] for c in fragments.last_chars)
                  and any(text[:k] in fragments.tails for k in range(1, reach + 1)))
        ends = (any(c in text[len(text) - reach:] for c in fragments.first_chars)
                and any(text[-k:] in fragments.heads for k in range(1, reach + 1)))
        return starts, ends

    @property
    def control_token_chars(self) -> str:
        """The first and last characters of the control-token strings (``"<>"`` for most
        vocabularies): a text without any of them holds no control token, nor a piece of one."""
        fragments = self._control_fragments
        return "".join(sorted(set(fragments.first_chars + fragments.last_chars)))

    @functools.cached_property
    def _control_fragments(self) -> "_ControlFragments":
        texts = [t for t, i in self._special.items() if self._types[i] == TokenType.CONTROL]
        return _ControlFragments(
            heads=frozenset(t[:k] for t in texts for k in range(1, len(t))),
            tails=frozenset(t[k:] for t in texts for k in range(1, len(t))),
            first_chars="".join(sorted({t[0] for t in texts})),
            last_chars="".join(sorted({t[-1] for t in texts})),
            longest=max(map(len, texts), default=0),
        )

    def pre_tokenize(self, text: str) -> List[str]:
        """Split text into pre-tokens with this vocabulary's regex sequence (gpt2 vocabularies;
        a llama vocabulary has no pre-tokenization and returns the text as one piece)."""
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

    def _encode_plain(self, text: str, out: List[int], at_start: bool) -> None:
        if self._model == "llama":
            escaped = text.replace(" ", SPM_SPACE)
            if self._add_space_prefix and at_start and text:
                escaped = SPM_SPACE + escaped
            if self._core_spm is not None:
                out.extend(self._core_spm.encode(escaped))
            else:
                self._spm_python(escaped, out)
            return
        pieces = self.pre_tokenize(text)
        if self._ignore_merges:
            self._encode_whole_first(pieces, out)
        elif self._core_bpe is not None:
            out.extend(self._core_bpe.encode_pieces(pieces))
        else:
            for piece in pieces:
                out.extend(self._bpe_cached(piece))

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

    def _spm_python(self, escaped: str, out: List[int]) -> None:
        """SentencePiece-style merges in Python: the highest-scoring adjacent pair whose
        concatenation is a token merges first (leftmost on ties)."""
        pieces = self._spm_pieces
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

    # -- decoding -----------------------------------------------------------------------------

    def _compute_token_bytes(self, token_id: int) -> bytes:
        text = self._tokens[token_id]
        ttype = self._types[token_id]
        if ttype == TokenType.BYTE:
            b = _parse_byte_token(text)
            if b is not None:
                return bytes([b])
            return symbols_to_bytes(text) if self._model == "gpt2" else text.encode("utf-8")
        if ttype == TokenType.NORMAL:
            if self._model == "llama":
                return text.replace(SPM_SPACE, " ").encode("utf-8")
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

    def strips_leading_space(self, token_id: int) -> bool:
        """Whether this token, as the first piece of decoded text, loses its leading space: the
        ``▁`` that ``add_space_prefix`` put before the text (normal tokens of llama vocabularies)."""
        return (self._add_space_prefix and self._types[token_id] == TokenType.NORMAL
                and self._tokens[token_id].startswith(SPM_SPACE))

    def decode(self, ids: Iterable[int], render_special: bool = False) -> str:
        """Turn token ids back into text (UTF-8, invalid sequences replaced by U+FFFD).

        Control, unknown and unused tokens are skipped unless ``render_special=True``, in which
        case their stored text appears. For llama vocabularies with ``add_space_prefix``, the
        first piece of text loses the space that encoding prefixed."""
        parts: List[bytes] = []
        first = True
        for i in ids:
            data = self.piece_bytes(int(i), render_special)
            if first and data:
                first = False
                if self.strips_leading_space(int(i)):
                    data = data[1:]
            parts.append(data)
        return b"".join(parts).decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        if self._model == "llama":
            return f"Tokenizer(model='llama', n_vocab={self.n_vocab})"
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
        self._first = True

    def push(self, token_id: int) -> str:
        """Feed one token id; return the newly completed text (possibly empty)."""
        token_id = int(token_id)
        data = self._tokenizer.piece_bytes(token_id, self._render_special)
        if self._first and data:
            self._first = False
            if self._tokenizer.strips_leading_space(token_id):
                data = data[1:]
        return self._decoder.decode(data)

    def flush(self) -> str:
        """Return whatever is held back (an incomplete tail becomes U+FFFD) and reset."""
        text = self._decoder.decode(b"", final=True)
        self.reset()
        return text

    def reset(self) -> None:
        """Drop held-back bytes without emitting them; the next token starts a new text."""
        self._decoder.reset()
        self._first = True
