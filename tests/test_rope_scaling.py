"""RoPE context extension (edgellama/rope_scaling.py): the GGUF keys as llama.cpp reads them, the
frequencies and magnitude against transformers' own RoPE initialisation, and hostile values.

The whole forward with linear and YaRN files is checked against the float64 reference in
test_forward.py (FORWARD_CASES "rope_linear-F32", "rope_yarn-F32", "rope_yarn-rope_freqs-Q4_1"),
and a tiny Hugging Face model of each type exported by the quantize tool in
test_quantize_export.py.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from gguf import GGUFValueType

from edgellama import Llama
from edgellama.errors import InvalidMetadataError, UnsupportedModelError
from edgellama.gguf_loader import load_gguf
from edgellama.gguf_metadata import MetadataReader
from edgellama.rope_scaling import RopeScaling, combined_divisors
from tiny_models import write_tiny_llama


def read(metadata, context_length=4096):
    return RopeScaling.read(MetadataReader("test.gguf", metadata), "llama", context_length)


def test_absent_keys_mean_plain_rope():
    s = read({})
    assert s.kind == "none" and s.magnitude == 1.0
    np.testing.assert_array_equal(s.frequency_divisors(64, 10000.0), np.ones(32))
    assert combined_divisors(s, 64, 10000.0, None) is None


def test_keys_and_defaults_as_llama_cpp_reads_them():
    s = read({"llama.rope.scaling.type": "yarn", "llama.rope.scaling.factor": 8.0}, context_length=8192)
    assert (s.original_context, s.ext_factor, s.beta_fast, s.beta_slow, s.attn_factor) == (8192, 1.0, 32.0, 1.0, 1.0)
    assert s.magnitude == pytest.approx(1 + 0.1 * math.log(8.0))
    s = read({"llama.rope.scaling.type": "linear", "llama.rope.scaling.factor": 0.0})  # 0: no scaling
    np.testing.assert_array_equal(s.frequency_divisors(8, 10000.0), np.ones(4))
    s = read({"llama.rope.scaling.type": "linear", "llama.rope.scaling.factor": 2.5,
              "llama.rope.scaling.attn_factor": 1.5})
    np.testing.assert_array_equal(s.frequency_divisors(8, 10000.0), np.full(4, 2.5))
    assert s.magnitude == 1.5  # only YaRN adds 0.1 ln(factor)


@pytest.mark.parametrize("params", [
    dict(rope_type="linear", factor=4.0),
    dict(rope_type="yarn", factor=4.0, original_max_position_embeddings=64),
    dict(rope_type="yarn", factor=32.0, original_max_position_embeddings=4096, rope_theta=500000.0),
    dict(rope_type="yarn", factor=2.0, original_max_position_embeddings=2048, beta_fast=16.0, beta_slow=2.0),
])
def test_frequencies_and_magnitude_match_transformers(params):
    transformers = pytest.importorskip("transformers")
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    theta, head_dim = params.get("rope_theta", 10000.0), 128
    config = transformers.LlamaConfig(hidden_size=4 * head_dim, num_attention_heads=4,
                                      max_position_embeddings=params.get("original_max_position_embeddings", 256),
                                      rope_scaling=dict(params, rope_theta=theta))
    want, want_magnitude = ROPE_INIT_FUNCTIONS[params["rope_type"]](config, "cpu")
    metadata = {"llama.rope.scaling.type": params["rope_type"], "llama.rope.scaling.factor": params["factor"]}
    for hf_key, key in (("original_max_position_embeddings", "original_context_length"),
                        ("beta_fast", "yarn_beta_fast"), ("beta_slow", "yarn_beta_slow")):
        if hf_key in params:
            metadata["llama.rope.scaling." + key] = params[hf_key]
    s = read(metadata)
    got = theta ** (-np.arange(0, head_dim, 2) / head_dim) / s.frequency_divisors(head_dim, theta)
    np.testing.assert_allclose(got, want.double().numpy(), rtol=5e-7)  # transformers computes in float32
    assert s.magnitude == pytest.approx(want_magnitude, rel=1e-7)


def test_scaling_combines_with_rope_freqs():
    s = read({"llama.rope.scaling.type": "linear", "llama.rope.scaling.factor": 2.0})
    freqs = np.array([1.0, 1.5, 3.0, 8.0], np.float32)
    np.testing.assert_array_equal(combined_divisors(s, 8, 10000.0, freqs), freqs * 2)


@pytest.mark.parametrize("key, value, error, message", [
    ("llama.rope.scaling.type", "longrope", UnsupportedModelError, "longrope"),
    ("llama.rope.scaling.type", 3, InvalidMetadataError, "rope.scaling.type"),
    ("llama.rope.scaling.factor", -2.0, InvalidMetadataError, "rope.scaling.factor"),
    ("llama.rope.scaling.factor", float("nan"), InvalidMetadataError, "rope.scaling.factor"),
    ("llama.rope.scaling.attn_factor", 0.0, InvalidMetadataError, "attn_factor"),
    ("llama.rope.scaling.original_context_length", 0, InvalidMetadataError, "original_context_length"),
    ("llama.rope.scaling.yarn_beta_fast", -1.0, InvalidMetadataError, "yarn_beta_fast"),
])
def test_hostile_values_name_the_key(tmp_path, key, value, error, message):
    overrides = {"llama.rope.scaling.type": "yarn", "llama.rope.scaling.factor": 4.0, key: value}
    path = write_tiny_llama(tmp_path / "m.gguf", overrides=overrides)
    with pytest.raises(error, match=message):
        load_gguf(path)


def test_yarn_changes_the_logits_and_plain_files_are_unchanged(tmp_path):
    """The scaling reaches the core: a YaRN file's logits differ from the same weights without it,
    and a file that states type "none" gives exactly the plain file's logits."""
    ids = [1, 5, 9, 200, 17, 3, 44, 101]
    plain = Llama(write_tiny_llama(tmp_path / "plain.gguf"), n_ctx=64).eval(ids, all_logits=True)
    none = Llama(write_tiny_llama(tmp_path / "none.gguf", overrides={"llama.rope.scaling.type": "none"}),
                 n_ctx=64).eval(ids, all_logits=True)
    yarn = Llama(write_tiny_llama(tmp_path / "yarn.gguf", overrides={
        "llama.rope.scaling.type": "yarn", "llama.rope.scaling.factor": 4.0,
        "llama.rope.scaling.original_context_length": 64}), n_ctx=64).eval(ids, all_logits=True)
    np.testing.assert_array_equal(none, plain)
    assert np.abs(yarn - plain)[1:].max() > 1e-3


