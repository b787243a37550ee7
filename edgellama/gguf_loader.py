"""GGUF model loading and validation.

The header is parsed by edgellama.gguf_header (bounded, fast: GGUFReader builds a numpy view per
vocabulary entry, seconds and ~90 MB for a 128k vocabulary) and the file is memory-mapped once,
read-only: tensor data is never copied, the C++ core receives addresses inside the mapping. Because those addresses are trusted by C++, every
property the core relies on is checked here first: the architecture, the hyper-parameters, each
required tensor's presence, type and shape, and that its bytes lie inside the file. A violation
raises `InvalidGGUFError` or `UnsupportedModelError` naming the file, the tensor and the problem;
a metadata value of the wrong type or outside its range raises `InvalidMetadataError` naming the
key and the value (every value is read through edgellama.gguf_metadata's typed readers).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Container, Dict, Mapping, Optional, Sequence

import numpy as np
from gguf import GGMLQuantizationType
from gguf.quants import dequantize

from edgellama.errors import InvalidGGUFError, UnsupportedModelError
from edgellama.gguf_header import TensorInfo, read_gguf_header
from edgellama.gguf_metadata import FLOAT32_TINY, INT32_MAX, TOKENS, MetadataReader, check_tokenizer_metadata
from edgellama.rope_scaling import RopeScaling, combined_divisors

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
    rope_scaling: RopeScaling = RopeScaling()

    def core_dict(self) -> Dict[str, Any]:
        """The config as the C++ core reads it: of the RoPE scaling, its magnitude on the rotated
        queries and keys (the frequencies reach the core as rope_freqs.weight: core_tensors)."""
        d = asdict(self)
        d.pop("rope_scaling")
        d["rope_magnitude"] = self.rope_scaling.magnitude
        return d


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
        """{name: (address, type id, rows, cols)} for the C++ core. Its rope_freqs.weight is the one
        divisor vector of the rotary frequencies: the file's times its RoPE scaling's."""
        tensors = {name: (t.data.ctypes.data, int(t.type), t.rows, t.cols) for name, t in self.tensors.items()}
        divisors = self.rope_divisors()
        if divisors is not None:
            tensors["rope_freqs.weight"] = (divisors.ctypes.data, int(GGMLQuantizationType.F32), 1, divisors.size)
        return tensors

    def rope_divisors(self) -> Optional[np.ndarray]:
        """float32 [rope_dim/2] divisors of the rotary frequencies (rope_scaling.combined_divisors),
        or None for plain RoPE; computed once and kept alive with the model for the core."""
        if not hasattr(self, "_rope_divisors"):
            c, freqs = self.config, self.tensors.get("rope_freqs.weight")
            self._rope_divisors = combined_divisors(c.rope_scaling, c.rope_dim, c.rope_base,
                                                    None if freqs is None else freqs.data)
        return self._rope_divisors

    def matrices_in_mapping(self) -> bool:
        """True when every weight matrix still lies inside the read-only file mapping (the core may
        then drop the pages of the matrices it repacks: they can always be read again)."""
        start = self.mapping.ctypes.data
        end = start + self.mapping.nbytes
        return all(start <= t.data.ctypes.data and t.data.ctypes.data + t.data.nbytes <= end
                   for t in self.tensors.values() if t.rows > 1)


def load_gguf(path) -> GGUFModel:
    """Opens and validates a llama GGUF file. Raises InvalidGGUFError (InvalidMetadataError for a
    metadata value of the wrong type or range) / UnsupportedModelError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    header = read_gguf_header(path)
    config = validate_llama_metadata(path, header.metadata, {t.name: t.dims for t in header.tensors})
    _check_tensor_types(path, config, header.tensors)
    _check_rope_arithmetic(MetadataReader(path, header.metadata), config)
    metadata = {k: v for k, v in header.metadata.items() if not k.startswith("tokenizer.")}
    tokenizer_metadata = {k: v for k, v in header.metadata.items() if k.startswith("tokenizer.")}
    # Small tokenizer scalars are useful metadata too (the CLI shows them).
    metadata.update({k: v for k, v in tokenizer_metadata.items() if not isinstance(v, list)})
    mapping = np.memmap(path, dtype=np.uint8, mode="r")  # read-only: the core never writes weights
    tensors = {t.name: _tensor_view(t, mapping) for t in header.tensors}
    _vectors_to_f32(config, tensors)
    return GGUFModel(path, config, tensors, metadata, tokenizer_metadata,
                     _file_type_name(metadata.get("general.file_type")), mapping)


