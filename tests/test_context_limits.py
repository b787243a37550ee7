"""Context-window and thread-count limits: a window the machine cannot hold fails before anything
is allocated, with the bytes needed and available; absurd sizes never reach the C++ size
arithmetic unchecked (n_ctx=2**62 used to segfault); bad argument types name the argument.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import sys
import warnings

import numpy as np
import pytest

from edgellama import Llama, resources
from edgellama.errors import EdgellamaError, InsufficientMemoryError, InvalidArgumentError
from edgellama.gguf_loader import load_gguf
from edgellama.resources import ContextLengthWarning, context_bytes
from tiny_models import write_tiny_llama

TRAINING_CONTEXT = 256  # the tiny model's llama.context_length


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("ctx") / "tiny.gguf", context_length=TRAINING_CONTEXT)


@pytest.fixture
def no_backend(monkeypatch):
    """Fails the test if the backend would be created (i.e. something would be allocated)."""
    def refuse(*args, **kwargs):
        raise AssertionError("the backend was created: the check must come before any allocation")
    monkeypatch.setattr("edgellama.model._create_backend", refuse)


@pytest.mark.parametrize("n_ctx", [2**62, 10**9, 2**63 - 1, 2**70])
def test_a_window_the_machine_cannot_hold_fails_before_allocation(tiny_path, no_backend, n_ctx):
    with pytest.raises(InsufficientMemoryError) as info:
        Llama(tiny_path, n_ctx=n_ctx, n_threads=1)
    err = info.value
    assert err.bytes_needed > err.bytes_available > 0
    message = str(err)
    assert f"{err.bytes_needed:,}" in message and f"{err.bytes_available:,}" in message
    assert f"n_ctx={n_ctx}" in message


def test_the_core_checks_its_own_size_arithmetic(tiny_path):
    """Without the Python check (a caller of the core, or a machine claiming endless memory), the
    core's checked arithmetic refuses the sizes instead of wrapping around and writing past a
    buffer: OverflowError from the core, InsufficientMemoryError through Llama."""
    from edgellama import _core

    model = load_gguf(tiny_path)
    for n_ctx in (2**62, 2**63 - 1):
        with pytest.raises(OverflowError, match="KV cache"):
            _core.LlamaModel(model.config.core_dict(), model.core_tensors(), n_ctx, 1)


@pytest.mark.filterwarnings("ignore::edgellama.resources.ContextLengthWarning")
def test_core_overflow_reaches_the_user_as_insufficient_memory(tiny_path, monkeypatch):
    monkeypatch.setattr(resources, "available_memory_bytes", lambda: 2**100)
    monkeypatch.setattr(resources, "MAX_N_CTX", 2**63)
    with pytest.raises(InsufficientMemoryError, match="n_ctx=4611686018427387904"):
        Llama(tiny_path, n_ctx=2**62, n_threads=1)


def test_largest_n_ctx_whatever_the_memory(tiny_path, no_backend, monkeypatch):
    monkeypatch.setattr(resources, "available_memory_bytes", lambda: 2**100)
    with pytest.raises(InvalidArgumentError, match=f"n_ctx: must be at most {resources.MAX_N_CTX}"):
        Llama(tiny_path, n_ctx=resources.MAX_N_CTX + 1, n_threads=1)


def test_estimate_matches_what_the_core_reserves(tiny_path):
    """context_bytes against the address space the core actually reserves (Linux VmSize: the KV
    cache and scratch are reserved at once, touched only as they fill): an independent check of
    the formula, which must follow the C++ code if that changes."""
    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs /proc/self/status")
    from edgellama import _core

    def vm_size() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))

    model = load_gguf(tiny_path)
    # ~600 MB of address space. Every large buffer must be over glibc's largest mmap threshold
    # (32 MiB), or it may come from heap space freed by an earlier test, which VmSize never sees.
    n_ctx = 2**21
    before = vm_size()
    core = _core.LlamaModel(model.config.core_dict(), model.core_tensors(), n_ctx, 1)
    reserved = vm_size() - before
    estimate = context_bytes(model.config, n_ctx, 1)
    del core
    assert abs(reserved - estimate) < 0.05 * estimate, (reserved, estimate)


def test_estimate_formula_by_hand():
    """The tiny model's window of 100 tokens on 2 threads, term by term (kv_cache.h, llama_model.h)."""
    config = type("C", (), dict(n_layer=2, n_head=4, n_head_kv=2, head_dim=16, n_embd=64, n_ff=128,
                               rope_dim=16))()
    kv = 2 * 2 * 2 * 112 * 16 * 2             # keys+values, layers, KV heads, 100 -> 112 positions, dims, fp16
    scores = 2 * 4 * 2 * 100 * 4              # threads, tile tokens, group, positions, float32
    batch = 64 * (64 + 64 + 2 * 64 + 2 * 32 + 2 * 128 + 16) * 4
    activations = 4 * 64 * 128 * 4
    assert context_bytes(config, 100, 2) == kv + scores + batch + activations


