"""The CUDA backend (edgellama._cuda, Llama(device="cuda")).

Runs everywhere:
  * the GPU's block decoders (csrc/cuda/formats.cuh), executed on the CPU, equal the CPU
    dequantizers bit for bit for every weight type (needs only the _cuda module, no GPU);
  * device="cuda" without the module or without a GPU raises DeviceUnavailableError, not a crash.

Needs a GPU (skipped with the reason otherwise): GPU logits against the float64 reference and the
CPU engine for the tiny models of every type, and for SmolLM2.

Tolerance of the GPU path, per row of logits (scale = max|reference logits|), the reference
keeping an fp16 KV cache as both engines do:
    max|GPU − reference| ≤ tol_cpu[row] + KV_MARGIN · max(kv_err[row], mean(kv_err))
where tol_cpu is logit_checks.expected_logits' bound (the CPU's int8 activation rounding for
quantized weights, FLOAT_REL·scale for float ones; the GPU multiplies float32 activations, so it
has less error there, not more) and kv_err[row] = max|reference(fp16 KV) − reference(exact KV)|,
the whole effect of the fp16 cache on the very file and tokens: it covers the GPU rounding a key
or value next to a half-way point the other way. Measured over the 22 forward cases × 3 seeds
× 12 positions, kv_err is at most 1.9e-3·scale (mean 2.7e-4·scale); KV_MARGIN = 2.5 as for the
int8 term, for summation order and exp differences. The CPU is within tol_cpu of the reference, so
GPU and CPU must agree within the sum of both bounds; both checks run.
"""

from __future__ import annotations

import numpy as np
import pytest

from logit_checks import assert_logits_close, expected_logits
from reference import load_reference
from test_kernels import ALL_TYPES, N, weight_rows
from tiny_models import FORWARD_CASES, write_tiny_llama

from edgellama import Llama, _core
from edgellama.cuda import cuda_status
from edgellama.errors import DeviceUnavailableError, EdgellamaError

KV_MARGIN = 2.5
PROMPT = [5, 17, 200, 3, 99, 42, 7]
DECODE = [261, 150, 2, 31, 64]

try:
    from edgellama import _cuda
except ImportError:  # built without nvcc: the module-only tests skip, the error tests run
    _cuda = None

GPU_OK, GPU_REASON = cuda_status()
needs_module = pytest.mark.skipif(_cuda is None, reason="edgellama._cuda not built (no nvcc at build time)")
needs_gpu = pytest.mark.skipif(not GPU_OK, reason=f"no usable CUDA GPU: {GPU_REASON}")


def gpu_tolerance(path, seq):
    """(reference logits, CPU bound, GPU bound) per row; see the module docstring."""
    ref, tol_cpu = expected_logits(path, seq)  # with the fp16 KV cache
    exact_kv = load_reference(path).logits(seq)
    kv_err = np.abs(ref - exact_kv).max(axis=1)
    return ref, tol_cpu, tol_cpu + KV_MARGIN * np.maximum(kv_err, kv_err.mean())


# ---------------------------------------------------------------- without a GPU

# the types the GPU kernels run: Q5_0/Q5_1 are CPU-only (edgellama.cuda.CPU_ONLY_TYPES)
GPU_TYPES = [t for t in ALL_TYPES if t.name not in ("Q5_0", "Q5_1")]


@needs_module
@pytest.mark.parametrize("qtype", GPU_TYPES, ids=lambda t: t.name)
def test_gpu_block_decoders_equal_cpu_dequantize_bitwise(qtype):
    rng = np.random.default_rng(2000 + int(qtype))
    for i, row in enumerate(weight_rows(rng, qtype)):
        gpu_path = _cuda.decode_row_host(int(qtype), row, N)
        cpu = _core.dequantize_row(int(qtype), row, N)
        bad = np.flatnonzero(gpu_path.view(np.uint32) != cpu.view(np.uint32))
        assert bad.size == 0, f"{qtype.name} row {i}: first mismatches at {bad[:5]}: {gpu_path[bad[:5]]} vs {cpu[bad[:5]]}"


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


def test_cpu_only_types_are_refused_by_the_cuda_backend(tmp_path, monkeypatch):
    """Q5_0/Q5_1 run on the CPU only: device='cuda' names the tensor at load, before any upload."""
    import edgellama.cuda as cuda_backend
    from edgellama.errors import UnsupportedModelError
    from edgellama.quantize import quantize

    class FakeModule:
        @staticmethod
        def device_count():
            return 1, ""

    monkeypatch.setattr(cuda_backend, "_cuda_module", lambda: FakeModule)
    src = write_tiny_llama(tmp_path / "f32.gguf", weight_type="F32")
    out = tmp_path / "q5_0.gguf"
    quantize(src, out, "Q5_0", log=lambda _m: None)
    with pytest.raises(UnsupportedModelError, match="Q5_0 runs on the CPU only"):
        Llama(str(out), n_ctx=64, device="cuda")


def test_unknown_device_is_rejected(tmp_path):
    path = write_tiny_llama(tmp_path / "tiny.gguf")
    with pytest.raises(ValueError, match="unknown device"):
        Llama(str(path), n_ctx=64, device="tpu")


# ---------------------------------------------------------------- on a GPU

# The forward cases whose weights the GPU runs (no Q5_0/Q5_1 files).
GPU_CASES = {name: kw for name, kw in FORWARD_CASES.items() if kw["weight_type"] not in ("Q5_0", "Q5_1")}


@pytest.fixture(scope="module")
def case_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cuda_forward")
    return {name: write_tiny_llama(folder / f"{name}.gguf", **kw) for name, kw in GPU_CASES.items()}


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
def test_gpu_truncate_reset_and_long_prefill(case_files):
    """truncate/reset rewind the device cache; a prompt longer than one internal batch (256) and
    the position-split attention of long contexts agree with a token-by-token evaluation."""
    path = case_files["Q4_K"]
    gpu = Llama(str(path), n_ctx=700, device="cuda")
    rng = np.random.default_rng(5)
    ids = [int(t) for t in rng.integers(0, 300, 600)]
    full = gpu.eval(ids, all_logits=True)
    gpu.truncate(590)
    again = gpu.eval(ids[590:], all_logits=True)
    scale = np.abs(full[590:]).max()
    np.testing.assert_allclose(again, full[590:], rtol=0, atol=1e-3 * scale)
    gpu.reset()
    assert gpu.n_past == 0
    first = gpu.eval(ids[:1])
    np.testing.assert_allclose(first, full[0], rtol=0, atol=1e-3 * np.abs(full[0]).max())


@needs_gpu
def test_gpu_out_of_memory_names_what_did_not_fit(case_files):
    from edgellama.errors import DeviceOutOfMemoryError

    with pytest.raises(DeviceOutOfMemoryError, match="KV cache"):
        Llama(str(case_files["F32"]), n_ctx=1 << 36, device="cuda")


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
