"""The native GGUF reader (csrc/model/gguf_reader.h, for callers without Python) against the Python
loader's parser (edgellama/gguf_header.py) and the gguf package's reader: the same header,
metadata and tensor table on real files, and the same verdict on thousands of structurally mutated
and truncated ones, never a crash."""

import math
import random
import sys
from pathlib import Path

import pytest
from gguf import GGML_QUANT_SIZES, GGUFReader

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # appended: `edgellama` must stay the installed package

from edgellama import _testing  # noqa: E402
from edgellama.errors import InvalidGGUFError  # noqa: E402
from edgellama.gguf_header import read_gguf_header  # noqa: E402
from fuzz import gguf_format  # noqa: E402
from fuzz.gguf_mutator import MUTATIONS, mutate_structure  # noqa: E402
from fuzz.seeds import write_gguf_seeds  # noqa: E402
from tiny_models import write_tiny_llama  # noqa: E402

# The type ids the native reader knows (the GGUF format's table today).
NATIVE_TYPES = {0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27,
                28, 29, 30, 34, 35, 39, 40, 41}
PYTHON_TYPES = {int(t) for t in GGML_QUANT_SIZES}


def native(path):
    try:
        return _testing.read_gguf(str(path)), None
    except ValueError as e:
        return None, str(e)


def python(path):
    try:
        return read_gguf_header(path), None
    except InvalidGGUFError as e:
        return None, str(e)


def comparable_value(value, decode=False):
    """A metadata value made comparable: native strings decoded as the Python parser decodes them,
    NaN (which equals nothing) as a marker."""
    if isinstance(value, bytes) and decode:
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return [comparable_value(v, decode) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return value


def assert_same(nat, py):
    assert nat["version"] == py.version
    assert ({k: comparable_value(v[2], decode=True) for k, v in nat["metadata"].items()}
            == {k: comparable_value(v) for k, v in py.metadata.items()})
    assert {k: (v[0], v[1]) for k, v in nat["metadata"].items()} == py.value_types
    got = [(name, tuple(dims), type_id, offset, n_bytes) for name, dims, type_id, offset, n_bytes in nat["tensors"]]
    want = [(t.name, tuple(t.dims), int(t.type), t.offset, t.n_bytes) for t in py.tensors]
    assert got == want


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    return write_gguf_seeds(tmp_path_factory.mktemp("gguf-seeds"))


def test_the_real_model_reads_alike(smollm2_path):
    nat, error = native(smollm2_path)
    assert error is None, error
    assert_same(nat, read_gguf_header(smollm2_path))
    # And against the gguf package's own reader: every tensor's type, shape and data offset.
    reader = GGUFReader(str(smollm2_path))
    want = {t.name: (int(t.tensor_type), [int(d) for d in t.shape], int(t.data_offset)) for t in reader.tensors}
    assert {name: (type_id, list(dims), offset) for name, dims, type_id, offset, _ in nat["tensors"]} == want


@pytest.mark.parametrize("weight_type", ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K",
                                         "Q5_K", "Q6_K"])
def test_tiny_models_of_every_type_read_alike(tmp_path, weight_type):
    wide = weight_type.endswith("_K")  # K-quant rows hold whole super-blocks of 256
    path = write_tiny_llama(tmp_path / "m.gguf", weight_type=weight_type, n_embd=256 if wide else 64,
                            n_ff=512 if wide else 128)
    nat, error = native(path)
    assert error is None, error
    assert_same(nat, read_gguf_header(path))


def comparable(nat, py) -> bool:
    """Whether both parsers know every type id the file's tensors use (the gguf package installed
    may know fewer or more than the native table)."""
    used = {t[2] for t in nat["tensors"]} if nat else {int(t.type) for t in py.tensors} if py else set()
    return used <= NATIVE_TYPES and used <= PYTHON_TYPES


def check_verdicts(path):
    nat, nat_error = native(path)
    py, py_error = python(path)
    if (nat is None) != (py is None):
        if (nat or py) and not comparable(nat, py):
            return
        pytest.fail(f"{path.name}: native {'accepts' if nat else 'rejects: ' + str(nat_error)}, "
                    f"Python {'accepts' if py else 'rejects: ' + str(py_error)}")
    if nat is not None:
        assert_same(nat, py)


def test_structurally_mutated_files_get_the_same_verdict(seeds, tmp_path):
    # Lies about counts, lengths, dims, offsets, type ids, value types, alignment and the data.
    rejected = 0
    for i in range(600):
        blob = seeds[i % len(seeds)].read_bytes()
        path = tmp_path / f"mutant{i}.gguf"
        path.write_bytes(mutate_structure(blob, i))
        check_verdicts(path)
        rejected += native(path)[0] is None
    assert 100 < rejected < 600  # both outcomes are exercised


def test_every_mutation_kind_gets_the_same_verdict(seeds, tmp_path):
    blob = seeds[0].read_bytes()
    for k, mutation in enumerate(MUTATIONS):
        for seed in range(15):
            doc = gguf_format.parse(blob)
            mutation(doc, random.Random(seed * 100 + k))
            path = tmp_path / f"kind{k}_{seed}.gguf"
            path.write_bytes(gguf_format.serialize(doc))
            check_verdicts(path)


def test_every_truncation_is_rejected_alike(seeds, tmp_path):
    blob = seeds[0].read_bytes()
    header_end = read_gguf_header(seeds[0]).tensors[0].offset
    cuts = sorted(set(range(0, header_end, max(1, header_end // 300))) | {header_end - 1, len(blob) - 1})
    for cut in cuts:
        path = tmp_path / "cut.gguf"
        path.write_bytes(blob[:cut])
        nat, error = native(path)
        assert nat is None, cut
        assert python(path)[0] is None, cut
    assert "empty" in native(_write(tmp_path, b""))[1]


def _write(tmp_path, data: bytes):
    path = tmp_path / "raw.gguf"
    path.write_bytes(data)
    return path


def test_errors_name_the_problem(tmp_path, seeds):
    blob = bytearray(seeds[0].read_bytes())
    assert "bad magic" in native(_write(tmp_path, b"GGML" + bytes(blob[4:])))[1]
    assert "version 7" in native(_write(tmp_path, bytes(blob[:4]) + (7).to_bytes(4, "little") + bytes(blob[8:])))[1]
    huge = bytes(blob[:8]) + (2**62).to_bytes(8, "little") + bytes(blob[16:])
    assert "tensor count" in native(_write(tmp_path, huge))[1]
