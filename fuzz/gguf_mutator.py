"""The structure-aware GGUF mutator: libFuzzer's byte-level mutations know nothing of GGUF, so
most of their files die at the first length field. This mutator parses the file (fuzz/gguf_format)
and changes what the format means: header counts, string lengths, tensor dims and dimension
counts, data offsets, tensor type ids, metadata value types (re-encoded, or raw bytes under a type
id that lies), values of the keys the loader reads (ints near 0 / 2**31 / 2**32 / 2**63, NaN and
infinite floats, values of the wrong type), the tokenizer arrays, the alignment, the data section.

`mutate(data, max_size, seed)` is atheris's custom-mutator signature. About one call in four gets
libFuzzer's own byte-level mutation instead (an input that does not parse is swapped for a recent
one that does); `COUNTS` tells how many of each kind were made.
"""

from __future__ import annotations

import math
import random
from typing import Callable, Dict, List

from fuzz.gguf_format import (ARRAY, BOOL, FLOAT_TYPES, INT_TYPES, SCALAR_FORMATS, STRING, KV, Array,
                              Document, ParseError, Raw, Str, TensorInfo, parse, serialize)

COUNTS: Dict[str, int] = {"structure": 0, "byte": 0, "mutator_errors": 0}
STRUCTURE_SHARE = 0.75

INTERESTING_INTS = [0, 1, 2, 3, 4, 7, 8, 16, 31, 32, 33, 64, 255, 256, 257, 4096, 2**15 - 1, 2**15, 2**16 - 1,
                    2**16, 2**31 - 1, 2**31, 2**31 + 1, 2**32 - 1, 2**32, 2**32 + 1, 2**53, 2**62, 2**63 - 1,
                    2**63, 2**64 - 1, -1, -2, -2**31, -2**63]
INTERESTING_FLOATS = [0.0, -0.0, 1.0, -1.0, 1e-45, 1e-38, 3.4e38, 1e308, -1e308, math.nan, math.inf, -math.inf,
                      0.5, 1e-5, 1e6, 2.0**31, 2.0**63, 2.0**64, 12345.678]
# Keys the loader, tokenizer and chat code read.
INT_KEYS = ["llama.block_count", "llama.context_length", "llama.embedding_length", "llama.feed_forward_length",
            "llama.attention.head_count", "llama.attention.head_count_kv", "llama.rope.dimension_count",
            "llama.attention.key_length", "llama.attention.value_length", "llama.vocab_size",
            "general.alignment", "general.file_type", "tokenizer.ggml.bos_token_id",
            "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.padding_token_id",
            "tokenizer.ggml.unknown_token_id"]
FLOAT_KEYS = ["llama.rope.freq_base", "llama.attention.layer_norm_rms_epsilon", "llama.rope.scaling.factor"]
STRING_KEYS = ["general.architecture", "tokenizer.ggml.model", "tokenizer.ggml.pre", "llama.rope.scaling.type",
               "tokenizer.chat_template", "general.name"]
BOOL_KEYS = ["tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token", "tokenizer.ggml.add_space_prefix"]
ARRAY_KEYS = ["tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges",
              "tokenizer.ggml.scores"]
KNOWN_KEYS = INT_KEYS + FLOAT_KEYS + STRING_KEYS + BOOL_KEYS + ARRAY_KEYS
INTERESTING_STRINGS = ["", "llama", "gpt2", "gpt-2", "smollm", "llama-bpe", "none", "linear", "yarn", "abc", "0",
                       "-1", "nan", "\x00", "\ud800", "<|im_start|>", "<s>", "</s>", "a b", "a b c", " ", "Ġ",
                       "\u2581", "<0xFF>", "<0x", "x" * 300, "日本"]
TEMPLATES = ["{{ 1/0 }}", "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
             "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
             "{{ 'x' * 10**9 }}", "{{ 9**9**9 }}", "{{ messages[0]['content'] }}", "{% for", "{{ ''.__class__ }}",
             "{{ raise_exception('no') }}", "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}",
             "{{ messages | tojson }}", "{{ 'x' | center(10**9) }}", "{{ range(10**9) | list }}"]


