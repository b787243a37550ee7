"""Tests of the test tools themselves: the tiny GGUF writer, the float64 reference forward, the
tolerance of the forward tests, and the reference on the real SmolLM2-135M model (which proves
its RoPE convention). None of this uses edgellama's C++ core."""

from __future__ import annotations

import numpy as np
import pytest
import gguf
from gguf import GGMLQuantizationType as QT

from logit_checks import FLOAT_REL, INT8_MARGIN, expected_logits, fp16_kv_term, logits_mismatch
from reference import ReferenceModel, load_reference, quantize_act_int8
from tiny_models import (FORWARD_CASES, K_QUANT_TYPES, TINY_MERGES, WEIGHT_TYPES, byte_level_symbols,
                         write_tiny_llama)

PROMPT = [5, 17, 200, 3, 99, 42, 7, 261, 150, 2, 31, 64]


@pytest.fixture(scope="module")
def case_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("forward_cases")
    return {name: write_tiny_llama(folder / f"{name}.gguf", **kw) for name, kw in FORWARD_CASES.items()}


# ---------------------------------------------------------------------------------------------
# The writer


@pytest.mark.parametrize("weight_type", WEIGHT_TYPES)
def test_writer_round_trip(tmp_path, weight_type):
    kw = dict(n_embd=256, n_head=4, n_ff=512) if weight_type in K_QUANT_TYPES else dict(n_embd=64, n_head=4, n_ff=128)
    path = write_tiny_llama(tmp_path / "m.gguf", weight_type=weight_type, embd_type="Q8_0",
                            n_head_kv=2, n_layer=2, n_vocab=300, tied_output=False, rope_freqs=True, **kw)
    reader = gguf.GGUFReader(str(path))
    f = lambda k: reader.fields[k].contents()  # noqa: E731
    assert f("general.architecture") == "llama"
    assert f("llama.block_count") == 2
    assert f("llama.embedding_length") == kw["n_embd"]
    assert f("llama.feed_forward_length") == kw["n_ff"]
    assert f("llama.attention.head_count") == 4 and f("llama.attention.head_count_kv") == 2
    assert f("llama.rope.dimension_count") == kw["n_embd"] // 4
    assert f("llama.vocab_size") == 300
    assert abs(f("llama.attention.layer_norm_rms_epsilon") - 1e-5) < 1e-9
    assert "llama.attention.key_length" not in reader.fields
    tensors = {t.name: t for t in reader.tensors}
    assert len(tensors) == 2 * 9 + 4
    qt = QT[weight_type]
    assert tensors["token_embd.weight"].tensor_type == QT.Q8_0
    assert list(tensors["token_embd.weight"].shape) == [kw["n_embd"], 300]          # ne0 first
    assert tensors["output.weight"].tensor_type == qt
    assert list(tensors["blk.1.attn_k.weight"].shape) == [kw["n_embd"], 2 * kw["n_embd"] // 4]
    assert list(tensors["blk.0.ffn_down.weight"].shape) == [kw["n_ff"], kw["n_embd"]]
    assert tensors["blk.0.ffn_down.weight"].tensor_type == qt
    assert tensors["blk.0.attn_norm.weight"].tensor_type == QT.F32
    assert list(tensors["rope_freqs.weight"].shape) == [kw["n_embd"] // 4 // 2]
    # weights dequantize to std ~ 1/sqrt(fan_in), centred
    w = gguf.quants.dequantize(tensors["blk.0.ffn_gate.weight"].data, qt).astype(np.float64)
    assert w.shape == (kw["n_ff"], kw["n_embd"])
    assert abs(w.std() * np.sqrt(kw["n_embd"]) - 1) < 0.15
    assert abs(w.mean()) < 0.1 * w.std()


def test_writer_head_dim_and_tokenizer(tmp_path):
    path = write_tiny_llama(tmp_path / "m.gguf", n_embd=64, n_head=4, head_dim=32)
    reader = gguf.GGUFReader(str(path))
    f = lambda k: reader.fields[k].contents()  # noqa: E731
    assert f("llama.attention.key_length") == 32 and f("llama.attention.value_length") == 32
    assert f("llama.rope.dimension_count") == 32
    tensors = {t.name: t for t in reader.tensors}
    assert list(tensors["blk.0.attn_q.weight"].shape) == [64, 128]
    assert list(tensors["blk.0.attn_output.weight"].shape) == [128, 64]
    tokens = f("tokenizer.ggml.tokens")
    assert len(tokens) == 300 and tokens[:256] == byte_level_symbols()
    assert tokens[ord("A")] == "A" and tokens[ord(" ")] == "Ġ"
    assert f("tokenizer.ggml.merges") == [f"{a} {b}" for a, b in TINY_MERGES]
    assert f("tokenizer.ggml.model") == "gpt2" and f("tokenizer.ggml.pre") == "gpt-2"
    assert f("tokenizer.ggml.bos_token_id") == 1 and f("tokenizer.ggml.eos_token_id") == 2


# ---------------------------------------------------------------------------------------------
# The reference's math, checked against independent formulations


def test_reference_is_causal(case_files):
    model = load_reference(case_files["gqa3-F32"])
    full = model.logits(PROMPT)
    for k in (1, 5, 11):
        np.testing.assert_allclose(model.logits(PROMPT[:k]), full[:k], rtol=1e-10, atol=1e-10)


def _step_by_step_logits(model: ReferenceModel, ids):
    """The same llama, written token by token with an explicit KV cache and per-pair RoPE loops."""
    hp = model.hp
    group = hp.n_head // hp.n_head_kv
    caches = [([], []) for _ in model.layers]
    out = []
    for pos, tok in enumerate(ids):
        x = model.embd.w[tok].copy()
        for layer, (kc, vc) in zip(model.layers, caches):
            h = model.rmsnorm(x, layer["attn_norm"])
            q = (layer["attn_q"].w @ h).reshape(hp.n_head, hp.head_dim)
            k = (layer["attn_k"].w @ h).reshape(hp.n_head_kv, hp.head_dim)
            v = (layer["attn_v"].w @ h).reshape(hp.n_head_kv, hp.head_dim)
            for vec in (q, k):
                for head in range(vec.shape[0]):
                    for i in range(hp.rope_dim // 2):
                        theta = pos * hp.rope_base ** (-2 * i / hp.rope_dim)
                        if model.rope_freqs is not None:
                            theta /= model.rope_freqs[i]
                        a, b = vec[head, 2 * i], vec[head, 2 * i + 1]
                        vec[head, 2 * i] = a * np.cos(theta) - b * np.sin(theta)
                        vec[head, 2 * i + 1] = a * np.sin(theta) + b * np.cos(theta)
            kc.append(k)
            vc.append(v)
            heads = []
            for head in range(hp.n_head):
                kv = head // group
                s = np.array([q[head] @ kk[kv] for kk in kc]) / np.sqrt(hp.head_dim)
                p = np.exp(s - s.max())
                p /= p.sum()
                heads.append(sum(pi * vv[kv] for pi, vv in zip(p, vc)))
            x = x + layer["attn_output"].w @ np.concatenate(heads)
            h = model.rmsnorm(x, layer["ffn_norm"])
            g, u = layer["ffn_gate"].w @ h, layer["ffn_up"].w @ h
            x = x + layer["ffn_down"].w @ (g / (1 + np.exp(-g)) * u)
        out.append(model.output.w @ model.rmsnorm(x, model.output_norm))
    return np.array(out)


@pytest.mark.parametrize("case", ["gqa3-F32", "rope_freqs-F32", "head_dim32-F32", "gqa8-F16"])
def test_reference_matches_step_by_step_formulation(case_files, case):
    model = load_reference(case_files[case])
    np.testing.assert_allclose(model.logits(PROMPT[:8]), _step_by_step_logits(model, PROMPT[:8]),
                               rtol=1e-9, atol=1e-9)


def test_gqa_mapping_matches_duplicated_kv_heads(tmp_path):
    """Query head h reads kv head h // (n_head / n_head_kv): a GQA file gives the same logits as
    the file where every query head has its own copy of that kv head."""
    gqa = write_tiny_llama(tmp_path / "gqa.gguf", n_embd=64, n_head=8, n_head_kv=2, seed=3)
    ref = ReferenceModel(gqa)
    hd = ref.hp.head_dim
    data = {}
    for i, layer in enumerate(ref.layers):
        for name in ("attn_k", "attn_v"):
            w = layer[name].w.reshape(2, hd, 64)
            data[f"blk.{i}.{name}.weight"] = {"data": np.repeat(w, 4, axis=0).reshape(8 * hd, 64)}
        for name in ("attn_q", "attn_output", "ffn_gate", "ffn_up", "ffn_down"):
            data[f"blk.{i}.{name}.weight"] = {"data": layer[name].w}
        data[f"blk.{i}.attn_norm.weight"] = {"data": layer["attn_norm"]}
        data[f"blk.{i}.ffn_norm.weight"] = {"data": layer["ffn_norm"]}
    data["token_embd.weight"] = {"data": ref.embd.w}
    data["output_norm.weight"] = {"data": ref.output_norm}
    mha = write_tiny_llama(tmp_path / "mha.gguf", n_embd=64, n_head=8, n_head_kv=8, overrides=data)
    np.testing.assert_allclose(ReferenceModel(mha).logits(PROMPT), ref.logits(PROMPT), rtol=1e-12, atol=1e-12)
    wrong = ReferenceModel(gqa)
    wrong.gqa_modulo = True
    assert np.abs(wrong.logits(PROMPT) - ref.logits(PROMPT)).max() > 1e-2


def test_rope_rotates_adjacent_pairs(case_files):
    model = load_reference(case_files["rope_freqs-F32"])
    hp = model.hp
    assert model.rope_freqs is not None and model.rope_freqs.max() == 8.0 and model.rope_freqs.min() == 1.0
    pos = np.array([0, 3, 17])
    for i in range(hp.rope_dim // 2):
        e = np.zeros((3, 1, hp.head_dim))
        e[:, 0, 2 * i] = 1.0
        theta = pos * hp.rope_base ** (-2 * i / hp.rope_dim) / model.rope_freqs[i]
        r = model.rope(e, pos)[:, 0]
        np.testing.assert_allclose(r[:, 2 * i], np.cos(theta), atol=1e-12)
        np.testing.assert_allclose(r[:, 2 * i + 1], np.sin(theta), atol=1e-12)
        assert np.abs(np.delete(r, [2 * i, 2 * i + 1], axis=1)).max() == 0
    # scores depend on the position difference only
    rng = np.random.default_rng(0)
    q, k = rng.standard_normal((2, 1, 1, hp.head_dim))
    s = lambda pq, pk: float(model.rope(q, np.array([pq]))[0, 0] @ model.rope(k, np.array([pk]))[0, 0])  # noqa: E731
    assert s(7, 2) == pytest.approx(s(105, 100), rel=1e-10)


def test_int8_activation_rounding_error_bound():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((5, 512)) * np.exp(rng.standard_normal((5, 1)))
    a[0, :32] = 0.0                                          # an all-zero block stays zero
    for block in (32, 256):
        q = quantize_act_int8(a, block)
        amax = np.abs(a.reshape(-1, block)).max(axis=1, keepdims=True)
        err = np.abs(q - a).reshape(-1, block)
        assert np.all(err <= amax / 254 * (1 + 1e-6) + 1e-300)
        assert np.all(q[0, :32] == 0)
        assert np.abs(q).reshape(-1, block).max(axis=1) == pytest.approx(amax[:, 0], rel=1e-6)


# ---------------------------------------------------------------------------------------------
# The forward tests' tolerance: loose enough for correct implementations, tight enough for bugs


@pytest.mark.parametrize("case", sorted(FORWARD_CASES))
def test_tolerance_accepts_legitimate_implementations(case_files, case):
    """Two correct ways of computing that differ from the reference: float32 arithmetic with the
    same rounding of activations, and an f16 block scale instead of a float32 one (both with the
    fp16 KV cache, as edgellama keeps it)."""
    path = case_files[case]
    ref, tol = expected_logits(path, PROMPT)
    model = ReferenceModel(path)
    model.kv_fp16 = True
    f32 = model.logits(PROMPT, act_quant=True, dtype=np.float32)
    assert logits_mismatch(f32, ref, tol) is None
    kv_term = fp16_kv_term(ref, ReferenceModel(path).logits(PROMPT))
    assert np.all(kv_term > 0) and kv_term.max() < 4e-3 * np.abs(ref).max()  # bugs: 1e-2..1
    if FORWARD_CASES[case]["weight_type"] in ("F32", "F16", "BF16"):
        np.testing.assert_allclose(tol, FLOAT_REL * np.abs(ref).max(axis=1) + kv_term, rtol=1e-12)
        return
    other = ReferenceModel(path)
    other.kv_fp16 = True
    other.act_scale_dtype = np.float16
    alt = other.logits(PROMPT, act_quant=True)
    assert logits_mismatch(alt, ref, tol) is None
    # and the int8 bound stays small: a few per cent of the logits' scale
    sim_err = (tol - FLOAT_REL * np.abs(ref).max(axis=1) - kv_term) / INT8_MARGIN
    assert np.all(sim_err > 0)
    assert sim_err.max() / np.abs(ref).max() < 0.04


BUGS = [
    ("F32", "rope_neox"), ("Q4_K", "rope_neox"), ("gqa3-Q4_1", "rope_neox"),
    ("gqa4-Q8_0", "gqa_modulo"), ("gqa3-F32", "gqa_modulo"), ("Q4_0", "gqa_modulo"),
    ("rope_freqs-F32", "ignore_rope_freqs"), ("rope_freqs-Q4_1", "ignore_rope_freqs"),
]


@pytest.mark.parametrize("case,bug", BUGS)
def test_tolerance_catches_plausible_bugs(case_files, case, bug):
    path = case_files[case]
    ref, tol = expected_logits(path, PROMPT)
    buggy = ReferenceModel(path)
    buggy.kv_fp16 = True
    if bug == "ignore_rope_freqs":
        buggy.use_rope_freqs = False
    else:
        setattr(buggy, bug, True)
    got = buggy.logits(PROMPT, act_quant=True, dtype=np.float32)
    assert logits_mismatch(got, ref, tol) is not None


# ---------------------------------------------------------------------------------------------
# The real model: SmolLM2-135M-Instruct (Q4_1 weights, Q8_0 embedding, 30 layers, GQA 3)


def smollm2_tokenizer(reader: gguf.GGUFReader):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import decoders, models, pre_tokenizers
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    merges = reader.fields["tokenizer.ggml.merges"].contents()
    tok = tokenizers.Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)},
                                          [tuple(m.split(" ", 1)) for m in merges]))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    return tok


