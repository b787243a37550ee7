"""Tiny random llama GGUF files for the edgellama tests.

`write_tiny_llama` writes a complete, valid llama GGUF (hyper-parameters, a minimal byte-level
gpt2 tokenizer, every tensor the forward step needs) with random weights in any supported type.
Weights are drawn with std 1/sqrt(fan_in) so activations stay O(1) through the layers.

F32/F16/BF16/Q8_0/Q4_0/Q4_1 weights are quantized with `gguf.quants.quantize`. gguf cannot
quantize the K-quants (Q4_K, Q5_K, Q6_K), so for those we write random *block bytes*: the
quant nibbles and 6-bit scales are uniformly random (every bit of the packing is exercised) and
only the f16 super-block scales are chosen so the dequantized block has mean ~0 and the target
std. The reference forward dequantizes whatever bytes are stored, so no float "truth" is needed.

`overrides` turns a valid file into a hostile one for the loading tests (see write_tiny_llama).
`GGUFLayout` finds where header fields sit in a written file so tests can patch bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT, GGUFValueType

QK_K = 256

WEIGHT_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K")
FLOAT_TYPES = ("F32", "F16", "BF16")
BLOCK32_TYPES = ("Q8_0", "Q4_0", "Q4_1")
K_QUANT_TYPES = ("Q4_K", "Q5_K", "Q6_K")

# Marker for `overrides`: remove this metadata key or tensor from the file.
DROP = object()


# ----------------------------------------------------------------------------------------------
# Tensor encoding


def _block_bytes(qtype: QT) -> int:
    return gguf.GGML_QUANT_SIZES[qtype][1]


def _random_kquant_blocks(qtype: QT, rows: int, cols: int, std: float, rng: np.random.Generator) -> np.ndarray:
    """Random K-quant block bytes, shape (rows, cols/256*block_bytes) uint8, whose dequantized
    values have (per super-block) mean ~0 and std ~`std`."""
    assert cols % QK_K == 0, f"{qtype.name} rows need a multiple of {QK_K} columns, got {cols}"
    n_blocks = rows * cols // QK_K
    nbytes = _block_bytes(qtype)
    blocks = rng.integers(0, 256, size=(n_blocks, nbytes), dtype=np.uint8)

    def set_f16(b: np.ndarray, offset: int, values) -> None:
        b[:, offset:offset + 2] = np.asarray(values, dtype=np.float16).reshape(-1, 1).view(np.uint8).reshape(-1, 2)

    if qtype == QT.Q6_K:
        # layout: ql[128] qh[64] scales int8[16] d f16; w = d * scale * (q - 32), centred already.
        scales = rng.integers(-40, 41, size=(n_blocks, 16)).astype(np.int8)
        blocks[:, 192:208] = scales.view(np.uint8)
        set_f16(blocks, 208, 1.0)
        unit = gguf.quants.dequantize(blocks, qtype).astype(np.float64)
        d = std / np.maximum(unit.std(axis=1), 1e-6)
        set_f16(blocks, 208, d)
    else:
        # Q4_K / Q5_K layout: d f16, dmin f16, scales[12] (6-bit sc and m), quants...;
        # w = d*sc*q - dmin*m. Dequantize with (d, dmin) = (1, 0) and (0, 1) to get the two
        # parts, then choose d, dmin per block for mean 0 and the target std.
        set_f16(blocks, 0, 1.0)
        set_f16(blocks, 2, 0.0)
        a = gguf.quants.dequantize(blocks, qtype).astype(np.float64)      # sc*q
        set_f16(blocks, 0, 0.0)
        set_f16(blocks, 2, 1.0)
        b = -gguf.quants.dequantize(blocks, qtype).astype(np.float64)     # m
        ratio = a.mean(axis=1) / np.maximum(b.mean(axis=1), 1e-6)        # dmin/d for mean 0
        spread = (a - ratio[:, None] * b).std(axis=1)
        d = std / np.maximum(spread, 1e-6)
        set_f16(blocks, 0, d)
        set_f16(blocks, 2, d * ratio)
    return blocks.reshape(rows, cols // QK_K * nbytes)


def encode_tensor(values: Optional[np.ndarray], type_name: str, rng: np.random.Generator,
                  shape: Optional[tuple] = None, std: Optional[float] = None):
    """(data, raw_dtype) for GGUFWriter.add_tensor. `values` is a float (rows, cols) array, or
    None for K-quants (then `shape` and `std` give random block bytes)."""
    qtype = QT[type_name]
    if type_name in K_QUANT_TYPES:
        rows, cols = shape if values is None else values.shape
        if std is None:
            std = float(np.std(values)) if values is not None else 1.0 / np.sqrt(cols)
        return _random_kquant_blocks(qtype, rows, cols, std, rng), qtype
    assert values is not None
    if type_name == "F32":
        return values.astype(np.float32), None
    if type_name == "F16":
        return values.astype(np.float16), None
    return gguf.quants.quantize(values.astype(np.float32), qtype), qtype


def _random_matrix(rows: int, cols: int, type_name: str, rng: np.random.Generator):
    std = 1.0 / np.sqrt(cols)
    if type_name in K_QUANT_TYPES:
        return encode_tensor(None, type_name, rng, shape=(rows, cols), std=std)
    return encode_tensor(rng.standard_normal((rows, cols)) * std, type_name, rng)


# ----------------------------------------------------------------------------------------------
# Tokenizer


def byte_level_symbols() -> List[str]:
    """The 256 byte-level symbols of the gpt2 tokenizer, indexed by byte value."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1))
                 + list(range(ord("\xae"), ord("\xff") + 1)))
    mapping = {}
    extra = 0
    for byte in range(256):
        if byte in printable:
            mapping[byte] = chr(byte)
        else:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return [mapping[b] for b in range(256)]