def validate_llama_metadata(path, metadata: Mapping[str, Any], dims: Mapping[str, tuple]) -> ModelConfig:
    """The hyper-parameters of a llama GGUF file, after checking, from its metadata and the dims
    of its tensors (GGUF order, ne0 first) alone, no tensor data read: the architecture, every
    hyper-parameter's type and range, the tokenizer metadata, and that every tensor the forward
    step reads is present with the shape the hyper-parameters imply. Shared by the loader and
    `edgellama quantize` (which checks what it is about to write the same way).

    Counts are bounded by what the file holds *before* anything loops over them (a block count of
    2**32-1 in a file of 20 tensors fails at once). Raises InvalidMetadataError naming the key and
    value, InvalidGGUFError naming the tensor, or UnsupportedModelError.
    """
    reader = MetadataReader(path, metadata)
    arch = reader.text("general.architecture")
    if arch != "llama":
        raise UnsupportedModelError(path, f"architecture '{arch}' is not supported (edgellama runs 'llama')")
    config = _read_config(reader, dims)
    reader.integer("general.file_type", None, low=0, high=INT32_MAX)
    tokens = check_tokenizer_metadata(reader)
    if tokens is not None and len(tokens) != config.n_vocab:
        reader.fail(TOKENS, tokens, f"has {len(tokens)} tokens but the model's vocabulary (token_embd.weight "
                                    f"rows) has {config.n_vocab}")
    _check_tensor_shapes(path, config, dims)
    return config


def _tensor_view(t: TensorInfo, mapping: np.memmap) -> TensorView:
    """A zero-copy view of the tensor's bytes: 1-D for a vector, else rows of ne0 elements (F32 as
    float32, other types as raw bytes)."""
    raw = mapping[t.offset:t.offset + t.n_bytes]
    if len(t.dims) > 1:
        n_rows = int(np.prod(t.dims[1:]))
        raw = raw.reshape(n_rows, t.n_bytes // n_rows)
    data = raw.view(np.float32) if t.type == T.F32 else raw
    return TensorView(t.name, t.type, t.dims, data)


# Tensors of one transformer block, and the ones outside the blocks that every model has.
LAYER_TENSORS = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up",
                 "ffn_down")
GLOBAL_TENSORS = ("token_embd.weight", "output_norm.weight")


def _layer_tensor_names(layer: int) -> list:
    return [f"blk.{layer}.{name}.weight" for name in LAYER_TENSORS]


