"""Tests of edgellama.tokenizer against the real SmolLM2 GGUF vocabulary.

The independent reference is the HF ``tokenizers`` package, built from the same GGUF tokens and
merges, so any difference in pre-tokenization or merge order shows up as differing ids.
"""

from __future__ import annotations

import pytest

gguf = pytest.importorskip("gguf")
hf = pytest.importorskip("tokenizers")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from tokenizers import AddedToken, decoders, models, pre_tokenizers  # noqa: E402

from edgellama.errors import EdgellamaError  # noqa: E402
from tokenizer_corpus import ANY_TEXT, CORPUS, stream  # noqa: E402
from edgellama.tokenizer import (  # noqa: E402
    BYTE_TO_CHAR,
    PRE_TOKENIZERS,
    StreamDecoder,
    Tokenizer,
    TokenizerError,
    TokenType,
)



def read_tokenizer_metadata(path) -> dict:
    """GGUF tokenizer.* fields as a plain dict, as the loader passes them."""
    reader = gguf.GGUFReader(str(path))
    return {name: field.contents() for name, field in reader.fields.items()
            if name.startswith("tokenizer.")}


@pytest.fixture(scope="module")
def meta(smollm2_tokenizer_meta):
    return smollm2_tokenizer_meta


@pytest.fixture(scope="module")
def tok(meta):
    return Tokenizer.from_metadata(meta)


def build_reference(meta, pre_tokenizer, name):
    """HF tokenizers BPE over the same GGUF vocabulary with the given pre-tokenizer."""
    tokens = meta["tokenizer.ggml.tokens"]
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = [tuple(m.split(" ")) for m in meta["tokenizer.ggml.merges"]]
    ref = hf.Tokenizer(models.BPE(vocab, merges))
    ref.pre_tokenizer = pre_tokenizer
    ref.decoder = decoders.ByteLevel()
    ref.add_special_tokens([
        AddedToken(t, special=True, normalized=False)
        for t, tt in zip(tokens, meta["tokenizer.ggml.token_type"]) if tt == TokenType.CONTROL
    ])
    return Reference(ref, name)


class Reference:
    """The HF tokenizer with a short repr (hypothesis prints fixtures on failure)."""

    def __init__(self, hf_tokenizer, name):
        self.hf = hf_tokenizer
        self.name = name

    def __repr__(self):
        return f"Reference({self.name})"

    def encode(self, *a, **kw):
        return self.hf.encode(*a, **kw)

    def decode(self, *a, **kw):
        return self.hf.decode(*a, **kw)


def ref_encode(ref, text, special):
    ref.hf.encode_special_tokens = not special
    return ref.encode(text, add_special_tokens=False).ids


@pytest.fixture(scope="module")
def ref(meta):
    """SmolLM2's own pre-tokenizer: every digit apart, then byte-level with the gpt2 regex."""
    return build_reference(meta, pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ]), "smollm")


# Other pre-tokenizers, checked with the same vocabulary (the merges don't care which regex
# produced the pieces, so any difference is a pre-tokenization difference).
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