# A few merges so the tokenizer section is realistic; their results are tokens 256.. .
TINY_MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a")]


def tiny_vocab(n_vocab: int):
    assert n_vocab >= 256 + len(TINY_MERGES), "the tiny tokenizer needs n_vocab >= 261"
    tokens = byte_level_symbols() + [a + b for a, b in TINY_MERGES]
    tokens += [f"<|fill_{i}|>" for i in range(n_vocab - len(tokens))]
    types = [int(gguf.TokenType.NORMAL)] * (256 + len(TINY_MERGES))
    types += [int(gguf.TokenType.USER_DEFINED)] * (n_vocab - len(types))
    merges = [f"{a} {b}" for a, b in TINY_MERGES]
    return tokens, types, merges


# ----------------------------------------------------------------------------------------------
# The writer


def llama_tensor_shapes(n_embd, n_head, n_head_kv, head_dim, n_ff, n_layer, n_vocab, tied_output):
    """name -> numpy shape (rows, cols) (ne0 = cols) of every matrix; 1-D norms as (n,)."""
    shapes = {"token_embd.weight": (n_vocab, n_embd), "output_norm.weight": (n_embd,)}
    if not tied_output:
        shapes["output.weight"] = (n_vocab, n_embd)
    for i in range(n_layer):
        p = f"blk.{i}."
        shapes[p + "attn_norm.weight"] = (n_embd,)
        shapes[p + "attn_q.weight"] = (n_head * head_dim, n_embd)
        shapes[p + "attn_k.weight"] = (n_head_kv * head_dim, n_embd)
        shapes[p + "attn_v.weight"] = (n_head_kv * head_dim, n_embd)
        shapes[p + "attn_output.weight"] = (n_embd, n_head * head_dim)
        shapes[p + "ffn_norm.weight"] = (n_embd,)
        shapes[p + "ffn_gate.weight"] = (n_ff, n_embd)
        shapes[p + "ffn_up.weight"] = (n_ff, n_embd)
        shapes[p + "ffn_down.weight"] = (n_embd, n_ff)
    return shapes


def llama31_rope_freqs(head_dim: int, rope_base: float, factor=8.0, low_freq_factor=1.0,
                       high_freq_factor=4.0, original_context=8192) -> np.ndarray:
    """rope_freqs.weight as Llama 3.1 files carry it: 1 for high frequencies, `factor` for low
    ones, smoothly interpolated between."""
    freqs = rope_base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    wavelen = 2 * np.pi / freqs
    low_wavelen = original_context / low_freq_factor
    high_wavelen = original_context / high_freq_factor
    out = np.ones_like(freqs)
    out[wavelen > low_wavelen] = factor
    mid = (wavelen <= low_wavelen) & (wavelen >= high_wavelen)
    smooth = (original_context / wavelen[mid] - low_freq_factor) / (high_freq_factor - low_freq_factor)
    out[mid] = 1.0 / ((1 - smooth) / factor + smooth)
    return out.astype(np.float32)


