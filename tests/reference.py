"""An independent float64 numpy forward of a llama GGUF file: the truth edgellama is tested against.

It shares no code with edgellama: the file is read with `gguf.GGUFReader`, every tensor is
dequantized with `gguf.quants.dequantize` and the whole computation runs in float64.

The math llama GGUF files expect (GGUF stores Wq/Wk already permuted for "normal" RoPE):
    x = embd[ids]
    per layer:
        h = rmsnorm(x) * attn_norm                 rmsnorm(x) = x / sqrt(mean(x^2) + eps)
        q, k, v = h Wq^T, h Wk^T, h Wv^T
        RoPE on q and k of every head: the adjacent pair (x[2i], x[2i+1]) of the first
        rope.dimension_count dims is rotated by pos * base^(-2i/rope_dim) / rope_freqs[i]
        causal softmax attention, scale 1/sqrt(head_dim); query head h reads kv head
        h // (n_head / n_head_kv)
        x += attn Wo^T
        h = rmsnorm(x) * ffn_norm
        x += (silu(h Wg^T) * (h Wu^T)) Wd^T
    logits = (rmsnorm(x) * output_norm) Wout^T     Wout = token_embd when output.weight is absent

`act_quant=True` additionally rounds every input of a matmul with a block-quantized weight to
int8 per block the way edgellama's kernels do (per 32 values for Q4_0/Q4_1/Q8_0, per 256 for the
K-quants; scale = max|a|/127 in float32, q = round(a/scale)). It is used only to measure how much
that rounding alone moves the logits, which justifies the tolerances of the forward tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT

FLOAT_QTYPES = {QT.F32, QT.F16, QT.BF16}
K_QTYPES = {QT.Q2_K, QT.Q3_K, QT.Q4_K, QT.Q5_K, QT.Q6_K}


def _field(reader: gguf.GGUFReader, key: str, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


@dataclass
class HParams:
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    rope_dim: int
    rope_base: float
    eps: float
    n_vocab: int
    n_ctx_train: int


class Matrix:
    """A dequantized weight (float64, numpy (rows, cols)) and the type it was stored in."""

    def __init__(self, w: np.ndarray, qtype: QT):
        self.w = w
        self.qtype = qtype

    @property
    def act_block(self) -> Optional[int]:
        """Block size over which edgellama rounds this matmul's input to int8 (None: floats)."""
        if self.qtype in FLOAT_QTYPES:
            return None
        return 256 if self.qtype in K_QTYPES else 32


def quantize_act_int8(a: np.ndarray, block: int, scale_dtype=np.float32) -> np.ndarray:
    """Round activations to int8 per block of `block` values along the last axis: scale =
    max|a|/127 (stored as scale_dtype), q = round(a/scale) clipped to [-127, 127]; returns q*scale."""
    shape = a.shape
    blocks = a.reshape(-1, block)
    amax = np.abs(blocks).max(axis=1, keepdims=True)
    scale = (amax / 127.0).astype(scale_dtype).astype(np.float64)
    inv = np.where(scale > 0, 1.0 / np.where(scale > 0, scale, 1.0), 0.0)
    q = np.clip(np.rint(blocks * inv), -127, 127)
    return (q * scale).astype(a.dtype).reshape(shape)


