"""SentencePiece-style (``llama``) vocabularies against the ``sentencepiece`` package.

A small BPE model is trained inside the test with sentencepiece's own trainer, with the settings
Llama 2 / TinyLlama use (byte fallback, identity normalization, whitespace kept), exported to
GGUF metadata by edgellama.tokenizer_convert and compared id for id."""

from __future__ import annotations

import io
import json
import random

import pytest

spm = pytest.importorskip("sentencepiece")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edgellama.tokenizer import Tokenizer, TokenizerError, TokenType  # noqa: E402
from edgellama.tokenizer_convert import tokenizer_metadata_from_hf  # noqa: E402
from tokenizer_corpus import ANY_TEXT, CORPUS, stream  # noqa: E402

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

WORDS = ("the of and to in is that it for on with as was he be by at this from or have an are not "
         "but what all were when we there can token tokenizer model running quickly").split()


def training_lines():
    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 15))) + ("  " * (i % 3))
             for i in range(3000)]
    extra = ["def add(a, b):    return a + b", "x = 12345 + 6789", "日本語のテキストと中文字符",
             "مرحبا بالعالم", "नमस्ते दुनिया", "naïve café résumé", "[INST] hi [/INST]"]
    lines += extra * 50
    lines += [c.replace("\n", " ") for c in CORPUS if c.strip()] * 3
    return lines


def train(add_dummy_prefix: bool, **extra) -> bytes:
    out = io.BytesIO()
    options = dict(
        model_type="bpe", vocab_size=700, byte_fallback=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, add_dummy_prefix=add_dummy_prefix,
        allow_whitespace_only_pieces=True, split_digits=True, character_coverage=0.9995,
        minloglevel=2,
    )
    options.update(extra)
    spm.SentencePieceTrainer.train(sentence_iterator=iter(training_lines()), model_writer=out, **options)
    return out.getvalue()


class Reference:
    def __init__(self, proto: bytes, name: str):
        self.sp = spm.SentencePieceProcessor(model_proto=proto)
        self.name = name

    def __repr__(self):
        return f"Reference({self.name})"

    def encode(self, text, add_bos=False):
        return self.sp.encode(text, add_bos=add_bos)

    def decode(self, ids):
        return self.sp.decode(ids)


@pytest.fixture(scope="module", params=[True, False], ids=["space-prefix", "no-prefix"])
def trained(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("spm")
    proto = train(request.param)
    (folder / "tokenizer.model").write_bytes(proto)
    (folder / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": True, "bos_token": "<s>",
                                                              "eos_token": "</s>", "unk_token": "<unk>"}))
    meta = tokenizer_metadata_from_hf(folder)
    return meta, Reference(proto, f"add_dummy_prefix={request.param}"), request.param


@pytest.fixture(scope="module")
def tok(trained):
    t = Tokenizer.from_metadata(trained[0])
    assert t.backend == "core"
    return t


@pytest.fixture(scope="module")
def py_tok(trained):
    return Tokenizer.from_metadata(trained[0], backend="python")


@pytest.fixture(scope="module")
def ref(trained):
    return trained[1]


def test_converted_metadata(trained, tok):
    meta, ref, prefix = trained
    assert meta["tokenizer.ggml.model"] == "llama"
    assert meta["tokenizer.ggml.add_space_prefix"] is prefix
    assert tok.add_space_prefix is prefix
    assert tok.n_vocab == ref.sp.get_piece_size() == 700
    assert (tok.bos_id, tok.eos_id, tok.unk_id) == (ref.sp.bos_id(), ref.sp.eos_id(), ref.sp.unk_id())
    types = meta["tokenizer.ggml.token_type"]
    assert types[0] == TokenType.UNKNOWN and types[1] == types[2] == TokenType.CONTROL
    assert types[3:259] == [TokenType.BYTE] * 256 and meta["tokenizer.ggml.tokens"][3 + 0x41] == "<0x41>"
    assert meta["tokenizer.ggml.scores"][300] == pytest.approx(ref.sp.get_score(300))
    assert tok.eos_id in tok.stop_ids
    assert tok.add_bos is True


@pytest.mark.parametrize("text", CORPUS)
def test_encode_matches_sentencepiece(tok, ref, text):
    assert tok.encode(text, add_bos=False) == ref.encode(text)
    assert tok.encode(text) == ref.encode(text, add_bos=True)


@SETTINGS
@given(text=ANY_TEXT)
def test_encode_matches_sentencepiece_hypothesis(tok, ref, text):
    assert tok.encode(text, add_bos=False) == ref.encode(text)


@pytest.mark.parametrize("text", CORPUS)
def test_core_matches_python(tok, py_tok, text):
    assert py_tok.backend == "python"
    assert tok.encode(text, special=True) == py_tok.encode(text, special=True)