def _add_metadata(writer: gguf.GGUFWriter, key: str, value: Any) -> None:
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], GGUFValueType):
        val, vtype = value
        if vtype == GGUFValueType.ARRAY:
            writer.add_array(key, val)
        else:
            writer.add_key_value(key, val, vtype)
    elif isinstance(value, bool):
        writer.add_bool(key, value)
    elif isinstance(value, int):
        writer.add_uint32(key, value)
    elif isinstance(value, float):
        writer.add_float32(key, value)
    elif isinstance(value, str):
        writer.add_string(key, value)
    elif isinstance(value, (list, tuple)):
        writer.add_array(key, list(value))
    else:
        raise TypeError(f"cannot write metadata {key}={value!r}")


def write_tiny_llama(path, *, weight_type: str = "F32", embd_type: Optional[str] = None,
                     output_type: Optional[str] = None, n_embd: int = 64, n_head: int = 4,
                     n_head_kv: int = 2, head_dim: Optional[int] = None, n_ff: int = 128,
                     n_layer: int = 2, n_vocab: int = 300, tied_output: bool = True,
                     rope_freqs: bool = False, rope_base: float = 10000.0, context_length: int = 256,
                     rms_eps: float = 1e-5, seed: int = 0, overrides: Optional[Dict[str, Any]] = None):
    """Write a tiny random llama GGUF at `path` and return `path`.

    weight_type: type of every 2-D weight except the embedding (embd_type, default weight_type)
    and output.weight (output_type, default weight_type). Norms and rope_freqs are always F32.

    overrides: {key: value} applied while writing, for hostile-file tests.
      - a metadata key (e.g. "general.architecture", "llama.block_count"): the new value
        (int -> uint32, float -> float32, str, bool, list -> array, or (value, GGUFValueType)),
        or DROP to leave the key out. Overriding general.architecture also renames the
        hyper-parameter keys' prefix ("gpt2.block_count", ...), as a real file of that
        architecture would have them.
      - a tensor name: DROP to leave the tensor out, or a dict with "shape" (numpy order,
        (rows, cols) / (n,)) and/or "type" (a GGML type name, e.g. "Q5_0") to write it
        differently, or "data" (float values, numpy order; not for K-quant types) to write
        exactly those values in the tensor's type; a new name adds an extra tensor.
    """
    overrides = dict(overrides or {})
    rng = np.random.default_rng(seed)
    head_dim = head_dim if head_dim is not None else n_embd // n_head
    embd_type = embd_type or weight_type
    output_type = output_type or weight_type
    arch = overrides.pop("general.architecture", "llama")

    tokens, token_types, merges = tiny_vocab(n_vocab)
    meta: Dict[str, Any] = {
        f"{arch}.block_count": n_layer,
        f"{arch}.context_length": context_length,
        f"{arch}.embedding_length": n_embd,
        f"{arch}.feed_forward_length": n_ff,
        f"{arch}.attention.head_count": n_head,
        f"{arch}.attention.head_count_kv": n_head_kv,
        f"{arch}.rope.freq_base": float(rope_base),
        f"{arch}.rope.dimension_count": head_dim,
        f"{arch}.attention.layer_norm_rms_epsilon": float(rms_eps),
        f"{arch}.vocab_size": n_vocab,
        "general.name": "edgellama tiny test model",
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "gpt-2",
        "tokenizer.ggml.tokens": (tokens, GGUFValueType.ARRAY),
        "tokenizer.ggml.token_type": (token_types, GGUFValueType.ARRAY),
        "tokenizer.ggml.merges": (merges, GGUFValueType.ARRAY),
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
    }
    if head_dim * n_head != n_embd:
        meta[f"{arch}.attention.key_length"] = head_dim
        meta[f"{arch}.attention.value_length"] = head_dim
    for key in list(overrides):
        if not key.endswith(".weight"):
            value = overrides.pop(key)
            if value is DROP:
                meta.pop(key, None)
            else:
                meta[key] = value

    writer = gguf.GGUFWriter(str(path), arch)
    for key, value in meta.items():
        _add_metadata(writer, key, value)

    shapes = llama_tensor_shapes(n_embd, n_head, n_head_kv, head_dim, n_ff, n_layer, n_vocab, tied_output)
    if rope_freqs:
        shapes["rope_freqs.weight"] = (head_dim // 2,)
    for name in overrides:
        if name not in shapes and overrides[name] is not DROP:
            shapes[name] = tuple(overrides[name]["shape"])

    for name, shape in shapes.items():
        spec = overrides.get(name)
        if spec is DROP:
            continue
        if spec is not None:
            shape = tuple(spec.get("shape", shape))
        if name == "rope_freqs.weight" and (spec is None or "shape" not in spec):
            # original context = context_length so the tiny model's few positions see factors
            # other than 1 (with Llama 3.1's 8192 only the slowest dims would be scaled)
            writer.add_tensor(name, llama31_rope_freqs(head_dim, rope_base, original_context=context_length))
            continue
        given = (spec or {}).get("data")
        if given is not None:
            given = np.asarray(given, dtype=np.float64)
            shape = given.shape
        if len(shape) == 1:
            type_name = (spec or {}).get("type", "F32")
            values = given if given is not None else 1.0 + 0.1 * rng.standard_normal(shape)
            if type_name == "F32":
                writer.add_tensor(name, values.astype(np.float32))
            else:
                data, raw = encode_tensor(values.reshape(1, -1), type_name, rng)
                writer.add_tensor(name, data, raw_dtype=raw)
            continue
        if name == "token_embd.weight":
            type_name = embd_type
        elif name == "output.weight":
            type_name = output_type
        else:
            type_name = weight_type
        type_name = (spec or {}).get("type", type_name)
        rows, cols = shape
        if given is not None:
            assert type_name not in K_QUANT_TYPES, "K-quant tensors are random block bytes only"
            data, raw = encode_tensor(given, type_name, rng)
        elif name == "token_embd.weight":
            # std 0.5: O(1) residual stream, and tied-output logits of std ~0.5*sqrt(n_embd)
            std = 0.5
            if type_name in K_QUANT_TYPES:
                data, raw = encode_tensor(None, type_name, rng, shape=(rows, cols), std=std)
            else:
                data, raw = encode_tensor(rng.standard_normal((rows, cols)) * std, type_name, rng)
        else:
            data, raw = _random_matrix(rows, cols, type_name, rng)
        writer.add_tensor(name, data, raw_dtype=raw)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# ----------------------------------------------------------------------------------------------
# Byte-level access for hostile-file tests


@dataclass
class TensorRecord:
    name: str
    dims: List[int]
    type_id: int
    offset: int            # relative to the data section
    info_start: int        # file offset of the tensor-info record (its name length)
    type_field: int        # file offset of its uint32 type id
    offset_field: int      # file offset of its uint64 data offset


@dataclass
class GGUFLayout:
    """Where things sit in a little-endian GGUF v3 file (parsed independently of gguf-py)."""
    version: int
    n_tensors: int
    n_kv: int
    header_end: int                 # end of the 24-byte fixed header
    kv_end: int                     # end of the metadata section
    tensor_info_end: int
    data_start: int                 # aligned start of tensor data
    alignment: int
    tensors: Dict[str, TensorRecord] = field(default_factory=dict)

    @classmethod
    def parse(cls, blob: bytes) -> "GGUFLayout":
        pos = 0

        def take(fmt):
            nonlocal pos
            vals = struct.unpack_from("<" + fmt, blob, pos)
            pos += struct.calcsize("<" + fmt)
            return vals[0] if len(vals) == 1 else vals

        def take_str():
            nonlocal pos
            n = take("Q")
            s = blob[pos:pos + n].decode("utf-8")
            pos += n
            return s

        scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

        def skip_value(vtype):
            nonlocal pos
            if vtype == 8:
                take_str()
            elif vtype == 9:
                sub, n = take("I"), take("Q")
                for _ in range(n):
                    skip_value(sub)
            else:
                pos += struct.calcsize("<" + scalar[vtype])

        magic, version, n_tensors, n_kv = take("4s"), take("I"), take("Q"), take("Q")
        assert magic == b"GGUF", magic
        header_end = pos
        alignment = 32
        for _ in range(n_kv):
            key = take_str()
            vtype = take("I")
            if key == "general.alignment":
                alignment = take("I")
            else:
                skip_value(vtype)
        kv_end = pos
        tensors = {}
        for _ in range(n_tensors):
            start = pos
            name = take_str()
            n_dims = take("I")
            dims = [take("Q") for _ in range(n_dims)]
            type_field = pos
            type_id = take("I")
            offset_field = pos
            offset = take("Q")
            tensors[name] = TensorRecord(name, dims, type_id, offset, start, type_field, offset_field)
        tensor_info_end = pos
        data_start = (pos + alignment - 1) // alignment * alignment
        return cls(version, n_tensors, n_kv, header_end, kv_end, tensor_info_end, data_start,
                   alignment, tensors)


def patch_bytes(path, offset: int, fmt: str, value) -> None:
    """Overwrite the little-endian `fmt` value at `offset` of the file."""
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack("<" + fmt, value))


