"""Hostile model files through the C ABI: edgellama_model_load (the native loader,
csrc/model/llama_file.h) against the Python loader (edgellama.gguf_loader.load_gguf).

For every file both must reach the same verdict with the corresponding error class
(InvalidGGUFError / InvalidMetadataError -> EDGELLAMA_ERR_INVALID_MODEL, UnsupportedModelError ->
EDGELLAMA_ERR_UNSUPPORTED_MODEL, FileNotFoundError -> EDGELLAMA_ERR_IO), blaming the same metadata
key or tensor, and an accepted file must have the same hyper-parameters. The files: the hostile
cases the Python loader's own tests use, seeded structural and semantic mutants of the fuzzing
seeds, a dense sample of truncations, and valid models of every kind. A file the Python loader
accepts also has its RoPE divisors computed (as Llama() does) and, when it carries a vocabulary,
its tokenizer built: edgellama_model_load does both at load.

The C ABI runs in a child process: a crash (segfault, abort) there fails the test and names the
file, instead of ending the run. Logits through the ABI equal the pybind11 path's where the loader
computes what the core reads (RoPE scaling divisors, F16/BF16 vectors converted to float32).
"""

from __future__ import annotations

import functools
import json
import math
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFValueType as VT

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # appended: `edgellama` must stay the installed package

from edgellama import capi  # noqa: E402
from edgellama.errors import InvalidGGUFError, InvalidMetadataError, UnsupportedModelError  # noqa: E402
from edgellama.gguf_loader import load_gguf  # noqa: E402
from fuzz import gguf_format as gf  # noqa: E402
from fuzz.gguf_mutator import (known_key_value, key_table, mutate_structure, tensor_dims, tensor_table,  # noqa: E402
                               tensor_type, tokenizer_arrays, value_type)
from fuzz.seeds import write_gguf_seeds  # noqa: E402

N_MUTANTS = 300  # of each kind (structural, semantic)
TOKENIZER_REFUSED = "tokenizer refused"


# ---- the two loaders ----------------------------------------------------------------------------


def python_verdict(path):
    """(status name, [n_vocab, n_embd, n_layer, n_ctx_train] or None, blamed key or tensor, message)
    as the Python path decides: load_gguf, then what Llama() and its tokenizer compute from it."""
    try:
        model = load_gguf(path)
    except FileNotFoundError as e:
        return "EDGELLAMA_ERR_IO", None, None, str(e)
    except UnsupportedModelError as e:
        return "EDGELLAMA_ERR_UNSUPPORTED_MODEL", None, e.tensor, str(e)
    except InvalidMetadataError as e:
        return "EDGELLAMA_ERR_INVALID_MODEL", None, e.key, str(e)
    except InvalidGGUFError as e:
        return "EDGELLAMA_ERR_INVALID_MODEL", None, e.tensor, str(e)
    model.rope_divisors()  # load_gguf refused what this cannot compute: any exception fails the test
    c = model.config
    if "tokenizer.ggml.tokens" in model.tokenizer_metadata:
        from edgellama.tokenizer import Tokenizer, TokenizerError

        try:
            Tokenizer.from_metadata(model.tokenizer_metadata)
        except TokenizerError as e:
            # The model loads; its vocabulary is another component's to judge (the Python
            # tokenizer is built lazily, the ABI's at load): either verdict, the same config.
            return TOKENIZER_REFUSED, [c.n_vocab, c.n_embd, c.n_layer, c.context_length], None, str(e)
    return "EDGELLAMA_OK", [c.n_vocab, c.n_embd, c.n_layer, c.context_length], None, ""


def native_verdicts(ffi, lib, jobs):
    """Runs in the child: each job ([path, cut]: the file, or its first cut bytes) through
    edgellama_model_load; one JSON line per job, flushed, so a crash shows where it happened."""
    params = ffi.new("edgellama_model_params*")
    lib.edgellama_model_default_params(params)
    params.n_ctx, params.n_threads = 16, 1
    out = ffi.new("edgellama_model**")
    for path, cut in jobs:
        if cut is not None:
            path = _write_cut(path, cut)
        status = lib.edgellama_model_load(str(path).encode(), params, out)
        config = None
        if status == lib.EDGELLAMA_OK:
            m = out[0]
            config = [lib.edgellama_model_n_vocab(m), lib.edgellama_model_n_embd(m), lib.edgellama_model_n_layer(m),
                      lib.edgellama_model_n_ctx_train(m)]
            lib.edgellama_model_free(m)
        message = ffi.string(lib.edgellama_last_error()).decode("utf-8", "replace") if config is None else ""
        print(json.dumps([ffi.string(lib.edgellama_status_name(status)).decode(), config, message]), flush=True)


