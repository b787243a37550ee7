"""The public tokenizer: a GGUF vocabulary's ids, special tokens and text in both directions.

The family (``tokenizer.ggml.model``) decides how plain text becomes tokens: byte_level_bpe.py
(``gpt2``) or sentencepiece.py (``llama``). Encoding cuts control and user-defined token strings
out of the text first when asked (special_tokens.py), then hands each piece of plain text to the
family's encoder.
"""

from __future__ import annotations

from typing import Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from edgellama.gguf_metadata import MetadataReader, check_tokenizer_metadata
from edgellama.pretokenizer import PRE_TOKENIZERS
from edgellama.tokenizer.byte_level_bpe import ByteLevelBPE
from edgellama.tokenizer.sentencepiece import SPM_SPACE, SentencePieceBPE
from edgellama.tokenizer.special_tokens import SpecialTokens
from edgellama.tokenizer.vocabulary import (STOP_TEXTS, SUPPORTED_MODELS, TokenizerError, TokenizerMetadataError,
                                               TokenType, check_text, load_core, optional_id, parse_byte_token)


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
        if len(token_types) != len(tokens):
            raise TokenizerError(
                f"tokenizer.ggml.token_type has {len(token_types)} entries but "
                f"tokenizer.ggml.tokens has {len(tokens)}"
            )
        # from_metadata has checked every item (check_tokenizer_metadata); a direct caller gets
        # the same checks here, cheaply, as one TokenizerError rather than a TypeError deep inside.
        if not all(isinstance(t, str) for t in tokens):
            raise TokenizerError("tokenizer.ggml.tokens must be a list of strings")
        if not all(isinstance(t, int) for t in token_types):
            raise TokenizerError("tokenizer.ggml.token_type must be a list of integers")
        self._tokens: List[str] = list(tokens)
        self._types: List[int] = [int(t) for t in token_types]
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
        # Text -> id; the first occurrence wins if a string repeats.
        self._vocab: Dict[str, int] = {}
        for i, text in enumerate(self._tokens):
            self._vocab.setdefault(text, i)
        self._special = SpecialTokens(self._tokens, self._types)
        stops = {tid for tid in (eos_id, eot_id) if tid is not None}
        stops.update(i for i, text in enumerate(self._tokens)
                     if self._types[i] == TokenType.CONTROL and text in STOP_TEXTS)
        self._stop_ids: FrozenSet[int] = frozenset(stops)

        core = load_core(backend)
        self._encoder: Union[ByteLevelBPE, SentencePieceBPE]
        if model == "gpt2":
            # Only a genuine unknown token (type UNKNOWN) stands in for a byte without a token.
            fallback = unk_id if unk_id is not None and self._types[unk_id] == TokenType.UNKNOWN else None
            self._encoder = ByteLevelBPE(self._tokens, self._vocab, merges, pre, fallback, core, cache_size)
        else:
            self._encoder = SentencePieceBPE(self._tokens, self._types, scores, unk_id, bool(add_space_prefix),
                                             core)
        self._backend = "core" if core is not None else "python"
        # Bytes each token contributes to decoded text (control tokens: their own text).
        self._bytes: List[bytes] = [self._compute_token_bytes(i) for i in range(n)]

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
            bos_id=optional_id(meta, "tokenizer.ggml.bos_token_id"),
            eos_id=optional_id(meta, "tokenizer.ggml.eos_token_id"),
            eot_id=optional_id(meta, "tokenizer.ggml.eot_token_id"),
            pad_id=optional_id(meta, "tokenizer.ggml.padding_token_id"),
            unk_id=optional_id(meta, "tokenizer.ggml.unknown_token_id"),
            add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", False)),
            add_eos=bool(meta.get("tokenizer.ggml.add_eos_token", False)),
            backend=backend,
        )

    # -- properties ---------------------------------------------------------------------------

    @property
    def model(self) -> str:
        """``tokenizer.ggml.model``: ``"gpt2"`` or ``"llama"``."""
        return self._encoder.model

    @property
    def backend(self) -> str:
        """Where the merge loop runs: ``"core"`` (C++) or ``"python"``."""
        return self._backend

    @property
    def add_space_prefix(self) -> bool:
        """SentencePiece vocabularies: whether a ``▁`` is prefixed to the text (False for gpt2)."""
        return getattr(self._encoder, "add_space_prefix", False)

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
        return getattr(self._encoder, "pre", None)

    @property
    def missing_bytes(self) -> FrozenSet[int]:
        """Bytes the vocabulary has no token for: gpt2, bytes without a symbol token (encode drops
        them, or uses a genuine unknown token); llama, bytes without a ``<0xNN>`` token (a
        character that needs one becomes the unknown token)."""
        return self._encoder.missing_bytes

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
        check_text(text)
        if add_bos is None:
            add_bos = self._add_bos
        if add_eos is None:
            add_eos = self._add_eos
        ids: List[int] = []
        if add_bos:
            if self._bos_id is None:
                raise TokenizerError("add_bos requested but the vocabulary has no bos_token_id")
            ids.append(self._bos_id)
        if special and self._special.pattern is not None:
            pos = 0
            for start, end, token_id in self._special.matches(text, split_special_at):
                if start > pos:
                    self._encoder.encode(text[pos:start], ids, pos == 0)
                ids.append(token_id)
                pos = end
            if pos < len(text):
                self._encoder.encode(text[pos:], ids, pos == 0)
        else:
            self._encoder.encode(text, ids, True)
        if add_eos:
            if self._eos_id is None:
                raise TokenizerError("add_eos requested but the vocabulary has no eos_token_id")
            ids.append(self._eos_id)
        return ids

    def control_token_spans(self, text: str) -> List[Tuple[int, int]]:
        """(start, end) of each control-token string (type CONTROL, e.g. ``<|im_end|>``) that
        ``encode(text, special=True)`` would turn into its token."""
        check_text(text)
        return self._special.control_spans(text)

    def control_token_edges(self, text: str) -> Tuple[bool, bool]:
        """Whether ``text`` starts with the end of a control-token string (``end|>``) and whether
        it ends with the start of one (``<|im_``): text that could complete a control token with
        what is put before or after it."""
        return self._special.control_edges(text)

    @property
    def control_token_chars(self) -> str:
        """The first and last characters of the control-token strings (``"<>"`` for most
        vocabularies): a text without any of them holds no control token, nor a piece of one."""
        return self._special.control_chars

    def pre_tokenize(self, text: str) -> List[str]:
        """Split text into pre-tokens with this vocabulary's regex sequence (gpt2 vocabularies;
        a llama vocabulary has no pre-tokenization and returns the text as one piece)."""
        return self._encoder.pre_tokenize(text)

    # -- decoding -----------------------------------------------------------------------------

    def _compute_token_bytes(self, token_id: int) -> bytes:
        text = self._tokens[token_id]
        ttype = self._types[token_id]
        if ttype == TokenType.BYTE:
            b = parse_byte_token(text)
            return bytes([b]) if b is not None else self._encoder.unparsed_byte_token_bytes(text)
        if ttype == TokenType.NORMAL:
            return self._encoder.normal_bytes(text)
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
        return (self.add_space_prefix and self._types[token_id] == TokenType.NORMAL
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
        return f"Tokenizer({self._encoder!r}, n_vocab={self.n_vocab})"
