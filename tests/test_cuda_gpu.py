"""The CUDA backend on a GPU (skipped with the reason otherwise): GPU logits against the float64 reference and the
CPU engine for the tiny models of every type, and for SmolLM2, also with the engine options; the
device kernels against their host execution bit for bit (every GEMV reader, grouped ones too; the
captured decode step, with fused attention too, against kernel-by-kernel launches). The bound
on the logits: cuda_support's docstring.
"""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from cuda_support import (PROMPT, DECODE, _cuda, needs_module, needs_gpu, gpu_tolerance, QUANTIZED, READERS,
                          reader_id, row_length, long_row, device_row, device_rows, cuda_engine, host_engine,
                          case_and_options, GPU_CASES, token_rows, SAME_BITS_OPTIONS)
from cuda_support import case_files  # noqa: F401 (a fixture)
from logit_checks import assert_logits_close
from test_kernels import ALL_TYPES, reference_dequant, weight_rows

from edgellama import Llama, _testing


@needs_gpu
@pytest.mark.parametrize("case", sorted(GPU_CASES))
def test_gpu_prefill_then_decode_matches_reference_and_cpu(case_files, case):
    path = case_files[case]
    seq = PROMPT + DECODE
    ref, tol_cpu, tol_gpu = gpu_tolerance(path, seq)
    gpu = Llama(str(path), n_ctx=256, device="cuda")
    cpu = Llama(str(path), n_ctx=256, n_threads=2, device="cpu")
    got = gpu.eval(PROMPT, all_logits=True)
    want = cpu.eval(PROMPT, all_logits=True)
    assert got.dtype == np.float32 and got.shape == (len(PROMPT), ref.shape[1])
    n = len(PROMPT)
    assert_logits_close(got, ref[:n], tol_gpu[:n], f"{case} GPU prefill vs reference")
    assert_logits_close(got, want, tol_gpu[:n] + tol_cpu[:n], f"{case} GPU vs CPU prefill")
    for i, tok in enumerate(DECODE):
        pos = n + i
        step = gpu.eval([tok])
        cpu_step = cpu.eval([tok])
        assert step.shape == (ref.shape[1],)
        assert_logits_close(step[None], ref[pos:pos + 1], tol_gpu[pos:pos + 1], f"{case} GPU decode {pos}")
        assert_logits_close(step[None], cpu_step[None], tol_gpu[pos:pos + 1] + tol_cpu[pos:pos + 1],
                            f"{case} GPU vs CPU decode {pos}")
    assert gpu.n_past == len(seq)


@needs_gpu
@pytest.mark.parametrize("case", ["mixed-Q4_0-Q8_0-F16-Q6_K+grouped_rows", "Q8_0-256+grouped_rows+fused_attention",
                                  "mixed-Q4_K_M-2048+grouped_rows+fused_attention+fused_swiglu_quant",
                                  "gqa3-Q4_1+fused_attention", "Q4_K+fused_attention+fused_swiglu_quant",
                                  "Q8_0-256+fused_swiglu_quant", "gqa3-Q4_1+fused_rope",
                                  "mixed-Q4_0-Q8_0-F16-Q6_K+grouped_rows+fused_rope+prefetch_weights"])
def test_gpu_engine_options_match_reference(case_files, case):
    """The CudaOptions on the raw engine (each off unless named; Llama turns grouped rows on):
    Q4_0 / Q8_0 / Q6_K uploaded in grouped rows (the GEMV's 16-byte loads, the tensor-core and
    embedding readers of that layout), attention's splits merged (and its output quantized) in its kernel, the SwiGLU GEMV quantizing its output,
    the decode step's Q/K/V GEMV applying RoPE and filling the KV cache, GEMV blocks prefetching
    their weights. A 20-token prefill (tensor cores) and decode steps within the reference's bound."""
    name, options = case_and_options(case)
    path = case_files[name]
    ids = [int(t) for t in np.random.default_rng(13).integers(0, 300, 20)] + DECODE
    ref, _, tol = gpu_tolerance(path, ids)
    gpu = cuda_engine(path, 64, 0, options)
    assert gpu.grouped_rows == ("grouped_rows" in options)
    assert_logits_close(gpu.forward(np.array(ids[:20], np.int32), True), ref[:20], tol[:20], f"{case} prefill")
    for i, tok in enumerate(DECODE):
        step = gpu.forward(np.array([tok], np.int32), False)
        assert_logits_close(step[None], ref[20 + i:21 + i], tol[20 + i:21 + i], f"{case} decode {i}")