def interesting_int(rng: random.Random, near: int = 0) -> int:
    if rng.random() < 0.3:
        return near + rng.choice([-2, -1, 1, 2, 31, 32, -32]) if rng.random() < 0.7 else near * rng.choice([2, 3, 256])
    return rng.choice(INTERESTING_INTS)


def random_value(rng: random.Random, vtype: int):
    """A value for metadata type vtype (the item type of arrays chosen too)."""
    if vtype in INT_TYPES:
        return interesting_int(rng)
    if vtype in FLOAT_TYPES:
        return rng.choice(INTERESTING_FLOATS)
    if vtype == BOOL:
        return rng.choice([0, 1, 2, 255])
    if vtype == STRING:
        return Str.of(rng.choice(INTERESTING_STRINGS))
    item_type = rng.choice([STRING, 4, 5, 6, 7, 10, 12, 0, ARRAY])
    return Array(item_type, [random_value(rng, item_type) for _ in range(rng.choice([0, 1, 2, 5]))]
                 if item_type != ARRAY else [])


def _all_strings(doc: Document) -> List[Str]:
    out = [kv.key for kv in doc.kvs] + [t.name for t in doc.tensors]
    for kv in doc.kvs:
        if isinstance(kv.value, Str):
            out.append(kv.value)
        elif isinstance(kv.value, Array) and kv.value.item_type == STRING:
            out.extend(v for v in kv.value.items[:64] if isinstance(v, Str))
    return out


# --- the mutations -------------------------------------------------------------------------------


def header_counts(doc: Document, rng: random.Random) -> None:
    which = rng.choice(["n_tensors", "n_kv", "version", "magic"])
    if which == "n_tensors":
        doc.n_tensors = interesting_int(rng, len(doc.tensors))
    elif which == "n_kv":
        doc.n_kv = interesting_int(rng, len(doc.kvs))
    elif which == "version":
        doc.version = rng.choice([0, 1, 2, 3, 4, 0x03000000, 2**32 - 1])
    else:
        doc.magic = rng.choice([b"GGUF", b"GGUG", b"FUGG", b"\0\0\0\0"])


def string_length(doc: Document, rng: random.Random) -> None:
    target = rng.choice(_all_strings(doc))
    target.length = interesting_int(rng, len(target.data))


def tensor_dims(doc: Document, rng: random.Random) -> None:
    if not doc.tensors:
        return
    t = rng.choice(doc.tensors)
    action = rng.randrange(5)
    if action == 0 and t.dims:
        i = rng.randrange(len(t.dims))
        t.dims[i] = interesting_int(rng, t.dims[i])
    elif action == 1:
        t.dims.reverse()
    elif action == 2:
        t.dims.append(rng.choice([1, 2, 32, 2**32, 2**63]))
    elif action == 3 and t.dims:
        t.dims.pop()
    else:
        t.n_dims = rng.choice([0, 5, 8, 2**31, 2**32 - 1, len(t.dims) + 1, max(len(t.dims) - 1, 0)])


def tensor_offset(doc: Document, rng: random.Random) -> None:
    if not doc.tensors:
        return
    t = rng.choice(doc.tensors)
    other = rng.choice(doc.tensors)
    t.offset = rng.choice([other.offset, t.offset + 1, t.offset - 1, t.offset + 32, t.offset - 32,
                           len(doc.data), len(doc.data) - 32, interesting_int(rng, t.offset)])


def tensor_type(doc: Document, rng: random.Random) -> None:
    if doc.tensors:
        rng.choice(doc.tensors).type_id = rng.choice(list(range(0, 42)) + [2**31, 2**32 - 1])


def tensor_table(doc: Document, rng: random.Random) -> None:
    if not doc.tensors:
        return
    action = rng.randrange(4)
    i = rng.randrange(len(doc.tensors))
    if action == 0:
        del doc.tensors[i]
    elif action == 1:
        t = doc.tensors[i]
        doc.tensors.insert(rng.randrange(len(doc.tensors) + 1), TensorInfo(Str(t.name.data), list(t.dims), t.type_id, t.offset))
    elif action == 2:
        doc.tensors[i].name = Str(rng.choice(doc.tensors).name.data + rng.choice([b"", b"x", b"\0"]))
    else:
        doc.tensors[i].name = Str(rng.choice([b"blk.7.attn_q.weight", b"output.weight", b"rope_freqs.weight",
                                              b"blk.4294967295.ffn_up.weight", b"", b"\xff"]))