def _read_config(r: MetadataReader, dims: Mapping[str, tuple]) -> ModelConfig:
    """Every hyper-parameter, read with its type and range. The ranges come from the tensors where
    one determines the value (widths, vocabulary size), so no later step sees a count the file
    cannot back; the shapes themselves are checked afterwards by _check_tensor_shapes."""
    def required_dim(name: str, axis: int) -> int:
        if name not in dims:
            raise InvalidGGUFError(r.path, "required tensor is missing", name)
        shape = dims[name]
        return int(shape[axis]) if axis < len(shape) else 1

    embd_cols, embd_rows = required_dim("token_embd.weight", 0), required_dim("token_embd.weight", 1)
    n_embd = r.integer("llama.embedding_length", low=1, high=INT32_MAX)
    if n_embd != embd_cols:
        r.fail("llama.embedding_length", n_embd, f"token_embd.weight has rows of {embd_cols}")
    n_vocab = r.integer("llama.vocab_size", embd_rows, low=1, high=INT32_MAX)
    if n_vocab != embd_rows:
        r.fail("llama.vocab_size", n_vocab, f"token_embd.weight has {embd_rows} rows (one per token)")
    # Each block has len(LAYER_TENSORS) tensors of its own: the tensor table bounds the count.
    max_layers = max(0, len(dims) - len(GLOBAL_TENSORS)) // len(LAYER_TENSORS)
    n_layer = r.integer("llama.block_count", low=1, high=2**64)  # bounded by the tensors just below
    if n_layer > max_layers:
        needed = [*GLOBAL_TENSORS, *(name for i in range(max_layers + 1) for name in _layer_tensor_names(i))]
        missing = next((name for name in needed if name not in dims), None)
        r.fail("llama.block_count", n_layer, f"the file has {len(dims)} tensors, room for at most {max_layers} "
                                            f"blocks of {len(LAYER_TENSORS)}" + (f" ({missing} is missing)"
                                                                                 if missing else ""))
    n_head = r.integer("llama.attention.head_count", low=1, high=n_embd)
    n_head_kv = r.integer("llama.attention.head_count_kv", n_head, low=1, high=n_head)
    if n_head % n_head_kv:
        r.fail("llama.attention.head_count_kv", n_head_kv, f"head_count {n_head} is not a multiple of it")
    q_rows = required_dim("blk.0.attn_q.weight", 1)
    head_dim = r.integer("llama.attention.key_length", n_embd // n_head, low=1, high=q_rows)
    value_dim = r.integer("llama.attention.value_length", head_dim, low=1, high=q_rows)
    if value_dim != head_dim:
        raise UnsupportedModelError(r.path, f"value_length {value_dim} differs from key_length {head_dim}")
    n_ff = r.integer("llama.feed_forward_length", low=1, high=INT32_MAX)
    gate_rows = required_dim("blk.0.ffn_gate.weight", 1)
    if n_ff != gate_rows:
        r.fail("llama.feed_forward_length", n_ff, f"blk.0.ffn_gate.weight has {gate_rows} rows")
    rope_dim = r.integer("llama.rope.dimension_count", head_dim, low=2, high=head_dim)
    if rope_dim % 2:
        r.fail("llama.rope.dimension_count", rope_dim, "must be even (RoPE rotates pairs of dimensions)")
    context_length = r.integer("llama.context_length", 2048, low=1, high=2**32 - 1)
    return ModelConfig(
        n_vocab=n_vocab, n_embd=n_embd, n_layer=n_layer, n_head=n_head, n_head_kv=n_head_kv, head_dim=head_dim,
        n_ff=n_ff, rope_dim=rope_dim,
        # RoPE computes base ** (-2i / rope_dim): any finite positive base is well defined.
        rope_base=r.real("llama.rope.freq_base", 10000.0, low=0.0, low_open=True),
        # RMSNorm divides by sqrt(mean(x^2) + eps): eps must keep that away from 0 (also in
        # float32, where the core receives it) and not swamp mean(x^2).
        rms_eps=r.real("llama.attention.layer_norm_rms_epsilon", 1e-5, low=FLOAT32_TINY, high=1.0, high_open=True),
        context_length=context_length,
        rope_scaling=RopeScaling.read(r, "llama", context_length),
    )


def expected_shapes(c: ModelConfig, tensor_names: Container[str]) -> Dict[str, tuple]:
    """GGUF dims (ne0, ne1) of every tensor the llama forward reads (tensor_names: the tensors
    the file has, which decide whether the optional output.weight and rope_freqs.weight are read)."""
    q_width, kv_width = c.n_head * c.head_dim, c.n_head_kv * c.head_dim
    shapes = {"token_embd.weight": (c.n_embd, c.n_vocab), "output_norm.weight": (c.n_embd,)}
    if "output.weight" in tensor_names:
        shapes["output.weight"] = (c.n_embd, c.n_vocab)
    if "rope_freqs.weight" in tensor_names:
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


def _check_tensor_shapes(path: Path, config: ModelConfig, dims: Mapping[str, tuple]) -> None:
    for name, shape in expected_shapes(config, dims).items():
        if name not in dims:
            raise InvalidGGUFError(path, "required tensor is missing", name)
        if dims[name] != shape:
            raise InvalidGGUFError(path, f"shape {list(dims[name])} does not match the hyper-parameters, "
                                         f"which imply {list(shape)}", name)


def _check_tensor_types(path: Path, config: ModelConfig, tensors: Sequence[TensorInfo]) -> None:
    """The forward step's vectors (norms, rope factors) must be float, its matrices of a type the
    core has kernels for (other tensors in the file are never read)."""
    used = expected_shapes(config, {t.name for t in tensors})
    for t in tensors:
        if t.name not in used:
            continue
        if len(t.dims) == 1 and t.type not in FLOAT_TYPES:
            raise UnsupportedModelError(path, f"vector tensor of type {t.type.name} (expected F32/F16/BF16)", t.name)
        if len(t.dims) > 1 and t.type not in SUPPORTED_TYPES:
            supported = ", ".join(sorted(q.name for q in SUPPORTED_TYPES))
            raise UnsupportedModelError(path, f"tensor type {t.type.name} is not supported (supported: {supported})",
                                        t.name)


def _check_rope_arithmetic(r: MetadataReader, c: ModelConfig) -> None:
    """RoPE values within their ranges that the arithmetic still cannot use: a base or magnitude
    that rounds to 0 in float32 (the precision the core computes RoPE in), and YaRN settings whose
    correction range is undefined (a base of exactly 1 divides by its logarithm) or beyond float64
    / int64. Refused here as metadata errors rather than failing later inside the computation."""
    if not np.float32(c.rope_base) > 0:
        r.fail("llama.rope.freq_base", c.rope_base, "rounds to 0 in float32, the precision the core computes RoPE in")
    if not np.float32(c.rope_scaling.magnitude) > 0:
        r.fail("llama.rope.scaling.attn_factor", c.rope_scaling.attn_factor,
               "the RoPE magnitude it gives rounds to 0 in float32, the precision the core computes RoPE in")
    s = c.rope_scaling
    if s.kind != "yarn" or s.factor == 1.0 or s.ext_factor == 0:
        return  # no correction range is computed
    if math.log(c.rope_base) == 0:
        r.fail("llama.rope.freq_base", c.rope_base, "YaRN's correction range divides by its logarithm")
    for key, beta in (("llama.rope.scaling.yarn_beta_fast", s.beta_fast), ("llama.rope.scaling.yarn_beta_slow", s.beta_slow)):
        try:
            turning = s.pair_turning(c.rope_dim, c.rope_base, beta)
        except OverflowError:
            turning = math.inf
        if not math.isfinite(turning):
            r.fail(key, beta, "YaRN's correction range is beyond float64 with it")
    if math.floor(s.pair_turning(c.rope_dim, c.rope_base, s.beta_fast)) >= 2**63:
        r.fail("llama.rope.freq_base", c.rope_base, "YaRN's correction range starts beyond int64 with it")


def _vectors_to_f32(config: ModelConfig, tensors: Dict[str, TensorView]) -> None:
    """The core reads vectors as float32: F16/BF16 ones the model uses are converted (small)."""
    for name, shape in expected_shapes(config, tensors).items():
        t = tensors[name]
        if len(shape) == 1 and t.type != T.F32:
            t.data = np.ascontiguousarray(dequantize(t.data, t.type), dtype=np.float32)
            t.type = T.F32


def _file_type_name(file_type) -> Optional[str]:
    """The name of a general.file_type value (for display: any value is shown somehow)."""
    if file_type is None:
        return None
    if not isinstance(file_type, int) or isinstance(file_type, bool):
        return str(file_type)
    try:
        from gguf import LlamaFileType

        return LlamaFileType(file_type).name.removeprefix("MOSTLY_")
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