def _write_cut(source, cut: int) -> Path:
    path = Path(source).with_name("cut.gguf")
    path.write_bytes(_file_bytes(str(source))[:cut])
    return path


@functools.lru_cache(maxsize=4)
def _file_bytes(path: str) -> bytes:
    return Path(path).read_bytes()


def check_same_verdicts(jobs, tmp_path):
    """Both loaders on every job; returns {status name: count}."""
    jobs = [[str(p), cut] for p, cut in jobs]
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    # The child imports the same edgellama package as this process (installed or source tree).
    package_root = str(Path(capi.__file__).resolve().parent.parent)
    child = subprocess.run([sys.executable, __file__, str(tmp_path / "jobs.json")], capture_output=True, text=True,
                           timeout=300, env={**os.environ, "PYTHONPATH": package_root})
    lines = child.stdout.splitlines()
    if child.returncode != 0 or len(lines) != len(jobs):
        at = jobs[len(lines)] if len(lines) < len(jobs) else None
        pytest.fail(f"the C ABI's child process ended with {child.returncode} at job {len(lines)} {at}:\n"
                    f"{child.stderr[-3000:]}")
    counts = {}
    for (path, cut), line in zip(jobs, lines):
        status, config, message = json.loads(line)
        py_status, py_config, blamed, py_message = python_verdict(_write_cut(path, cut) if cut is not None else path)
        where = f"{Path(path).name}{'' if cut is None else f' cut at {cut}'}"
        if py_status == TOKENIZER_REFUSED:
            py_status = status if status == "EDGELLAMA_ERR_INVALID_MODEL" else "EDGELLAMA_OK"
            py_config = None if status == "EDGELLAMA_ERR_INVALID_MODEL" else py_config
        assert (status, config) == (py_status, py_config), \
            f"{where}: C ABI {status} {config} {message!r}; Python {py_status} {py_config} {py_message!r}"
        if blamed and py_status != "EDGELLAMA_ERR_IO":
            # The C message is one line of text: control characters (NUL too) escaped.
            blamed = re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\x{ord(m.group()):02x}", blamed)
            assert f"'{blamed}'" in message, f"{where}: Python blames {blamed!r}: {py_message!r}; C ABI: {message!r}"
        counts[status] = counts.get(status, 0) + 1
    return counts


@pytest.fixture(scope="module")
def library():
    return capi.load_library()  # the package always ships it: a missing library fails


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    return write_gguf_seeds(tmp_path_factory.mktemp("gguf-seeds"))


# ---- semantic mutations: values the loader reads, near and across the edges ----------------------


def _set(doc, key: str, vtype: int, value) -> None:
    kv = doc.kv(key)
    if kv is None:
        doc.kvs.append(gf.KV(gf.Str.of(key), vtype, value))
    else:
        kv.vtype, kv.value = vtype, value


ROPE_REALS = [0.0, 0.5, 1.0, 1.5, 2.0, 4.0, 8.0, 32.0, 1e-3, 1e3, 1001.0, 1e6, 1e7, math.nan, -1.0, 1e-300, 5e-324]
ROPE_BASES = [10000.0, 1.0, 1.0000001, 1.0 + 2**-52, 0.5, 1e-30, 500000.0, 3.4e38]


def rope_values(doc, rng) -> None:
    """A RoPE scaling type and some of its values (YaRN's ramp, magnitude, undefined ranges)."""
    _set(doc, "llama.rope.scaling.type", gf.STRING, gf.Str.of(rng.choice(["yarn", "yarn", "linear", "none", "longrope"])))
    for key in ("factor", "attn_factor", "yarn_ext_factor", "yarn_beta_fast", "yarn_beta_slow"):
        if rng.random() < 0.5:
            _set(doc, "llama.rope.scaling." + key, rng.choice([6, 12, 12]), rng.choice(ROPE_REALS))
    if rng.random() < 0.6:
        _set(doc, "llama.rope.scaling.original_context_length", rng.choice([4, 10]),
             rng.choice([0, 1, 16, 64, 256, 4096, 2**32 - 1]))
    if rng.random() < 0.4:
        _set(doc, "llama.rope.freq_base", rng.choice([6, 12]), rng.choice(ROPE_BASES))