@needs_gpu
def test_gpu_truncate_reset_and_long_prefill(case_files):
    """truncate/reset rewind the device cache; a prompt longer than one internal batch (256) and
    the position-split attention of long contexts stay within the reference's bound. (Prefill and
    re-evaluation need not agree bit for bit: the attention splits depend on the batch, and the
    int8 activations can round the other way.)"""
    path = case_files["Q4_K"]
    rng = np.random.default_rng(5)
    ids = [int(t) for t in rng.integers(0, 300, 600)]
    ref, _, tol = gpu_tolerance(path, ids)
    gpu = Llama(str(path), n_ctx=700, device="cuda")
    full = gpu.eval(ids, all_logits=True)
    assert_logits_close(full, ref, tol, "600-token prefill")
    gpu.truncate(590)
    again = gpu.eval(ids[590:], all_logits=True)
    assert_logits_close(again, ref[590:], tol[590:], "re-evaluation after truncate(590)")
    gpu.reset()
    assert gpu.n_past == 0
    first = gpu.eval(ids[:1])
    assert_logits_close(first[None], ref[:1], tol[:1], "first token after reset")


@needs_gpu
@pytest.mark.parametrize("n_tokens", [1, 8, 11, 40], ids=lambda n: f"{n}tok")  # 11: a full tile, then a partial one
@pytest.mark.parametrize("reader", READERS, ids=reader_id)
def test_gpu_int8_matmul_equals_its_host_execution_bitwise(reader, n_tokens):
    """The device kernels (activation quantization, dp4a dots, split over warps and summed, tiles of tokens)
    give exactly the bits of the same code run on the CPU, which the no-GPU tests check against
    numpy and the CPU engine: a mismatch here is a device-only fault (intrinsics, alignment,
    indexing), told apart from an arithmetic one. (Tensor cores off: they sum differently.)"""
    qtype, grouped = reader
    rng = np.random.default_rng(2300 + int(qtype) + n_tokens)
    n = long_row(reader)  # several pieces a lane and a ragged last round
    rows = weight_rows(rng, qtype, n)
    x = token_rows(rng, n, n_tokens)
    y = _cuda.run_matmul(int(qtype), np.concatenate(rows), len(rows), n, x, tensor_cores=False, grouped_rows=grouped)
    assert y.shape == (n_tokens, len(rows))
    want = np.array([[_cuda.int8_dot_host(*device_row(qtype, r, n, grouped), xt) for r in rows] for xt in x],
                    np.float32)
    bad = np.argwhere(y.view(np.uint32) != want.view(np.uint32))
    assert bad.size == 0, f"{qtype.name}: (token, row) {bad[:5].tolist()}: {y[tuple(bad[0])]} vs {want[tuple(bad[0])]}"


