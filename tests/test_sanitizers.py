"""The core and loader tests, and the fuzz seeds, under AddressSanitizer + UndefinedBehaviorSanitizer.

CMakeLists.txt's EDGELLAMA_SANITIZE=address,undefined builds one CPU level of the core with both
sanitizers (fuzz/sanitized.py drives it, into build/sanitize/, incremental after the first build).
A copy of the package with that core, first on PYTHONPATH, is what a child process imports; the
ASan runtime is preloaded (Python is not instrumented), leaks are not checked (the interpreter
keeps memory until exit by design), and UBSan aborts at its first report. Any sanitizer report,
or any test failure, fails these tests. Without g++'s libasan, cmake or pybind11 they skip.

A canary checks the set-up itself: a heap overflow committed in the same kind of process must be
reported, so a silently disabled sanitizer cannot pass.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # appended: `edgellama` must stay the installed package

from fuzz import sanitized, seeds  # noqa: E402
from fuzz.targets import TARGETS  # noqa: E402

pytestmark = pytest.mark.skipif(not (ROOT / "csrc").is_dir(), reason="needs the source tree (csrc/) to build")

# The tests that exercise the C++ core (kernels, forward pass, tokenizers, quantizers, sampling
# through generation) and the GGUF loader; ~1 minute under the sanitizers on 2 cores.
CORE_TESTS = ["test_kernels.py", "test_forward.py", "test_gguf_loading.py", "test_tokenizer.py",
              "test_tokenizer_spm.py", "test_generation.py", "test_quantize_codecs.py", "test_determinism.py",
              "test_gguf_reader.py"]


@pytest.fixture(scope="module")
def sanitized_env(tmp_path_factory):
    try:
        build_dir = sanitized.build()
    except sanitized.Unavailable as exc:
        pytest.skip(f"no sanitized build here: {exc}")
    return sanitized.environment(sanitized.package(tmp_path_factory.mktemp("sanitized"), build_dir))


def run_sanitized(env, args, cwd, timeout=600):
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    return done.returncode, done.stdout + done.stderr


def test_the_sanitized_core_is_imported_and_reports_errors(sanitized_env, tmp_path):
    probe = ("import ctypes, edgellama._core as c; print(c._module.__file__, c.LEVEL, flush=True);"
             "libc = ctypes.CDLL(None); libc.malloc.restype = ctypes.c_void_p;"
             "src = libc.malloc(8); dst = ctypes.create_string_buffer(64); ctypes.memmove(dst, src, 32)")
    rc, output = run_sanitized(sanitized_env, ["-c", probe], tmp_path)
    package = sanitized_env["PYTHONPATH"].split(":")[0]
    assert output.startswith(package) and f" {sanitized_env['EDGELLAMA_CPU']}\n" in output, output[-2000:]
    assert rc != 0 and "heap-buffer-overflow" in output and sanitized.has_report(output), output[-2000:]


def test_core_and_loader_tests_pass_under_sanitizers(sanitized_env, tmp_path):
    tests = [str(ROOT / "tests" / name) for name in CORE_TESTS]
    rc, output = run_sanitized(sanitized_env, ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *tests],
                               tmp_path)
    assert not sanitized.has_report(output), output[-8000:]
    assert rc == 0, output[-8000:]


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_seeds_run_clean_under_sanitizers(sanitized_env, tmp_path, target):
    files = seeds.write_seeds(target, tmp_path / "seeds")
    worker = ROOT / "fuzz" / "worker.py"
    env = dict(sanitized_env, EDGELLAMA_FUZZ_SCRATCH=str(tmp_path / "scratch"))  # inputs written there
    rc, output = run_sanitized(env, [str(worker), target, "replay", "--timeout", "60", *map(str, files)], tmp_path)
    assert not sanitized.has_report(output), output[-8000:]
    assert rc == 0, output[-8000:]