def test_window_that_fits_is_allocated(tiny_path):
    llm = Llama(tiny_path, n_ctx=TRAINING_CONTEXT, n_threads=1)
    assert llm.n_ctx == TRAINING_CONTEXT
    assert llm.eval([1, 2, 3]).shape == (300,)


def test_more_than_the_training_context_warns(tiny_path):
    with pytest.warns(ContextLengthWarning, match=f"training context of {TRAINING_CONTEXT}"):
        llm = Llama(tiny_path, n_ctx=TRAINING_CONTEXT + 1, n_threads=1)
    assert llm.n_ctx == TRAINING_CONTEXT + 1  # a warning, not a refusal
    assert issubclass(ContextLengthWarning, UserWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Llama(tiny_path, n_ctx=TRAINING_CONTEXT, n_threads=1)


@pytest.mark.parametrize("argument,value", [
    ("n_ctx", True), ("n_ctx", 64.0), ("n_ctx", "64"), ("n_ctx", 0), ("n_ctx", -5), ("n_ctx", [64]),
    ("n_threads", True), ("n_threads", 1.0), ("n_threads", "1"), ("n_threads", 0), ("n_threads", -1),
    ("n_threads", 1000), ("n_threads", (os.cpu_count() or 1) + 1),
])
def test_bad_arguments_name_the_argument(tiny_path, no_backend, argument, value):
    kwargs = {"n_ctx": 32, "n_threads": 1, argument: value}
    with pytest.raises(InvalidArgumentError) as info:
        Llama(tiny_path, **kwargs)
    assert info.value.argument == argument and str(info.value).startswith(f"{argument}:")
    if argument == "n_threads" and isinstance(value, int) and not isinstance(value, bool) and value > 0:
        assert f"[1, {os.cpu_count()}]" in str(info.value)  # the limit is in the message


def test_numpy_integers_and_the_cpu_count_are_accepted(tiny_path):
    llm = Llama(tiny_path, n_ctx=np.int64(32), n_threads=np.int32(os.cpu_count() or 1))
    assert llm.n_ctx == 32 and llm.n_threads == (os.cpu_count() or 1)


# --- the command line -----------------------------------------------------------------------------


def run_cli(*args):
    # Run outside the source tree: `-m` puts the working folder first on sys.path, and a clean
    # checkout's edgellama/ has no compiled core (the installed package has).
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run([sys.executable, "-m", "edgellama.cli", *args], capture_output=True, text=True,
                              timeout=120, cwd=cwd)


@pytest.mark.parametrize("ctx", [str(2**62), str(2**31 - 1)])
def test_cli_huge_context_is_a_one_line_error(tiny_path, ctx):
    """`edgellama run -c 4611686018427387904` used to die of SIGSEGV. Now: exit status 1 (or 2,
    argparse's, where the flag's own range check refuses the number first), no traceback, and one
    line saying what is wrong."""
    result = run_cli("run", "-m", str(tiny_path), "-c", ctx, "-p", "Hello")
    assert result.returncode in (1, 2), (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(error_lines) == 1, result.stderr
    assert "ctx" in error_lines[0] or "bytes" in error_lines[0], error_lines[0]
    if result.returncode == 1:  # the check in Llama answered: the whole message is that one line
        assert result.stderr.strip() == error_lines[0] and "needs" in error_lines[0]


def test_errors_are_in_the_family():
    assert issubclass(InsufficientMemoryError, EdgellamaError) and issubclass(InsufficientMemoryError, MemoryError)
    assert issubclass(InvalidArgumentError, EdgellamaError)
