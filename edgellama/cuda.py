"""The GPU backend: `Llama(path, device="cuda")` runs the whole forward step on an NVIDIA GPU.

The engine lives in the optional extension module `edgellama._cuda` (built when nvcc is found at
install time; see README, "CUDA"). Weights are uploaded once in their GGUF block formats, the KV
cache is fp16 on the device, and only the logits come back. The object `create_cuda_model` returns
has the interface of `_core.LlamaModel`: forward(tokens, all_logits), truncate(n), reset(),
n_past, n_ctx, n_threads.
"""

from __future__ import annotations

import importlib
import os
from typing import Tuple

from edgellama.errors import DeviceUnavailableError, UnsupportedModelError


def _cuda_module():
    """edgellama._cuda, or DeviceUnavailableError saying why it cannot be used."""
    try:
        _cuda = importlib.import_module("edgellama._cuda")
    except ImportError as exc:
        raise DeviceUnavailableError(
            "device='cuda' needs edgellama's CUDA module (edgellama._cuda), which this installation "
            f"does not have ({exc}). Reinstall where nvcc is on PATH (pip install . builds it "
            "automatically; -C cmake.define.EDGELLAMA_CUDA=on makes its absence an error), "
            "or use device='cpu'.") from exc
    return _cuda


def cuda_status() -> Tuple[bool, str]:
    """(True, description of GPU 0) when device='cuda' can run, else (False, the reason)."""
    try:
        _cuda = _cuda_module()
    except DeviceUnavailableError as exc:
        return False, str(exc)
    count, why = _cuda.device_count()
    if count == 0:
        return False, f"no CUDA GPU is visible ({why})"
    return True, _cuda.device_description(0)


def is_available() -> bool:
    return cuda_status()[0]


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "0") not in ("", "0")


def create_cuda_model(model, n_ctx: int, n_threads: int, device: int = 0):
    """The GPU engine for a validated GGUFModel (edgellama.gguf_loader).

    Raises DeviceUnavailableError without the CUDA module or a visible GPU,
    DeviceOutOfMemoryError (naming the buffer) when the model or its KV cache does not fit,
    UnsupportedModelError for a shape the GPU kernels do not handle (head_dim > 256), and
    DeviceError for any other CUDA failure. Decode steps run as one captured CUDA graph unless the
    environment sets EDGELLAMA_CUDA_GRAPHS=0 (kernels launched one by one; same results), and the
    prefill of 32-element formats on int8 tensor cores unless EDGELLAMA_CUDA_MMA=0 (dp4a tiles).
    On sm_90+ kernels are launched as programmatic dependents of the one before (launch latency
    hidden, same results) unless EDGELLAMA_CUDA_PDL=0 (read once per process).
    Choices not yet on by default (awaiting their measurement on a GPU):
    EDGELLAMA_CUDA_GROUPED_ROWS=1 uploads Q4_0 / Q8_0 / Q6_K rows regrouped for 16-byte loads,
    EDGELLAMA_CUDA_FUSED_ATTENTION=1 merges attention's position splits inside its kernel (and
    quantizes its output there), EDGELLAMA_CUDA_FUSED_SWIGLU_QUANT=1 has the SwiGLU GEMV quantize
    its output for ffn_down, EDGELLAMA_CUDA_FUSED_ROPE=1 has a decode step's Q/K/V GEMV apply RoPE
    and store the keys and values, EDGELLAMA_CUDA_PREFETCH_WEIGHTS=1 has GEMV blocks prefetch their
    weight rows into the L2 before waiting for the kernel before them.
    """
    _cuda = _cuda_module()
    count, why = _cuda.device_count()
    if count == 0:
        raise DeviceUnavailableError(f"device='cuda' needs an NVIDIA GPU, but none is visible ({why}); "
                                     "use device='cpu'")
    if not 0 <= device < count:
        raise DeviceUnavailableError(f"CUDA device {device} does not exist ({count} visible)")
    try:
        engine = _cuda.CudaLlamaModel(model.config.core_dict(), model.core_tensors(), n_ctx, n_threads, device,
                                      grouped_rows=_env_flag("EDGELLAMA_CUDA_GROUPED_ROWS"),
                                      fused_attention=_env_flag("EDGELLAMA_CUDA_FUSED_ATTENTION"),
                                      fused_swiglu_quant=_env_flag("EDGELLAMA_CUDA_FUSED_SWIGLU_QUANT"),
                                      fused_rope=_env_flag("EDGELLAMA_CUDA_FUSED_ROPE"),
                                      prefetch_weights=_env_flag("EDGELLAMA_CUDA_PREFETCH_WEIGHTS"))
    except ValueError as exc:  # std::invalid_argument from the shape checks
        raise UnsupportedModelError(model.path, f"CUDA backend: {exc}") from exc
    engine.cuda_graphs = os.environ.get("EDGELLAMA_CUDA_GRAPHS", "1") != "0"
    engine.tensor_cores = os.environ.get("EDGELLAMA_CUDA_MMA", "1") != "0"
    return engine
