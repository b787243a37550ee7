"""The tokenizer of the C ABI (edgellama_tokenize / edgellama_detokenize / edgellama_token_*), which
is C++ only (csrc/tokenizer/gguf_tokenizer.cpp: its own pre-tokenizer scanners, special-token cutting
and metadata checks), against the Python Tokenizer (edgellama.tokenizer, itself held to HF
tokenizers, sentencepiece and llama.cpp's vectors) and, where the Python tests have them, against HF
tokenizers and sentencepiece directly.

Vocabularies: SmolLM2 (the real model file: gpt2 BPE, ``smollm`` pre-tokenizer), Llama 3.2
(``llama-bpe``, ignore_merges) and a trained SentencePiece BPE (``llama``, with and without the space
prefix), each written into a tiny model so the C ABI can load it.
"""

from __future__ import annotations

import json
import math
import random
import threading
import unicodedata

import pytest
import regex

from edgellama import capi
from edgellama.gguf_header import read_gguf_header
from edgellama.tokenizer import Tokenizer, TokenType
from edgellama.tokenizer_convert import tokenizer_metadata_from_hf
from tiny_models import DROP, tiny_vocab, write_tiny_llama
from tokenizer_corpus import CORPUS

pytest.importorskip("cffi")

VOCABS = ("smollm2", "llama3", "spm-prefix", "spm-no-prefix")

# Letters newer than Python's Unicode tables (U+105C0, U+10D40: Unicode 16), which the C++ tables
# (generated from the `regex` package) and the Python pre-tokenizer (matching with `regex`) both
# call letters; only when the installed `regex` knows them.
NEWER_LETTERS = [c for c in ("\U000105c0", "\U00010d40") if regex.fullmatch(r"\p{L}", c)]
# Pieces that exercise the pre-tokenizers' edges: whitespace runs and kinds, contractions in every
# case (and U+017F, which (?i) folds to s), digits of several scripts, control-token strings and
# fragments of them.
PIECES = [" ", "  ", "\n", "\r\n", "\r", "\t", "\u00a0", "\u3000", "\x1c", "\x85", "\u2028", "'s", "'LL", "'\u017f",
          "'", "'Re", "'vE", "'d've", "''", "1", "234", "12345", " 12", "\u0663", "\u00bd", "\u216b", "a", "Ab", "\u00e9",
          "e\u0301", "\u65e5\u672c", "\U0001f600", "\U0001f468\u200d\U0001f469\u200d\U0001f467", "!", "?!", ".", "$",
          " $", "(", ")\n", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|", "|>", "K", "<|eot_id|>",
          "<|begin_of_text|>", "[INST]", "</s>", "<s>", "<unk>", "\u2581", "the", " the", "ing", "\u0645\u0631\u062d\u0628\u0627",
          "\u0928\u092e\u0938\u094d\u0924\u0947", "\x00", "\x04", "  \n", " \t\n ", "\u01c5"] + NEWER_LETTERS


def stable_char(c: int) -> str:
    """chr(c), or a space for a surrogate or a code point unassigned in Python's Unicode tables: the
    C++ tables are fixed when generated, while the Python side follows the installed `regex`, and
    the two may know different Unicode versions (they agree on everything Python knows)."""
    if 0xD800 <= c <= 0xDFFF or unicodedata.category(chr(c)) == "Cn":
        return " "
    return chr(c)


def generated_texts(n: int, seed: int):
    """Deterministic text: runs of the pieces above, random code points of every plane, and ASCII
    soup of spaces, apostrophes and contraction letters."""
    rng = random.Random(seed)
    texts = []
    for k in range(n):
        if k % 3 == 0:
            texts.append("".join(rng.choice(PIECES) for _ in range(rng.randint(1, 25))))
        elif k % 3 == 1:
            points = [rng.choice((rng.randint(0, 0x7F), rng.randint(0x80, 0x3000), rng.randint(0, 0x10FFFF)))
                      for _ in range(rng.randint(1, 30))]
            texts.append("".join(map(stable_char, points)))
        else:
            texts.append("".join(rng.choice(" \t\n\r'aAsSlLdD1234.,!?\u017f ") for _ in range(rng.randint(1, 40))))
    return texts


TEXTS = list(CORPUS) + generated_texts(240, seed=0) + ["".join(CORPUS) * 3]


def tokenizer_overrides(meta: dict) -> dict:
    """The tokenizer keys of meta, as write_tiny_llama overrides (the tiny model's n_vocab follows)."""
    return {k: v for k, v in meta.items() if k.startswith("tokenizer.") and k != "tokenizer.chat_template"}