@needs_gpu
@pytest.mark.parametrize("n_tokens", [16, 40], ids=lambda n: f"{n}tok")  # 40: a second, partial token tile
@pytest.mark.parametrize("reader", READERS, ids=reader_id)
def test_gpu_tensor_core_prefill_equals_cpu_scalar_dot_bitwise(reader, n_tokens):
    """Prefill on int8 tensor cores: each MMA gives a block's (K-quants: a sub-block's) exact
    integer sums, combined and scaled in the CPU's expressions block by block (super-block by
    super-block), so every (row, token) must equal the CPU's scalar vec_dot bit for bit (rows: two
    32-row tiles and a partial one)."""
    qtype, grouped = reader
    rng = np.random.default_rng(2500 + int(qtype) + n_tokens)
    n = row_length(reader, 1024)
    rows = [r for _ in range(12) for r in weight_rows(rng, qtype, n)][:70]
    x = token_rows(rng, n, n_tokens)
    y = _cuda.run_matmul(int(qtype), np.concatenate(rows), len(rows), n, x, grouped_rows=grouped)
    want = np.array([[_testing.vec_dot(int(qtype), r, xt, scalar=True) for r in rows] for xt in x], np.float32)
    bad = np.argwhere(y.view(np.uint32) != want.view(np.uint32))
    assert bad.size == 0, f"{qtype.name}: (token, row) {bad[:5].tolist()}: {y[tuple(bad[0])]} vs {want[tuple(bad[0])]}"


@needs_gpu
@pytest.mark.parametrize("case", ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K", "mixed-Q4_K_M",
                                  "mixed-Q4_0-Q8_0-F16-Q6_K"])
def test_gpu_tensor_core_prefill_matches_reference(case_files, case, monkeypatch):
    """A 40-token prompt (tensor cores from 16 tokens on) within the reference's bound, with and
    without tensor cores (CudaOptions.tensor_cores=False: the dp4a tiles)."""
    path = case_files[case]
    ids = [int(t) for t in np.random.default_rng(9).integers(0, 300, 40)]
    ref, _, tol = gpu_tolerance(path, ids)
    monkeypatch.delenv("EDGELLAMA_CUDA_OPTIONS", raising=False)  # the options here are the test's
    for mma in (True, False):
        gpu = Llama(str(path), n_ctx=128, device="cuda", cuda_options={"tensor_cores": mma})
        assert gpu._core.tensor_cores == mma
        assert_logits_close(gpu.eval(ids, all_logits=True), ref, tol, f"{case} prefill, tensor_cores={mma}")


@needs_gpu
@pytest.mark.parametrize("qtype", [t for t in ALL_TYPES if t not in QUANTIZED], ids=lambda t: t.name)
def test_gpu_float_matmul_matches_numpy(qtype):
    rng = np.random.default_rng(2400 + int(qtype))
    n = 1024
    rows = weight_rows(rng, qtype, n)[:-1]  # the inf / full-range rows have no finite dot
    x = token_rows(rng, n, 11)
    y = _cuda.run_matmul(int(qtype), np.concatenate(rows), len(rows), n, x)
    w = np.stack([reference_dequant(qtype, r) for r in rows]).astype(np.float64)
    want = x.astype(np.float64) @ w.T
    magnitude = np.abs(x.astype(np.float64)) @ np.abs(w).T
    assert np.all(np.abs(y - want) <= 1e-5 * magnitude + 1e-30)


@needs_gpu
def test_gpu_matmul_timing_probe():
    w = weight_rows(np.random.default_rng(1), T.Q4_0, 4096)[0]
    rows = np.tile(w, 64)
    seconds = _cuda.time_matmul(int(T.Q4_0), rows, 64, 4096, n_tokens=1, repeats=5)
    assert 0 < seconds < 1
    assert 0 < _cuda.time_matmul(int(T.Q4_0), rows, 64, 4096, n_tokens=1, repeats=5, grouped_rows=True) < 1
    assert 0 < _cuda.time_matmul(int(T.Q4_0), rows, 64, 4096, n_tokens=1, repeats=5, prefetch_weights=True) < 1
    for variant in range(len(_cuda.gemv_probe_shapes())):  # every block shape and in-flight depth launches
        for grouped in (False, True):
            assert 0 < _cuda.time_matmul(int(T.Q4_0), rows, 64, 4096, repeats=2, gemv_shape=variant,
                                         grouped_rows=grouped) < 1
    with pytest.raises(Exception, match="bad weight type or shape"):
        _cuda.time_matmul(int(T.Q4_0), rows, 64, 4096 + 32, n_tokens=1, repeats=5)


