"""Hostile metadata values: every one must fail at load with an InvalidMetadataError (a
ModelLoadError) naming the key and the value, at once, never a raw ValueError / TypeError /
OverflowError / ZeroDivisionError, a hang, or a model that loads and breaks later.

The files are the tiny llama of tiny_models.py (n_embd 64, 4 heads of 16, 2 KV heads, n_ff 128,
2 blocks, 300 tokens, training context 256) with one metadata value replaced.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from gguf import GGUFValueType as VT

from edgellama.errors import InvalidMetadataError, ModelLoadError
from edgellama.gguf_loader import load_gguf
from edgellama.quantize import quantize
from edgellama.tokenizer import Tokenizer, TokenizerError, TokenizerMetadataError
from tiny_models import DROP, tiny_vocab, write_tiny_llama

NAN, INF = float("nan"), float("inf")

# Wrong types and impossible values for every integer hyper-parameter.
INT_KEYS = ("llama.block_count", "llama.embedding_length", "llama.feed_forward_length",
            "llama.attention.head_count", "llama.attention.head_count_kv", "llama.attention.key_length",
            "llama.attention.value_length", "llama.rope.dimension_count", "llama.vocab_size",
            "llama.context_length")
BAD_INTS = {"string": "abc", "float": 1.5, "bool": True, "list": [1, 2], "negative": (-1, VT.INT32),
            "zero": 0, "huge64": (2**63, VT.UINT64)}
# ... and for every float hyper-parameter.
FLOAT_KEYS = ("llama.rope.freq_base", "llama.attention.layer_norm_rms_epsilon", "llama.rope.scaling.factor")
BAD_FLOATS = {"string": "abc", "strings": ["a", "b"], "bool": True, "nan": NAN, "inf": INF, "-inf": -INF,
              "negative": -1.0, "zero": 0.0, "beyond_float32": (1e300, VT.FLOAT64)}

CASES = [(k, v) for k in INT_KEYS for v in BAD_INTS.values()]
# A RoPE scaling factor of 0 means "no scaling" (llama.cpp reads it so): not a bad value.
VALID_FLOATS = {("llama.rope.scaling.factor", "zero")}
CASES += [(k, v) for k in FLOAT_KEYS for name, v in BAD_FLOATS.items() if (k, name) not in VALID_FLOATS]
IDS = [f"{k.split('.', 1)[1]}={name}" for k in INT_KEYS for name in BAD_INTS]
IDS += [f"{k.split('.', 1)[1]}={name}" for k in FLOAT_KEYS for name in BAD_FLOATS if (k, name) not in VALID_FLOATS]

# Values of the right type that the maths cannot run with, or that contradict the tensors.
tokens, token_types, merges = tiny_vocab(300)
MORE_CASES = {
    "block_count_2**32-1": ("llama.block_count", 2**32 - 1),
    "block_count_one_too_many": ("llama.block_count", 3),
    "embedding_length_not_the_tensors": ("llama.embedding_length", 128),
    "feed_forward_length_not_the_tensors": ("llama.feed_forward_length", 256),
    "head_count_beyond_embedding": ("llama.attention.head_count", 65),
    "head_count_kv_not_a_divisor": ("llama.attention.head_count_kv", 3),
    "head_count_kv_above_head_count": ("llama.attention.head_count_kv", 8),
    "rope_dimension_odd": ("llama.rope.dimension_count", 15),
    "rope_dimension_above_head_dim": ("llama.rope.dimension_count", 18),
    "vocab_size_above_the_tokens": ("llama.vocab_size", 301),
    "rms_epsilon_one": ("llama.attention.layer_norm_rms_epsilon", 1.0),
    "rms_epsilon_zero_in_float32": ("llama.attention.layer_norm_rms_epsilon", (1e-50, VT.FLOAT64)),
    "context_length_2**32": ("llama.context_length", (2**32, VT.UINT64)),
    "file_type_string": ("general.file_type", "Q4_0"),
    "alignment_1": ("general.alignment", 1),
    "alignment_4": ("general.alignment", 4),
    "alignment_0": ("general.alignment", 0),
    "alignment_string": ("general.alignment", "32"),
    "alignment_uint64": ("general.alignment", (32, VT.UINT64)),
    # the tokenizer
    "token_list_of_ints": ("tokenizer.ggml.tokens", list(range(300))),
    "token_list_a_string": ("tokenizer.ggml.tokens", "abc"),
    # (the token types shortened with it, so that the count is the one thing wrong)
    "token_list_shorter_than_vocab": ("tokenizer.ggml.tokens", tokens[:299],
                                      {"tokenizer.ggml.token_type": token_types[:299]}),
    "token_types_strings": ("tokenizer.ggml.token_type", ["x"] * 300),
    "token_types_short": ("tokenizer.ggml.token_type", token_types[:10]),
    "scores_nan": ("tokenizer.ggml.scores", [NAN] * 300),
    "scores_short": ("tokenizer.ggml.scores", [0.0] * 299),
    "merges_ints": ("tokenizer.ggml.merges", [1, 2, 3]),
    "eot_token_id_inf": ("tokenizer.ggml.eot_token_id", INF),
    "eos_token_id_past_vocab": ("tokenizer.ggml.eos_token_id", 300),
    "bos_token_id_string": ("tokenizer.ggml.bos_token_id", "1"),
    "padding_token_id_negative": ("tokenizer.ggml.padding_token_id", (-1, VT.INT32)),
    "model_an_int": ("tokenizer.ggml.model", 5),
    "pre_a_list": ("tokenizer.ggml.pre", ["gpt-2"]),
    "add_bos_token_string": ("tokenizer.ggml.add_bos_token", "yes"),
    "add_space_prefix_2": ("tokenizer.ggml.add_space_prefix", 2),
}


def write(tmp_path, key, value, more=None):
    return write_tiny_llama(tmp_path / "hostile.gguf", overrides={key: value, **(more or {})})


def expect_invalid(path, key, value=None):
    """Loading path raises InvalidMetadataError for `key`, naming the file, the key and the value."""
    start = time.perf_counter()
    with pytest.raises(InvalidMetadataError) as info:
        load_gguf(path)
    elapsed = time.perf_counter() - start
    err = info.value
    message = str(err)
    assert err.key == key and f"'{key}'" in message, message
    assert str(path) in message, message
    if value is not None and not isinstance(value, (list, float)):
        assert repr(value) in message, message
    assert elapsed < 1.0, f"rejecting {key} took {elapsed:.2f} s"
    return err


@pytest.mark.parametrize("key,value", CASES, ids=IDS)
def test_wrong_type_or_range_of_a_hyper_parameter(tmp_path, key, value):
    shown = value[0] if isinstance(value, tuple) else value
    expect_invalid(write(tmp_path, key, value), key, shown)


@pytest.mark.parametrize("case", sorted(MORE_CASES))
def test_values_that_break_the_model(tmp_path, case):
    key, value, *more = MORE_CASES[case]
    shown = value[0] if isinstance(value, tuple) else value
    expect_invalid(write(tmp_path, key, value, *more), key, shown)


def test_huge_block_count_fails_at_once(tmp_path):
    """The old loader built an entry per layer before checking anything: 2**32-1 never returned."""
    err = expect_invalid(write(tmp_path, "llama.block_count", 2**32 - 1), "llama.block_count", 2**32 - 1)
    assert "room for at most 2 blocks" in str(err)


def test_missing_required_key_is_named(tmp_path):
    expect_invalid(write(tmp_path, "llama.feed_forward_length", DROP), "llama.feed_forward_length")


def test_context_length_zero_names_the_key_not_n_ctx(tmp_path):
    err = expect_invalid(write(tmp_path, "llama.context_length", 0), "llama.context_length", 0)
    assert "n_ctx" not in str(err)


@pytest.mark.parametrize("key,value", [("llama.rope.freq_base", 500000.0), ("llama.rope.freq_base", 1),
                                       ("llama.attention.layer_norm_rms_epsilon", 1e-6),
                                       ("tokenizer.ggml.add_bos_token", 1),
                                       ("llama.context_length", 2**32 - 1)])
def test_unusual_but_valid_values_still_load(tmp_path, key, value):
    """The checks reject what cannot work, not what is merely uncommon (an int freq_base, a bool
    stored as 0/1, the largest uint32 context length)."""
    model = load_gguf(write(tmp_path, key, value))
    assert model.config.n_layer == 2


def test_architecture_of_the_wrong_type():
    """(The GGUF writer always stores general.architecture as a string: checked on a dict.)"""
    from edgellama.gguf_loader import validate_llama_metadata

    with pytest.raises(InvalidMetadataError, match="general.architecture"):
        validate_llama_metadata("m.gguf", {"general.architecture": 5}, {})


def test_errors_are_model_load_errors_with_the_value():
    err = InvalidMetadataError("m.gguf", "llama.context_length", "abc", "must be an integer")
    assert isinstance(err, ModelLoadError) and isinstance(err, ValueError)
    assert err.value == "abc" and "'abc'" in str(err)


# --- the tokenizer, built lazily from metadata ----------------------------------------------------


def tokenizer_meta(**changes):
    meta = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt-2", "tokenizer.ggml.tokens": tokens,
            "tokenizer.ggml.token_type": token_types, "tokenizer.ggml.merges": merges,
            "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2}
    meta.update({f"tokenizer.ggml.{k}": v for k, v in changes.items()})
    return meta


@pytest.mark.parametrize("key,value", [
    ("tokens", list(range(300))), ("tokens", 7), ("token_type", ["x"] * 300), ("token_type", [1] * 299),
    ("scores", [NAN] * 300), ("scores", [1e39] * 300), ("merges", [1, 2]), ("merges", "Ġ t"),
    ("eot_token_id", INF), ("eos_token_id", 300), ("bos_token_id", -1), ("unknown_token_id", 2.0),
    ("model", 5), ("pre", ["gpt-2"]), ("add_bos_token", "yes"),
])
def test_tokenizer_metadata_errors_are_load_errors_naming_key_and_value(key, value):
    with pytest.raises(TokenizerMetadataError) as info:
        Tokenizer.from_metadata(tokenizer_meta(**{key: value}))
    err = info.value
    assert isinstance(err, TokenizerError) and isinstance(err, ModelLoadError)
    assert err.key == f"tokenizer.ggml.{key}" and err.key in str(err)
    if not isinstance(value, (list, float)):
        assert repr(value) in str(err)


def test_valid_tokenizer_metadata_still_builds():
    tok = Tokenizer.from_metadata(tokenizer_meta(scores=[0.5] * 300, add_bos_token=1))
    assert tok.n_vocab == 300 and tok.add_bos


# --- quantize reads its input with the same checks ----------------------------------------------


def test_quantize_refuses_a_hostile_gguf_before_writing(tmp_path):
    src = write(tmp_path, "llama.block_count", 2**32 - 1)
    out = tmp_path / "out.gguf"
    start = time.perf_counter()
    with pytest.raises(InvalidMetadataError) as info:
        quantize(src, out, "Q8_0", log=lambda _: None)
    assert info.value.key == "llama.block_count"
    assert time.perf_counter() - start < 1.0
    assert not out.exists()


def test_quantize_bounds_a_hugging_face_layer_count(tmp_path):
    """num_hidden_layers is bounded by the tensors the checkpoint holds before the exporter loops
    over the layers."""
    from safetensors.numpy import save_file

    folder = tmp_path / "hf"
    folder.mkdir()
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
              "vocab_size": 8, "hidden_size": 4, "intermediate_size": 8, "num_hidden_layers": 2**32 - 1,
              "num_attention_heads": 2}
    (folder / "config.json").write_text(json.dumps(config))
    save_file({"model.embed_tokens.weight": np.zeros((8, 4), np.float32)}, str(folder / "model.safetensors"))
    start = time.perf_counter()
    with pytest.raises(InvalidMetadataError) as info:
        quantize(folder, tmp_path / "o.gguf", "F16", log=lambda _: None)
    assert info.value.key == "num_hidden_layers" and "config.json" in str(info.value)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("hostile", [
    [1, 2], "text", {"architectures": 5}, {"rope_theta": "abc"}, {"rope_theta": float("nan")},
    {"rope_theta": -1.0}, {"rope_scaling": ["llama3"]}, {"rope_parameters": 7},
    {"rope_scaling": {"rope_type": "llama3", "factor": "x", "low_freq_factor": 1, "high_freq_factor": 4,
                      "original_max_position_embeddings": 8192}},
    {"rope_scaling": {"rope_type": "llama3", "factor": 8, "low_freq_factor": 4, "high_freq_factor": 4,
                      "original_max_position_embeddings": 8192}},
], ids=["list", "string", "architectures-int", "theta-str", "theta-nan", "theta-negative", "scaling-list",
        "parameters-int", "factor-str", "equal-freq-factors"])
def test_quantize_refuses_a_hostile_hugging_face_config(tmp_path, hostile):
    """config.json is as hostile as a GGUF header: a value of the wrong type or range is a
    ModelLoadError naming the file, never a raw TypeError/ValueError/ZeroDivisionError."""
    from edgellama.errors import ModelLoadError

    folder = tmp_path / "hf"
    folder.mkdir()
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
              "vocab_size": 8, "hidden_size": 4, "intermediate_size": 8, "num_hidden_layers": 1,
              "num_attention_heads": 2}
    config = {**config, **hostile} if isinstance(hostile, dict) else hostile
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="config.json"):
        quantize(folder, tmp_path / "o.gguf", "F16", log=lambda _: None)
    assert not (tmp_path / "o.gguf").exists()


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_nan_weights_are_a_model_output_error(tmp_path, temperature):
    """A file whose structure is valid but whose output matrix holds NaN loads (its weights are
    not scanned); choosing a token from its NaN logits is a ModelOutputError, greedy or sampled,
    never a raw ValueError nor a silent argmax of NaN."""
    from edgellama import Llama
    from edgellama.errors import ModelOutputError

    rows = np.random.default_rng(0).normal(0, 0.02, (300, 64)).astype(np.float32)
    rows[7, 3] = np.nan
    path = write_tiny_llama(tmp_path / "nan.gguf", tied_output=False,
                            overrides={"output.weight": {"data": rows}})
    llm = Llama(str(path), n_ctx=32, n_threads=1)
    with pytest.raises(ModelOutputError, match="NaN"):
        llm.generate([1, 2, 3], max_tokens=4, temperature=temperature)
    llm.reset()
    with pytest.raises(ModelOutputError):
        llm.eval_greedy([1, 2, 3])
