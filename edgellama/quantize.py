"""Quantize and export: a GGUF or a Hugging Face `LlamaForCausalLM` folder in, a GGUF llama file
of the requested type out.

    from edgellama.quantize import quantize
    report = quantize("SmolLM2-135M-Instruct/", "smollm2.Q4_K_M.gguf", "Q4_K_M", threads=4)

Every input becomes a `ModelSource`: GGUF metadata entries plus a list of `SourceTensor`s, each
able to produce any range of its rows as float32. The writer streams tensors one at a time, in
chunks of rows, through the C++ quantizers (`_core.quantize_rows`), so peak memory stays near one
chunk plus the tensor table, not the model. The output is written to a temporary file in OUT's
folder and renamed over OUT only when complete: an interrupted or failed run leaves no OUT.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT, GGUFValueType as VT

from edgellama.errors import InvalidCheckpointError, InvalidMetadataError, QuantizeError, UnsupportedModelError
from edgellama.gguf_header import read_gguf_header
from edgellama.gguf_loader import validate_llama_metadata
from edgellama.gguf_metadata import INT32_MAX, MetadataReader
from edgellama.progress import Progress

# Output types the command accepts: single types and the two mixes.
TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K", "Q4_K_M", "Q5_K_M")
MIXES = {"Q4_K_M": "Q4_K", "Q5_K_M": "Q5_K"}
# Types the runtime cannot run yet (the file is still a valid GGUF for other runtimes): none now.
EXPORT_ONLY: frozenset = frozenset()
# K-quant -> the 32-element type used for tensors whose rows are not a multiple of 256. Chosen
# among the types the runtime runs, at or above the K-quant's precision.
K_FALLBACK = {"Q4_K": "Q4_1", "Q5_K": "Q8_0", "Q6_K": "Q8_0"}
FILE_TYPES = {
    "F32": gguf.LlamaFileType.ALL_F32, "F16": gguf.LlamaFileType.MOSTLY_F16,
    "BF16": gguf.LlamaFileType.MOSTLY_BF16, "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    "Q4_0": gguf.LlamaFileType.MOSTLY_Q4_0, "Q4_1": gguf.LlamaFileType.MOSTLY_Q4_1,
    "Q5_0": gguf.LlamaFileType.MOSTLY_Q5_0, "Q5_1": gguf.LlamaFileType.MOSTLY_Q5_1,
    "Q4_K": gguf.LlamaFileType.MOSTLY_Q4_K_S, "Q5_K": gguf.LlamaFileType.MOSTLY_Q5_K_S,
    "Q6_K": gguf.LlamaFileType.MOSTLY_Q6_K, "Q4_K_M": gguf.LlamaFileType.MOSTLY_Q4_K_M,
    "Q5_K_M": gguf.LlamaFileType.MOSTLY_Q5_K_M,
}
# Floats per chunk handed to the quantizer (64 MiB of float32).
CHUNK_ELEMENTS = 16 * 1024 * 1024

Log = Callable[[str], None]


def _stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# Sources


@dataclass
class SourceTensor:
    """One tensor to export. `shape` is numpy order: (rows, cols) for matrices, (n,) for vectors
    (higher ranks are flattened to rows by `rows`). `read(a, b)` returns rows [a, b) as a float32
    array (b - a, cols); a vector is one row."""

    name: str
    shape: Tuple[int, ...]
    read: Callable[[int, int], np.ndarray]
    source_type: str
    # Called after each chunk is written: lets a memory-mapped source drop the pages it touched,
    # so the process's resident size stays near one chunk, not the largest tensor or the input.
    release: Optional[Callable[[], None]] = None

    @property
    def cols(self) -> int:
        return int(self.shape[-1])

    @property
    def rows(self) -> int:
        return int(np.prod(self.shape[:-1])) if len(self.shape) > 1 else 1

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class MetaEntry:
    key: str
    value: Any
    vtype: VT
    sub_type: Optional[VT] = None


@dataclass
class ModelSource:
    description: str
    metadata: List[MetaEntry]
    tensors: List[SourceTensor]
    n_layer: int
    quantized_from: Optional[str] = None  # the input's quantized type, when requantizing


def meta_entry(key: str, value: Any) -> MetaEntry:
    """A metadata entry with its GGUF type inferred from the Python value (ints as uint32 unless
    negative, floats as float32), or given as (value, GGUFValueType)."""
    if isinstance(value, MetaEntry):
        return value
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], VT):
        value, vtype = value
        if vtype == VT.ARRAY:
            return MetaEntry(key, list(value), VT.ARRAY, _array_sub_type(key, list(value)))
        return MetaEntry(key, value, vtype)
    if isinstance(value, bool):
        return MetaEntry(key, value, VT.BOOL)
    if isinstance(value, (int, np.integer)):
        return MetaEntry(key, int(value), VT.INT32 if value < 0 else VT.UINT32)
    if isinstance(value, (float, np.floating)):
        return MetaEntry(key, float(value), VT.FLOAT32)
    if isinstance(value, str):
        return MetaEntry(key, value, VT.STRING)
    if isinstance(value, (list, tuple, np.ndarray)):
        value = list(value)
        return MetaEntry(key, value, VT.ARRAY, _array_sub_type(key, value))
    raise QuantizeError(f"cannot write metadata {key}={value!r}")


def _array_sub_type(key: str, values: list) -> VT:
    if not values or isinstance(values[0], str):
        return VT.STRING
    if isinstance(values[0], bool):
        return VT.BOOL
    if isinstance(values[0], (int, np.integer)):
        return VT.INT32
    if isinstance(values[0], (float, np.floating)):
        return VT.FLOAT32
    raise QuantizeError(f"cannot write metadata array {key} of {type(values[0]).__name__}")


def drop_mapped_pages(array: np.ndarray) -> None:
    """Tells the kernel this process no longer needs the pages of a np.memmap (they stay in the
    page cache; touching them again faults them back in)."""
    mm = getattr(array, "_mmap", None)
    if mm is not None and hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        try:
            mm.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):
            pass


def _rows_reader(array: np.ndarray, convert: Callable[[np.ndarray], np.ndarray],
                 row_index: Optional[np.ndarray] = None) -> Callable[[int, int], np.ndarray]:
    """read(a, b) over a (rows, cols) stored array; row_index maps output rows to stored rows."""
    def read(a: int, b: int) -> np.ndarray:
        part = array[a:b] if row_index is None else array[row_index[a:b]]
        return np.ascontiguousarray(convert(part), dtype=np.float32)
    return read


# --- GGUF input ---------------------------------------------------------------------------------


def gguf_source(path: Path, log: Log = _stderr_log) -> ModelSource:
    header = read_gguf_header(path)  # bounded and fast, also for 128k-token vocabularies
    arch = header.metadata.get("general.architecture")
    if arch != "llama":
        raise UnsupportedModelError(path, f"architecture {arch!r} is not supported (edgellama exports 'llama')")
    skip = {"general.architecture", "general.file_type", "general.quantization_version", "general.alignment"}
    metadata: List[MetaEntry] = []
    for key, value in header.metadata.items():
        if key in skip:
            continue
        vtype, item_type = header.value_types[key]
        metadata.append(MetaEntry(key, value, VT(vtype), VT(item_type) if item_type is not None else None))
    # Checked as the loader checks a model (types, ranges, counts the file can hold, shapes), so
    # nothing impossible is looped over here or copied into the output.
    n_layer = validate_llama_metadata(path, header.metadata, {t.name: t.dims for t in header.tensors}).n_layer
    mapping = np.memmap(path, dtype=np.uint8, mode="r")
    tensors = []
    quantized = set()
    for t in header.tensors:
        qtype = QT(int(t.type))
        dims = tuple(int(d) for d in t.dims)  # GGUF order, ne0 first
        shape = tuple(reversed(dims))
        rows = int(np.prod(dims[1:])) if len(dims) > 1 else 1
        if qtype not in (QT.F32, QT.F16, QT.BF16):
            quantized.add(qtype.name)
        raw = mapping[t.offset:t.offset + t.n_bytes].reshape(rows, -1)

        def convert(part, qtype=qtype):
            return gguf.quants.dequantize(np.ascontiguousarray(part), qtype)

        tensors.append(SourceTensor(t.name, shape, _rows_reader(raw, convert), qtype.name,
                                    release=lambda: drop_mapped_pages(mapping)))
    source = ModelSource(f"GGUF {path}", metadata, tensors, n_layer)
    source._reader = mapping  # keeps the mapping alive
    if quantized:
        source.quantized_from = "/".join(sorted(quantized))
    return source


# --- Hugging Face input -------------------------------------------------------------------------

# Config keys whose values we accept only at these settings.
_REQUIRED_SETTINGS = {"hidden_act": ("silu",), "attention_bias": (False, None), "mlp_bias": (False, None)}


def _hf_rope(config: Dict[str, Any]) -> Tuple[float, Optional[Dict[str, Any]]]:
    """(rope_theta, scaling parameters with their "rope_type" or None) from either config spelling.
    Supported types: llama3 (written as rope_freqs.weight), linear and yarn (written as metadata)."""
    params = config.get("rope_parameters") or {}
    scaling = config.get("rope_scaling") or None
    for key, value in (("rope_parameters", params), ("rope_scaling", scaling)):
        if value is not None and not isinstance(value, dict):
            raise InvalidMetadataError("config.json", key, value, "must be an object")
    # A real number > 0 whichever spelling holds it (a string or NaN here would break the maths).
    theta = MetadataReader("config.json", {"rope_theta": config.get("rope_theta", params.get("rope_theta"))}
                           ).real("rope_theta", 10000.0, low=0.0, low_open=True)
    if scaling is None and params.get("rope_type", params.get("type", "default")) != "default":
        scaling = params
    if scaling is None:
        return theta, None
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "default":
        return theta, None
    if kind not in ("llama3", "linear", "yarn"):
        raise UnsupportedModelError("config.json", f"rope scaling type {kind!r} is not supported "
                                                   f"(supported: none, 'llama3', 'linear', 'yarn')")
    reader = MetadataReader("config.json", scaling)
    required = {"llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
                "linear": ("factor",), "yarn": ("factor",)}[kind]
    for k in required:
        if k not in scaling:
            raise UnsupportedModelError("config.json", f"{kind} rope scaling lacks '{k}'")
        reader.real(k, low=0.0, low_open=True)
    if kind == "llama3" and not scaling["low_freq_factor"] < scaling["high_freq_factor"]:
        raise InvalidMetadataError("config.json", "rope_scaling", scaling,
                                   "low_freq_factor must be below high_freq_factor")
    if kind == "yarn":
        for k in ("mscale", "mscale_all_dim"):
            if scaling.get(k):
                raise UnsupportedModelError("config.json", f"yarn rope scaling with '{k}' is not supported")
        if scaling.get("truncate", True) is not True:
            raise UnsupportedModelError("config.json", "yarn rope scaling with truncate=false is not supported")
    return theta, dict(scaling, rope_type=kind)


def rope_scaling_metadata(scaling: Optional[Dict[str, Any]], context_length: int) -> Dict[str, Any]:
    """The GGUF keys of a linear or YaRN scaling (edgellama/rope_scaling.py reads them back). An
    explicit YaRN attention_factor is the whole magnitude in transformers, while the GGUF
    attn_factor multiplies 1 + 0.1 ln(factor): it is divided by that here."""
    if scaling is None or scaling["rope_type"] not in ("linear", "yarn"):
        return {}
    factor = float(scaling["factor"])
    meta = {"llama.rope.scaling.type": scaling["rope_type"], "llama.rope.scaling.factor": factor}
    if scaling["rope_type"] == "yarn":
        reader = MetadataReader("config.json", scaling)
        meta["llama.rope.scaling.original_context_length"] = reader.integer(
            "original_max_position_embeddings", context_length, low=1)
        for hf_key, gguf_key in (("beta_fast", "yarn_beta_fast"), ("beta_slow", "yarn_beta_slow")):
            if scaling.get(hf_key):
                meta["llama.rope.scaling." + gguf_key] = reader.real(hf_key, low=0.0, low_open=True)
        attention_factor = reader.real("attention_factor", None, low=0.0, low_open=True)
        if attention_factor is not None:
            default = 0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0
            meta["llama.rope.scaling.attn_factor"] = attention_factor / default
    return meta


def llama3_rope_factors(head_dim: int, theta: float, scaling: Dict[str, Any]) -> np.ndarray:
    """The rope_freqs tensor of a Llama 3.1-style model: the divisor of each rotary frequency.
    Wavelengths shorter than original_context / high_freq_factor keep their frequency (1), longer
    than original_context / low_freq_factor are divided by `factor`, and in between the divisor
    blends smoothly with the position of the wavelength in that band."""
    factor = float(scaling["factor"])
    low = float(scaling["low_freq_factor"])
    high = float(scaling["high_freq_factor"])
    original = float(scaling["original_max_position_embeddings"])
    freqs = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    wavelen = 2 * np.pi / freqs
    out = np.ones_like(freqs)
    out[wavelen > original / low] = factor
    mid = (wavelen <= original / low) & (wavelen >= original / high)
    smooth = (original / wavelen[mid] - low) / (high - low)
    out[mid] = 1.0 / ((1 - smooth) / factor + smooth)
    return out.astype(np.float32)


def rope_row_permutation(n_rows: int, n_head: int) -> np.ndarray:
    """Row order that turns a Hugging Face Q/K projection (each head's rotary pairs are (i, i + d/2),
    "rotate half") into GGUF's (pairs are adjacent rows 2i, 2i + 1): output row 2i + j of a head
    is HF row i + j * d/2."""
    head_dim = n_rows // n_head
    idx = np.arange(n_rows).reshape(n_head, 2, head_dim // 2)
    return idx.swapaxes(1, 2).reshape(-1)


def hf_config(folder: Path) -> Dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no config.json (not a Hugging Face model folder)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidCheckpointError(path, f"config.json is not valid JSON ({exc!r})") from None
    if not isinstance(config, dict):
        raise InvalidCheckpointError(path, f"config.json must hold an object, not {type(config).__name__}")
    archs = config.get("architectures") or []
    if not isinstance(archs, list):
        raise InvalidCheckpointError(path, f"config.json's 'architectures' must be a list, not {archs!r}")
    if "LlamaForCausalLM" not in archs or config.get("model_type", "llama") != "llama":
        raise UnsupportedModelError(path, f"architecture {archs or config.get('model_type')!r} is not supported "
                                          f"(edgellama exports LlamaForCausalLM)")
    for key, allowed in _REQUIRED_SETTINGS.items():
        if config.get(key) not in allowed:
            raise UnsupportedModelError(path, f"{key}={config.get(key)!r} is not supported (need {allowed[0]!r})")
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"):
        if not isinstance(config.get(key), int) or config[key] <= 0:
            raise InvalidCheckpointError(path, f"config.json lacks a positive integer '{key}'")
    return config


def hf_source(folder: Path, log: Log = _stderr_log) -> ModelSource:
    from edgellama.safetensors_io import open_checkpoint, to_float32

    config = hf_config(folder)
    config_path = folder / "config.json"
    reader = MetadataReader(config_path, config)  # the loader's typed readers, for config.json's values
    n_embd, n_layer = config["hidden_size"], config["num_hidden_layers"]
    n_head = config["num_attention_heads"]
    n_head_kv = reader.integer("num_key_value_heads", n_head, low=1, high=n_head)
    head_dim = reader.integer("head_dim", n_embd // n_head, low=1, high=INT32_MAX)
    theta, scaling = _hf_rope(config)
    tied = bool(config.get("tie_word_embeddings", False))
    stored = open_checkpoint(folder)

    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    per_layer = {"input_layernorm.weight": "attn_norm.weight", "self_attn.q_proj.weight": "attn_q.weight",
                 "self_attn.k_proj.weight": "attn_k.weight", "self_attn.v_proj.weight": "attn_v.weight",
                 "self_attn.o_proj.weight": "attn_output.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
                 "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
                 "mlp.down_proj.weight": "ffn_down.weight"}
    if n_layer > len(stored) // len(per_layer):  # bounded before the loop below
        raise InvalidMetadataError(config_path, "num_hidden_layers", n_layer,
                                   f"the checkpoint has {len(stored)} tensors, room for at most "
                                   f"{len(stored) // len(per_layer)} layers of {len(per_layer)}")
    for i in range(n_layer):
        for hf_name, gguf_name in per_layer.items():
            names[f"model.layers.{i}.{hf_name}"] = f"blk.{i}.{gguf_name}"
    unknown = [n for n in stored if n not in names and not n.endswith("rotary_emb.inv_freq")]
    if unknown:
        raise UnsupportedModelError(folder, f"tensors the llama exporter does not know: {', '.join(sorted(unknown)[:5])}"
                                            + (" ..." if len(unknown) > 5 else ""))
    if tied:
        names.pop("lm_head.weight")  # the embedding doubles as the output matrix
    expected_rows = {"attn_q.weight": n_head * head_dim, "attn_k.weight": n_head_kv * head_dim}
    tensors: List[SourceTensor] = []
    dtypes = set()
    for hf_name, gguf_name in names.items():
        st = stored.get(hf_name)
        if st is None:
            if hf_name == "lm_head.weight":
                log("note: no lm_head.weight: the output reuses the embedding (tied)")
                continue
            raise InvalidCheckpointError(folder, f"required tensor '{hf_name}' is missing")
        dtypes.add(st.dtype)
        array = st.array()
        if array.ndim == 1:
            array = array.reshape(1, -1)
        row_index = None
        short = gguf_name.split(".", 2)[-1] if gguf_name.startswith("blk.") else gguf_name
        if short in expected_rows:
            if st.shape[0] != expected_rows[short]:
                raise InvalidCheckpointError(st.path, f"'{hf_name}' has {st.shape[0]} rows, the config implies "
                                                      f"{expected_rows[short]}")
            heads = n_head if short == "attn_q.weight" else n_head_kv
            row_index = rope_row_permutation(st.shape[0], heads)
        tensors.append(SourceTensor(gguf_name, st.shape, _rows_reader(array, lambda p, d=st.dtype: to_float32(p, d),
                                                                       row_index), st.dtype,
                                    release=lambda a=array: drop_mapped_pages(a)))
    if scaling is not None and scaling["rope_type"] == "llama3":
        factors = llama3_rope_factors(head_dim, theta, scaling)
        tensors.append(SourceTensor("rope_freqs.weight", factors.shape, lambda a, b, f=factors: f.reshape(1, -1), "F32"))

    meta: Dict[str, Any] = {
        "general.name": (config.get("_name_or_path") if isinstance(config.get("_name_or_path"), str) else None)
                        or folder.resolve().name,
        "llama.context_length": config.get("max_position_embeddings", 2048),
        "llama.embedding_length": n_embd,
        "llama.block_count": n_layer,
        "llama.feed_forward_length": config["intermediate_size"],
        "llama.rope.dimension_count": head_dim,
        "llama.attention.head_count": n_head,
        "llama.attention.head_count_kv": n_head_kv,
        "llama.attention.layer_norm_rms_epsilon": config.get("rms_norm_eps", 1e-5),
        "llama.rope.freq_base": theta,
        "llama.vocab_size": config["vocab_size"],
    }
    meta.update(rope_scaling_metadata(scaling, meta["llama.context_length"]))
    if head_dim * n_head != n_embd:
        meta["llama.attention.key_length"] = head_dim
        meta["llama.attention.value_length"] = head_dim
    meta.update(_hf_tokenizer_metadata(folder, log))
    dims = {t.name: tuple(reversed(t.shape)) for t in tensors}  # GGUF order
    _fit_vocabulary(meta, dims["token_embd.weight"][-1], log)
    # What is about to be written is checked as the loader will check it (types, ranges, shapes).
    validate_llama_metadata(config_path, {"general.architecture": "llama", **meta}, dims)
    source = ModelSource(f"Hugging Face {folder} ({'/'.join(sorted(dtypes))})",
                         [meta_entry(k, v) for k, v in meta.items()], tensors, n_layer)
    return source


def _fit_vocabulary(meta: Dict[str, Any], n_rows: int, log: Log) -> None:
    """GGUF has one token per embedding row, and other runtimes refuse a file where the counts
    differ. A checkpoint may give the embedding more rows than its tokenizer has tokens (padded for
    speed): the extra rows get placeholder tokens of type UNUSED, which text never encodes to. A
    tokenizer may have more tokens than the embedding has rows (Llama 3.2 Vision's tokenizer adds
    <|image|> past a text model's 128256): added control tokens past the last row are dropped with
    a note, as no row can hold them; anything else is left for validation to report."""
    tokens = meta.get("tokenizer.ggml.tokens")
    if not isinstance(tokens, list) or meta.get("llama.vocab_size") != n_rows:
        return
    if len(tokens) < n_rows:
        _pad_tokens(meta, tokens, n_rows)
    elif len(tokens) > n_rows:
        _drop_tokens_past(meta, tokens, n_rows, log)


def _pad_tokens(meta: Dict[str, Any], tokens: List[str], n_rows: int) -> None:
    from edgellama.tokenizer import TokenType

    extra = range(len(tokens), n_rows)
    meta["tokenizer.ggml.tokens"] = tokens + [f"[PAD{i}]" for i in extra]
    meta["tokenizer.ggml.token_type"] = list(meta["tokenizer.ggml.token_type"]) + [TokenType.UNUSED] * len(extra)
    if "tokenizer.ggml.scores" in meta:
        meta["tokenizer.ggml.scores"] = list(meta["tokenizer.ggml.scores"]) + [-1000.0] * len(extra)


def _drop_tokens_past(meta: Dict[str, Any], tokens: List[str], n_rows: int, log: Log) -> None:
    from edgellama.tokenizer import TokenType

    types = list(meta.get("tokenizer.ggml.token_type") or [])
    extra = range(n_rows, len(tokens))
    referenced = {meta.get(k) for k in meta if k.startswith("tokenizer.ggml.") and k.endswith("_token_id")}
    droppable = len(types) == len(tokens) and all(
        types[i] in (TokenType.CONTROL, TokenType.USER_DEFINED) and i not in referenced for i in extra)
    if not droppable:
        return  # validation names the mismatch
    dropped = ", ".join(f"{i} {tokens[i]!r}" for i in extra)
    log(f"note: the tokenizer has {len(tokens)} tokens but the embedding {n_rows} rows: dropped the added "
        f"token(s) past the last row ({dropped}); the model cannot produce them")
    meta["tokenizer.ggml.tokens"] = tokens[:n_rows]
    meta["tokenizer.ggml.token_type"] = types[:n_rows]
    if "tokenizer.ggml.scores" in meta:
        meta["tokenizer.ggml.scores"] = list(meta["tokenizer.ggml.scores"])[:n_rows]


def _hf_tokenizer_metadata(folder: Path, log: Log) -> Dict[str, Any]:
    if not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer.model")):
        log("note: no tokenizer files: the GGUF carries no tokenizer metadata")
        return {}
    try:
        from edgellama.tokenizer_convert import tokenizer_metadata_from_hf
    except ImportError:
        log("note: the tokenizer converter (edgellama.tokenizer_convert) is not available: "
            "the GGUF carries no tokenizer metadata")
        return {}
    return dict(tokenizer_metadata_from_hf(folder))


# ----------------------------------------------------------------------------------------------
# Type policy


def _more_bits(layer: int, n_layer: int) -> bool:
    """The layers a _M mix keeps at higher precision: the first and last eighth, and every third
    layer in between."""
    eighth = max(1, n_layer // 8)
    return layer < eighth or layer >= n_layer - eighth or (layer - eighth) % 3 == 2


def _block_size(type_name: str) -> int:
    return gguf.GGML_QUANT_SIZES[QT[type_name]][0]


def tensor_type(name: str, shape: Tuple[int, ...], requested: str, n_layer: int) -> Tuple[str, str]:
    """(type, note) for one tensor under the requested type or mix."""
    if len(shape) == 1:
        return "F32", ""
    wanted = requested
    if requested in MIXES:
        wanted = MIXES[requested]
        if name in ("token_embd.weight", "output.weight"):
            wanted = "Q6_K"
        elif name.startswith("blk.") and name.endswith((".attn_v.weight", ".ffn_down.weight")):
            if _more_bits(int(name.split(".")[1]), n_layer):
                wanted = "Q6_K"
    cols = int(shape[-1])
    if cols % _block_size(wanted) == 0:
        return wanted, ""
    fallback = K_FALLBACK.get(wanted)
    if fallback is None or cols % _block_size(fallback):
        fallback = "F16"
    return fallback, f"rows of {cols} are not a multiple of {_block_size(wanted)}: {wanted} -> {fallback}"


# ----------------------------------------------------------------------------------------------
# The writer


@dataclass
class TensorReport:
    name: str
    type: str
    shape: Tuple[int, ...]
    nbytes: int
    rmse: float
    note: str = ""


@dataclass
class QuantizeReport:
    path: Path
    type: str
    tensors: List[TensorReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    @property
    def n_weights(self) -> int:
        return sum(int(np.prod(t.shape)) for t in self.tensors)

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.total_bytes / max(1, self.n_weights)

    def table(self) -> str:
        width = max([len(t.name) for t in self.tensors] + [6])
        lines = [f"{'tensor':<{width}}  {'type':<5}  {'shape':>16}  {'size':>10}  {'rmse':>10}  note"]
        for t in self.tensors:
            shape = "x".join(str(d) for d in t.shape)
            lines.append(f"{t.name:<{width}}  {t.type:<5}  {shape:>16}  {_human(t.nbytes):>10}  {t.rmse:10.3e}  {t.note}")
        lines.append(f"total: {len(self.tensors)} tensors, {self.n_weights:,} weights, {_human(self.total_bytes)}, "
                     f"{self.bits_per_weight:.2f} bits per weight, {self.seconds:.1f} s -> {self.path}")
        return "\n".join(lines)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _row_bytes(type_name: str, cols: int) -> int:
    block, nbytes = gguf.GGML_QUANT_SIZES[QT[type_name]]
    return cols // block * nbytes


def write_gguf(source: ModelSource, out, type_name: str, threads: Optional[int] = None,
               progress: bool = False, log: Log = _stderr_log) -> QuantizeReport:
    """Writes `source` as a GGUF llama file at `out` (atomically) and returns the report.
    progress=True shows how far it is (edgellama.progress: a bar on a terminal, else a line
    through `log` every tenth of the weights)."""
    if type_name not in TYPES:
        raise QuantizeError(f"unknown type {type_name!r}; choose one of {', '.join(TYPES)}")
    out = check_output_path(out)
    threads = max(1, int(threads or os.cpu_count() or 1))
    plan = [(t, *tensor_type(t.name, t.shape, type_name, source.n_layer)) for t in source.tensors]
    report = QuantizeReport(out, type_name)
    start = time.perf_counter()

    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial")
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make OUT private
    writer = None
    try:
        writer = gguf.GGUFWriter(tmp, "llama")
        for entry in source.metadata:
            writer.add_key_value(entry.key, entry.value, entry.vtype, entry.sub_type)
        writer.add_file_type(int(FILE_TYPES[type_name]))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        for t, ttype, _ in plan:
            writer.add_tensor_info(t.name, t.shape, np.dtype(np.float32), t.rows * _row_bytes(ttype, t.cols),
                                   raw_dtype=QT[ttype])
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        fout = writer.fout[0]
        alignment = writer.data_alignment
        total_elements = sum(t.n_elements for t in source.tensors)
        if progress:
            log(f"Quantizing {len(plan)} tensors ({total_elements:,} weights) to {type_name} with {threads} "
                f"threads into {out} ...")
        with Progress(total_elements, "Quantizing", log, enabled=progress, unit="weights") as bar:
            for t, ttype, note in plan:
                rmse = _write_tensor(fout, alignment, t, ttype, threads, lambda n, name=t.name: bar.update(n, name))
                report.tensors.append(TensorReport(t.name, ttype, t.shape, t.rows * _row_bytes(ttype, t.cols),
                                                   rmse, note))
        fout.write(b"\0" * (-fout.tell() % alignment))
        fout.flush()
        os.fsync(fout.fileno())
        writer.close()
        writer = None
        os.replace(tmp, out)
    except BaseException:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
        raise
    report.seconds = time.perf_counter() - start
    return report


# ----------------------------------------------------------------------------------------------
# Entry point


def _write_tensor(fout, alignment: int, t: SourceTensor, ttype: str, threads: int,
                  done: Callable[[int], None]) -> float:
    """Quantizes `t` to `ttype` chunk by chunk onto fout (after the alignment padding), calling
    done(weights) after each chunk; returns the tensor's RMS quantization error."""
    from edgellama import _core

    fout.write(b"\0" * (-fout.tell() % alignment))
    step = max(1, CHUNK_ELEMENTS // t.cols)
    sse = 0.0
    for a in range(0, t.rows, step):
        b = min(t.rows, a + step)
        rows = t.read(a, b)
        if rows.shape != (b - a, t.cols):
            raise QuantizeError(f"tensor '{t.name}': read {rows.shape}, expected {(b - a, t.cols)}")
        data, chunk_sse = _core.quantize_rows(int(QT[ttype]), rows, threads)
        sse += chunk_sse
        fout.write(memoryview(data).cast("B"))
        if t.release is not None:
            t.release()
        done((b - a) * t.cols)
    return float(np.sqrt(sse / t.n_elements))


def _is_same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_output_path(out) -> Path:
    """`out` as a Path when a GGUF file can be written there; QuantizeError otherwise, before any
    work: OUT is a folder (the file name is not guessed: give one), OUT exists but is not a regular
    file (a device such as /dev/null would be replaced), or OUT's folder is missing or not writable."""
    out = Path(out)
    if out.is_dir():
        raise QuantizeError(f"output {out} is a folder: give the path of the GGUF file to write, "
                            f"e.g. {out / 'model.gguf'}")
    if out.exists() and not out.is_file():
        raise QuantizeError(f"output {out} exists and is not a regular file: choose another output path")
    folder = out.parent
    if not folder.is_dir():
        raise QuantizeError(f"the folder of the output {out} does not exist" if not folder.exists()
                            else f"the output {out} is not in a folder ({folder} is a file)")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise QuantizeError(f"cannot write into {folder} (permission denied): choose another output path")
    return out


def open_source(inp, log: Log = _stderr_log) -> ModelSource:
    inp = Path(inp)
    if inp.is_dir():
        return hf_source(inp, log)
    if not inp.is_file():
        raise FileNotFoundError(f"input not found: {inp}")
    with open(inp, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise QuantizeError(f"{inp}: not a GGUF file or a Hugging Face model folder")
    return gguf_source(inp, log)


def quantize(inp, out, type_name: str, threads: Optional[int] = None, progress: bool = False,
             log: Log = _stderr_log) -> QuantizeReport:
    """Quantize/export `inp` (a GGUF file or a Hugging Face LlamaForCausalLM folder) to the GGUF
    file `out` with `type_name` (see TYPES). Refuses out == inp and an output path that cannot
    take the file (check_output_path), before any work; writes atomically. Warnings go through
    `log`; progress as for write_gguf."""
    inp, out = Path(inp), Path(out)
    if type_name not in TYPES:
        raise QuantizeError(f"unknown type {type_name!r}; choose one of {', '.join(TYPES)}")
    if _is_same_path(inp, out):
        raise QuantizeError(f"refusing to overwrite the input {inp}: choose another output path")
    check_output_path(out)
    source = open_source(inp, log)
    if source.quantized_from:
        log(f"warning: {inp} is already quantized ({source.quantized_from}); requantizing to {type_name} "
            f"adds a second rounding error on top of the first: quantize from the F16/BF16/F32 original "
            f"when you have it")
    if type_name in EXPORT_ONLY:
        log(f"note: {type_name} is export-only: edgellama cannot run it yet (other GGUF runtimes can)")
    return write_gguf(source, out, type_name, threads=threads, progress=progress, log=log)
