"""Seed corpora, written at run time by the tests' own writers (tests/tiny_models.py and the
sentencepiece trainer of tests/test_tokenizer_spm.py): no binary corpus lives in the repository.

`write_seeds(target, folder)` fills a folder with that target's seeds and returns their paths.
The vocabularies the tokenizer and chat targets fuzz are built here too (`vocabularies()`).
"""

from __future__ import annotations

import json
import struct
import sys
from functools import lru_cache
from pathlib import Path
from typing import Callable, Dict, List

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

# Small enough that libFuzzer's byte-level mutations stay fast (a few KB to ~40 KB each): 32-wide
# models, one or two layers, the smallest vocabulary the tiny tokenizer allows.
SMALL = dict(n_embd=32, n_head=2, n_head_kv=1, n_ff=32, n_layer=1, n_vocab=261, context_length=64)
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] "
          "+ '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
          "{% endif %}")


def spm_vocabulary_metadata(n_pieces: int = 41) -> Dict[str, object]:
    """A SentencePiece-style (`llama`) vocabulary as GGUF metadata: <unk> <s> </s>, the 256 byte
    tokens, then whole-word pieces with descending scores (3 + 256 + n_pieces tokens)."""
    pieces = ["\u2581", "\u2581t", "\u2581a", "he", "in", "\u2581the", "er", "on", "\u2581s", "en", "at",
              "\u2581w", "or", "es", "\u2581o", "an", "is", "ed", "\u2581c", "it", "ar", "\u2581f", "\u2581b",
              "\u2581p", "\u2581m", "al", "le", "nd", "\u2581d", "ing", "\u2581h", "ou", "\u2581in", "\u2581l",
              "ic", "ro", "\u2581to", "as", "ion", "\u2581of", "[INST]"]
    pieces = (pieces * (n_pieces // len(pieces) + 1))[:n_pieces]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + pieces
    # 2 unknown, 3 control, 6 byte, 1 normal, 4 user-defined
    types = [2, 3, 3] + [6] * 256 + [4 if p.startswith("[") else 1 for p in pieces]
    scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [-float(i) for i in range(len(pieces))]
    return {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types,
            "tokenizer.ggml.scores": scores, "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
            "tokenizer.ggml.unknown_token_id": 0, "tokenizer.ggml.add_bos_token": True}


def _gguf_overrides(meta: Dict[str, object]) -> Dict[str, object]:
    """Tokenizer metadata as write_tiny_llama overrides (arrays typed explicitly)."""
    from gguf import GGUFValueType

    return {k: (v, GGUFValueType.ARRAY) if isinstance(v, list) else v for k, v in meta.items()}


def gguf_seed_specs() -> Dict[str, dict]:
    """name -> write_tiny_llama keyword arguments."""
    from tiny_models import DROP

    spm = spm_vocabulary_metadata()
    spm_overrides = _gguf_overrides(spm)
    spm_overrides.update({"tokenizer.ggml.merges": DROP, "tokenizer.ggml.pre": DROP})
    return {
        "q4_0": dict(weight_type="Q4_0", **SMALL),
        "q8_0-embd-q5_1": dict(weight_type="Q5_1", embd_type="Q8_0", **SMALL),
        "f16-untied-rope-freqs": dict(weight_type="F16", tied_output=False, rope_freqs=True,
                                      **{**SMALL, "n_layer": 2}),
        "q4_1-gqa-head-dim": dict(weight_type="Q4_1", **{**SMALL, "n_head": 4, "n_head_kv": 2, "head_dim": 16}),
        "q5_0-chat-template": dict(weight_type="Q5_0", **SMALL, overrides={
            "tokenizer.chat_template": CHATML}),
        "q4_0-spm-vocab": dict(weight_type="Q4_0", **{**SMALL, "n_vocab": 300}, overrides=spm_overrides),
    }


def write_gguf_seeds(folder: Path) -> List[Path]:
    from tiny_models import write_tiny_llama

    paths = []
    for name, spec in gguf_seed_specs().items():
        path = folder / f"{name}.gguf"
        write_tiny_llama(path, **spec)
        paths.append(path)
    return paths


def write_safetensors_seeds(folder: Path) -> List[Path]:
    """Small checkpoints as the safetensors package writes them (F32, F16, BF16, F64; metadata)."""
    import numpy as np
    from safetensors.numpy import save

    rng = np.random.default_rng(0)
    bf16 = (rng.standard_normal((4, 8)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    blobs = {
        "f32": save({"model.embed_tokens.weight": rng.standard_normal((8, 4)).astype(np.float32),
                     "model.norm.weight": np.ones(4, np.float32)}, metadata={"format": "pt"}),
        "f16-f64": save({"a": rng.standard_normal((3, 5)).astype(np.float16),
                         "b": rng.standard_normal(7).astype(np.float64), "scalar": np.array(1.5, np.float32)}),
        "empty-tensor": save({"e": np.zeros((0, 4), np.float32), "x": np.ones((2, 2), np.float32)}),
    }
    paths = []
    for name, blob in blobs.items():
        paths.append(folder / f"{name}.safetensors")
        paths[-1].write_bytes(blob)
    # BF16 is written by hand: the numpy writer has no bfloat16 dtype.
    header = json.dumps({"w": {"dtype": "BF16", "shape": [4, 8], "data_offsets": [0, bf16.nbytes]}}).encode()
    paths.append(folder / "bf16.safetensors")
    paths[-1].write_bytes(struct.pack("<Q", len(header)) + header + bf16.tobytes())
    return paths


def write_tokenizer_seeds(folder: Path) -> List[Path]:
    """Inputs in fuzz/targets/tokenizer.py's layout: vocabulary byte, flags byte, payload (text from
    the tokenizer tests' corpus, or token ids)."""
    from tokenizer_corpus import CORPUS

    paths = []
    for i, text in enumerate(CORPUS):
        for vocab in range(3):
            # plain encode (core), special=True + add_bos (python), the encode/decode round trip
            for flags in (0x00, 0x07, 0x12):
                path = folder / f"text-{i}-{vocab}-{flags:02x}"
                path.write_bytes(bytes([vocab, flags]) + text.encode("utf-8", "surrogatepass"))
                paths.append(path)
    ids = struct.pack("<8i", 0, 1, 2, 3, 255, 256, 260, 299)
    for op in range(4, 8):  # the id operations (decode, stream, per-token lookups)
        path = folder / f"ids-{op}"
        path.write_bytes(bytes([0, op << 4]) + ids)
        paths.append(path)
    return paths


def write_chat_seeds(folder: Path) -> List[Path]:
    """Chat inputs are consumed by atheris.FuzzedDataProvider: any bytes are a valid input; a few
    sizes and patterns start the search."""
    paths = []
    for i, blob in enumerate([b"", b"\x00" * 64, b"\x01" * 256, bytes(range(256)), b"\x02hello\x00world" * 8,
                              "<|im_start|>system\n<|im_end|>".encode() * 4, b"\x03{{ messages }}" * 16]):
        path = folder / f"chat-{i}"
        path.write_bytes(blob)
        paths.append(path)
    return paths


SEED_WRITERS: Dict[str, Callable[[Path], List[Path]]] = {
    "gguf": write_gguf_seeds, "safetensors": write_safetensors_seeds, "tokenizer": write_tokenizer_seeds,
    "chat": write_chat_seeds,
}


def write_seeds(target: str, folder: Path) -> List[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return SEED_WRITERS[target](folder)


@lru_cache(maxsize=None)
def vocabularies() -> Dict[str, Dict[str, object]]:
    """Tokenizer metadata the tokenizer and chat targets fuzz: "gpt2" (the tiny byte-level vocabulary
    of tests/tiny_models.py), "spm" (a SentencePiece model trained by tests/test_tokenizer_spm.py,
    or the hand-made one above without sentencepiece), "smollm2" (the real default model's
    vocabulary, when it is cached or can be fetched)."""
    from tiny_models import tiny_vocab

    tokens, types, merges = tiny_vocab(300)
    vocabs: Dict[str, Dict[str, object]] = {"gpt2": {
        "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt-2", "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types, "tokenizer.ggml.merges": merges,
        "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2}}
    vocabs["spm"] = _trained_spm_metadata() or spm_vocabulary_metadata()
    smollm2 = _smollm2_metadata()
    if smollm2 is not None:
        vocabs["smollm2"] = smollm2
    return vocabs


def _trained_spm_metadata():
    try:
        import tempfile

        from test_tokenizer_spm import train
        from edgellama.tokenizer_convert import tokenizer_metadata_from_hf
    except ImportError:
        return None
    with tempfile.TemporaryDirectory(prefix="edgellama-fuzz-spm-") as tmp:
        folder = Path(tmp)
        (folder / "tokenizer.model").write_bytes(train(True))
        (folder / "tokenizer_config.json").write_text(json.dumps(
            {"add_bos_token": True, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}))
        return dict(tokenizer_metadata_from_hf(folder))


def _smollm2_metadata():
    try:
        from edgellama.gguf_header import read_gguf_header
        from edgellama.models import ensure_default_model

        header = read_gguf_header(ensure_default_model(log=lambda _msg: None))
    except Exception:  # noqa: BLE001 - offline and not cached: fuzz the other vocabularies
        return None
    return {k: v for k, v in header.metadata.items() if k.startswith("tokenizer.")}
