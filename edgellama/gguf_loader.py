"""GGUF model loading and validation.

The header is parsed by edgellama.gguf_header (bounded, fast: GGUFReader builds a numpy view per
vocabulary entry, seconds and ~90 MB for a 128k vocabulary) and the file is memory-mapped once,
read-only: tensor data is never copied, the C++ core receives addresses inside the mapping. Because those addresses are trusted by C++, every
property the core relies on is checked here first: the architecture, the hyper-parameters, each
required tensor's presence, type and shape, and that its bytes lie inside the file. A violation
raises `InvalidGGUFError` or `UnsupportedModelError` naming the file, the tensor and the problem.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
from gguf import GGMLQuantizationType
from gguf.quants import dequantize

from edgellama.errors import InvalidGGUFError, UnsupportedModelError
from edgellama.gguf_header import TensorInfo, read_gguf_header

T = GGMLQuantizationType

# Weight types the C++ core has kernels for.
SUPPORTED_TYPES = frozenset({T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q4_K, T.Q5_K, T.Q6_K})
# Per-element vectors (norms, rope factors) the core reads as float32.
FLOAT_TYPES = frozenset({T.F32, T.F16, T.BF16})


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of a llama model, as the GGUF metadata states them."""

    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    rope_dim: int
    rope_base: float
    rms_eps: float
    context_length: int

    def core_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass
class TensorView:
    """A tensor inside the mapped file. `dims` is GGUF order (ne0 = row length first)."""

    name: str
    type: GGMLQuantizationType
    dims: tuple
    data: np.ndarray  # view into the memory map (or a float32 conversion for small vectors)

    @property
    def rows(self) -> int:
        return int(np.prod(self.dims[1:])) if len(self.dims) > 1 else 1

    @property
    def cols(self) -> int:
        return int(self.dims[0])


@dataclass
class GGUFModel:
    """A validated llama GGUF file: config, tensors (views into the mapping), metadata."""

    path: Path
    config: ModelConfig
    tensors: Dict[str, TensorView]
    metadata: Dict[str, Any]  # every key except the tokenizer's large arrays
    tokenizer_metadata: Dict[str, Any]
    file_type: Optional[str]
    mapping: np.memmap  # the read-only map of the whole file: alive as long as the tensors are used

    def core_tensors(self) -> Dict[str, tuple]:
        """{name: (address, type id, rows, cols)} for the C++ core."""
        return {name: (t.data.ctypes.data, int(t.type), t.rows, t.cols) for name, t in self.tensors.items()}

    def matrices_in_mapping(self) -> bool:
        """True when every weight matrix still lies inside the read-only file mapping (the core may
        then drop the pages of the matrices it repacks: they can always be read again)."""
        start = self.mapping.ctypes.data
        end = start + self.mapping.nbytes
        return all(start <= t.data.ctypes.data and t.data.ctypes.data + t.data.nbytes <= end
                   for t in self.tensors.values() if t.rows > 1)