@needs_gpu
@pytest.mark.parametrize("prompt_len", [40, 2100, 5000])
@pytest.mark.parametrize("fused", ["0", "1"], ids=["two-pass", "fused"])
def test_gpu_decode_graph_equals_kernel_by_kernel_decode(case_files, prompt_len, fused, monkeypatch):
    """The captured decode step (one graph per attention split count, positions read on the
    device, splits of the position rounded up to a power of two) gives the same bits as launching
    its kernels one by one, also after a truncate rewinds the position the graph replays at. The
    graph's attention merges its splits by a separate kernel, or in the attention kernel (the same
    merge, so the same bits as the kernel-by-kernel two passes, and its split counts must be back
    at zero for every replay)."""
    path = case_files["Q4_K"]
    stream = Llama(str(path), n_ctx=8192, device="cuda", cuda_options={"cuda_graphs": False})
    # The one environment override, as scripts use it.
    monkeypatch.setenv("EDGELLAMA_CUDA_OPTIONS", f"fused_attention={fused}")
    graph = Llama(str(path), n_ctx=8192, device="cuda")
    assert graph._core.fused_attention == (fused == "1") and not stream._core.fused_attention
    assert graph._core.cuda_graphs and not stream._core.cuda_graphs
    rng = np.random.default_rng(prompt_len)
    prompt = [int(t) for t in rng.integers(0, 300, prompt_len)]
    steps = [int(t) for t in rng.integers(0, 300, 6)]
    for llm in (stream, graph):
        llm.eval(prompt)
    for i, tok in enumerate(steps):
        if i == 3:
            for llm in (stream, graph):
                llm.truncate(prompt_len - 5)
        want, got = stream.eval([tok]), graph.eval([tok])
        np.testing.assert_array_equal(got, want, err_msg=f"step {i}")
    assert graph.n_past == stream.n_past


@needs_gpu
@pytest.mark.parametrize("case", ["Q4_K", "gqa3-Q4_1", "mixed-Q4_0-Q8_0-F16-Q6_K"])
def test_gpu_fused_decode_step_equals_the_default_bitwise(case_files, case):
    """On the GPU too, the fusions change no operation: the captured decode step with every fusion
    on (its last blocks merging attention, quantizing the SwiGLU output, rotating and caching each
    Q/K/V head, counts reset for the next replay), its GEMVs also prefetching their weights, gives
    the default step's logits bit for bit, over replays at successive positions and after a
    truncate."""
    path = case_files[case]
    plain, fused = cuda_engine(path, 256, 0), cuda_engine(path, 256, 0, SAME_BITS_OPTIONS)
    prompt = [int(t) for t in np.random.default_rng(17).integers(0, 300, 40)]
    for engine in (plain, fused):
        engine.forward(np.array(prompt, np.int32), False)
    for i, tok in enumerate(DECODE * 2):
        if i == 6:
            for engine in (plain, fused):
                engine.truncate(len(prompt) + 2)
        tok = np.array([tok], np.int32)
        np.testing.assert_array_equal(fused.forward(tok, False).view(np.uint32),
                                      plain.forward(tok, False).view(np.uint32), err_msg=f"{case} step {i}")


@needs_gpu
@pytest.mark.parametrize("case", ["Q4_K", "gqa3-Q4_1"])
def test_gpu_greedy_generation_chooses_on_the_device_with_the_same_tokens(case_files, case, monkeypatch):
    """CudaOptions.greedy_on_device: greedy generation's steps return only the device's choice (its
    own captured graphs); the tokens are those of choosing from the downloaded logits, the
    log-probabilities agree within 1e-5, and a plain eval still returns logits afterwards."""
    prompt = [int(t) for t in np.random.default_rng(19).integers(0, 300, 30)]
    from_logits = Llama(str(case_files[case]), n_ctx=256, device="cuda", cuda_options={"greedy_on_device": False})
    want = list(from_logits.stream_tokens(prompt, max_tokens=12, temperature=0))
    monkeypatch.delenv("EDGELLAMA_CUDA_OPTIONS", raising=False)
    on_device = Llama(str(case_files[case]), n_ctx=256, device="cuda", cuda_options={"greedy_on_device": True})
    assert on_device._greedy_on_device and not from_logits._greedy_on_device
    got = list(on_device.stream_tokens(prompt, max_tokens=12, temperature=0))
    assert [r.token for r in got] == [r.token for r in want]
    np.testing.assert_allclose([r.logprob for r in got], [r.logprob for r in want], atol=1e-5)
    assert on_device.eval([got[-1].token]).shape == (on_device.n_vocab,)


