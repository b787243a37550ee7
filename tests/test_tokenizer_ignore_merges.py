"""Llama 3's BPE takes a pre-token that is a token whole as that token, without merging (Meta's
tokenizer.json: "ignore_merges": true; llama.cpp: the llama-bpe pre-tokenizer). Checked against
llama.cpp's own test vectors for its Llama 3 vocabulary (ggml-vocab-llama-bpe.gguf .inp/.out, from
the vendored tree of the llama_cpp_python sdist), on both backends, and against HF tokenizers with
the flag set (tests/test_tokenizer_llama3.py's reference)."""

import json

import gguf
import pytest

from edgellama.tokenizer import Tokenizer, TokenizerError
from edgellama.tokenizer_convert import tokenizer_metadata_from_hf

SEPARATOR = "\n__ggml_vocab_test__\n"


@pytest.fixture(scope="module")
def vectors(llama_bpe_vectors):
    reader = gguf.GGUFReader(str(llama_bpe_vectors["vocab"]))
    meta = {name: f.contents() for name, f in reader.fields.items() if name.startswith("tokenizer.")}
    texts = llama_bpe_vectors["inp"].read_text(encoding="utf-8").split(SEPARATOR)
    ids = [[int(t) for t in line.split()] for line in llama_bpe_vectors["out"].read_text().split("\n")]
    return meta, list(zip(texts, ids))  # zip stops at the last text; the .out ends with a newline


@pytest.mark.parametrize("backend", ["core", "python"])
def test_llama_cpp_test_vectors(vectors, backend):
    meta, cases = vectors
    assert meta["tokenizer.ggml.pre"] == "llama-bpe" and len(cases) >= 40
    tok = Tokenizer.from_metadata(meta, backend=backend)
    assert [tok.encode(text, add_bos=False) for text, _ in cases] == [want for _, want in cases]


def test_a_whole_pre_token_is_one_token(vectors):
    tok = Tokenizer.from_metadata(vectors[0])
    assert tok.encode("Cửa Việt", add_bos=False) == [34, 91163, 101798]  # not [34, 91163, 11655, 26298, 83]


def test_the_converter_reads_the_flag(llama3_tokenizer_dir, tmp_path):
    tj = json.loads((llama3_tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8"))
    tj["model"]["ignore_merges"] = True
    (tmp_path / "tokenizer.json").write_text(json.dumps(tj), encoding="utf-8")
    assert tokenizer_metadata_from_hf(tmp_path)["tokenizer.ggml.pre"] == "llama-bpe"  # which implies it
    tj["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    (tmp_path / "tokenizer.json").write_text(json.dumps(tj), encoding="utf-8")
    with pytest.raises(TokenizerError, match="ignore_merges"):
        tokenizer_metadata_from_hf(tmp_path)  # no GGUF pre-tokenizer says so: refused, not silently dropped