def vector_types(doc, rng) -> None:
    """A norm relabelled F16 / BF16 (its bytes still lie in the file: converted at load) or worse."""
    vectors = [t for t in doc.tensors if len(t.dims) == 1]
    if vectors:
        rng.choice(vectors).type_id = rng.choice([1, 30, 1, 30, 0, 8, 2])


HYPER_PARAMETERS = ["llama.block_count", "llama.embedding_length", "llama.feed_forward_length",
                    "llama.attention.head_count", "llama.attention.head_count_kv", "llama.attention.key_length",
                    "llama.attention.value_length", "llama.rope.dimension_count", "llama.vocab_size",
                    "llama.context_length"]


def nudge_hyper_parameter(doc, rng) -> None:
    """A hyper-parameter dropped, or moved next to its value / a limit, in another integer type."""
    key = rng.choice(HYPER_PARAMETERS)
    kv = doc.kv(key)
    if rng.random() < 0.2:
        if kv is not None:
            doc.kvs.remove(kv)
        return
    base = kv.value if kv is not None and isinstance(kv.value, int) else 16
    value = rng.choice([base - 1, base + 1, base * 2, base // 2, 0, 1, 2, 3, 32, 64, 2**31 - 1, 2**31, 2**32 - 1,
                        2**63])
    _set(doc, key, rng.choice([4, 4, 5, 10, 11, 0, 2, 7, 6]), value)


SEMANTIC = [known_key_value, tokenizer_arrays, tensor_type, tensor_dims, tensor_table, key_table, value_type,
            rope_values, rope_values, vector_types, vector_types, nudge_hyper_parameter, nudge_hyper_parameter]


def semantic_mutant(blob: bytes, seed: int) -> bytes:
    rng = random.Random(seed)
    doc = gf.parse(blob)
    for _ in range(rng.choice([1, 1, 2, 3])):
        rng.choice(SEMANTIC)(doc, rng)
    return gf.serialize(doc)


# ---- the tests -----------------------------------------------------------------------------------


def test_seeded_mutants_get_the_same_verdict(library, seeds, tmp_path):
    jobs = []
    for i in range(N_MUTANTS):
        blob = seeds[i % len(seeds)].read_bytes()
        for kind, make in (("structural", mutate_structure), ("semantic", semantic_mutant)):
            path = tmp_path / f"{kind}{i}.gguf"
            path.write_bytes(make(blob, i))
            jobs.append((path, None))
    counts = check_same_verdicts(jobs, tmp_path)
    # Every outcome is exercised, acceptance by a fair share.
    assert counts.get("EDGELLAMA_OK", 0) > 50, counts
    assert counts.get("EDGELLAMA_ERR_INVALID_MODEL", 0) > 200, counts
    assert counts.get("EDGELLAMA_ERR_UNSUPPORTED_MODEL", 0) > 5, counts


def test_truncations_are_rejected_alike(library, seeds, tmp_path):
    """A dense sample of cuts: every one through the fixed header, the first keys and the tensor
    table, every 7th through the rest of the metadata (the vocabulary's arrays), every 64th
    through the data, the last 64 (the whole file must be there) and the empty file."""
    from tiny_models import GGUFLayout

    source = tmp_path / "source.gguf"
    blob = seeds[0].read_bytes()
    source.write_bytes(blob)
    layout = GGUFLayout.parse(blob)
    cuts = sorted(set(range(0, 512)) | set(range(512, layout.kv_end, 7)) |
                  set(range(layout.kv_end - 8, layout.data_start + 1)) | set(range(layout.data_start, len(blob), 64)) |
                  set(range(len(blob) - 64, len(blob))))
    counts = check_same_verdicts([(source, cut) for cut in cuts], tmp_path)
    assert counts == {"EDGELLAMA_ERR_INVALID_MODEL": len(cuts)}