@pytest.fixture(scope="module", params=["gpt2", "llama-bpe"])
def other_pre(request, meta):
    name = request.param
    if name == "gpt2":
        pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        pre = pre_tokenizers.Sequence([
            pre_tokenizers.Split(hf.Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    ours = Tokenizer.from_metadata({**meta, "tokenizer.ggml.pre": name})
    return ours, build_reference(meta, pre, name)




# -- metadata / construction ------------------------------------------------------------------


def test_metadata_basics(tok, meta):
    assert meta["tokenizer.ggml.model"] == "gpt2"
    assert meta["tokenizer.ggml.pre"] == "smollm"
    assert tok.n_vocab == len(meta["tokenizer.ggml.tokens"]) == 49152
    assert tok.bos_id == 1 and tok.token_text(1) == "<|im_start|>"
    assert tok.eos_id == 2 and tok.token_text(2) == "<|im_end|>"
    # eos (<|im_end|>) and the <|endoftext|> control token.
    assert tok.stop_ids == frozenset({0, 2})


def test_byte_map():
    assert len(set(BYTE_TO_CHAR)) == 256
    assert BYTE_TO_CHAR[ord("a")] == "a" and BYTE_TO_CHAR[ord("!")] == "!"
    assert BYTE_TO_CHAR[ord(" ")] == "\u0120"  # 'Ġ'
    assert BYTE_TO_CHAR[ord("\n")] == "\u010a"  # 'Ċ'
    assert BYTE_TO_CHAR[0] == "\u0100"
    assert BYTE_TO_CHAR[127] == "\u0121"  # after the 33 control/space bytes 0-32
    assert BYTE_TO_CHAR[173] == "\u0143"  # soft hyphen is the 68th (last) remapped byte


@pytest.mark.parametrize("model", ["bert", "t5", "rwkv", None])
def test_unknown_model_raises(meta, model):
    bad = {**meta, "tokenizer.ggml.model": model}
    with pytest.raises(TokenizerError, match="tokenizer.ggml.model"):
        Tokenizer.from_metadata(bad)


@pytest.mark.parametrize("pre", ["qwen2", "default", "deepseek-llm", "SMOLLM"])
def test_unknown_pre_raises(meta, pre):
    with pytest.raises(TokenizerError, match=f"tokenizer.ggml.pre '{pre}'"):
        Tokenizer.from_metadata({**meta, "tokenizer.ggml.pre": pre})


def test_missing_pre_raises(meta):
    bad = dict(meta)
    del bad["tokenizer.ggml.pre"]
    with pytest.raises(TokenizerError, match="tokenizer.ggml.pre"):
        Tokenizer.from_metadata(bad)


def test_error_hierarchy():
    assert issubclass(TokenizerError, EdgellamaError)
    assert issubclass(TokenizerError, ValueError)


def test_supported_pre_names():
    assert set(PRE_TOKENIZERS) == {"gpt-2", "gpt2", "llama-bpe", "smollm"}
    assert PRE_TOKENIZERS["gpt-2"] == PRE_TOKENIZERS["gpt2"]


# -- encode against the reference ---------------------------------------------------------------


@pytest.mark.parametrize("text", CORPUS)
def test_encode_matches_reference(tok, ref, text):
    assert tok.encode(text) == ref_encode(ref, text, special=False)
    assert tok.encode(text, special=True) == ref_encode(ref, text, special=True)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=ANY_TEXT)
def test_encode_matches_reference_hypothesis(tok, ref, text):
    assert tok.encode(text) == ref_encode(ref, text, special=False)
    assert tok.encode(text, special=True) == ref_encode(ref, text, special=True)


@pytest.mark.parametrize("text", CORPUS)
def test_other_pre_tokenizers_match_reference(other_pre, text):
    ours, ref = other_pre
    assert ours.encode(text) == ref_encode(ref, text, special=False)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=ANY_TEXT)
def test_other_pre_tokenizers_match_reference_hypothesis(other_pre, text):
    ours, ref = other_pre
    assert ours.encode(text) == ref_encode(ref, text, special=False)


def test_pre_tokenize_shapes(tok, meta):
    assert tok.pre_tokenize("abc 123") == ["abc", " ", "1", "2", "3"]
    llama = Tokenizer.from_metadata({**meta, "tokenizer.ggml.pre": "llama-bpe"})
    assert llama.pre_tokenize("x 1234567 I'LL") == ["x", " ", "123", "456", "7", " I", "'LL"]
    gpt2 = Tokenizer.from_metadata({**meta, "tokenizer.ggml.pre": "gpt2"})
    # "\n\n" before a letter: \s+(?!\S) takes the first newline, \s+ the second.
    assert gpt2.pre_tokenize("x 1234567\n\nend  ") == ["x", " 1234567", "\n", "\n", "end", "  "]
    for t in (tok, llama, gpt2):
        for text in CORPUS:
            assert "".join(t.pre_tokenize(text)) == text


# -- special tokens ------------------------------------------------------------------------------


def test_special_true_vs_false(tok):
    text = "<|im_start|>user\nhi<|im_end|>"
    with_special = tok.encode(text, special=True)
    assert with_special[0] == 1 and with_special[-1] == 2
    assert with_special[1:-1] == tok.encode("user\nhi")
    plain = tok.encode(text, special=False)
    assert 1 not in plain and 2 not in plain
    assert len(plain) > len(with_special)
    assert tok.decode(plain) == text
    # Control tokens are skipped by default and rendered on request.
    assert tok.decode(with_special) == "user\nhi"
    assert tok.decode(with_special, render_special=True) == text


def test_add_bos(tok, meta):
    assert meta["tokenizer.ggml.add_bos_token"] is False
    assert tok.encode("hi") == tok.encode("hi", add_bos=False)
    assert tok.encode("hi", add_bos=True) == [tok.bos_id] + tok.encode("hi")
    with_bos = Tokenizer.from_metadata({**meta, "tokenizer.ggml.add_bos_token": True})
    assert with_bos.encode("hi")[0] == with_bos.bos_id
    absent = {k: v for k, v in meta.items() if k != "tokenizer.ggml.add_bos_token"}
    assert Tokenizer.from_metadata(absent).encode("hi") == tok.encode("hi")


def representable(tok, text):
    """What decode(encode(text)) must give: ``text`` with the bytes the vocabulary has no token
    for removed (encode drops them, as the reference does). Only ASCII 0x04, 0x06, 0x13, 0x14,
    0x16, 0x1D and the unassigned planes 4-11 are affected; a dropped lead byte leaves its
    continuation bytes, which decode to U+FFFD."""
    data = bytes(b for b in text.encode("utf-8") if b not in tok.missing_bytes)
    return data.decode("utf-8", errors="replace")


def fully_representable(tok, text):
    return not tok.missing_bytes.intersection(text.encode("utf-8"))


def test_missing_bytes_are_dropped(tok, ref):
    # SmolLM2's vocabulary lacks 21 byte tokens; encode must not replace them by the "unknown"
    # id 0, which is the control token <|endoftext|> (a stop token).
    assert tok.missing_bytes == frozenset(
        {4, 6, 19, 20, 22, 29, 192, 193, 241, 242, 245, 246, 247, 248, 249, 250, 251, 252, 253, 254, 255})
    for text in ["a\x04b", "x\x1d\x1cy", "plane 4: \U00040000!", "\U000bffff"]:
        ids = tok.encode(text)
        assert ids == ref_encode(ref, text, special=False)
        assert tok.unk_id not in ids
        assert tok.decode(ids) == representable(tok, text)


# -- decode ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", CORPUS)
def test_roundtrip(tok, ref, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == representable(tok, text)
    assert tok.decode(ids) == ref.decode(ids, skip_special_tokens=True)
    assert tok.decode(tok.encode(text, special=True), render_special=True) == representable(tok, text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=ANY_TEXT)
def test_roundtrip_hypothesis(tok, text):
    expected = representable(tok, text)
    assert tok.decode(tok.encode(text)) == expected
    assert tok.decode(tok.encode(text, special=True), render_special=True) == expected


def test_token_bytes(tok):
    (space_the,) = tok.encode(" the")
    assert tok.token_bytes(space_the) == b" the"
    (nl,) = tok.encode("\n")
    assert tok.token_bytes(nl) == b"\n"
    assert tok.token_bytes(2) == b"<|im_end|>"
    # Token 'ð' is the first byte of every 4-byte UTF-8 sequence, e.g. emoji.
    ids = tok.encode("😀")
    assert b"".join(tok.token_bytes(i) for i in ids) == "😀".encode()
    with pytest.raises(TokenizerError):
        tok.token_bytes(tok.n_vocab)


def test_decode_invalid_utf8_replaced(tok):
    ids = tok.encode("😀")
    assert len(ids) > 1
    assert tok.decode(ids[:1]) == "\ufffd"


# -- streaming decode ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", CORPUS)
def test_stream_decoder(tok, text):
    ids = tok.encode(text, special=True)
    pieces = stream(tok, ids)
    assert "".join(pieces) == tok.decode(ids)
    assert not any("\ufffd" in p for p in pieces)
    pieces = stream(tok, ids, render_special=True)
    assert "".join(pieces) == tok.decode(ids, render_special=True) == representable(tok, text)


def test_stream_decoder_holds_split_emoji(tok):
    text = "hi 👨‍👩‍👧 ok"
    ids = tok.encode(text)
    dec = StreamDecoder(tok)
    pieces = [dec.push(i) for i in ids]
    # The family emoji spans several tokens whose bytes are not whole characters.
    assert any(p == "" for p in pieces)
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) + dec.flush() == text


def test_stream_flush_incomplete_tail(tok):
    ids = tok.encode("😀")
    dec = StreamDecoder(tok)
    assert dec.push(ids[0]) == ""
    assert dec.flush() == "\ufffd" == tok.decode(ids[:1])
    # After a flush the decoder starts clean.
    assert "".join(dec.push(i) for i in ids) + dec.flush() == "😀"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=ANY_TEXT)
