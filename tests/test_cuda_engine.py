"""The CUDA engine (edgellama._cuda.CudaLlamaModel, Llama(device="cuda")) without a GPU:
  * the engine's whole forward step (llama_cuda_model.cu) on the host backend against the
    reference, with and without the engine options (CudaOptions), and its greedy step (the choice
    made where the logits are) against numpy's argmax and log-softmax of its logits;
  * device="cuda" without the module or without a GPU raises DeviceUnavailableError, not a crash.
"""

from __future__ import annotations

import numpy as np
import pytest

from cuda_support import (PROMPT, DECODE, _cuda, GPU_OK, needs_module, gpu_tolerance, cuda_engine, host_engine,
                          case_and_options, SAME_BITS_OPTIONS)
from cuda_support import case_files  # noqa: F401 (a fixture)
from logit_checks import assert_logits_close
from tiny_models import write_tiny_llama

from edgellama import Llama
from edgellama.errors import DeviceUnavailableError, EdgellamaError


@needs_module
@pytest.mark.parametrize("case", ["Q4_K", "gqa3-Q4_1", "head_dim128-Q8_0", "untied-Q4_K-Q6_K_output",
                                  "mixed-Q4_0-Q8_0-F16-Q6_K", "rope_freqs-F32", "rope_yarn-rope_freqs-Q4_1",
                                  "mixed-Q4_0-Q8_0-F16-Q6_K+grouped_rows", "Q8_0-256+grouped_rows+fused_attention",
                                  "mixed-Q4_K_M-2048+grouped_rows", "gqa3-Q4_1+fused_attention",
                                  "Q4_K+fused_attention+fused_swiglu_quant", "Q8_0-256+fused_swiglu_quant",
                                  "mixed-Q4_0-Q8_0-F16-Q6_K+fused_swiglu_quant", "gqa3-Q4_1+fused_rope",
                                  "mixed-Q4_K_M-2048+grouped_rows+fused_attention+fused_swiglu_quant+fused_rope"])
def test_engine_step_on_the_host_matches_reference(case_files, case):
    """The whole forward step of the CUDA engine (llama_cuda_model.cu: buffers, the op sequence,
    RoPE positions, KV-cache rows, logits rows) run on the host: prefill then decode within the
    GPU bound of the reference, and truncate/reset rewind it. With "+" options (CudaOptions):
    grouped_rows uploads Q4_0 / Q8_0 / Q6_K rows grouped (the embedding too, whose rows the grouped
    decoder then looks up); fused_attention merges attention's splits in its kernel and quantizes
    its output there (gqa3: 32-element blocks over two heads of 16; Q4_K: 256 over four of 64);
    fused_swiglu_quant has the SwiGLU GEMV quantize its output for ffn_down (the mixed file: a
    F16 gate, so two matmuls and the quantize kernel instead); fused_rope has a decode step's Q/K/V
    GEMV rotate and cache each head its blocks complete (gqa3: heads of 16 rows; the Q4_K_M mix:
    Q6_K values in a launch of their own, so a KV head completes across two launches)."""
    name, options = case_and_options(case)
    path = case_files[name]
    seq = PROMPT + DECODE
    ref, _, tol = gpu_tolerance(path, seq)
    engine = host_engine(path, 64, options)
    assert "host execution" in engine.device_name
    assert engine.grouped_rows == ("grouped_rows" in options)
    assert engine.fused_attention == ("fused_attention" in options)
    assert engine.fused_swiglu_quant == ("fused_swiglu_quant" in options)
    assert engine.fused_rope == ("fused_rope" in options)
    n = len(PROMPT)
    got = engine.forward(np.array(PROMPT, np.int32), True)
    assert got.shape == (n, ref.shape[1])
    assert_logits_close(got, ref[:n], tol[:n], f"{case} host-run prefill")
    for i, tok in enumerate(DECODE):
        step = engine.forward(np.array([tok], np.int32), False)
        assert_logits_close(step[None], ref[n + i:n + i + 1], tol[n + i:n + i + 1], f"{case} host-run decode {i}")
    assert engine.n_past == len(seq)
    engine.truncate(n)
    again = engine.forward(np.array(DECODE[:1], np.int32), False)
    assert_logits_close(again[None], ref[n:n + 1], tol[n:n + 1], f"{case} host-run after truncate")
    engine.reset()
    first = engine.forward(np.array(seq[:1], np.int32), False)
    assert_logits_close(first[None], ref[:1], tol[:1], f"{case} host-run after reset")