def test_hostile_metadata_cases_get_the_same_verdict(library, tmp_path):
    """Every case of test_hostile_metadata.py (wrong types and impossible values of each
    hyper-parameter, the tokenizer's keys, the alignment) and the valid-but-unusual ones."""
    from test_hostile_metadata import CASES, MORE_CASES
    from tiny_models import write_tiny_llama

    cases = [(k, v, None) for k, v in CASES] + [(k, v, more[0] if more else None) for k, v, *more in MORE_CASES.values()]
    cases += [("llama.rope.freq_base", 1, None), ("tokenizer.ggml.add_bos_token", 1, None),
              ("llama.context_length", 2**32 - 1, None), ("llama.attention.layer_norm_rms_epsilon", 1e-6, None)]
    jobs = []
    for i, (key, value, more) in enumerate(cases):
        jobs.append((write_tiny_llama(tmp_path / f"case{i}.gguf", overrides={key: value, **(more or {})}), None))
    counts = check_same_verdicts(jobs, tmp_path)
    assert counts.get("EDGELLAMA_OK") == 4, counts


def _patched(path, field: str, fmt: str, value, tensor=None):
    from tiny_models import GGUFLayout, patch_bytes

    layout = GGUFLayout.parse(Path(path).read_bytes())
    offset = {"magic": 0, "version": 4, "n_tensors": 8, "n_kv": 16, "first_key_length": layout.header_end}.get(field)
    if tensor is not None:
        record = layout.tensors[tensor]
        offset = {"type": record.type_field, "offset": record.offset_field, "ne1": record.type_field - 8}[field]
    patch_bytes(path, offset, fmt, value)
    return path


def test_loading_cases_get_the_same_verdict(library, tmp_path):
    """The files of test_gguf_loading.py and test_rope_scaling.py: bad magic, versions, absurd
    counts and lengths, tensor problems, other architectures, RoPE scaling edges, not a file."""
    import gguf
    from tiny_models import DROP, write_tiny_llama

    def tiny(name, **kw):
        return write_tiny_llama(tmp_path / f"{name}.gguf", **kw)

    yarn = {"llama.rope.scaling.type": "yarn", "llama.rope.scaling.factor": 4.0,
            "llama.rope.scaling.original_context_length": 64}
    files = [
        tiny("valid", weight_type="Q4_0"),
        _patched(tiny("magic"), "magic", "4s", b"GGUX"),
        _patched(tiny("version"), "version", "I", 99),
        _patched(tiny("n_tensors"), "n_tensors", "Q", 2**62),
        _patched(tiny("n_kv"), "n_kv", "Q", 2**62),
        _patched(tiny("n_tensors_max"), "n_tensors", "Q", 2**64 - 1),
        _patched(tiny("key_length"), "first_key_length", "Q", 2**62),
        _patched(tiny("type99", weight_type="Q4_0"), "type", "I", 99, "blk.0.ffn_gate.weight"),
        _patched(tiny("iq4_nl", weight_type="Q4_0"), "type", "I", int(gguf.GGMLQuantizationType.IQ4_NL),
                 "blk.0.attn_q.weight"),
        _patched(tiny("offset_wraps"), "offset", "Q", 2**64 - 64, "blk.0.attn_k.weight"),
        _patched(tiny("ne1_huge"), "ne1", "Q", 2**62, "blk.0.ffn_gate.weight"),
        tiny("missing_tensor", overrides={"blk.1.ffn_up.weight": DROP}),
        tiny("missing_norm", overrides={"output_norm.weight": DROP}),
        tiny("gpt2", overrides={"general.architecture": "gpt2"}),
        tiny("no_block_count", overrides={"llama.block_count": DROP}),
        tiny("kv_heads", n_embd=96, n_head=6, n_head_kv=4, head_dim=16, n_ff=128),
        tiny("value_length", overrides={"llama.attention.value_length": 8}),
        tiny("longrope", overrides={"llama.rope.scaling.type": "longrope"}),
        tiny("yarn_base_1", overrides={**yarn, "llama.rope.freq_base": 1.0}),
        tiny("yarn_beta_denormal", overrides={**yarn, "llama.rope.scaling.original_context_length": 2**32 - 1,
                                              "llama.rope.scaling.yarn_beta_fast": (5e-324, VT.FLOAT64)}),
        tiny("yarn_base_near_1", overrides={**yarn, "llama.rope.freq_base": (1.0 + 2**-52, VT.FLOAT64),
                                            "llama.rope.scaling.yarn_beta_fast": (1e-300, VT.FLOAT64)}),
        tiny("no_tokenizer", overrides={k: DROP for k in ("tokenizer.ggml.model", "tokenizer.ggml.pre",
                                                           "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
                                                           "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id",
                                                           "tokenizer.ggml.eos_token_id")}),
    ]
    for i, shape in enumerate([(32, 64), (64, 64), (64, 96), (299, 64), (32,)]):
        name = ["blk.0.attn_q.weight", "blk.1.attn_k.weight", "blk.0.ffn_down.weight", "token_embd.weight",
                "blk.0.attn_norm.weight"][i]
        files.append(tiny(f"shape{i}", overrides={name: {"shape": shape}}))
    (tmp_path / "empty.gguf").write_bytes(b"")
    (tmp_path / "notes.gguf").write_bytes(b"this is a text file, not a model\n" * 10)
    (tmp_path / "folder.gguf").mkdir()
    files += [tmp_path / "empty.gguf", tmp_path / "notes.gguf", tmp_path / "missing.gguf", tmp_path / "folder.gguf"]
    counts = check_same_verdicts([(f, None) for f in files], tmp_path)
    assert counts["EDGELLAMA_OK"] == 2 and counts["EDGELLAMA_ERR_IO"] == 2, counts


