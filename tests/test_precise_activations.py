"""The precise activations (Llama(activations="precise"), the CPU default): every matmul input block
is quantized to int8 and then the residual it left is quantized again, so quantized weights are
dotted with inputs accurate to about 15 bits instead of 8.

Checked here against independent numpy: the kernels on every CPU level and weight type against
float64 dots of the two rounded rows, with a bound derived from the residual's own rounding that
the int8 path fails; batch and thread invariance; the real model's logits against the float64
reference forward; the API switch (the CLI flag: test_cli.py)."""

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T

from edgellama import Llama, _core, _testing
from edgellama.errors import InvalidArgumentError
from reference import load_reference
from test_cpu_levels import act_blocks, dequantize_act
from test_kernels import BLOCK32, ROW_GROUP_LEVELS, act_rows, f16_bytes, reference_dequant, row_group_matrix, weight_rows

QUANTIZED = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q4_K, T.Q5_K, T.Q6_K]
LEVELS = _core.runnable_levels()
N = 512


def act_block(core, qtype) -> tuple:
    fmt = core.type_info(int(qtype))["act_format"]
    return fmt, {1: 32, 2: 256}[fmt]


def two_part_rounding(core, qtype, x):
    """(float64 value of the first row + the residual row, per-element bound of what is left):
    the residual is x - d·q in float32, quantized like any input; its rounding leaves at most half
    its own step per element."""
    fmt, block = act_block(core, qtype)
    d1, q1 = act_blocks(core.quantize_act_row(fmt, x), fmt, x.size, block)
    first = (d1[:, None] * q1.astype(np.float32)).reshape(-1)
    residual = (x - first).astype(np.float32)
    d2, q2 = act_blocks(core.quantize_act_row(fmt, residual), fmt, x.size, block)
    value = first.astype(np.float64) + (d2.astype(np.float64)[:, None] * q2).reshape(-1)
    return value, np.repeat(d2.astype(np.float64) / 2, block)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("qtype", QUANTIZED, ids=lambda t: t.name)
def test_precise_matmul_matches_float64_dots_on_every_level(level, qtype):
    core = _testing.load_level(level)
    rng = np.random.default_rng(9100 + int(qtype))
    rows = np.stack(weight_rows(rng, qtype, N)[:5] * 4)[:19]  # 19 rows: a partial row group
    x = np.stack(act_rows(rng, N) * 2)[:6]
    row_groups = core.has_row_group_kernel(int(qtype))
    got = core.matmul(int(qtype), rows, x, row_groups=row_groups, activations="precise")
    int8 = core.matmul(int(qtype), rows, x, row_groups=row_groups, activations="int8")
    w = np.stack([reference_dequant(qtype, r) for r in rows]).astype(np.float64)
    int8_outside = 0
    for t in range(x.shape[0]):
        value, left = two_part_rounding(core, qtype, x[t])
        # The kernel dots exactly the two rounded rows: only float32 scale products and sums differ.
        scale = np.abs(w).max(axis=1) * np.abs(value).sum()
        assert np.all(np.abs(got[t] - w @ value) <= 1e-5 * scale + 1e-30), (level, qtype, t)
        # Against exact arithmetic: the residual's rounding bound, plus the float32 slack.
        exact = w @ x[t].astype(np.float64)
        bound = np.abs(w) @ left + 1e-5 * scale + 1e-30
        assert np.all(np.abs(got[t] - exact) <= bound), (level, qtype, t)
        int8_outside += int(np.sum(np.abs(int8[t] - exact) > bound))
    assert int8_outside > 0  # the bound is tight enough to see int8 rounding


def random_code_rows(rng, qtype, n, n_rows):
    """Rows whose code bytes are random, so every code occurs (Q8_0's -128 among them, which no
    quantizer writes but a file may hold), with sane f16 scales and mins; Q8_0's first two rows
    hold only -128 and only 127."""
    size = GGML_QUANT_SIZES[qtype][1]
    nb = n // GGML_QUANT_SIZES[qtype][0]
    blocks = rng.integers(0, 256, (n_rows, nb, size), dtype=np.uint8)
    blocks[:, :, 0:2] = f16_bytes(rng.uniform(1e-3, 1e-1, (n_rows, nb))).reshape(n_rows, nb, 2)
    if qtype in (T.Q4_1, T.Q5_1):
        blocks[:, :, 2:4] = f16_bytes(rng.uniform(-0.1, 0.1, (n_rows, nb))).reshape(n_rows, nb, 2)
    if qtype == T.Q8_0:
        blocks[0, :, 2:], blocks[1, :, 2:] = 0x80, 0x7F
    return blocks.reshape(n_rows, -1)


def rounded_input(core, qtype, x, activations):
    """The float64 values core's kernels dot for one token x: its one rounded row (int8), its two
    (precise), or x itself (float weights take it as it is)."""
    if activations == "precise":
        return two_part_rounding(core, qtype, x)[0]
    fmt = core.type_info(int(qtype))["act_format"]
    if fmt == 0:
        return x.astype(np.float64)
    return dequantize_act(core.quantize_act_row(fmt, x), fmt, x.size, {1: 32, 2: 256}[fmt])


def assert_float64_dots(got, core, qtype, rows, x, activations):
    """got[t][r] is the dot of row r with token t's rounded input, up to float32 scale products and
    sums."""
    w = np.stack([reference_dequant(qtype, r) for r in rows]).astype(np.float64)
    for t in range(x.shape[0]):
        value = rounded_input(core, qtype, x[t], activations)
        scale = np.abs(w).max(axis=1) * np.abs(value).sum()
        assert np.all(np.abs(got[t] - w @ value) <= 1e-5 * scale + 1e-30), (qtype.name, activations, t)