def write_vocab_model(path, meta: dict):
    keys = tokenizer_overrides(meta)
    return write_tiny_llama(path, n_vocab=len(keys["tokenizer.ggml.tokens"]), n_embd=32, n_head=2, n_head_kv=1,
                            n_ff=32, n_layer=1, weight_type="Q8_0", overrides=keys)


class Vocab:
    """One vocabulary: the C ABI's model, the Python reference tokenizer built from the same file's
    metadata, and an independent library's encode(text, special, add_bos) where there is one."""

    def __init__(self, name, path, reference=None):
        self.name = name
        meta = {k: v for k, v in read_gguf_header(path).metadata.items() if k.startswith("tokenizer.")}
        self.tok = Tokenizer.from_metadata(meta)
        self.model = capi.Model(path, n_threads=1, n_ctx=64)
        self.reference = reference

    def __repr__(self):
        return f"Vocab({self.name})"


def spm_folder(tmp_path_factory, add_dummy_prefix: bool):
    from test_tokenizer_spm import train

    folder = tmp_path_factory.mktemp("spm")
    proto = train(add_dummy_prefix)
    (folder / "tokenizer.model").write_bytes(proto)
    (folder / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": True, "bos_token": "<s>",
                                                              "eos_token": "</s>", "unk_token": "<unk>"}))
    return folder, proto


def llama3_reference(folder, tmp_path_factory):
    """HF tokenizers with Meta's tokenizer.json made to say "ignore_merges": true (as in
    test_tokenizer_llama3.py)."""
    hf = pytest.importorskip("tokenizers")
    tj = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    tj["model"]["ignore_merges"] = True
    path = tmp_path_factory.mktemp("meta-tokenizer") / "tokenizer.json"
    path.write_text(json.dumps(tj), encoding="utf-8")
    tokenizer = hf.Tokenizer.from_file(str(path))

    def encode(text, special, add_bos):
        tokenizer.encode_special_tokens = not special
        return tokenizer.encode(text, add_special_tokens=add_bos).ids

    return encode


@pytest.fixture(scope="module", params=VOCABS)
def vocab(request, tmp_path_factory):
    name = request.param
    if name == "smollm2":
        v = Vocab(name, request.getfixturevalue("smollm2_path"))
    elif name == "llama3":
        folder = request.getfixturevalue("llama3_tokenizer_dir")
        path = write_vocab_model(tmp_path_factory.mktemp("llama3") / "llama3.gguf", tokenizer_metadata_from_hf(folder))
        v = Vocab(name, path, llama3_reference(folder, tmp_path_factory))
    else:
        spm = pytest.importorskip("sentencepiece")
        folder, proto = spm_folder(tmp_path_factory, name == "spm-prefix")
        path = write_vocab_model(folder / "model.gguf", tokenizer_metadata_from_hf(folder))
        sp = spm.SentencePieceProcessor(model_proto=proto)
        # sentencepiece has no special-token parsing: it is the reference for plain text only.
        v = Vocab(name, path, lambda text, special, add_bos: None if special else sp.encode(text, add_bos=add_bos))
    yield v
    v.model.close()


def python_encode(tok: Tokenizer, text: str, add_bos: bool, special: bool):
    """What EDGELLAMA_TOKENIZE_ADD_SPECIAL means: the file's add_bos_token and add_eos_token."""
    default = None if add_bos else False
    return tok.encode(text, add_bos=default, add_eos=default, special=special)


def python_bytes(tok: Tokenizer, ids, special: bool) -> bytes:
    """The bytes Tokenizer.decode turns into text (before it replaces ill-formed UTF-8)."""
    out, first = [], True
    for i in ids:
        data = tok.piece_bytes(i, special)
        if first and data:
            first = False
            if tok.strips_leading_space(i):
                data = data[1:]
        out.append(data)
    data = b"".join(out)
    assert data.decode("utf-8", "replace") == tok.decode(ids, render_special=special)
    return data


# -- the vocabulary ---------------------------------------------------------------------------------