@needs_module
@pytest.mark.parametrize("case", ["gqa3-Q4_1", "mixed-Q4_0-Q8_0-F16-Q6_K", "rope_freqs-F32"])
def test_engine_fusions_on_the_host_give_the_default_bits(case_files, case):
    """The fusions move work into another kernel's last blocks without changing a single
    operation: with all of them on, the host-run engine's prefill and decode logits equal the
    default engine's bit for bit, step after step (a count left non-zero, or a head rotated twice
    or not at all, would show from the next step on), and after a truncate. The files mix launch
    groups (Q/K/V in one to three launches) and fall back where a fusion does not apply (F32
    matrices: the separate kernels)."""
    path = case_files[case]
    plain, fused = host_engine(path, 64), host_engine(path, 64, SAME_BITS_OPTIONS)
    assert all(getattr(fused, name) for name in SAME_BITS_OPTIONS)
    for engine_step in ([PROMPT], [[t] for t in DECODE]):
        for tokens in engine_step:
            want = plain.forward(np.array(tokens, np.int32), True)
            got = fused.forward(np.array(tokens, np.int32), True)
            np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32), err_msg=f"{case} {tokens}")
    for engine in (plain, fused):
        engine.truncate(len(PROMPT) + 1)
    tok = np.array(DECODE[-1:], np.int32)
    np.testing.assert_array_equal(fused.forward(tok, False).view(np.uint32), plain.forward(tok, False).view(np.uint32))


@needs_module
def test_grouped_upload_on_several_threads_gives_the_same_engine(case_files):
    """The upload regroups each chunk of rows on n_threads threads (a row range each): three
    threads give the one-thread engine's logits bit for bit (Q4_0, Q8_0 and 2048-wide Q6_K rows)."""
    for case in ("mixed-Q4_0-Q8_0-F16-Q6_K", "mixed-Q4_K_M-2048"):
        one, three = (cuda_engine(case_files[case], 16, -1, ("grouped_rows",), n_threads=t) for t in (1, 3))
        tokens = np.array(PROMPT, np.int32)
        np.testing.assert_array_equal(three.forward(tokens, True).view(np.uint32),
                                      one.forward(tokens, True).view(np.uint32), err_msg=case)


@needs_module
def test_engine_greedy_step_on_the_host_returns_the_choice_of_its_logits(case_files):
    """forward_greedy (the last token's logits kept on the device, the greedy choice made there)
    after a prefill and after single-token steps: the argmax of the logits forward gives for the
    same tokens, and their log-softmax; the cache advances the same. Ids outside the vocabulary and
    a context overflow are clear errors that evaluate nothing."""
    path = case_files["gqa3-Q4_1"]
    logits_engine, greedy_engine = host_engine(path, 64), host_engine(path, 64)
    for tokens in [PROMPT] + [[t] for t in DECODE[:2]]:
        logits = logits_engine.forward(np.array(tokens, np.int32), False).astype(np.float64)
        token, logprob = greedy_engine.forward_greedy(np.array(tokens, np.int32))
        assert token == int(np.argmax(logits))
        assert logprob == pytest.approx(logits[token] - logits.max() - np.log(np.exp(logits - logits.max()).sum()),
                                        abs=1e-6)
        assert greedy_engine.n_past == logits_engine.n_past
    n_past = greedy_engine.n_past
    with pytest.raises(IndexError, match="outside the vocabulary"):
        greedy_engine.forward_greedy(np.array([10**6], np.int32))
    with pytest.raises(ValueError, match="context overflow"):
        greedy_engine.forward_greedy(np.zeros(64, np.int32))
    assert greedy_engine.n_past == n_past  # nothing evaluated


@needs_module
@pytest.mark.parametrize("case", ["Q4_0", "Q4_K", "mixed-Q4_0-Q8_0-F16-Q6_K+grouped_rows"])
def test_engine_tensor_core_prefill_on_the_host_matches_reference(case_files, case):
    """A 20-token prompt takes the tensor-core tiles (from 16 tokens) inside the engine's step."""
    name, options = case_and_options(case)
    path = case_files[name]
    ids = [int(t) for t in np.random.default_rng(11).integers(0, 300, 20)]
    ref, _, tol = gpu_tolerance(path, ids)
    engine = host_engine(path, 32, options)
    assert engine.tensor_cores
    assert_logits_close(engine.forward(np.array(ids, np.int32), True), ref, tol, f"{case} host-run MMA prefill")


@needs_module
def test_module_reports_devices_without_raising():
    count, why = _cuda.device_count()
    assert count >= 0
    assert count > 0 or why  # zero devices always comes with a reason


@pytest.mark.skipif(GPU_OK, reason="a CUDA GPU is visible: the no-GPU error cannot be provoked here")
def test_cuda_device_without_gpu_is_a_clear_error(tmp_path):
    path = write_tiny_llama(tmp_path / "tiny.gguf", weight_type="Q4_0")
    with pytest.raises(DeviceUnavailableError) as info:
        Llama(str(path), n_ctx=64, device="cuda")
    assert isinstance(info.value, EdgellamaError)
    message = str(info.value)
    assert "cuda" in message.lower() and "device='cpu'" in message
    # the CPU path still works in the same process
    assert Llama(str(path), n_ctx=64, device="cpu").eval([1, 2, 3]).shape == (300,)


def test_cuda_device_without_the_module_is_a_clear_error(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "edgellama._cuda", None)  # as if built without nvcc
    path = write_tiny_llama(tmp_path / "tiny.gguf")
    with pytest.raises(DeviceUnavailableError, match="edgellama._cuda"):
        Llama(str(path), n_ctx=64, device="cuda")


def test_unknown_device_is_rejected(tmp_path):
    path = write_tiny_llama(tmp_path / "tiny.gguf")
    with pytest.raises(ValueError, match="unknown device"):
        Llama(str(path), n_ctx=64, device="tpu")