@SETTINGS
@given(text=ANY_TEXT)
def test_core_matches_python_hypothesis(tok, py_tok, text):
    assert tok.encode(text, special=True) == py_tok.encode(text, special=True)


def test_long_text_matches_sentencepiece(tok, ref):
    text = "".join(CORPUS) * 30  # one piece: SentencePiece does not pre-tokenize
    assert tok.encode(text, add_bos=False) == ref.encode(text)


def test_byte_fallback(tok, ref):
    ids = tok.encode("😀", add_bos=False)
    assert [tok.token_text(i) for i in ids][-4:] == ["<0xF0>", "<0x9F>", "<0x98>", "<0x80>"]
    assert ids == ref.encode("😀")


def test_special_tokens_only_on_request(tok, ref):
    text = "hi</s><s>there"
    plain = tok.encode(text, add_bos=False)
    assert plain == ref.encode(text)  # sentencepiece never matches control pieces in text
    assert tok.eos_id not in plain and tok.bos_id not in plain
    special = tok.encode(text, add_bos=False, special=True)
    assert tok.eos_id in special and tok.bos_id in special
    assert tok.decode(special) == "hithere"


def test_unigram_and_normalizing_models_are_rejected(tmp_path):
    (tmp_path / "tokenizer.model").write_bytes(train(True, model_type="unigram", vocab_size=520))
    with pytest.raises(TokenizerError, match="unigram"):
        tokenizer_metadata_from_hf(tmp_path)
    (tmp_path / "tokenizer.model").write_bytes(train(True, normalization_rule_name="nmt_nfkc"))
    with pytest.raises(TokenizerError, match="normalization"):
        tokenizer_metadata_from_hf(tmp_path)


def test_missing_scores_is_an_error(trained):
    meta = {k: v for k, v in trained[0].items() if k != "tokenizer.ggml.scores"}
    with pytest.raises(TokenizerError, match="scores"):
        Tokenizer.from_metadata(meta)


# -- decoding ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", CORPUS)
def test_decode_matches_sentencepiece(tok, ref, text):
    ids = ref.encode(text, add_bos=True)
    assert tok.decode(ids) == ref.decode(ids) == expected_text(text)


@SETTINGS
@given(text=ANY_TEXT)
def test_roundtrip_hypothesis(tok, ref, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == ref.decode(ids) == expected_text(text)


def expected_text(text):
    """What decoding gives back: SentencePiece writes spaces as U+2581, so a literal U+2581 in the
    text comes back as a space (sentencepiece itself behaves so)."""
    return text.replace("\u2581", " ")


@pytest.mark.parametrize("text", CORPUS)
def test_stream_decoder(tok, text):
    ids = tok.encode(text, special=True)
    for render in (False, True):
        pieces = stream(tok, ids, render_special=render)
        assert "".join(pieces) == tok.decode(ids, render_special=render)
        assert not any("\ufffd" in p for p in pieces)
    assert "".join(stream(tok, tok.encode(text))) == expected_text(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=ANY_TEXT, ids=st.lists(st.integers(min_value=0, max_value=699), max_size=30))
def test_stream_decoder_hypothesis(tok, text, ids):
    pieces = stream(tok, tok.encode(text))
    assert "".join(pieces) == expected_text(text) and not any("\ufffd" in p for p in pieces)
    assert "".join(stream(tok, ids)) == tok.decode(ids)


@pytest.mark.parametrize("backend", ["core", "python"])
def test_byte_tokens_are_exactly_two_ascii_hex_digits(trained, backend):
    """A BYTE-typed token is a byte only as <0xAB> with two ASCII hex digits (as SentencePiece
    writes them). Other forms from a hostile file load, decode as their text and encode nothing:
    no negative byte (once a raw ValueError), no " A" or Arabic-Indic digits read as hex by int()."""
    meta = dict(trained[0])
    tokens = list(meta["tokenizer.ggml.tokens"])
    odd = {0x41: "<0x-1>", 0x42: "<0x B>", 0x0B: "<0x\u0663\u0663>", 0x43: "<0x+C>"}
    for byte, text in odd.items():
        tokens[3 + byte] = text
    meta["tokenizer.ggml.tokens"] = tokens
    tok = Tokenizer.from_metadata(meta, backend=backend)
    for byte, text in odd.items():
        assert tok.decode([3 + byte]) == text
    assert tok.decode([3 + 0x44]) == "D"  # an intact byte token still decodes to its byte
    assert tok.encode("\x0bABCD😀", add_bos=False) == Tokenizer.from_metadata(meta, backend="python").encode(
        "\x0bABCD😀", add_bos=False)
    for byte in odd:
        assert 3 + byte not in tok.encode("\x0bABCD😀 xyz", add_bos=False)