def test_stream_decoder_hypothesis_text(tok, text):
    ids = tok.encode(text, special=True)
    pieces = stream(tok, ids)
    assert "".join(pieces) == tok.decode(ids)
    if fully_representable(tok, text):
        assert not any("\ufffd" in p for p in pieces)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(st.integers(min_value=0, max_value=49151), max_size=40))
def test_stream_decoder_hypothesis_arbitrary_ids(tok, ids):
    # Arbitrary ids may form invalid UTF-8; the concatenation still equals decode().
    for render in (False, True):
        assert "".join(stream(tok, ids, render_special=render)) == tok.decode(ids, render_special=render)


# -- the C++ merge loop against the Python one -------------------------------------------------


@pytest.fixture(scope="module", params=["smollm", "gpt2", "llama-bpe"])
def backends(request, meta):
    m = {**meta, "tokenizer.ggml.pre": request.param}
    core, python = Tokenizer.from_metadata(m), Tokenizer.from_metadata(m, backend="python")
    assert (core.backend, python.backend) == ("core", "python")
    return core, python


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=ANY_TEXT)
def test_core_matches_python_hypothesis(backends, text):
    core, python = backends
    assert core.encode(text, special=True) == python.encode(text, special=True)


def test_core_matches_python_corpus(backends):
    core, python = backends
    for text in CORPUS + ["".join(CORPUS) * 10]:
        assert core.encode(text) == python.encode(text)

