"""The safetensors reader (edgellama/safetensors_io.py): header JSON, tensor table, memory-mapped
data; every tensor that the header admits is mapped and read in full, in float32.

The structure-aware mutator parses the JSON header and changes dtypes, shapes (huge, negative,
zero, non-integer dims), data offsets, the header length field and the nesting; about one call in
four is libFuzzer's byte-level mutation instead.
"""

from __future__ import annotations

import json
import random
import struct

MAX_LEN = 4096
TIMEOUT = 10
counters = {"structure": 0, "byte": 0}

NUMBERS = [0, 1, -1, 2, 3, 7, 8, 2**31 - 1, 2**31, 2**32, 2**32 + 1, 2**53, 2**62, 2**63 - 1, 2**63, 2**64 - 1,
           2**64, 2**100, 0.5, 1e308, float("nan"), float("inf"), True, None, "4", [], {}]
DTYPES = ["F32", "F16", "BF16", "F64", "I8", "U8", "I64", "BOOL", "F8_E4M3", "", 5, None]


def _mutate_entry(info: dict, rng: random.Random) -> None:
    field = rng.choice(["dtype", "shape", "data_offsets", "drop", "extra"])
    if field == "dtype":
        info["dtype"] = rng.choice(DTYPES)
    elif field == "shape" and isinstance(info.get("shape"), list):
        shape = info["shape"]
        if shape and rng.random() < 0.6:
            shape[rng.randrange(len(shape))] = rng.choice(NUMBERS)
        else:
            shape.append(rng.choice(NUMBERS))
    elif field == "data_offsets":
        offsets = info.get("data_offsets")
        if isinstance(offsets, list) and offsets and rng.random() < 0.7:
            offsets[rng.randrange(len(offsets))] = rng.choice(NUMBERS)
        else:
            info["data_offsets"] = rng.choice([[0], [0, 1, 2], "0,4", [4, 0], None])
    elif field == "drop" and info:
        del info[rng.choice(list(info))]
    else:
        info[rng.choice(["x", "__metadata__", "dtype"])] = rng.choice(NUMBERS)


def mutate_structure(data: bytes, seed: int) -> bytes:
    rng = random.Random(seed)
    (n,) = struct.unpack_from("<Q", data)
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    entries = [v for k, v in header.items() if isinstance(v, dict) and k != "__metadata__"]
    action = rng.randrange(6)
    if action <= 2 and entries:
        _mutate_entry(rng.choice(entries), rng)
    elif action == 3:
        header[rng.choice(["t", "__metadata__", ""])] = rng.choice(
            [{"dtype": "F32", "shape": [2**32, 2**32], "data_offsets": [0, 0]}, [], "x", {"k": [[[[]]]]}])
    elif action == 4:
        body = body[:rng.randrange(len(body) + 1)] if rng.random() < 0.5 else body + bytes(rng.choice([1, 4, 64]))
    raw = json.dumps(header).encode()
    if action == 5:
        raw = b"[" * rng.choice([10, 1000, 100000]) if rng.random() < 0.3 else raw
    length = len(raw) if rng.random() < 0.8 else rng.choice([0, len(raw) - 1, len(raw) + 1, 2**63, 2**64 - 1])
    return struct.pack("<Q", length % 2**64) + raw + body


def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
    import atheris

    if random.Random(seed ^ 0x5EED).random() < 0.75:
        try:
            out = mutate_structure(data, seed)
            if len(out) <= max_size:
                counters["structure"] += 1
                return out
        except (ValueError, struct.error, TypeError, AttributeError, RecursionError):
            pass  # not a parseable safetensors file: mutate its bytes
    counters["byte"] += 1
    return atheris.Mutate(data, max_size)


def setup():
    import numpy as np

    from edgellama.safetensors_io import open_checkpoint, read_header, to_float32
    from fuzz.targets.scratch import folder, input_file

    def one_input(data: bytes) -> None:
        with input_file(data, ".safetensors") as path:
            for tensor in read_header(path).values():
                values = to_float32(tensor.array(), tensor.dtype)
                float(np.sum(values, dtype=np.float64))  # every byte the header admits is read
        # The folder reader over the same bytes as a one-file checkpoint, and, for bytes that
        # could be JSON, as the checkpoint's index naming that file.
        checkpoint = folder() / "checkpoint"
        checkpoint.mkdir(exist_ok=True)
        path, index = checkpoint / "model.safetensors", checkpoint / "model.safetensors.index.json"
        path.write_bytes(data)
        try:
            open_checkpoint(checkpoint)
            if data[:1] == b"{":
                index.write_bytes(data)
                open_checkpoint(checkpoint)
        finally:
            path.unlink(missing_ok=True)
            index.unlink(missing_ok=True)

    return one_input