class ReferenceModel:
    """A llama GGUF file loaded for the float64 reference forward."""

    # Deliberate deviations, used only by test_reference on private instances: to show the real
    # model needs adjacent-pair RoPE, and that the forward tests' tolerances catch plausible bugs
    # while passing a legitimate alternative rounding of the activations.
    rope_neox = False          # rotate halves (x[i], x[i + rope_dim/2]) instead of adjacent pairs
    gqa_modulo = False         # query head h reads kv head h % n_head_kv instead of h // group
    use_rope_freqs = True      # False: ignore rope_freqs.weight
    act_scale_dtype = np.float32   # storage of the int8 block scale in act_quant (np.float16: as ggml's Q8_0)
    kv_fp16 = False            # round keys and values to fp16 after RoPE (the CUDA KV cache)
    # (key type, value type): store keys and values as a quantized KV cache does ("q8_0"/"q4_0"
    # blocks along head_dim, gguf.quants' reference rounding of the float32 values; "f16").
    kv_types: Optional[Tuple[str, str]] = None
    # Per layer, (keys, values) [n][n_head_kv][head_dim] to attend instead of the computed ones
    # (an engine's cache contents, to check its attention alone).
    kv_override: Optional[List[Tuple[np.ndarray, np.ndarray]]] = None

    def __init__(self, path):
        self.path = str(path)
        reader = self.reader = gguf.GGUFReader(self.path)
        arch = _field(reader, "general.architecture")
        if arch != "llama":
            raise ValueError(f"{self.path}: the reference runs llama only, not {arch!r}")
        g = lambda k, d=None: _field(reader, f"llama.{k}", d)  # noqa: E731
        n_embd = int(g("embedding_length"))
        n_head = int(g("attention.head_count"))
        head_dim = int(g("attention.key_length", n_embd // n_head))
        tensors = {t.name: t for t in reader.tensors}
        n_vocab = int(tensors["token_embd.weight"].shape[1])
        self.hp = HParams(
            n_layer=int(g("block_count")), n_embd=n_embd, n_ff=int(g("feed_forward_length")),
            n_head=n_head, n_head_kv=int(g("attention.head_count_kv", n_head)), head_dim=head_dim,
            rope_dim=int(g("rope.dimension_count", head_dim)), rope_base=float(g("rope.freq_base", 10000.0)),
            eps=float(g("attention.layer_norm_rms_epsilon", 1e-5)), n_vocab=n_vocab,
            n_ctx_train=int(g("context_length", 2048)))

        def load(name: str) -> Matrix:
            t = tensors[name]
            w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)
            expected = tuple(int(d) for d in reversed(t.shape.tolist()))
            w = w.reshape(expected)
            return Matrix(w, t.tensor_type)

        hp = self.hp
        self.embd = load("token_embd.weight")
        self.output_norm = load("output_norm.weight").w
        self.output = load("output.weight") if "output.weight" in tensors else self.embd
        self.rope_freqs = load("rope_freqs.weight").w if "rope_freqs.weight" in tensors else None
        self.rope_scaling = {k: _field(reader, f"llama.rope.scaling.{k}") for k in
                             ("type", "factor", "original_context_length", "attn_factor")}
        self.layers = []
        for i in range(hp.n_layer):
            p = f"blk.{i}."
            layer = {k: load(p + k + ".weight") for k in
                     ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                      "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")}
            layer["attn_norm"] = layer["attn_norm"].w
            layer["ffn_norm"] = layer["ffn_norm"].w
            assert layer["attn_q"].w.shape == (hp.n_head * hp.head_dim, hp.n_embd)
            assert layer["attn_k"].w.shape == (hp.n_head_kv * hp.head_dim, hp.n_embd)
            assert layer["ffn_down"].w.shape == (hp.n_embd, hp.n_ff)
            self.layers.append(layer)
        assert self.embd.w.shape == (hp.n_vocab, hp.n_embd)

    # -- pieces ----------------------------------------------------------------------------

    def rmsnorm(self, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.hp.eps) * weight

    def matmul(self, a: np.ndarray, m: Matrix, act_quant: bool) -> np.ndarray:
        if act_quant and m.act_block is not None:
            a = quantize_act_int8(a, m.act_block, self.act_scale_dtype)
        return a @ m.w.T

    def rope(self, x: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """x: (n_tokens, n_heads, head_dim); rotates adjacent pairs of the first rope_dim dims."""
        hp = self.hp
        half = hp.rope_dim // 2
        inv_freq = hp.rope_base ** (-2.0 * np.arange(half) / hp.rope_dim)
        if self.rope_freqs is not None and self.use_rope_freqs:
            inv_freq = inv_freq / self.rope_freqs[:half]
        inv_freq, magnitude = self.scaled_frequencies(inv_freq)
        angle = positions[:, None].astype(np.float64) * inv_freq[None, :]     # (n, half)
        cos, sin = magnitude * np.cos(angle)[:, None, :], magnitude * np.sin(angle)[:, None, :]
        out = x.copy()
        if self.rope_neox:      # the other convention: pairs (x[i], x[i + rope_dim/2])
            first, second = slice(0, half), slice(half, hp.rope_dim)
        else:                   # "normal": adjacent pairs (x[2i], x[2i+1]), what llama GGUF expects
            first, second = slice(0, hp.rope_dim, 2), slice(1, hp.rope_dim, 2)
        x0, x1 = x[..., first], x[..., second]
        out[..., first] = x0 * cos - x1 * sin
        out[..., second] = x0 * sin + x1 * cos
        return out

    def scaled_frequencies(self, inv_freq: np.ndarray) -> Tuple[np.ndarray, float]:
        """(frequencies, magnitude on the rotated vectors) under the file's rope.scaling.
        linear: every frequency / factor. YaRN (Peng et al. 2023, and the authors' code): with
        d(b) = rope_dim ln(L / (2 pi b)) / (2 ln base) the pair index that turns b times over the
        original window L, pairs below floor(d(32)) keep their frequency, pairs above ceil(d(1))
        are divided by the factor, a linear ramp over the index blends between; queries and keys
        are scaled by attn_factor (0.1 ln(factor) + 1)."""
        s, hp = self.rope_scaling, self.hp
        kind, factor = s["type"] or "none", float(s["factor"] or 1.0)
        magnitude = float(s["attn_factor"] or 1.0)
        if kind == "linear":
            return inv_freq / factor, magnitude
        if kind != "yarn":
            return inv_freq, magnitude
        window = float(s["original_context_length"] or hp.n_ctx_train)
        turning = lambda b: hp.rope_dim * np.log(window / (2 * np.pi * b)) / (2 * np.log(hp.rope_base))  # noqa: E731
        low, high = max(0.0, np.floor(turning(32.0))), min(hp.rope_dim - 1.0, np.ceil(turning(1.0)))
        interpolate = np.clip((np.arange(len(inv_freq)) - low) / max(high - low, 1e-3), 0.0, 1.0)
        scaled = inv_freq * (1 - interpolate) + inv_freq / factor * interpolate
        return scaled, magnitude * (0.1 * np.log(factor) + 1.0 if factor > 1 else 1.0)

    # -- forward ---------------------------------------------------------------------------

    def logits(self, token_ids: Sequence[int], act_quant: bool = False, dtype=np.float64) -> np.ndarray:
        """Logits (len(ids), n_vocab) of every position of a fresh sequence. dtype=np.float32
        runs the same math in float32 (only to measure float32 rounding for the tolerances)."""
        if dtype != np.float64:
            return _Float32View(self, dtype).logits(token_ids, act_quant)
        return self.matmul(self.hidden(token_ids, act_quant), self.output, act_quant)

    def hidden(self, token_ids: Sequence[int], act_quant: bool = False) -> np.ndarray:
        """The final hidden state (len(ids), n_embd): the last layer's output after the output
        RMSNorm, which the output projection turns into logits."""
        hp = self.hp
        ids = np.asarray(token_ids, dtype=np.int64)
        n = len(ids)
        pos = np.arange(n)
        x = self.embd.w[ids].copy()
        group = hp.n_head // hp.n_head_kv
        mask = np.triu(np.full((n, n), -np.inf, dtype=x.dtype), k=1)
        for index, layer in enumerate(self.layers):
            h = self.rmsnorm(x, layer["attn_norm"])
            q = self.matmul(h, layer["attn_q"], act_quant).reshape(n, hp.n_head, hp.head_dim)
            k = self.matmul(h, layer["attn_k"], act_quant).reshape(n, hp.n_head_kv, hp.head_dim)
            v = self.matmul(h, layer["attn_v"], act_quant).reshape(n, hp.n_head_kv, hp.head_dim)
            q, k = self.rope(q, pos), self.rope(k, pos)
            if self.kv_fp16:  # the CUDA backend keeps its KV cache in fp16
                k, v = k.astype(np.float16).astype(x.dtype), v.astype(np.float16).astype(x.dtype)
            if self.kv_types is not None:
                k, v = (cache_rounded(a, t).astype(x.dtype) for a, t in zip((k, v), self.kv_types))
            if self.kv_override is not None:
                k, v = (a.astype(x.dtype) for a in self.kv_override[index])
            if self.gqa_modulo:
                k, v = np.tile(k, (1, group, 1)), np.tile(v, (1, group, 1))
            else:
                k = np.repeat(k, group, axis=1)     # query head h -> kv head h // group
                v = np.repeat(v, group, axis=1)
            scores = np.einsum("qhd,khd->hqk", q, k) * float(1.0 / np.sqrt(hp.head_dim)) + mask
            scores -= scores.max(axis=-1, keepdims=True)
            p = np.exp(scores)
            p /= p.sum(axis=-1, keepdims=True)
            attn = np.einsum("hqk,khd->qhd", p, v).reshape(n, hp.n_head * hp.head_dim)
            x = x + self.matmul(attn, layer["attn_output"], act_quant)
            h = self.rmsnorm(x, layer["ffn_norm"])
            gate = self.matmul(h, layer["ffn_gate"], act_quant)
            up = self.matmul(h, layer["ffn_up"], act_quant)
            x = x + self.matmul(gate / (1.0 + np.exp(-gate)) * up, layer["ffn_down"], act_quant)
        return self.rmsnorm(x, self.output_norm)


def cache_rounded(a: np.ndarray, cache_type: str) -> np.ndarray:
    """a ([..., head_dim] rows) as a KV cache of that type holds it: fp16, or quantized in blocks of
    32 along the last axis by gguf.quants (float32 input, as the engine quantizes)."""
    if cache_type == "f16":
        return a.astype(np.float16).astype(np.float64)
    qtype = {"q8_0": QT.Q8_0, "q4_0": QT.Q4_0}[cache_type]
    rows = np.ascontiguousarray(a, dtype=np.float32).reshape(-1, a.shape[-1])
    return gguf.quants.dequantize(gguf.quants.quantize(rows, qtype), qtype).astype(np.float64).reshape(a.shape)


class _Float32View(ReferenceModel):
    """The same model with every weight cast to a narrower float dtype."""

    def __init__(self, base: ReferenceModel, dtype):
        self.path, self.hp = base.path, base.hp
        cast = lambda m: Matrix(m.w.astype(dtype), m.qtype)  # noqa: E731
        self.embd, self.output = cast(base.embd), cast(base.output)
        self.output_norm = base.output_norm.astype(dtype)
        self.rope_freqs, self.rope_scaling = base.rope_freqs, base.rope_scaling
        self.layers = [{k: (cast(v) if isinstance(v, Matrix) else v.astype(dtype)) for k, v in layer.items()}
                       for layer in base.layers]
        for flag in ("rope_neox", "gqa_modulo", "use_rope_freqs", "act_scale_dtype", "kv_fp16", "kv_types",
                     "kv_override"):
            setattr(self, flag, getattr(base, flag))

    def logits(self, token_ids, act_quant=False, dtype=None):
        return ReferenceModel.logits(self, token_ids, act_quant)


_CACHE: Dict[Tuple[str, int, int], ReferenceModel] = {}


def load_reference(path) -> ReferenceModel:
    """ReferenceModel of `path`, cached while the file is unchanged (size and mtime)."""
    st = os.stat(path)
    key = (os.path.abspath(str(path)), st.st_size, st.st_mtime_ns)
    model = _CACHE.get(key)
    if model is None:
        if len(_CACHE) > 32:
            _CACHE.clear()
        model = _CACHE[key] = ReferenceModel(path)
    return model


def reference_logits(path, token_ids: Sequence[int], act_quant: bool = False) -> np.ndarray:
    """float64 logits (len(token_ids), n_vocab) of every position of a fresh sequence."""
    return load_reference(path).logits(token_ids, act_quant=act_quant)
