"""Hugging Face tokenizer files -> GGUF tokenizer metadata.

:func:`tokenizer_metadata_from_hf` reads a folder as Hugging Face ships a tokenizer —
``tokenizer.json`` (a byte-level BPE: Llama 3, SmolLM2, gpt2) and/or ``tokenizer.model`` (a
SentencePiece BPE model: Llama 2, TinyLlama), plus ``tokenizer_config.json`` (chat template,
special tokens, ``add_bos_token``) — and returns the ``tokenizer.*`` keys a GGUF file stores,
as plain Python values. :class:`edgellama.tokenizer.Tokenizer.from_metadata` accepts the result
directly, and the export tool writes it into GGUF files.

Anything that edgellama's tokenizer would not reproduce exactly (an unknown pre-tokenizer, a
SentencePiece unigram model, a normalization rule other than identity) is a
:class:`~edgellama.tokenizer.TokenizerError`, never a silent approximation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from edgellama.pretokenizer import IGNORE_MERGES
from edgellama.tokenizer import PRE_TOKENIZERS, TokenizerError, TokenType

__all__ = ["tokenizer_metadata_from_hf", "detect_pre_tokenizer"]

# Texts of end-of-turn tokens, in order of preference, for tokenizer.ggml.eot_token_id.
_EOT_TEXTS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>")


def tokenizer_metadata_from_hf(folder: Union[str, Path]) -> Dict[str, Any]:
    """GGUF tokenizer metadata (``tokenizer.ggml.*`` and ``tokenizer.chat_template``) from a
    Hugging Face tokenizer folder.

    A byte-level BPE ``tokenizer.json`` gives ``tokenizer.ggml.model = "gpt2"`` with the
    pre-tokenizer detected from its ``pre_tokenizer`` section (``llama-bpe``, ``smollm``,
    ``gpt2``); otherwise a SentencePiece ``tokenizer.model`` (read with the ``sentencepiece``
    package) gives ``"llama"``. ``tokenizer_config.json`` (and ``chat_template.jinja``), when
    present, supply the chat template, the bos/eos/pad tokens and ``add_bos_token``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise TokenizerError(f"{folder} is not a folder")
    config = _read_json(folder / "tokenizer_config.json") or {}
    tj_path = folder / "tokenizer.json"
    sp_path = folder / "tokenizer.model"
    tj = _read_json(tj_path)

    meta: Dict[str, Any]
    if tj is not None and _is_byte_level_bpe(tj):
        meta = _from_tokenizer_json(tj, config, tj_path)
    elif sp_path.is_file() and _looks_like_sentencepiece(sp_path):
        meta = _from_sentencepiece(sp_path, config)
    elif tj is not None:
        raise TokenizerError(
            f"{tj_path}: not a byte-level BPE tokenizer (model {tj.get('model', {}).get('type')!r}) "
            "and there is no SentencePiece tokenizer.model beside it")
    else:
        raise TokenizerError(f"{folder} has neither tokenizer.json nor a SentencePiece tokenizer.model")

    template = _chat_template(folder, config)
    if template:
        meta["tokenizer.chat_template"] = template
    return meta


# ---------------------------------------------------------------------------------------------
# Byte-level BPE (tokenizer.json)

# The Llama 3 split pattern, as stored in tokenizer.json.
_LLAMA3_SPLIT = PRE_TOKENIZERS["llama-bpe"][0]


def _is_byte_level_bpe(tj: Mapping[str, Any]) -> bool:
    model = tj.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        return False
    return "ByteLevel" in json.dumps(tj.get("pre_tokenizer"))


