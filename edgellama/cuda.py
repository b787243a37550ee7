"""The GPU backend: `Llama(path, device="cuda")` runs the whole forward step on an NVIDIA GPU.

The engine lives in the optional extension module `edgellama._cuda` (built when nvcc is found at
install time; see README, "CUDA"). Weights are uploaded once in their GGUF block formats, the KV
cache is fp16 on the device, and only the logits come back. The object `create_cuda_model` returns
has the single-sequence interface of `_core.LlamaModel`: forward(tokens, all_logits), truncate(n),
reset(), n_past, n_ctx, n_threads (edgellama.engine.backends adapts it to the scheduler). How it
runs is a CudaOptions, documented below in one place.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple, Union

from edgellama import arguments
from edgellama.errors import DeviceUnavailableError, InvalidArgumentError, UnsupportedModelError


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


def engine_activations() -> Optional[Tuple[str, ...]]:
    """The `activations` the installed CUDA engine takes ("int8", "precise"), or None without the
    module. A module built before precise activations takes "int8" only."""
    try:
        _cuda = importlib.import_module("edgellama._cuda")
    except ImportError:
        return None
    return tuple(getattr(_cuda, "ACTIVATIONS", ("int8",)))


ENVIRONMENT_OVERRIDE = "EDGELLAMA_CUDA_OPTIONS"


@dataclass(frozen=True)
class CudaOptions:
    """How the CUDA engine runs its work: `Llama(path, device="cuda", cuda_options=...)` takes one
    (or a dict of its fields). Every choice gives results within the same bound of the reference
    (tests/test_cuda_engine.py, tests/test_cuda_gpu.py); the fusions and prefetch_weights give the default's very bits.

    cuda_graphs: decode steps run as one captured CUDA graph (off: kernels launched one by one).
    tensor_cores: the prefill of 32-element formats uses int8 tensor cores (off: dp4a tiles).
    greedy_on_device: a plain greedy generation (temperature 0, no penalties, no logit_bias)
        takes each token from the engine's own choice on the device, so only the token and its
        log-probability come back instead of the logits.
    grouped_rows: Q4_0 / Q8_0 / Q6_K rows uploaded regrouped for 16-byte loads.
    Off by default, because they measured slower than the default on an H100
    (scripts/gpu_check.sh; README, "Benchmarks"):
    fused_attention: attention merges its position splits inside its kernel (and quantizes its output).
    fused_swiglu_quant: the SwiGLU GEMV quantizes its output for ffn_down.
    fused_rope: a decode step's Q/K/V GEMV applies RoPE and stores the keys and values.
    prefetch_weights: GEMV blocks prefetch their weight rows into the L2 before waiting for the
        kernel before them.

    One environment variable overrides fields for experiments without code changes:
    EDGELLAMA_CUDA_OPTIONS="cuda_graphs=0,fused_attention=1" (names as above, values 0 or 1).
    On sm_90+ kernels are launched as programmatic dependents of the one before unless the
    environment sets EDGELLAMA_CUDA_PDL=0 (read once per process by the engine itself).
    """

    cuda_graphs: bool = True
    tensor_cores: bool = True
    greedy_on_device: bool = True
    grouped_rows: bool = True
    fused_attention: bool = False
    fused_swiglu_quant: bool = False
    fused_rope: bool = False
    prefetch_weights: bool = False

    def __post_init__(self):
        for name in self.__dataclass_fields__:
            object.__setattr__(self, name, arguments.flag(f"cuda_options.{name}", getattr(self, name)))

    @classmethod
    def coerce(cls, value: Union[None, "CudaOptions", Mapping[str, bool]]) -> "CudaOptions":
        """value (None: the defaults; a CudaOptions; or a dict of its fields) with the environment's
        override applied. InvalidArgumentError names an unknown field or a value that is not a bool."""
        if value is None:
            value = cls()
        elif isinstance(value, Mapping):
            unknown = sorted(set(value) - set(cls.__dataclass_fields__))
            if unknown:
                raise InvalidArgumentError("cuda_options", f"unknown option(s) {unknown}; known: "
                                                           f"{', '.join(cls.__dataclass_fields__)}")
            value = cls(**value)
        elif not isinstance(value, cls):
            raise InvalidArgumentError("cuda_options", f"must be None, a CudaOptions or a dict, got "
                                                       f"{type(value).__name__}")
        return dataclasses.replace(value, **_environment_override())

    def engine_options(self) -> Dict[str, bool]:
        """The options the engine takes at construction (edgellama._cuda.CudaLlamaModel)."""
        return {name: getattr(self, name) for name in
                ("grouped_rows", "fused_attention", "fused_swiglu_quant", "fused_rope", "prefetch_weights")}


def _environment_override() -> Dict[str, bool]:
    text = os.environ.get(ENVIRONMENT_OVERRIDE, "").strip()
    overrides: Dict[str, bool] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        if name not in CudaOptions.__dataclass_fields__ or value not in ("0", "1"):
            raise InvalidArgumentError(ENVIRONMENT_OVERRIDE, f"wants name=0|1 items separated by commas with "
                                                             f"names from {', '.join(CudaOptions.__dataclass_fields__)}; "
                                                             f"got {item!r}")
        overrides[name] = value == "1"
    return overrides


def create_cuda_model(model, n_ctx: int, n_threads: int, options: Optional[CudaOptions] = None, device: int = 0,
                      activations: str = "int8"):
    """The GPU engine for a validated GGUFModel (edgellama.gguf_loader), run as `options` says
    (CudaOptions.coerce(None) when None), its matmuls rounding their input as `activations` says
    ("int8", or "precise": each block's int8 codes plus an int8 row of their residual, as the CPU
    engine's setting of that name; Llama checks the name).

    Raises DeviceUnavailableError without the CUDA module or a visible GPU,
    DeviceOutOfMemoryError (naming the buffer) when the model or its KV cache does not fit,
    UnsupportedModelError for a shape the GPU kernels do not handle (head_dim > 256), and
    DeviceError for any other CUDA failure.
    """
    if options is None:
        options = CudaOptions.coerce(None)
    _cuda = _cuda_module()
    count, why = _cuda.device_count()
    if count == 0:
        raise DeviceUnavailableError(f"device='cuda' needs an NVIDIA GPU, but none is visible ({why}); "
                                     "use device='cpu'")
    if not 0 <= device < count:
        raise DeviceUnavailableError(f"CUDA device {device} does not exist ({count} visible)")
    try:
        # "int8" is the engine's default; naming only another keeps a module that predates the
        # argument working (Llama refuses "precise" for such a module: engine_activations).
        chosen = {} if activations == "int8" else {"activations": activations}
        engine = _cuda.CudaLlamaModel(model.config.core_dict(), model.core_tensors(), n_ctx, n_threads, device,
                                      **chosen, **options.engine_options())
    except ValueError as exc:  # std::invalid_argument from the shape checks
        raise UnsupportedModelError(model.path, f"CUDA backend: {exc}") from exc
    engine.cuda_graphs = options.cuda_graphs
    engine.tensor_cores = options.tensor_cores
    return engine
