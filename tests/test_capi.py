"""The C ABI (include/edgellama.h) through libedgellama, driven by cffi (edgellama.capi).

The reference is the pybind11 path (edgellama.Llama, edgellama._core): the same file must give the
same logits, bit for bit, at every CPU level, and the same greedy tokens. The header must compile as
C and C++, and the library must refuse bad calls with a status and a message, never a crash.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from edgellama import Llama, _core, capi
from tiny_models import write_tiny_llama

ROOT = Path(__file__).resolve().parent.parent
HEADER = ROOT / "include" / "edgellama.h"
WEIGHT_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K")
K_TYPES = {"Q4_K", "Q5_K", "Q6_K"}


@pytest.fixture(scope="module")
def ffi_lib():
    return capi.load_library()


def tiny(tmp_path, weight_type: str) -> Path:
    # K-quants need rows of 256; the other types take the default tiny shape.
    shape = dict(n_embd=256, n_ff=256, n_head=4, n_head_kv=2) if weight_type in K_TYPES else {}
    return write_tiny_llama(tmp_path / f"tiny-{weight_type}.gguf", weight_type=weight_type, **shape)


# -- the header and the library ----------------------------------------------------------------

@pytest.mark.parametrize("compiler,flags", [("cc", ["-x", "c", "-std=c99"]), ("c++", ["-x", "c++", "-std=c++11"])])
def test_header_compiles_alone_as_c_and_cpp(compiler, flags, tmp_path):
    if shutil.which(compiler) is None:
        pytest.skip(f"no {compiler}")
    source = tmp_path / "probe.txt"
    source.write_text('#include "edgellama.h"\nint main(void) { return EDGELLAMA_ABI_VERSION == 1 ? 0 : 1; }\n')
    done = subprocess.run([compiler, *flags, "-Wall", "-Wextra", "-Werror", "-pedantic", f"-I{HEADER.parent}",
                           "-fsyntax-only", str(source)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_versions_and_levels(ffi_lib):
    ffi, lib = ffi_lib
    header_version, library_version = capi.abi_version()
    assert header_version == library_version == 1
    assert ffi.string(lib.edgellama_version()).decode() == importlib.metadata.version("edgellama")
    # The levels the library would load are exactly those the Python package runs here.
    assert capi.cpu_levels() == _core.runnable_levels()
    assert ffi.string(lib.edgellama_status_name(lib.EDGELLAMA_ERR_CONTEXT_FULL)) == b"EDGELLAMA_ERR_CONTEXT_FULL"


# -- the same numbers as the pybind11 path ------------------------------------------------------

def python_logits(path, ids, **kwargs) -> np.ndarray:
    llm = Llama(path, n_threads=2, n_ctx=128, **kwargs)
    return llm.eval(ids, all_logits=True)


@pytest.mark.parametrize("weight_type", WEIGHT_TYPES)
def test_tiny_models_match_the_python_path_bit_for_bit(tmp_path, weight_type):
    path = tiny(tmp_path, weight_type)
    ids = [1, 17, 42, 5, 250, 9, 77, 3]
    expected = python_logits(path, ids)
    with capi.Model(path, n_threads=2, n_ctx=128) as model:
        got = model.decode(ids, logits=[True] * len(ids))
        assert got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)
        # greedy continuation, one token per decode: the same tokens as the Python engine's argmax
        model.seq_clear(0)
        tokens = model.generate_greedy(ids, 6)
    llm = Llama(path, n_threads=2, n_ctx=128)
    reference = [int(np.argmax(llm.eval(ids)))]
    for _ in range(5):
        reference.append(int(np.argmax(llm.eval([reference[-1]]))))
    assert tokens == reference[:len(tokens)] and len(tokens) == 6


@pytest.mark.parametrize("activations", ["precise", "int8"])
def test_smollm2_greedy_matches_the_python_api(smollm2_path, activations):
    llm = Llama(smollm2_path, n_threads=2, n_ctx=256, activations=activations)
    prompt = llm.tokenize("The capital of France is")
    expected = [r.token for r in llm.stream_tokens(prompt, max_tokens=16, temperature=0.0)]
    with capi.Model(smollm2_path, n_threads=2, n_ctx=256, activations=activations) as model:
        assert model.tokenize("The capital of France is", add_special=True) == prompt
        got = model.generate_greedy(prompt, 16)
        assert got == expected
        assert model.detokenize(got).decode() == llm.detokenize(expected)


def test_every_cpu_level_gives_that_level_s_logits(tmp_path):
    path = tiny(tmp_path, "Q4_K")
    from edgellama.gguf_loader import load_gguf

    ids = np.array([3, 1, 4, 1, 5, 9, 2, 6], dtype=np.int32)
    gguf = load_gguf(path)
    for level in capi.cpu_levels():
        core = _core.load_level(level)
        engine = core.LlamaModel(gguf.config.core_dict(), gguf.core_tensors(), 64, 2, activations="precise")
        n = len(ids)
        expected = engine.forward_batch(ids, np.zeros(n, np.int32), np.arange(n, dtype=np.int64), np.ones(n, np.uint8))
        with capi.Model(path, n_threads=2, n_ctx=64, cpu_level=level) as model:
            assert model.cpu_level == level
            np.testing.assert_array_equal(model.decode(ids.tolist(), logits=[True] * n), expected)


# -- sequences and the cache ---------------------------------------------------------------------

def test_batched_sequences_and_cache_operations(tmp_path):
    path = tiny(tmp_path, "Q8_0")
    prompt, a, b = [1, 2, 3, 4, 5], [6, 7], [8, 9, 10]
    with capi.Model(path, n_threads=2, n_ctx=64) as alone:
        want_a = alone.decode(prompt + a)
        alone.seq_clear(0)
        want_b = alone.decode(prompt + b)
    with capi.Model(path, n_threads=2, n_ctx=64, n_seq=3) as model:
        assert model.n_seq == 3
        model.decode(prompt, [0] * 5, logits=[False] * 5)
        model.seq_copy_prefix(0, 1, 5)
        model.seq_copy_prefix(0, 2, 3)
        assert [model.seq_length(s) for s in range(3)] == [5, 5, 3]
        # one batch continuing two sequences, with one row of logits each
        got = model.decode(a + b, [0, 0, 1, 1, 1], logits=[False, True, False, False, True])
        np.testing.assert_array_equal(got[0], want_a[0])
        np.testing.assert_array_equal(got[1], want_b[0])
        model.seq_truncate(1, 5)
        np.testing.assert_array_equal(model.decode(b, [1] * 3)[0], want_b[0])
        assert model.seq_length(3) == -1


def test_threads_sharing_one_model_get_the_sequential_results(tmp_path):
    path = tiny(tmp_path, "Q4_0")
    prompts = [[1, 2, 3, 4], [9, 8, 7], [5, 5, 5, 5, 5], [11, 12]]
    with capi.Model(path, n_threads=1, n_ctx=64, n_seq=len(prompts)) as model:
        expected = [model.decode(p, [s] * len(p)) for s, p in enumerate(prompts)]
        for s in range(len(prompts)):
            model.seq_clear(s)
        results, errors = {}, []

        def worker(seq):
            try:
                results[seq] = model.decode(prompts[seq], [seq] * len(prompts[seq]))
                results[seq, "tokens"] = model.tokenize("hello world")
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(s,)) for s in range(len(prompts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        for s in range(len(prompts)):
            np.testing.assert_array_equal(results[s], expected[s])


# -- refusals ----------------------------------------------------------------------------------

def status_of(call) -> str:
    with pytest.raises(capi.CapiError) as info:
        call()
    assert info.value.message, "every failure has a message"
    return info.value.status_name


def test_bad_loads_are_errors_with_messages(tmp_path):
    path = tiny(tmp_path, "F32")
    assert status_of(lambda: capi.Model(tmp_path / "missing.gguf")) == "EDGELLAMA_ERR_IO"
    assert status_of(lambda: capi.Model(path, n_seq=0)) == "EDGELLAMA_ERR_INVALID_ARGUMENT"
    assert status_of(lambda: capi.Model(path, n_threads=-1)) == "EDGELLAMA_ERR_INVALID_ARGUMENT"
    assert status_of(lambda: capi.Model(path, cpu_level="z80")) == "EDGELLAMA_ERR_INVALID_ARGUMENT"
    assert status_of(lambda: capi.Model(path, activations="fp4")) == "EDGELLAMA_ERR_INVALID_ARGUMENT"
    assert status_of(lambda: capi.Model(path, cache_type_k="q3")) == "EDGELLAMA_ERR_INVALID_ARGUMENT"
    not_gguf = tmp_path / "not.gguf"
    not_gguf.write_bytes(b"hello, world" * 10)
    assert status_of(lambda: capi.Model(not_gguf)) == "EDGELLAMA_ERR_INVALID_MODEL"


def test_bad_calls_are_errors_and_change_nothing(tmp_path, ffi_lib):
    ffi, lib = ffi_lib
    with capi.Model(tiny(tmp_path, "F32"), n_threads=1, n_ctx=8) as model:
        assert status_of(lambda: model.decode(list(range(9)))) == "EDGELLAMA_ERR_CONTEXT_FULL"
        assert model.seq_length(0) == 0
        assert status_of(lambda: model.decode([model.n_vocab])) == "EDGELLAMA_ERR_INVALID_ARGUMENT"
        assert status_of(lambda: model.decode([1], [0], [3])) == "EDGELLAMA_ERR_INVALID_ARGUMENT"  # a gap
        assert status_of(lambda: model.decode([1], [1])) == "EDGELLAMA_ERR_INVALID_ARGUMENT"  # no sequence 1
        assert status_of(lambda: model.seq_truncate(0, -1)) == "EDGELLAMA_ERR_INVALID_ARGUMENT"
        assert model.seq_length(0) == 0
        # a logits buffer one float short
        tokens = ffi.new("edgellama_token[]", [1])
        seqs, positions = ffi.new("int32_t[]", [0]), ffi.new("int64_t[]", [0])
        batch = ffi.new("edgellama_batch*", {"n": 1, "token": tokens, "seq_id": seqs, "pos": positions})
        out = ffi.new("float[]", model.n_vocab)
        assert lib.edgellama_decode(model.handle, batch, out, model.n_vocab - 1) == lib.EDGELLAMA_ERR_INVALID_ARGUMENT
        assert lib.edgellama_decode(model.handle, ffi.NULL, out, model.n_vocab) == lib.EDGELLAMA_ERR_INVALID_ARGUMENT
        assert lib.edgellama_decode(ffi.NULL, batch, out, model.n_vocab) == lib.EDGELLAMA_ERR_INVALID_ARGUMENT
        assert model.seq_length(0) == 0
        assert lib.edgellama_decode(model.handle, batch, out, model.n_vocab) == lib.EDGELLAMA_OK
        # a too-small text buffer reports the size it needs and writes nothing
        size = ffi.new("size_t*")
        buf = ffi.new("char[]", b"\x7f" * 4)
        status = lib.edgellama_model_meta_string(model.handle, b"general.architecture", buf, 3, size)
        assert status == lib.EDGELLAMA_ERR_BUFFER_TOO_SMALL and size[0] == len("llama") + 1 and buf[0] == b"\x7f"
        assert model.meta_string("general.architecture") == "llama"
        assert status_of(lambda: model.meta_string("no.such.key")) == "EDGELLAMA_ERR_INVALID_ARGUMENT"
        assert status_of(lambda: model.meta_string("llama.block_count")) == "EDGELLAMA_ERR_INVALID_ARGUMENT"
    # NULL handles answer "none" or an error, never a crash
    assert lib.edgellama_model_n_vocab(ffi.NULL) == -1 and lib.edgellama_token_bos(ffi.NULL) == -1
    lib.edgellama_model_free(ffi.NULL)
    lib.edgellama_sampler_free(ffi.NULL)
    assert lib.edgellama_model_load(ffi.NULL, ffi.NULL, ffi.NULL) == lib.EDGELLAMA_ERR_INVALID_ARGUMENT


def test_a_tokenizer_edgellama_does_not_run_still_decodes_token_ids(tmp_path):
    path = write_tiny_llama(tmp_path / "other-pre.gguf", overrides={"tokenizer.ggml.pre": "qwen2"})
    Llama(path, n_threads=1)  # the Python package loads it too
    with capi.Model(path, n_threads=1, n_ctx=16) as model:
        assert model.decode([1, 2, 3]).shape == (1, model.n_vocab)
        assert status_of(lambda: model.tokenize("hi")) == "EDGELLAMA_ERR_UNSUPPORTED_MODEL"
        with pytest.raises(capi.CapiError, match="qwen2"):
            model.detokenize([1])


def test_params_struct_size_guards_old_and_foreign_structs(tmp_path, ffi_lib):
    ffi, lib = ffi_lib
    path = str(tiny(tmp_path, "F32")).encode()
    params = ffi.new("edgellama_model_params*")
    lib.edgellama_model_default_params(params)
    out = ffi.new("edgellama_model**")
    params.struct_size = 0
    assert lib.edgellama_model_load(path, params, out) == lib.EDGELLAMA_ERR_INVALID_ARGUMENT and out[0] == ffi.NULL
    params.struct_size = ffi.sizeof("edgellama_model_params") + 8
    assert lib.edgellama_model_load(path, params, out) == lib.EDGELLAMA_ERR_INVALID_ARGUMENT
    # a struct that ends before n_ctx (an older app): the rest keep their defaults
    params.struct_size = ffi.offsetof("edgellama_model_params", "n_ctx")
    params.n_ctx = 3
    assert lib.edgellama_model_load(path, params, out) == lib.EDGELLAMA_OK
    assert lib.edgellama_model_n_ctx(out[0]) == 256  # the tiny file's context_length, not 3
    lib.edgellama_model_free(out[0])


# -- the C example -----------------------------------------------------------------------------

def test_c_example_generates_what_the_python_api_does(smollm2_path, tmp_path):
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    library = capi.library_path()
    exe = tmp_path / "simple"
    done = subprocess.run(["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", str(ROOT / "examples" / "simple.c"),
                           f"-I{HEADER.parent}", str(library), f"-Wl,-rpath,{library.parent}", "-o", str(exe)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    prompt = "The capital of France is"
    run = subprocess.run([str(exe), str(smollm2_path), prompt, "12"], capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr.decode()
    llm = Llama(smollm2_path, n_threads=None, n_ctx=512)
    expected = llm.generate(prompt, max_tokens=12, temperature=0.0)
    assert run.stdout.decode() == prompt + expected + "\n"
    bad = subprocess.run([str(exe), str(tmp_path / "missing.gguf"), "hi"], capture_output=True, text=True)
    assert bad.returncode == 1 and "EDGELLAMA_ERR_IO" in bad.stderr