def detect_pre_tokenizer(pre: Optional[Mapping[str, Any]]) -> str:
    """The ``tokenizer.ggml.pre`` name for a ``tokenizer.json`` ``pre_tokenizer`` section."""
    steps = list(pre.get("pretokenizers") or []) if pre and pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") if s else None for s in steps]

    def byte_level(step: Mapping[str, Any], use_regex: bool) -> bool:
        return (step.get("type") == "ByteLevel" and not step.get("add_prefix_space", False)
                and bool(step.get("use_regex", True)) == use_regex)

    if kinds == ["ByteLevel"] and byte_level(steps[0], True):
        return "gpt-2"  # the name other GGUF runtimes recognise
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and byte_level(steps[1], True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and byte_level(steps[1], False):
        split = steps[0]
        pattern = (split.get("pattern") or {}).get("Regex")
        if (pattern == _LLAMA3_SPLIT and str(split.get("behavior")).lower() == "isolated"
                and not split.get("invert")):
            return "llama-bpe"
    raise TokenizerError(
        "tokenizer.json has a pre-tokenizer edgellama does not reproduce "
        f"({json.dumps(pre)[:300]}); supported: {', '.join(sorted(PRE_TOKENIZERS))}")


def _from_tokenizer_json(tj: Mapping[str, Any], config: Mapping[str, Any], path: Path) -> Dict[str, Any]:
    if tj.get("normalizer") not in (None, {}):
        raise TokenizerError(f"{path}: a normalizer ({tj['normalizer'].get('type')}) is not supported "
                             "for byte-level BPE")
    pre = detect_pre_tokenizer(tj.get("pre_tokenizer"))
    model = tj["model"]
    if model.get("ignore_merges") and pre not in IGNORE_MERGES:
        # GGUF has no flag for it: runtimes take it from the pre-tokenizer's name.
        raise TokenizerError(f"{path}: \"ignore_merges\": true with the {pre!r} pre-tokenizer cannot be written to "
                             f"GGUF (only {', '.join(sorted(IGNORE_MERGES))} implies it)")
    vocab: Mapping[str, int] = model.get("vocab") or {}
    added: List[Mapping[str, Any]] = list(tj.get("added_tokens") or [])
    n = max([int(i) for i in vocab.values()] + [int(a["id"]) for a in added] + [-1]) + 1
    if n == 0:
        raise TokenizerError(f"{path}: empty vocabulary")
    tokens: List[Optional[str]] = [None] * n
    types = [TokenType.UNUSED] * n
    for text, i in vocab.items():
        tokens[int(i)] = text
        types[int(i)] = TokenType.NORMAL
    for a in added:
        i = int(a["id"])
        tokens[i] = a["content"]
        types[i] = TokenType.CONTROL if a.get("special") else TokenType.USER_DEFINED
    for i, t in enumerate(tokens):
        if t is None:  # a hole in the id space
            tokens[i] = f"[PAD{i}]"
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]

    ids = {t: i for i, t in reversed(list(enumerate(tokens)))}  # first occurrence wins
    first_special, last_special = _template_specials(tj.get("post_processor"))
    bos = _token_content(config.get("bos_token")) or first_special
    eos = _token_content(config.get("eos_token")) or last_special
    meta: Dict[str, Any] = {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": pre,
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": [int(t) for t in types],
        "tokenizer.ggml.merges": merges,
        "tokenizer.ggml.add_bos_token": bool(config.get("add_bos_token", first_special is not None)),
        "tokenizer.ggml.add_eos_token": bool(config.get("add_eos_token", last_special is not None)),
        "tokenizer.ggml.add_space_prefix": False,
    }
    _put_id(meta, "bos", bos, ids)
    _put_id(meta, "eos", eos, ids)
    _put_id(meta, "padding", _token_content(config.get("pad_token")), ids)
    _put_id(meta, "unknown", model.get("unk_token") or _token_content(config.get("unk_token")), ids)
    _put_id(meta, "eot", next((t for t in _EOT_TEXTS if t in ids), None), ids)
    return meta


def _template_specials(post: Optional[Mapping[str, Any]]) -> Tuple[Optional[str], Optional[str]]:
    """The special tokens a TemplateProcessing post-processor puts before / after a single text."""
    if not post:
        return None, None
    if post.get("type") == "Sequence":
        for p in post.get("processors") or []:
            found = _template_specials(p)
            if found != (None, None):
                return found
        return None, None
    if post.get("type") != "TemplateProcessing":
        return None, None
    single = post.get("single") or []
    first = single[0].get("SpecialToken", {}).get("id") if single else None
    last = single[-1].get("SpecialToken", {}).get("id") if len(single) > 1 else None
    return first, last


# ---------------------------------------------------------------------------------------------
# SentencePiece (tokenizer.model)


def _looks_like_sentencepiece(path: Path) -> bool:
    # Llama 3 ships a tiktoken rank file under the same name: base64 lines, not a protobuf.
    with open(path, "rb") as f:
        head = f.read(1)
    return head == b"\x0a"  # field 1 (pieces), length-delimited