def test_valid_models_load_with_the_same_hyper_parameters(library, tmp_path, smollm2_path):
    from tiny_models import FORWARD_CASES, write_tiny_llama

    files = [write_tiny_llama(tmp_path / f"{name}.gguf", **spec) for name, spec in FORWARD_CASES.items()]
    counts = check_same_verdicts([(f, None) for f in files + [Path(smollm2_path)]], tmp_path)
    assert counts == {"EDGELLAMA_OK": len(files) + 1}


def _half_norms(path, type_id: int):
    """The file with its norms stored as F16 (type_id 1) or BF16 (30): each norm's values rounded
    and written over the first half of its F32 bytes (so the layout stays), its type id changed."""
    doc = gf.parse(Path(path).read_bytes())
    data = bytearray(doc.data)
    for t in doc.tensors:
        if len(t.dims) == 1 and t.name.data.endswith(b"norm.weight"):
            values = np.frombuffer(doc.data, np.float32, t.dims[0], t.offset)
            half = (values.astype(np.float16).view(np.uint16) if type_id == 1 else
                    ((values.view(np.uint32) + 0x8000) >> 16).astype(np.uint16))
            data[t.offset:t.offset + half.nbytes] = half.tobytes()
            t.type_id = type_id
    doc.data = bytes(data)
    out = Path(path).with_name(f"{Path(path).stem}-norms{type_id}.gguf")
    out.write_bytes(gf.serialize(doc))
    return out


def test_logits_match_the_python_path_where_the_loader_computes_inputs(library, tmp_path):
    """RoPE scaling divisors (linear, YaRN, YaRN times the file's rope_freqs) and F16/BF16 vectors
    reach the core as the Python loader computes them: the ABI's logits equal Llama.eval's at the
    same CPU level."""
    from edgellama import Llama, _core
    from tiny_models import FORWARD_CASES, write_tiny_llama

    names = ["rope_linear-F32", "rope_yarn-F32", "rope_yarn-rope_freqs-Q4_1", "rope_freqs-F32"]
    files = [write_tiny_llama(tmp_path / f"{n}.gguf", **FORWARD_CASES[n]) for n in names]
    files += [_half_norms(files[1], 1), _half_norms(files[0], 30)]
    tokens = [1, 17, 42, 99, 5, 260, 7, 3]
    for path in files:
        want = Llama(str(path), n_ctx=16, n_threads=1).eval(tokens)
        with capi.Model(path, n_ctx=16, n_threads=1, cpu_level=_core.LEVEL) as m:
            got = m.decode(tokens)[-1]
        assert np.isfinite(want).all(), path.name
        np.testing.assert_array_equal(got, want, err_msg=path.name)


def test_messages_name_the_file_and_the_problem(library, tmp_path):
    from tiny_models import write_tiny_llama

    path = write_tiny_llama(tmp_path / "m.gguf", overrides={"llama.embedding_length": 0})
    with pytest.raises(capi.CapiError) as info:
        capi.Model(path, n_ctx=16, n_threads=1)
    assert info.value.status_name == "EDGELLAMA_ERR_INVALID_MODEL"
    assert re.fullmatch(re.escape(f"{path}: metadata 'llama.embedding_length' = 0: must be in [1, 2147483647]"),
                        info.value.message), info.value.message


if __name__ == "__main__":  # the child process of check_same_verdicts
    from edgellama.capi import load_library

    native_verdicts(*load_library(), json.loads(Path(sys.argv[1]).read_text()))