def test_reference_on_smollm2_says_paris(smollm2_path):
    """Greedy decoding of the real model with the reference completes the prompt sensibly, and
    the adjacent-pair RoPE fits the real weights far better than the rotate-halves one."""
    model = load_reference(smollm2_path)
    assert (model.hp.n_layer, model.hp.n_head, model.hp.n_head_kv, model.hp.n_vocab) == (30, 9, 3, 49152)
    assert model.embd.qtype == QT.Q8_0 and model.layers[0]["attn_q"].qtype == QT.Q4_1
    tok = smollm2_tokenizer(model.reader)
    ids = tok.encode("The capital of France is").ids
    assert ids == [504, 3575, 282, 4649, 314]
    for _ in range(2):
        ids.append(int(model.logits(ids)[-1].argmax()))
    assert tok.decode(ids).startswith("The capital of France is Paris")

    text = ("The capital of France is Paris. The capital of Germany is Berlin. "
            "The capital of Italy is Rome. Water boils at 100 degrees Celsius.")
    ids = tok.encode(text).ids

    def mean_nll(m):
        lg = m.logits(ids)[:-1]
        top = lg.max(axis=1)
        lse = np.log(np.exp(lg - top[:, None]).sum(axis=1)) + top
        return float(np.mean(lse - lg[np.arange(len(ids) - 1), ids[1:]]))

    normal = mean_nll(model)
    model.rope_neox = True
    try:
        halves = mean_nll(model)
    finally:
        model.rope_neox = False
    # measured: 1.52 nats/token with adjacent pairs, 3.13 with rotated halves
    assert normal < 2.0
    assert halves > normal + 1.0
