"""The CUDA engine's cache operations (CudaLlamaModel.read_cache / write_cache / shift), run on the
host backend (the engine's own code with host memory; tests/test_cuda_engine.py explains it) so that CI
checks them without a GPU: a saved state moves between the CPU and CUDA engines, and a context
shift leaves the cache the CPU engine's shift leaves."""
from __future__ import annotations

import numpy as np
import pytest

from edgellama import Llama
from edgellama.engine.backends import SingleSequenceBackend
from cuda_support import cuda_engine, needs_module
from tiny_models import write_tiny_llama

# Short: the host backend executes the GPU code on host threads, slowly.
IDS = [int(t) for t in np.random.default_rng(8).integers(3, 300, 18)]


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("cache_ops") / "m.gguf", weight_type="Q8_0", rope_freqs=True)


@needs_module
def test_state_moves_between_the_cpu_and_cuda_engines(path):
    cpu = Llama(path, n_ctx=64, activations="int8")  # the CUDA engine's rounding, so the caches compare
    cpu.eval(IDS)
    keys, values = cpu._core.seq_read(0)
    gpu = cuda_engine(path, 64, -1)
    gpu.write_cache(keys, values)
    assert gpu.n_past == len(IDS)
    got_keys, got_values = gpu.read_cache()
    np.testing.assert_array_equal(got_keys, keys)
    np.testing.assert_array_equal(got_values, values)
    # The next logits from the restored cache equal those from the engine's own prefill of IDS
    # within float rounding (the CPU's and GPU's keys differ only by summation order).
    own = cuda_engine(path, 64, -1)
    own.forward(np.array(IDS, np.int32), False)
    np.testing.assert_allclose(gpu.forward(np.array([9], np.int32), False),
                               own.forward(np.array([9], np.int32), False), atol=2e-3)
    with pytest.raises(ValueError, match="shape"):
        gpu.write_cache(keys[:, :1], values[:, :1])


@needs_module
def test_shift_matches_the_cpu_engines_shift(path):
    """The same cache in, the same shift: the CPU engine's KVCache::shift and the CUDA engine's
    host-side shift leave the same bits (one rotation in float, one rounding)."""
    cpu = Llama(path, n_ctx=64)
    cpu.eval(IDS)
    keys, values = cpu._core.seq_read(0)
    gpu = cuda_engine(path, 64, -1)
    gpu.write_cache(keys, values)
    cpu._core.seq_shift(0, 3, 7)
    gpu.shift(3, 7)
    assert gpu.n_past == cpu.n_past == len(IDS) - 7
    for a, b in zip(gpu.read_cache(), cpu._core.seq_read(0)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(IndexError, match="shift"):
        gpu.shift(8, 10)


@needs_module
def test_the_single_sequence_adapter_offers_the_cache_operations(path):
    backend = SingleSequenceBackend(cuda_engine(path, 64, -1))
    backend.forward(np.array(IDS, np.int32), False)
    keys, values = backend.seq_read(0)
    backend.seq_shift(0, 1, 6)
    assert backend.seq_n_past(0) == len(IDS) - 6
    backend.seq_write(0, keys, values)
    assert backend.seq_n_past(0) == len(IDS)
    with pytest.raises(ValueError, match="sequence 1"):
        backend.seq_read(1)
