"""A minimal safetensors reader: header JSON plus memory-mapped tensor data.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON
({name: {"dtype", "shape", "data_offsets": [begin, end]}, optional "__metadata__"}), then the raw
little-endian tensor bytes, offsets relative to the end of the header. We validate the header
fully before mapping anything, so a corrupt file is an `InvalidCheckpointError` naming the file
and the problem, never a crash or a silent misread. Tensors are numpy memmaps: nothing is read
until rows are asked for, so an exporter can stream a checkpoint one tensor (or chunk) at a time.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Dict

import numpy as np

from edgellama.errors import InvalidCheckpointError

# dtype name -> (numpy storage dtype, bytes per element). BF16 is stored as uint16 bit patterns.
DTYPES = {
    "F32": (np.float32, 4),
    "F16": (np.float16, 2),
    "BF16": (np.uint16, 2),
    "F64": (np.float64, 8),
}
MAX_HEADER_BYTES = 100 * 1024 * 1024


@dataclass
class SafeTensor:
    name: str
    path: Path
    dtype: str
    shape: tuple
    offset: int  # absolute byte offset of the data in the file
    nbytes: int

    def array(self) -> np.ndarray:
        """The raw stored values, memory-mapped (BF16 as uint16)."""
        np_dtype, _ = DTYPES[self.dtype]
        count = math.prod(self.shape)
        if count == 0:  # nothing to map (and mmap refuses an empty range)
            return np.empty(self.shape, dtype=np_dtype)
        mm = np.memmap(self.path, dtype=np_dtype, mode="r", offset=self.offset, shape=(count,))
        return mm.reshape(self.shape) if self.shape else mm


def to_float32(values: np.ndarray, dtype: str) -> np.ndarray:
    """Stored values (as SafeTensor.array gives them) to float32."""
    if dtype == "BF16":
        return (np.asarray(values, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
    return np.asarray(values, dtype=np.float32)


def _is_count(value) -> bool:
    """A JSON integer in [0, 2**63) (json gives bool for true/false, and bool is an int subclass;
    an array dimension or a file offset past int64 means nothing)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def read_header(path) -> Dict[str, SafeTensor]:
    path = Path(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise InvalidCheckpointError(path, f"corrupt safetensors header: the file has only {size} bytes")
        (n,) = struct.unpack("<Q", head)
        if n == 0 or n > MAX_HEADER_BYTES or n > size - 8:
            raise InvalidCheckpointError(path, f"corrupt safetensors header: header length {n} does not fit "
                                               f"the file ({size} bytes)")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidCheckpointError(path, f"corrupt safetensors header: not valid JSON ({exc})") from None
    except RecursionError:  # e.g. "[[[[...": JSON nested deeper than the decoder's recursion limit
        raise InvalidCheckpointError(path, "corrupt safetensors header: the JSON is nested too deeply") from None
    if not isinstance(header, dict):
        raise InvalidCheckpointError(path, "corrupt safetensors header: the JSON is not an object")
    data_start = 8 + n
    data_size = size - data_start
    tensors: Dict[str, SafeTensor] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
            raise InvalidCheckpointError(path, f"corrupt safetensors header: entry '{name}' lacks dtype/shape/data_offsets")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise InvalidCheckpointError(path, f"tensor '{name}' has dtype {dtype!r}; supported: "
                                               f"{', '.join(DTYPES)}")
        if (not isinstance(shape, list) or not all(_is_count(d) for d in shape)
                or not isinstance(offsets, list) or len(offsets) != 2
                or not all(_is_count(o) for o in offsets)):
            raise InvalidCheckpointError(path, f"corrupt safetensors header: bad shape or data_offsets for '{name}'")
        begin, end = offsets
        # Python integers: a numpy int64 product would wrap (2**32 x 2**32 elements -> 0 bytes).
        want = math.prod(shape) * DTYPES[dtype][1]
        # numpy cannot shape it, even empty, as stored or as the float32 (4-byte) copy to_float32 makes
        if math.prod(d for d in shape if d) * max(DTYPES[dtype][1], 4) >= 2**63:
            raise InvalidCheckpointError(path, f"corrupt safetensors header: tensor '{name}' has an impossible "
                                               f"shape {shape}")
        if not 0 <= begin <= end <= data_size or end - begin != want:
            raise InvalidCheckpointError(path, f"corrupt safetensors header: tensor '{name}' data [{begin}, {end}) "
                                               f"does not match its shape {shape} ({want} bytes) inside the "
                                               f"{data_size} data bytes of the file")
        tensors[name] = SafeTensor(name, path, dtype, tuple(shape), data_start + begin, want)
    return tensors


def _check_shard_name(index_path: Path, file_name: str) -> None:
    """A shard is a file of the checkpoint's own folder: a name with a folder part, an absolute
    path or '..' in a (hostile) index would make the loader read files outside it."""
    if (not file_name or file_name in (".", "..") or "/" in file_name or "\\" in file_name
            or "\0" in file_name):
        raise InvalidCheckpointError(index_path, f"the index names {file_name!r}, which is not a file name "
                                                 "in the checkpoint's folder")


def open_checkpoint(folder) -> Dict[str, SafeTensor]:
    """Every tensor of a Hugging Face folder: through model.safetensors.index.json when there is
    one (each name from the file the index names), else from every *.safetensors file."""
    folder = Path(folder)
    index_path = folder / "model.safetensors.index.json"
    tensors: Dict[str, SafeTensor] = {}
    if index_path.is_file():
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, RecursionError) as exc:
            raise InvalidCheckpointError(index_path, f"unreadable safetensors index ({exc!r})") from None
        if not isinstance(weight_map, dict) or not all(isinstance(f, str) for f in weight_map.values()):
            raise InvalidCheckpointError(index_path, "unreadable safetensors index: weight_map must map "
                                                     "tensor names to file names")
        headers: Dict[str, Dict[str, SafeTensor]] = {}
        for name, file_name in weight_map.items():
            _check_shard_name(index_path, file_name)
            file_path = folder / file_name
            if file_name not in headers:
                if not file_path.is_file():
                    raise InvalidCheckpointError(index_path, f"the index names '{file_name}', which does not exist")
                headers[file_name] = read_header(file_path)
            if name not in headers[file_name]:
                raise InvalidCheckpointError(file_path, f"the index places '{name}' here but the file lacks it")
            tensors[name] = headers[file_name][name]
        return tensors
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise InvalidCheckpointError(folder, "no *.safetensors files (only safetensors checkpoints are supported)")
    for file_path in files:
        for name, t in read_header(file_path).items():
            if name in tensors:
                raise InvalidCheckpointError(file_path, f"tensor '{name}' appears in more than one file")
            tensors[name] = t
    return tensors