def value_type(doc: Document, rng: random.Random) -> None:
    if not doc.kvs:
        return
    kv = rng.choice(doc.kvs)
    new_type = rng.choice(list(SCALAR_FORMATS) + [STRING, ARRAY, 13, 2**31])
    if rng.random() < 0.5:
        # The bytes stay, the type id lies about them.
        from fuzz.gguf_format import pack_value

        kv.value = Raw(pack_value(kv.vtype, kv.value))
    else:
        kv.value = _convert(kv.value, new_type, rng)
    kv.vtype = new_type


def _convert(value, vtype: int, rng: random.Random):
    """value re-encoded as type vtype, keeping its meaning where there is one."""
    scalar = value.items[0] if isinstance(value, Array) and value.items else value
    if vtype in INT_TYPES:
        try:
            return int(float(scalar.data.decode("utf-8", "replace"))) if isinstance(scalar, Str) else int(scalar)
        except (ValueError, TypeError, OverflowError):
            return interesting_int(rng)
    if vtype in FLOAT_TYPES:
        try:
            return float(scalar) if not isinstance(scalar, (Str, Array, Raw)) else rng.choice(INTERESTING_FLOATS)
        except (TypeError, ValueError, OverflowError):
            return math.nan
    if vtype == STRING:
        return Str.of(str(scalar.data.decode("utf-8", "replace") if isinstance(scalar, Str) else scalar)[:200])
    if vtype == ARRAY:
        if isinstance(value, Array):
            return value
        item_type = STRING if isinstance(value, Str) else 5
        return Array(item_type, [value if isinstance(value, Str) else _convert(value, 5, rng)])
    return value


def known_key_value(doc: Document, rng: random.Random) -> None:
    key = rng.choice(KNOWN_KEYS)
    if rng.random() < 0.6:  # a value of the type the key should have
        vtype = (rng.choice([4, 5, 10, 11, 0, 2]) if key in INT_KEYS else rng.choice([6, 12]) if key in FLOAT_KEYS
                 else STRING if key in STRING_KEYS else BOOL if key in BOOL_KEYS else ARRAY)
    else:  # any type: a string where a count belongs, an array for a float ...
        vtype = rng.choice(list(SCALAR_FORMATS) + [STRING, ARRAY])
    value = random_value(rng, vtype)
    if key == "tokenizer.chat_template" and vtype == STRING:
        value = Str.of(rng.choice(TEMPLATES))
    existing = doc.kv(key)
    if existing is None:
        doc.kvs.insert(rng.randrange(len(doc.kvs) + 1), KV(Str.of(key), vtype, value))
    else:
        existing.vtype, existing.value = vtype, value


def tokenizer_arrays(doc: Document, rng: random.Random) -> None:
    kv = doc.kv(rng.choice(ARRAY_KEYS))
    if kv is None or not isinstance(kv.value, Array):
        return
    arr = kv.value
    action = rng.randrange(8)
    if action == 0:  # wrong item type, re-encoded
        arr.item_type = rng.choice([STRING, 4, 5, 6, 7, 10, 12])
        arr.items = [random_value(rng, arr.item_type) for _ in range(min(len(arr.items), 400))]
    elif action == 1:
        arr.count = interesting_int(rng, len(arr.items))
    elif action == 2 and arr.items:
        del arr.items[rng.randrange(len(arr.items)):]
    elif action == 3 and arr.items:
        arr.items.extend(arr.items[:rng.randrange(1, 64)])
    elif action == 4 and arr.items:
        i = rng.randrange(len(arr.items))
        arr.items[i] = random_value(rng, arr.item_type) if arr.item_type != ARRAY else arr.items[i]
    elif action == 5 and arr.items and arr.item_type == STRING:
        i = rng.randrange(len(arr.items))
        arr.items[i] = Str.of(rng.choice(INTERESTING_STRINGS))
    elif action == 6:
        arr.items = []
    else:  # the whole array replaced by a scalar of another type
        kv.vtype = rng.choice([STRING, 4, 6, BOOL])
        kv.value = random_value(rng, kv.vtype)