def load_gguf(path) -> GGUFModel:
    """Opens and validates a llama GGUF file. Raises InvalidGGUFError / UnsupportedModelError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    header = read_gguf_header(path)
    metadata = {k: v for k, v in header.metadata.items() if not k.startswith("tokenizer.")}
    tokenizer_metadata = {k: v for k, v in header.metadata.items() if k.startswith("tokenizer.")}
    # Small tokenizer scalars are useful metadata too (the CLI shows them).
    metadata.update({k: v for k, v in tokenizer_metadata.items() if not isinstance(v, list)})
    arch = metadata.get("general.architecture")
    if arch is None:
        raise InvalidGGUFError(path, "metadata key 'general.architecture' is missing")
    if arch != "llama":
        raise UnsupportedModelError(path, f"architecture '{arch}' is not supported (edgellama runs 'llama')")
    mapping = np.memmap(path, dtype=np.uint8, mode="r")  # read-only: the core never writes weights
    tensors = {t.name: _tensor_view(t, mapping) for t in header.tensors}
    config = _read_config(path, metadata, tensors)
    _validate_tensors(path, config, tensors)
    return GGUFModel(path, config, tensors, metadata, tokenizer_metadata,
                     _file_type_name(metadata.get("general.file_type")), mapping)


def _tensor_view(t: TensorInfo, mapping: np.memmap) -> TensorView:
    """A zero-copy view of the tensor's bytes: 1-D for a vector, else rows of ne0 elements (F32 as
    float32, other types as raw bytes)."""
    raw = mapping[t.offset:t.offset + t.n_bytes]
    if len(t.dims) > 1:
        n_rows = int(np.prod(t.dims[1:]))
        raw = raw.reshape(n_rows, t.n_bytes // n_rows)
    data = raw.view(np.float32) if t.type == T.F32 else raw
    return TensorView(t.name, t.type, t.dims, data)


def _required_int(path, metadata, key) -> int:
    value = metadata.get(key)
    if value is None:
        raise InvalidGGUFError(path, f"metadata key '{key}' is missing")
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise InvalidGGUFError(path, f"metadata key '{key}' must be a positive integer, got {value!r}")
    return int(value)


def _read_config(path: Path, md: Dict[str, Any], tensors: Dict[str, TensorView]) -> ModelConfig:
    n_embd = _required_int(path, md, "llama.embedding_length")
    n_head = _required_int(path, md, "llama.attention.head_count")
    n_head_kv = int(md.get("llama.attention.head_count_kv", n_head))
    head_dim = int(md.get("llama.attention.key_length", n_embd // n_head))
    value_dim = int(md.get("llama.attention.value_length", head_dim))
    if value_dim != head_dim:
        raise UnsupportedModelError(path, f"value_length {value_dim} differs from key_length {head_dim}")
    if n_head_kv <= 0 or n_head % n_head_kv:
        raise InvalidGGUFError(path, f"head_count {n_head} is not a multiple of head_count_kv {n_head_kv}")
    rope_dim = int(md.get("llama.rope.dimension_count", head_dim))
    if rope_dim <= 0 or rope_dim > head_dim or rope_dim % 2:
        raise InvalidGGUFError(path, f"rope.dimension_count {rope_dim} must be even and at most head_dim {head_dim}")
    scaling = md.get("llama.rope.scaling.type")
    if scaling not in (None, "none") and float(md.get("llama.rope.scaling.factor", 1.0)) != 1.0:
        raise UnsupportedModelError(path, f"rope scaling type '{scaling}' is not supported yet")
    embd = tensors.get("token_embd.weight")
    if embd is None:
        raise InvalidGGUFError(path, "required tensor is missing", "token_embd.weight")
    n_vocab = int(md.get("llama.vocab_size", embd.rows))
    return ModelConfig(
        n_vocab=n_vocab, n_embd=n_embd,
        n_layer=_required_int(path, md, "llama.block_count"),
        n_head=n_head, n_head_kv=n_head_kv, head_dim=head_dim,
        n_ff=_required_int(path, md, "llama.feed_forward_length"),
        rope_dim=rope_dim,
        rope_base=float(md.get("llama.rope.freq_base", 10000.0)),
        rms_eps=float(md.get("llama.attention.layer_norm_rms_epsilon", 1e-5)),
        context_length=int(md.get("llama.context_length", 2048)),
    )


def expected_shapes(c: ModelConfig, tensors: Dict[str, TensorView]) -> Dict[str, tuple]:
    """GGUF dims (ne0, ne1) of every tensor the llama forward reads."""
    q_width, kv_width = c.n_head * c.head_dim, c.n_head_kv * c.head_dim
    shapes = {"token_embd.weight": (c.n_embd, c.n_vocab), "output_norm.weight": (c.n_embd,)}
    if "output.weight" in tensors:
        shapes["output.weight"] = (c.n_embd, c.n_vocab)
    if "rope_freqs.weight" in tensors:
        shapes["rope_freqs.weight"] = (c.rope_dim // 2,)
    for i in range(c.n_layer):
        p = f"blk.{i}."
        shapes.update({
            p + "attn_norm.weight": (c.n_embd,),
            p + "attn_q.weight": (c.n_embd, q_width),
            p + "attn_k.weight": (c.n_embd, kv_width),
            p + "attn_v.weight": (c.n_embd, kv_width),
            p + "attn_output.weight": (q_width, c.n_embd),
            p + "ffn_norm.weight": (c.n_embd,),
            p + "ffn_gate.weight": (c.n_embd, c.n_ff),
            p + "ffn_up.weight": (c.n_embd, c.n_ff),
            p + "ffn_down.weight": (c.n_ff, c.n_embd),
        })
    return shapes


def _validate_tensors(path: Path, config: ModelConfig, tensors: Dict[str, TensorView]) -> None:
    for name, shape in expected_shapes(config, tensors).items():
        t = tensors.get(name)
        if t is None:
            raise InvalidGGUFError(path, "required tensor is missing", name)
        if t.dims != shape:
            raise InvalidGGUFError(path, f"shape {list(t.dims)} does not match the hyper-parameters, "
                                         f"which imply {list(shape)}", name)
        if len(shape) == 1:
            if t.type not in FLOAT_TYPES:
                raise UnsupportedModelError(path, f"vector tensor of type {t.type.name} (expected F32/F16/BF16)", name)
            if t.type != T.F32:
                t.data = np.ascontiguousarray(dequantize(t.data, t.type), dtype=np.float32)
                t.type = T.F32
        elif t.type not in SUPPORTED_TYPES:
            supported = ", ".join(sorted(q.name for q in SUPPORTED_TYPES))
            raise UnsupportedModelError(path, f"tensor type {t.type.name} is not supported (supported: {supported})", name)


def _file_type_name(file_type) -> Optional[str]:
    if file_type is None:
        return None
    try:
        from gguf import LlamaFileType

        return LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_")
    except (ImportError, ValueError):
        return str(file_type)


def read_gguf_summary(path) -> Dict[str, Any]:
    """What `edgellama list` shows about a GGUF file, without loading it: {"architecture",
    "quant" (the file type, else the most common tensor type), "name", "size_bytes"}. Any
    architecture is reported (the file need not be one edgellama runs). Raises InvalidGGUFError
    for a malformed file."""
    from edgellama.gguf_header import read_gguf_summary as scan

    path = Path(path)
    meta = scan(path)
    quant = _file_type_name(meta.get("general.file_type"))
    if quant is None and meta["tensor_types"]:
        quant = max(meta["tensor_types"].items(), key=lambda kv: kv[1])[0]
    return {"architecture": meta.get("general.architecture"), "quant": quant, "name": meta.get("general.name"),
            "size_bytes": os.path.getsize(path)}
