"""The fuzz targets (fuzz/) run for a bounded time each, and the harness's own parts are checked.

Each target (GGUF files end to end, safetensors, tokenizers, chat templates) is fuzzed with
atheris for FUZZ_SECONDS from the seeds the tests' writers produce; any crash, hang, memory
blow-up or exception outside the EdgellamaError family fails the test, with the reproducer (path,
base64, replay command) and the traceback in the message. The long run is `python -m
fuzz.campaign` (fuzz/README.md).

Also here: the structure-aware GGUF mutator's document model against files gguf-py writes, and
regression tests for what fuzzing found in the safetensors reader.
"""

from __future__ import annotations

import json
import random
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # appended: `edgellama` must stay the installed package

from edgellama.errors import InvalidCheckpointError  # noqa: E402
from edgellama.safetensors_io import open_checkpoint, read_header  # noqa: E402
from fuzz import gguf_format, seeds  # noqa: E402
from fuzz.gguf_mutator import MUTATIONS, mutate_structure  # noqa: E402
from fuzz.targets import TARGETS  # noqa: E402

FUZZ_SECONDS = 12


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target_finds_nothing(target):
    pytest.importorskip("atheris", reason="atheris (the fuzzer) is not installed: pip install atheris")
    from fuzz import run

    result = run.fuzz(target, seconds=FUZZ_SECONDS, quiet=True)
    assert result.executions > 0, result.report()
    assert result.clean, result.report()


# --- the GGUF document model and mutator ----------------------------------------------------------


@pytest.fixture(scope="module")
def gguf_seeds(tmp_path_factory):
    return seeds.write_gguf_seeds(tmp_path_factory.mktemp("gguf-seeds"))


def test_gguf_document_round_trips_the_writers_files(gguf_seeds):
    for path in gguf_seeds:
        blob = path.read_bytes()
        doc = gguf_format.parse(blob)
        assert len(doc.tensors) > 10 and doc.kv("general.architecture").value.data == b"llama"
        assert gguf_format.serialize(doc) == blob, path.name


def test_gguf_mutations_change_the_file_and_stay_parseable_mostly(gguf_seeds):
    from tiny_models import GGUFLayout

    blob = gguf_seeds[0].read_bytes()
    changed = parseable = 0
    for seed in range(400):
        out = mutate_structure(blob, seed)
        changed += out != blob
        try:
            GGUFLayout.parse(out)  # the tests' own independent layout parser
            parseable += 1
        except Exception:  # noqa: BLE001 - lies about lengths and types are the point
            pass
    assert changed >= 380 and 100 <= parseable < 400, (changed, parseable)


def test_every_gguf_mutation_runs_on_every_seed(gguf_seeds):
    for path in gguf_seeds:
        blob = path.read_bytes()
        for k, mutation in enumerate(MUTATIONS):
            for seed in range(20):
                doc = gguf_format.parse(blob)
                mutation(doc, random.Random(seed * 100 + k))
                gguf_format.serialize(doc)


# --- safetensors reader: regressions for fuzzing findings -------------------------------------------


def write_safetensors(path: Path, header, body: bytes = b"", raw_header: bytes = None) -> Path:
    raw = raw_header if raw_header is not None else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)
    return path


def test_deeply_nested_header_json_is_a_checkpoint_error(tmp_path):
    path = write_safetensors(tmp_path / "m.safetensors", None, raw_header=b"[" * 100_000)
    with pytest.raises(InvalidCheckpointError, match="nested too deeply"):
        read_header(path)


def test_shape_whose_size_overflows_int64_is_rejected(tmp_path):
    # 2**32 x 2**32 float32 wrapped to 0 bytes in int64, so an empty data range was accepted.
    header = {"w": {"dtype": "F32", "shape": [2**32, 2**32], "data_offsets": [0, 0]}}
    with pytest.raises(InvalidCheckpointError, match="shape"):
        read_header(write_safetensors(tmp_path / "m.safetensors", header))


@pytest.mark.parametrize("entry", [
    {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]},
    {"dtype": "F32", "shape": [1], "data_offsets": [False, 4]},
    {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]},
    {"dtype": "F32", "shape": [0, 2**100], "data_offsets": [0, 0]},
    {"dtype": "BF16", "shape": [0, 4, 2**63 - 1], "data_offsets": [0, 0]},
    # numpy can shape it as stored (2 bytes a value) but not as the float32 copy the reader makes
    {"dtype": "F16", "shape": [0, 2**61], "data_offsets": [0, 0]},
    {"dtype": "BF16", "shape": [0, 2**61 + 1], "data_offsets": [0, 0]},
], ids=["bool-dim", "bool-offset", "list-dtype", "dim-past-int64", "empty-but-huge", "empty-f16-huge-as-f32",
        "empty-bf16-huge-as-f32"])
def test_wrongly_typed_header_fields_are_checkpoint_errors(tmp_path, entry):
    with pytest.raises(InvalidCheckpointError):
        read_header(write_safetensors(tmp_path / "m.safetensors", {"w": entry}, b"\0" * 4))


def test_empty_tensor_reads_as_an_empty_array(tmp_path):
    header = {"e": {"dtype": "F32", "shape": [0, 4], "data_offsets": [0, 0]}}
    tensors = read_header(write_safetensors(tmp_path / "m.safetensors", header))
    assert tensors["e"].array().shape == (0, 4)


@pytest.mark.parametrize("index", [{"weight_map": ["w"]}, {"weight_map": {"w": 5}}, "[" * 100_000],
                         ids=["list", "int-file-name", "deep"])
def test_malformed_index_is_a_checkpoint_error(tmp_path, index):
    write_safetensors(tmp_path / "model.safetensors", {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
                      np.ones(1, np.float32).tobytes())
    text = index if isinstance(index, str) else json.dumps(index)
    (tmp_path / "model.safetensors.index.json").write_text(text)
    with pytest.raises(InvalidCheckpointError):
        open_checkpoint(tmp_path)


@pytest.mark.parametrize("where", ["parent", "absolute", "subfolder"])
def test_index_cannot_name_a_file_outside_the_checkpoint(tmp_path, where):
    """A hostile index must not make the loader read files elsewhere (the file it names exists and
    is a valid safetensors file, so only the containment check can refuse it)."""
    folder = tmp_path / "ckpt"
    (folder / "sub").mkdir(parents=True)
    weight = {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
    outside = {"parent": tmp_path / "outside.safetensors", "absolute": tmp_path / "outside.safetensors",
               "subfolder": folder / "sub" / "shard.safetensors"}[where]
    write_safetensors(outside, weight, np.ones(1, np.float32).tobytes())
    name = {"parent": "../outside.safetensors", "absolute": str(outside), "subfolder": "sub/shard.safetensors"}[where]
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": name}}))
    with pytest.raises(InvalidCheckpointError, match="not a file name"):
        open_checkpoint(folder)