@needs_gpu
def test_gpu_out_of_memory_names_what_did_not_fit(case_files):
    from edgellama.errors import DeviceOutOfMemoryError

    with pytest.raises(DeviceOutOfMemoryError, match="KV cache"):
        Llama(str(case_files["F32"]), n_ctx=(1 << 31) - 1, device="cuda")


@needs_gpu
def test_smollm2_gpu_matches_reference_and_cpu(smollm2_path):
    llm_gpu = Llama(smollm2_path, n_ctx=512, device="cuda")
    llm_cpu = Llama(smollm2_path, n_ctx=512, device="cpu")
    ids = llm_cpu.tokenize("The capital of France is")
    ref, tol_cpu, tol_gpu = gpu_tolerance(smollm2_path, ids)
    got = llm_gpu.eval(ids, all_logits=True)
    want = llm_cpu.eval(ids, all_logits=True)
    assert_logits_close(got, ref, tol_gpu, "SmolLM2 GPU vs reference")
    assert_logits_close(got, want, tol_gpu + tol_cpu, "SmolLM2 GPU vs CPU")
    llm_gpu.reset()
    assert "Paris" in llm_gpu.generate("The capital of France is", max_tokens=8, temperature=0)


@needs_module
def test_generations_run_on_the_single_sequence_engine_through_the_scheduler(case_files):
    """The CUDA engine (executed on the host) behind the scheduler's single-sequence adapter: a
    generation, a follow-up that reuses its cache (its choice made by the engine's own greedy
    step, greedy_on_device) and eval on sequence 0 give what driving the engine by hand gives."""
    from edgellama.engine import Scheduler
    from edgellama.engine.backends import SingleSequenceBackend

    path = case_files["gqa3-Q4_1"]
    engine = host_engine(path, 64)
    prompt_logits = engine.forward(np.array(PROMPT, np.int32), False)
    want = [int(np.argmax(prompt_logits))]
    want.append(int(np.argmax(engine.forward(np.array(want, np.int32), False))))
    engine.reset()
    llm = Llama(str(path), n_ctx=64, device="cpu")
    llm._core = SingleSequenceBackend(engine)
    llm._scheduler = Scheduler(llm._core, 64, 1)
    llm.tokenizer._stop_ids = frozenset()  # a random model may choose its end-of-turn token
    assert [r.token for r in llm.stream_tokens(PROMPT, max_tokens=2, temperature=0)] == want
    llm._core.greedy_on_device = True
    choices = []
    greedy_choice = llm._core.greedy_choice
    llm._core.greedy_choice = lambda tokens: choices.append(greedy_choice(tokens)) or choices[-1]
    follow_up = list(llm.stream_tokens(PROMPT + want[:1], max_tokens=1, temperature=0))
    assert [r.token for r in follow_up] == want[1:] and follow_up[0].stats.reused_tokens == len(PROMPT)
    assert [c[0] for c in choices] == want[1:]  # the engine chose
    llm.reset()
    assert np.array_equal(llm.eval(PROMPT), prompt_logits)


# ---------------------------------------------------------------- precise activations on the GPU
# (their host execution: test_cuda_precise.py)