def test_vocabulary_queries(vocab):
    tok, model = vocab.tok, vocab.model
    none = lambda x: -1 if x is None else x  # noqa: E731
    assert (model.bos, model.eos, model.eot) == (none(tok.bos_id), none(tok.eos_id), none(tok.eot_id))
    assert model.add_bos == tok.add_bos
    n = tok.n_vocab
    assert [i for i in range(n) if model.is_end(i)] == sorted(tok.stop_ids)
    assert [i for i in range(n) if model.is_control(i)] == [i for i in range(n) if tok.token_type(i) == TokenType.CONTROL]
    step = max(1, n // 2000)
    for i in list(range(0, n, step)) + sorted(tok.stop_ids) + [n - 1]:
        assert model.token_text(i) == tok.token_text(i)
    for bad in (-1, n, 1 << 30):
        assert not model.is_end(bad) and not model.is_control(bad)
        with pytest.raises(capi.CapiError) as info:
            model.token_text(bad)
        assert info.value.status == model.lib.EDGELLAMA_ERR_INVALID_ARGUMENT


# -- text to tokens ---------------------------------------------------------------------------------

@pytest.mark.parametrize("special", [False, True], ids=["plain", "special"])
@pytest.mark.parametrize("add_bos", [False, True], ids=["no-bos", "bos"])
def test_tokenize_matches_python(vocab, add_bos, special):
    mismatches = [text for text in TEXTS if vocab.model.tokenize(text, add_special=add_bos, special=special)
                  != python_encode(vocab.tok, text, add_bos, special)]
    assert not mismatches, f"{len(mismatches)} of {len(TEXTS)} texts differ, e.g. {mismatches[:3]!r}"


@pytest.mark.parametrize("special", [False, True], ids=["plain", "special"])
def test_tokenize_matches_reference_library(vocab, special):
    if vocab.reference is None or vocab.reference("", special, False) is None:
        pytest.skip(f"{vocab.name}: no independent reference for special={special}")
    for add_bos in (False, True):
        for text in CORPUS:
            assert vocab.model.tokenize(text, add_special=add_bos, special=special) == \
                vocab.reference(text, special, add_bos), text


def test_special_strings_become_control_tokens_only_when_asked(vocab):
    tok, model = vocab.tok, vocab.model
    controls = [i for i in range(tok.n_vocab) if tok.token_type(i) == TokenType.CONTROL and tok.token_text(i)]
    assert controls
    for i in controls:
        text = f"a{tok.token_text(i)}b {tok.token_text(i)}"
        plain = model.tokenize(text, add_special=False, special=False)
        assert not any(model.is_control(t) for t in plain), (tok.token_text(i), plain)
        assert plain == python_encode(tok, text, False, False)
        marked = model.tokenize(text, add_special=False, special=True)
        assert marked == python_encode(tok, text, False, True)
        assert sum(model.is_control(t) for t in marked) >= 2, (tok.token_text(i), marked)
    for text in TEXTS:
        assert not any(model.is_control(t) for t in model.tokenize(text, special=False))


INVALID_UTF8 = [b"\xff", b"\x80", b"a\xc0\xafb", b"\xe0\x80\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"abc\xe2\x82",
                "a\ud800".encode("utf-8", "surrogatepass")]


@pytest.mark.parametrize("data", INVALID_UTF8, ids=[d.hex() for d in INVALID_UTF8])
def test_invalid_utf8_is_an_error(vocab, data):
    for special in (False, True):
        with pytest.raises(capi.CapiError) as info:
            vocab.model.tokenize(data, special=special)
        assert info.value.status == vocab.model.lib.EDGELLAMA_ERR_INVALID_ARGUMENT
        assert "UTF-8" in info.value.message


# -- tokens to text ---------------------------------------------------------------------------------

def test_detokenize_matches_python(vocab):
    tok, model = vocab.tok, vocab.model
    rng = random.Random(1)
    sequences = [model.tokenize(text, special=True) for text in TEXTS[:120]]
    sequences += [[rng.randrange(tok.n_vocab) for _ in range(rng.randint(0, 12))] for _ in range(300)]
    for ids in sequences:
        for special in (False, True):
            assert model.detokenize(ids, special=special) == python_bytes(tok, ids, special), ids


def test_detokenize_round_trips(vocab):
    tok, model = vocab.tok, vocab.model
    trips = 0
    for text in TEXTS:
        data = text.encode()
        if any(b in tok.missing_bytes for b in data):
            continue  # a byte without a token is dropped (or the unknown token): no way back
        if tok.model == "llama" and "\u2581" in text:
            continue  # SentencePiece's visible space in the text decodes as a space, as in sentencepiece
        assert model.detokenize(model.tokenize(text)) == data, text
        trips += 1
    assert trips > len(TEXTS) // 2


@pytest.mark.parametrize("ids", [[-1], ["n"], [0, "n"], [1 << 30], [0, -5, 1]], ids=str)
def test_out_of_range_ids_are_errors(vocab, ids):
    ids = [vocab.tok.n_vocab if i == "n" else i for i in ids]
    with pytest.raises(capi.CapiError) as info:
        vocab.model.detokenize(ids)
    assert info.value.status == vocab.model.lib.EDGELLAMA_ERR_INVALID_ARGUMENT


def test_concurrent_tokenize_and_detokenize(vocab):
    model = vocab.model
    texts = TEXTS[:60]
    expected = [model.tokenize(t, special=True) for t in texts]
    failures = []

    def work(offset):
        for k in range(len(texts)):
            j = (k + offset) % len(texts)
            ids = model.tokenize(texts[j], special=True)
            if ids != expected[j] or model.detokenize(ids, special=True) != model.detokenize(expected[j], special=True):
                failures.append(texts[j])

    threads = [threading.Thread(target=work, args=(s * 7,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


# -- metadata: the same files accepted and refused as by Python --------------------------------------

TOKENS, TYPES, MERGES = tiny_vocab(300)
T = "tokenizer.ggml."
METADATA_CASES = {
    "valid": {},
    "model_an_int": {T + "model": 5},
    "model_bert": {T + "model": "bert"},
    "model_absent": {T + "model": DROP},
    "pre_a_list": {T + "pre": ["gpt-2"]},
    "pre_unknown": {T + "pre": "qwen2"},
    "pre_absent": {T + "pre": DROP},
    "pre_llama_bpe": {T + "pre": "llama-bpe"},
    "tokens_ints": {T + "tokens": list(range(300))},
    "tokens_a_string": {T + "tokens": "abc"},
    "tokens_ill_formed_utf8": {T + "tokens": TOKENS[:299] + [b"\xff\xfe<bad\xc3"]},
    "types_strings": {T + "token_type": ["x"] * 300},
    "types_bools": {T + "token_type": [True] * 300},
    "types_short": {T + "token_type": TYPES[:10]},
    "types_absent": {T + "token_type": DROP},
    "scores_nan": {T + "scores": [math.nan] * 300},
    "scores_short": {T + "scores": [0.0] * 299},
    "scores_ints": {T + "scores": list(range(300))},
    "merges_ints": {T + "merges": [1, 2, 3]},
    "merges_absent": {T + "merges": DROP},
    "merges_two_spaces": {T + "merges": MERGES + ["a  b"]},
    "merges_unknown_parts": {T + "merges": MERGES + ["zz qq"]},
    "eos_past_vocab": {T + "eos_token_id": 300},
    "bos_a_string": {T + "bos_token_id": "1"},
    "bos_a_bool": {T + "bos_token_id": True},
    "eot_inf": {T + "eot_token_id": math.inf},
    "add_bos_1": {T + "add_bos_token": 1},
    "add_bos_2": {T + "add_bos_token": 2},
    "add_space_prefix_a_string": {T + "add_space_prefix": "yes"},
    "llama_without_scores": {T + "model": "llama"},
    "llama_with_scores": {T + "model": "llama", T + "scores": [0.5] * 300, T + "pre": "anything"},
    # byte tokens are <0x + two ASCII hex digits + >: none of these, nor a negative value
    "byte_tokens_malformed": {T + "tokens": TOKENS[:294] + ["<0x A>", "<0x+b>", "<0xZZ>", "<0x\x1cA>", "<0xA\t>",
                                                         "<0x\u0663\u0663>"],
                              T + "token_type": TYPES[:294] + [6] * 6},
    "byte_token_negative": {T + "tokens": TOKENS[:299] + ["<0x-1>"], T + "token_type": TYPES[:299] + [6]},
}


@pytest.mark.parametrize("case", list(METADATA_CASES))
def test_metadata_accepted_and_refused_as_python(case, tmp_path):
    path = write_tiny_llama(tmp_path / f"{case}.gguf", overrides=dict(METADATA_CASES[case]))
    meta = {k: v for k, v in read_gguf_header(path).metadata.items() if k.startswith("tokenizer.")}
    try:
        tok = Tokenizer.from_metadata(meta)
        python_error = None
    except Exception as exc:  # noqa: BLE001 (the decision is what is compared)
        tok, python_error = None, exc
    text = "Hello <|fill_3|> world's 12345\n\n <0x41>"
    try:
        with capi.Model(path, n_threads=1, n_ctx=64) as model:
            ids = model.tokenize(text, special=True)
            assert tok is not None, f"Python refuses ({python_error}) but the C ABI tokenizes"
            assert ids == python_encode(tok, text, False, True)
            for some in ([0, 5, *range(290, 300), 4, 1], ids):
                assert model.detokenize(some, special=True) == python_bytes(tok, some, True)
    except capi.CapiError as exc:
        assert python_error is not None, f"the C ABI refuses ({exc}) but Python accepts"
        key = getattr(python_error, "key", None)
        assert key is None or key in exc.message