def truncate_file(path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


def small_gguf_bytes(path) -> bytes:
    return Path(path).read_bytes()


# ----------------------------------------------------------------------------------------------
# The configurations the forward tests run (test_reference checks the tolerance on the same ones)

K_SHAPE = dict(n_embd=256, n_head=4, n_head_kv=2, n_ff=512)      # K-quants need 256-multiple rows
GQA3 = dict(n_embd=96, n_head=6, n_head_kv=2, head_dim=16, n_ff=192)  # SmolLM2's ratio

FORWARD_CASES = {
    **{wt: dict(weight_type=wt, **(K_SHAPE if wt in K_QUANT_TYPES else {})) for wt in WEIGHT_TYPES},
    "gqa1-Q4_0": dict(weight_type="Q4_0", n_head=4, n_head_kv=4),
    "gqa3-F32": dict(weight_type="F32", **GQA3),
    "gqa3-Q4_1": dict(weight_type="Q4_1", **GQA3),
    "gqa4-Q8_0": dict(weight_type="Q8_0", n_embd=128, n_head=8, n_head_kv=2, n_ff=256),
    "gqa8-F16": dict(weight_type="F16", n_embd=128, n_head=8, n_head_kv=1, n_ff=256),
    "gqa8-Q6_K": dict(weight_type="Q6_K", n_embd=256, n_head=8, n_head_kv=1, head_dim=32, n_ff=512),
    "head_dim32-F32": dict(weight_type="F32", n_embd=64, n_head=4, n_head_kv=2, head_dim=32),
    "head_dim32-Q4_1": dict(weight_type="Q4_1", n_embd=64, n_head=4, n_head_kv=2, head_dim=32),
    "head_dim128-Q8_0": dict(weight_type="Q8_0", n_embd=128, n_head=4, n_head_kv=2, head_dim=128, n_ff=256),
    "untied-F32": dict(weight_type="F32", tied_output=False),
    "untied-Q4_K-Q6_K_output": dict(weight_type="Q4_K", output_type="Q6_K", tied_output=False, **K_SHAPE),
    "rope_freqs-F32": dict(weight_type="F32", rope_freqs=True, tied_output=False),
    "rope_freqs-Q4_1": dict(weight_type="Q4_1", rope_freqs=True),
    # RoPE context extension (edgellama/rope_scaling.py); YaRN's ramp spans pairs 0-3 of 8 here.
    "rope_linear-F32": dict(weight_type="F32", overrides={
        "llama.rope.scaling.type": "linear", "llama.rope.scaling.factor": 4.0}),
    "rope_yarn-F32": dict(weight_type="F32", tied_output=False, overrides={
        "llama.rope.scaling.type": "yarn", "llama.rope.scaling.factor": 4.0,
        "llama.rope.scaling.original_context_length": 64}),
    "rope_yarn-rope_freqs-Q4_1": dict(weight_type="Q4_1", rope_freqs=True, overrides={
        "llama.rope.scaling.type": "yarn", "llama.rope.scaling.factor": 8.0,
        "llama.rope.scaling.original_context_length": 128, "llama.rope.scaling.attn_factor": 1.25}),
    "Q8_0_embd-Q4_1": dict(weight_type="Q4_1", embd_type="Q8_0", rope_base=100000.0, **GQA3),
    # Files that mix types as llama.cpp's mixes do: matrices sharing an input (Q/K/V, gate/up) in
    # different types or activation formats, a K-quant output head over 32-block layers.
    "mixed-Q4_K_M": dict(weight_type="Q4_K", output_type="Q6_K", tied_output=False, **K_SHAPE, overrides={
        "blk.0.attn_v.weight": {"type": "Q6_K"}, "blk.0.ffn_down.weight": {"type": "Q6_K"},
        "blk.1.ffn_up.weight": {"type": "Q5_K"}}),
    "mixed-Q4_0-Q8_0-F16-Q6_K": dict(weight_type="Q4_0", output_type="Q6_K", tied_output=False, **K_SHAPE, overrides={
        "blk.0.attn_k.weight": {"type": "Q8_0"}, "blk.0.ffn_gate.weight": {"type": "F16"},
        "blk.1.attn_v.weight": {"type": "Q4_K"}, "blk.1.ffn_down.weight": {"type": "Q5_1"}}),
}