def _from_sentencepiece(path: Path, config: Mapping[str, Any]) -> Dict[str, Any]:
    try:
        import sentencepiece
    except ImportError:  # pragma: no cover - depends on the environment
        raise TokenizerError("converting a SentencePiece tokenizer.model needs the 'sentencepiece' package") from None
    try:
        sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
    except Exception as exc:  # sentencepiece raises OSError/RuntimeError for bad files
        raise TokenizerError(f"{path}: not a SentencePiece model: {exc}") from exc
    spec = _read_sentencepiece_spec(path.read_bytes())
    if spec["model_type"] != 2:
        kind = {1: "unigram", 3: "word", 4: "char"}.get(spec["model_type"], str(spec["model_type"]))
        raise TokenizerError(f"{path}: a SentencePiece {kind} model; edgellama supports BPE models")
    if spec["normalizer"] not in ("identity", "") or spec["has_charsmap"]:
        raise TokenizerError(f"{path}: SentencePiece normalization {spec['normalizer']!r} is not supported "
                             "(edgellama reproduces identity normalization, as Llama 2 uses)")
    if spec["remove_extra_whitespaces"]:
        raise TokenizerError(f"{path}: remove_extra_whitespaces is not supported (Llama 2 turns it off)")
    n = sp.get_piece_size()
    if len(spec["types"]) != n:
        raise TokenizerError(f"{path}: {len(spec['types'])} pieces in the file, sentencepiece reports {n}")
    tokens = [sp.id_to_piece(i) for i in range(n)]
    scores = [float(sp.get_score(i)) for i in range(n)]
    ids = {t: i for i, t in reversed(list(enumerate(tokens)))}

    def opt(i: int) -> Optional[int]:
        return i if i >= 0 else None

    meta: Dict[str, Any] = {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.pre": "default",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.scores": scores,
        "tokenizer.ggml.token_type": [int(t) for t in spec["types"]],
        "tokenizer.ggml.add_bos_token": bool(config.get("add_bos_token", True)),
        "tokenizer.ggml.add_eos_token": bool(config.get("add_eos_token", False)),
        "tokenizer.ggml.add_space_prefix": bool(spec["add_dummy_prefix"]),
    }
    for key, sp_id, cfg in (("bos", sp.bos_id(), "bos_token"), ("eos", sp.eos_id(), "eos_token"),
                            ("unknown", sp.unk_id(), "unk_token"), ("padding", sp.pad_id(), "pad_token")):
        text = _token_content(config.get(cfg))
        if text is not None:
            _put_id(meta, key, text, ids)
        elif opt(sp_id) is not None:
            meta[f"tokenizer.ggml.{key}_token_id"] = sp_id
    _put_id(meta, "eot", next((t for t in _EOT_TEXTS if t in ids), None), ids)
    return meta


def _varint(data: bytes, pos: int) -> Tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise TokenizerError("truncated SentencePiece model")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes):
    """(field number, wire type, value) of a protobuf message: ints for varints/fixed, bytes for
    length-delimited fields."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = int.from_bytes(data[pos:pos + 8], "little"), pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = int.from_bytes(data[pos:pos + 4], "little"), pos + 4
        else:
            raise TokenizerError(f"unsupported protobuf wire type {wire} in a SentencePiece model")
        yield field, wire, value


def _read_sentencepiece_spec(data: bytes) -> Dict[str, Any]:
    """The parts of a SentencePiece ModelProto the sentencepiece Python API does not expose:
    piece types (user-defined included), model type and normalizer settings."""
    spec: Dict[str, Any] = {"types": [], "model_type": 1, "normalizer": "", "has_charsmap": False,
                            "add_dummy_prefix": True, "remove_extra_whitespaces": True}
    for field, _, value in _fields(data):
        if field == 1:  # SentencePiece piece
            ptype = TokenType.NORMAL
            for f, _, v in _fields(value):
                if f == 3:
                    ptype = int(v)
            spec["types"].append(ptype)
        elif field == 2:  # TrainerSpec
            for f, _, v in _fields(value):
                if f == 3:
                    spec["model_type"] = int(v)
        elif field == 3:  # NormalizerSpec
            for f, _, v in _fields(value):
                if f == 1:
                    spec["normalizer"] = v.decode("utf-8", errors="replace")
                elif f == 2:
                    spec["has_charsmap"] = len(v) > 0
                elif f == 3:
                    spec["add_dummy_prefix"] = bool(v)
                elif f == 4:
                    spec["remove_extra_whitespaces"] = bool(v)
    return spec


# ---------------------------------------------------------------------------------------------
# Shared


def _read_json(path: Path) -> Optional[Dict[str, Any]]:
    if not path.is_file():
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise TokenizerError(f"cannot read {path}: {exc}") from exc


def _token_content(value: Any) -> Optional[str]:
    """tokenizer_config.json writes a token as a string or as {"content": ...}."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def _put_id(meta: Dict[str, Any], key: str, text: Optional[str], ids: Mapping[str, int]) -> None:
    if text is None:
        return
    if text not in ids:
        raise TokenizerError(f"the {key} token {text!r} is not in the vocabulary")
    meta[f"tokenizer.ggml.{key}_token_id"] = ids[text]


def _chat_template(folder: Path, config: Mapping[str, Any]) -> Optional[str]:
    template = config.get("chat_template")
    if isinstance(template, list):  # [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, Mapping)}
        template = named.get("default") or next(iter(named.values()), None)
    if not template and (folder / "chat_template.jinja").is_file():
        template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    return template or None