YARN = {"llama.rope.scaling.type": "yarn", "llama.rope.scaling.factor": 4.0,
        "llama.rope.scaling.original_context_length": 64}


@pytest.mark.parametrize("overrides,key", [
    ({**YARN, "llama.rope.freq_base": 1.0}, "llama.rope.freq_base"),  # divides by log(1)
    ({**YARN, "llama.rope.scaling.original_context_length": 2**32 - 1,
      "llama.rope.scaling.yarn_beta_fast": (5e-324, GGUFValueType.FLOAT64)}, "llama.rope.scaling.yarn_beta_fast"),
    ({**YARN, "llama.rope.freq_base": (1.0 + 2**-52, GGUFValueType.FLOAT64),
      "llama.rope.scaling.yarn_beta_fast": (1e-300, GGUFValueType.FLOAT64)}, "llama.rope.freq_base"),
    ({"llama.rope.freq_base": (1e-50, GGUFValueType.FLOAT64)}, "llama.rope.freq_base"),  # 0 in float32
    ({**YARN, "llama.rope.scaling.attn_factor": (1e-50, GGUFValueType.FLOAT64)}, "llama.rope.scaling.attn_factor"),
])
def test_rope_values_the_arithmetic_cannot_use_are_metadata_errors(tmp_path, overrides, key):
    # In range, but YaRN's correction range is undefined or beyond float64/int64 with them, or
    # the core's float32 rounds them to 0: refused at load, naming the key, never a raw error later.
    path = write_tiny_llama(tmp_path / "m.gguf", overrides=overrides)
    with pytest.raises(InvalidMetadataError) as info:
        load_gguf(path)
    assert info.value.key == key