@needs_gpu
@pytest.mark.parametrize("n_tokens", [1, 5, 20], ids=lambda n: f"{n}tok")  # 20: the tensor-core tiles
@pytest.mark.parametrize("reader", READERS, ids=reader_id)
def test_gpu_precise_matmul_equals_its_host_execution_bitwise(reader, n_tokens):
    """Precise activations (two int8 rows a token, both dotted, their sums added where stored):
    the device's quantize kernel, GEMV tiles and tensor-core tiles give exactly the bits of the
    same code run on the CPU, which test_cuda_precise.py holds to float64 and the CPU engine."""
    qtype, grouped = reader
    rng = np.random.default_rng(9900 + int(qtype) + n_tokens)
    n = long_row(reader)
    rows = weight_rows(rng, qtype, n)
    x = token_rows(rng, n, n_tokens)
    type_id, w = device_rows(qtype, rows, n, grouped)
    for mma in (False, True) if n_tokens >= 16 else (False,):
        y = _cuda.run_matmul(int(qtype), np.concatenate(rows), len(rows), n, x, tensor_cores=mma,
                             grouped_rows=grouped, precise=True)
        want = (_cuda.mma_matmul_host(type_id, w, len(rows), x, precise=True) if mma
                else _cuda.gemv_host(type_id, w, None, len(rows), x, precise=True))
        bad = np.argwhere(y.view(np.uint32) != want.view(np.uint32))
        assert bad.size == 0, f"{reader_id(reader)} mma={mma}: (token, row) {bad[:5].tolist()}"


@needs_gpu
def test_gpu_precise_engine_matches_reference_and_cpu(tmp_path):
    """Llama(device="cuda", activations="precise") on a file of every quantized type: a prefill and
    captured decode steps within the precise bound of the reference and of the CPU engine's
    precise logits; the fusions give its bits; the int8 engine is further from the reference."""
    from test_cuda_precise import EVERY_TYPE_FILE, precise_tolerance, rms
    from tiny_models import write_tiny_llama

    path = write_tiny_llama(tmp_path / "all-types.gguf", **EVERY_TYPE_FILE)
    seq = PROMPT + DECODE
    ref, tol_cpu, tol_gpu = precise_tolerance(path, seq)
    n = len(PROMPT)

    def run(llm):
        return np.concatenate([llm.eval(PROMPT, all_logits=True)] + [llm.eval([t])[None] for t in DECODE])

    gpu = Llama(str(path), n_ctx=64, device="cuda", activations="precise")
    assert gpu.activations == "precise" and gpu._core.activations == "precise"
    got = run(gpu)
    assert_logits_close(got, ref, tol_gpu, "precise GPU vs reference")
    assert_logits_close(got, run(Llama(str(path), n_ctx=64, device="cpu")), tol_gpu + tol_cpu, "precise GPU vs CPU")
    fused = Llama(str(path), n_ctx=64, device="cuda", activations="precise",
                  cuda_options={name: True for name in SAME_BITS_OPTIONS})
    np.testing.assert_array_equal(run(fused), got)
    int8 = Llama(str(path), n_ctx=64, device="cuda").eval(PROMPT, all_logits=True)
    assert rms(got[:n], ref[:n]) * 10 < rms(int8, ref[:n])


@needs_gpu
def test_smollm2_gpu_precise_is_close_to_exact_arithmetic(smollm2_path):
    """On the real model, the GPU's precise logits sit within the CPU's goal (RMS <= 0.05) of the
    float64 forward, several times closer than its int8 logits."""
    from reference import load_reference

    cpu = Llama(smollm2_path, n_ctx=256, device="cpu")
    ids = cpu.tokenize("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
                       "The capital of France is Paris.")
    exact = load_reference(smollm2_path).logits(ids)
    out = {}
    for activations in ("precise", "int8"):
        gpu = Llama(smollm2_path, n_ctx=256, device="cuda", activations=activations)
        out[activations] = float(np.sqrt(np.mean((gpu.eval(ids, all_logits=True) - exact) ** 2)))
    assert out["precise"] <= 0.05 and out["int8"] > 4 * out["precise"], out