def key_table(doc: Document, rng: random.Random) -> None:
    if not doc.kvs:
        return
    i = rng.randrange(len(doc.kvs))
    action = rng.randrange(3)
    if action == 0:
        del doc.kvs[i]
    elif action == 1:
        kv = doc.kvs[i]
        doc.kvs.append(KV(Str(kv.key.data), kv.vtype, kv.value))  # a duplicate key (the later one wins?)
    else:
        j = rng.randrange(len(doc.kvs))
        doc.kvs[i], doc.kvs[j] = doc.kvs[j], doc.kvs[i]


def alignment(doc: Document, rng: random.Random) -> None:
    value = rng.choice([0, 1, 2, 3, 8, 16, 24, 64, 4096, 2**31, 2**32 - 1])
    vtype = rng.choice([4, 4, 4, 5, 10, 6])
    kv = doc.kv("general.alignment")
    if kv is None:
        doc.kvs.append(KV(Str.of("general.alignment"), vtype, value))
    else:
        kv.vtype, kv.value = vtype, value
    if rng.random() < 0.3:
        doc.pad_delta = rng.choice([-8, -1, 1, 8, 32])


def data_section(doc: Document, rng: random.Random) -> None:
    data = bytearray(doc.data)
    action = rng.randrange(4)
    if action == 0:
        del data[rng.randrange(len(data) + 1):]
    elif action == 1 and data:
        special = rng.choice([b"\x00\x00\xc0\x7f", b"\x00\x00\x80\x7f", b"\x00\x00\x80\xff", b"\xff\xff",
                              b"\x00\x7c", b"\xff" * 4])
        at = rng.randrange(len(data)) & ~3
        for k in range(rng.choice([1, 4, 64])):
            data[at + 4 * k:at + 4 * k + len(special)] = special
    elif action == 2 and data:
        for _ in range(rng.randrange(1, 16)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    else:
        data += bytes(rng.choice([1, 31, 32, 4096]))
    doc.data = bytes(data)


MUTATIONS: List[Callable[[Document, random.Random], None]] = [
    header_counts, string_length, tensor_dims, tensor_offset, tensor_type, tensor_table, value_type,
    known_key_value, known_key_value, tokenizer_arrays, key_table, alignment, data_section,
]


def mutate_structure(data: bytes, seed: int) -> bytes:
    """One to three structural mutations of a parseable GGUF (ParseError otherwise)."""
    rng = random.Random(seed)
    doc = parse(data)
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        rng.choice(MUTATIONS)(doc, rng)
    return serialize(doc)


# Recent inputs that parse: a byte-level mutant usually does not, and the structure-aware share
# would fall with every one in the corpus; such an input is swapped for one of these.
_PARSEABLE: List[bytes] = []
PARSEABLE_KEPT = 256


def _parseable(data: bytes, rng: random.Random) -> bytes:
    try:
        parse(data)
    except (ParseError, RecursionError):
        if not _PARSEABLE:
            raise
        return rng.choice(_PARSEABLE)
    if len(_PARSEABLE) < PARSEABLE_KEPT:
        _PARSEABLE.append(data)
    else:
        _PARSEABLE[rng.randrange(PARSEABLE_KEPT)] = data
    return data


def mutate(data: bytes, max_size: int, seed: int) -> bytes:
    """atheris custom mutator: structure-aware mostly, byte-level otherwise."""
    import atheris

    rng = random.Random(seed ^ 0x5EED)
    if rng.random() < STRUCTURE_SHARE:
        try:
            out = mutate_structure(_parseable(data, rng), seed)
            if len(out) <= max_size:
                COUNTS["structure"] += 1
                return out
        except ParseError:
            pass
        except Exception:  # noqa: BLE001 - a mutator bug must not pass for a finding in the target
            COUNTS["mutator_errors"] += 1
    COUNTS["byte"] += 1
    return atheris.Mutate(data, max_size)