@pytest.mark.parametrize("level", ROW_GROUP_LEVELS)
@pytest.mark.parametrize("qtype", BLOCK32, ids=lambda t: t.name)
def test_row_groups_dot_every_code_of_the_32_element_types(level, qtype):
    # The row-group layouts rearrange codes per instruction set (the AVX2 Q5 five-bit codes, the
    # AVX2 Q8_0 signed codes); both paths must still dot every code exactly, the extremes included.
    core = _testing.load_level(level)
    rng = np.random.default_rng(9300 + int(qtype))
    rows = random_code_rows(rng, qtype, N, 19)
    x = np.stack(act_rows(rng, N))[:5]
    for activations in ("int8", "precise"):
        got = core.matmul(int(qtype), rows, x, row_groups=True, activations=activations)
        assert_float64_dots(got, core, qtype, rows, x, activations)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("qtype", QUANTIZED, ids=lambda t: t.name)
def test_precise_matmul_is_bit_identical_across_batches_and_threads(qtype, level):
    # Each token's two rows go through the kernel together however many tokens a call holds: a
    # decode step (the kernels' one-pass path for two rows) gives the bits of a prefill batch.
    core = _testing.load_level(level)
    rng = np.random.default_rng(9200 + int(qtype))
    n = 768
    rows = row_group_matrix(rng, qtype, n, 50)
    x = np.concatenate([np.stack(act_rows(rng, n))] * 8)[:37]  # more tokens than one pass of the two-part loop
    assert x.shape[0] == 37
    for row_groups in {False, bool(core.has_row_group_kernel(int(qtype)))}:
        full = core.matmul(int(qtype), rows, x, row_groups=row_groups, activations="precise")
        threads = core.matmul(int(qtype), rows, x, row_groups=row_groups, n_threads=3, activations="precise")
        np.testing.assert_array_equal(threads.view(np.uint32), full.view(np.uint32))
        for t in (0, 16, 36):
            one = core.matmul(int(qtype), rows, x[t:t + 1], row_groups=row_groups, activations="precise")
            np.testing.assert_array_equal(one.view(np.uint32), full[t:t + 1].view(np.uint32))


def test_float_weights_ignore_the_setting():
    rng = np.random.default_rng(9300)
    rows = rng.standard_normal((8, 64)).astype(np.float32)
    x = rng.standard_normal((3, 64)).astype(np.float32)
    a = _testing.matmul(int(T.F32), rows.view(np.uint8), x, row_groups=False, activations="precise")
    b = _testing.matmul(int(T.F32), rows.view(np.uint8), x, row_groups=False, activations="int8")
    np.testing.assert_array_equal(a, b)


def test_unknown_setting_is_refused_by_the_kernels():
    with pytest.raises(ValueError, match="activations"):
        _testing.matmul(int(T.Q4_0), np.zeros((1, 18), np.uint8), np.ones((1, 32), np.float32), row_groups=False,
                        activations="int4")


# ---------------------------------------------------------------- the real model

CHAT = ("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
        "The capital of France is Paris. It is known for the Eiffel Tower.")


@pytest.fixture(scope="module")
def smollm2_logits(smollm2_path):
    """Teacher-forced logits of one chat on SmolLM2-135M Q4_1: float64 reference, precise, int8."""
    ids = Llama(smollm2_path, n_ctx=128, n_threads=2).tokenize(CHAT)
    exact = load_reference(smollm2_path).logits(ids)
    out = {"exact": exact}
    for activations in ("precise", "int8"):
        llm = Llama(smollm2_path, n_ctx=128, n_threads=2, activations=activations)
        out[activations] = np.asarray(llm.eval(ids, all_logits=True), np.float64)
    return out


def test_precise_logits_are_close_to_exact_arithmetic(smollm2_logits):
    # Goal: RMS <= 0.05 from the float64 forward of the same weights (int8 rounding: about 0.25).
    exact = smollm2_logits["exact"]
    rms = {k: float(np.sqrt(np.mean((smollm2_logits[k] - exact) ** 2))) for k in ("precise", "int8")}
    assert rms["precise"] <= 0.05, rms
    assert rms["int8"] > 4 * rms["precise"], rms  # the measurement sees the difference
    same_top1 = np.mean(smollm2_logits["precise"].argmax(1) == exact.argmax(1))
    assert same_top1 == 1.0, same_top1


def test_the_default_model_answers_the_chat_question(smollm2_path):
    # The symptom that int8 rounding showed: asked with its chat template, the model answered
    # "L'Étoile, la Mar…". The RMS above is the real goal.
    llm = Llama(smollm2_path, n_ctx=256, n_threads=2)
    answer = llm.create_chat_completion([{"role": "user", "content": "What is the capital of France?"}],
                                        max_tokens=12, temperature=0)
    assert "Paris" in answer["choices"][0]["message"]["content"]


def test_default_is_precise_on_the_cpu(smollm2_path):
    llm = Llama(smollm2_path, n_ctx=64, n_threads=1)
    assert llm.activations == "precise"
    assert Llama(smollm2_path, n_ctx=64, n_threads=1, activations="int8").activations == "int8"


@pytest.mark.parametrize("value", ["fp8", "", "INT8", 8])
def test_bad_settings_are_named_errors(smollm2_path, value):
    with pytest.raises(InvalidArgumentError, match="activations"):
        Llama(smollm2_path, n_ctx=64, n_threads=1, activations=value)
