"""Synthetic llama models: the exact tensor shapes and hyper-parameters of real checkpoints with
random weights, so benchmarks run without downloading anything.

Weights are generated chunk by chunk from a seed derived from (seed, tensor, first row), so a
model of any size streams through the exporter like a real one, and the same seed always gives
the same file. Matrices are N(0, 0.02^2) (the usual initialisation scale of these models),
norms 1 + N(0, 0.02^2). The tokenizer is a minimal byte-level gpt2 vocabulary padded to n_vocab,
enough for `Llama(...)` to load the file, tokenize and run.
"""

from __future__ import annotations

from typing import Any, Dict, List

import numpy as np
import gguf
from gguf import GGUFValueType as VT

from edgellama.pretokenizer import BYTE_TO_CHAR
from edgellama.quantize import ModelSource, SourceTensor, llama3_rope_factors, meta_entry

LLAMA3_SCALING = {"factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 8192}

MODELS: Dict[str, Dict[str, Any]] = {
    "llama3.2-1b": dict(n_vocab=128256, n_embd=2048, n_layer=16, n_head=32, n_head_kv=8, head_dim=64,
                        n_ff=8192, rope_base=500000.0, context=131072, rms_eps=1e-5, tied=True,
                        rope_scaling=LLAMA3_SCALING),
    "llama3-8b": dict(n_vocab=128256, n_embd=4096, n_layer=32, n_head=32, n_head_kv=8, head_dim=128,
                      n_ff=14336, rope_base=500000.0, context=8192, rms_eps=1e-5, tied=False, rope_scaling=None),
    "smollm2-135m": dict(n_vocab=49152, n_embd=576, n_layer=30, n_head=9, n_head_kv=3, head_dim=64,
                         n_ff=1536, rope_base=100000.0, context=8192, rms_eps=1e-5, tied=True, rope_scaling=None),
}

WEIGHT_STD = 0.02


def byte_level_vocab(n_vocab: int):
    """(tokens, token types, merges): the 256 byte symbols of a byte-level BPE, two merges,
    begin/end-of-text control tokens, then reserved fillers up to n_vocab."""
    symbols = list(BYTE_TO_CHAR)
    merges = [("Ġ", "t"), ("h", "e")]
    tokens = symbols + [a + b for a, b in merges] + ["<|begin_of_text|>", "<|end_of_text|>"]
    types = [int(gguf.TokenType.NORMAL)] * (256 + len(merges)) + [int(gguf.TokenType.CONTROL)] * 2
    tokens += [f"<|reserved_{i}|>" for i in range(n_vocab - len(tokens))]
    types += [int(gguf.TokenType.USER_DEFINED)] * (n_vocab - len(types))
    return tokens, types, [f"{a} {b}" for a, b in merges]


def _random_reader(seed: int, index: int, cols: int, mean: float, std: float):
    def read(a: int, b: int) -> np.ndarray:
        rng = np.random.default_rng([seed, index, a])
        out = rng.standard_normal((b - a, cols), dtype=np.float32)
        out *= np.float32(std)
        if mean:
            out += np.float32(mean)
        return out
    return read


def synthetic_source(name: str, seed: int = 0) -> ModelSource:
    if name not in MODELS:
        raise ValueError(f"unknown synthetic model {name!r}; choose one of {', '.join(MODELS)}")
    c = MODELS[name]
    shapes: List[tuple] = [("token_embd.weight", (c["n_vocab"], c["n_embd"]))]
    q_width, kv_width = c["n_head"] * c["head_dim"], c["n_head_kv"] * c["head_dim"]
    for i in range(c["n_layer"]):
        p = f"blk.{i}."
        shapes += [(p + "attn_norm.weight", (c["n_embd"],)),
                   (p + "attn_q.weight", (q_width, c["n_embd"])),
                   (p + "attn_k.weight", (kv_width, c["n_embd"])),
                   (p + "attn_v.weight", (kv_width, c["n_embd"])),
                   (p + "attn_output.weight", (c["n_embd"], q_width)),
                   (p + "ffn_norm.weight", (c["n_embd"],)),
                   (p + "ffn_gate.weight", (c["n_ff"], c["n_embd"])),
                   (p + "ffn_up.weight", (c["n_ff"], c["n_embd"])),
                   (p + "ffn_down.weight", (c["n_embd"], c["n_ff"]))]
    shapes.append(("output_norm.weight", (c["n_embd"],)))
    if not c["tied"]:
        shapes.append(("output.weight", (c["n_vocab"], c["n_embd"])))
    tensors = []
    for index, (tname, shape) in enumerate(shapes):
        mean = 1.0 if len(shape) == 1 else 0.0
        tensors.append(SourceTensor(tname, shape, _random_reader(seed, index, shape[-1], mean, WEIGHT_STD), "rand"))
    if c["rope_scaling"]:
        factors = llama3_rope_factors(c["head_dim"], c["rope_base"], c["rope_scaling"])
        tensors.append(SourceTensor("rope_freqs.weight", factors.shape, lambda a, b, f=factors: f.reshape(1, -1), "F32"))

    tokens, types, merges = byte_level_vocab(c["n_vocab"])
    meta = {
        "general.name": f"edgellama synthetic {name}",
        "llama.context_length": c["context"],
        "llama.embedding_length": c["n_embd"],
        "llama.block_count": c["n_layer"],
        "llama.feed_forward_length": c["n_ff"],
        "llama.rope.dimension_count": c["head_dim"],
        "llama.attention.head_count": c["n_head"],
        "llama.attention.head_count_kv": c["n_head_kv"],
        "llama.attention.layer_norm_rms_epsilon": c["rms_eps"],
        "llama.rope.freq_base": c["rope_base"],
        "llama.vocab_size": c["n_vocab"],
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "gpt-2",
        "tokenizer.ggml.tokens": (tokens, VT.ARRAY),
        "tokenizer.ggml.token_type": (types, VT.ARRAY),
        "tokenizer.ggml.merges": (merges, VT.ARRAY),
        "tokenizer.ggml.bos_token_id": 258,
        "tokenizer.ggml.eos_token_id": 259,
    }
    if c["head_dim"] * c["n_head"] != c["n_embd"]:
        meta["llama.attention.key_length"] = c["head_dim"]
        meta["llama.attention.value_length"] = c["head_dim"]
    return ModelSource(f"synthetic {name}", [meta_entry(k, v) for k, v in meta.items()], tensors, c["n_layer"])
