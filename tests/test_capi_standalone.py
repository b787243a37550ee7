"""libedgellama built the way a native app's build gets it: `cmake -S . -B build`, without Python,
then installed; a C program compiled against the install through pkg-config and through CMake's
find_package, and the installed library driven through cffi gives the pybind11 path's logits.

One CPU level (the baseline, EDGELLAMA_LEVELS) keeps the build short; the wheel's library, with
every level, is what tests/test_capi.py drives.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgellama import _core, capi
from tiny_models import write_tiny_llama

ROOT = Path(__file__).resolve().parent.parent
BASELINE = {"x86_64": "x86_64"}.get(os.uname().machine, "generic")

pytestmark = pytest.mark.skipif(not all(shutil.which(t) for t in ("cmake", "cc", "c++")),
                                reason="cmake and a C/C++ compiler are needed to build libedgellama standalone")


def run(args, **kwargs):
    done = subprocess.run(args, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, args))}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def prefix(tmp_path_factory) -> Path:
    """The install prefix of a standalone build (configure, build, install)."""
    work = tmp_path_factory.mktemp("standalone")
    build, prefix = work / "build", work / "prefix"
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    # Python_EXECUTABLE is pointed at nothing: the build must not need Python at all.
    run(["cmake", "-S", str(ROOT), "-B", str(build), *generator, "-DEDGELLAMA_PYTHON=off",
         f"-DEDGELLAMA_LEVELS={BASELINE}", f"-DCMAKE_INSTALL_PREFIX={prefix}", "-DCMAKE_INSTALL_LIBDIR=lib"])
    run(["cmake", "--build", str(build), "-j", str(os.cpu_count() or 2)])
    run(["cmake", "--install", str(build)])
    return prefix


def test_install_tree(prefix):
    lib = prefix / "lib"
    assert (prefix / "include" / "edgellama.h").read_bytes() == (ROOT / "include" / "edgellama.h").read_bytes()
    assert (lib / "libedgellama.so").exists() and (lib / "libedgellama.so.1").exists()
    assert (lib / f"libedgellama-{BASELINE}.so").is_file()
    assert (lib / "pkgconfig" / "edgellama.pc").is_file()
    assert (lib / "cmake" / "edgellama" / "edgellamaConfig.cmake").is_file()
    # The front exports the ABI and nothing of the core; a level module exports one table.
    front = run(["nm", "-D", "--defined-only", str(lib / "libedgellama.so")]).stdout
    exported = {line.split()[-1].split("@")[0] for line in front.splitlines() if line.split()[-2:-1] != ["A"]}
    assert {"edgellama_model_load", "edgellama_decode", "edgellama_tokenize"} <= exported
    assert all(name.startswith("edgellama_") for name in exported), sorted(exported)
    module = run(["nm", "-D", "--defined-only", str(lib / f"libedgellama-{BASELINE}.so")]).stdout
    assert {line.split()[-1].split("@")[0] for line in module.splitlines()
            if line.split()[-2:-1] != ["A"]} == {"edgellama_level_api_get"}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("model") / "tiny.gguf", weight_type="Q4_0")


def check_example_runs(exe: Path, lib: Path, model: Path) -> None:
    env = dict(os.environ, LD_LIBRARY_PATH=str(lib))
    done = run([str(exe), str(model), "hello", "5"], env=env)
    assert done.stdout.startswith("hello")


def test_example_builds_with_pkg_config(prefix, tiny_model, tmp_path):
    if shutil.which("pkg-config") is None:
        pytest.skip("no pkg-config")
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib" / "pkgconfig"))
    flags = run(["pkg-config", "--cflags", "--libs", "edgellama"], env=env).stdout.split()
    exe = tmp_path / "simple"
    run(["cc", "-std=c99", "-Wall", "-Werror", str(ROOT / "examples" / "simple.c"), *flags, "-o", str(exe)])
    check_example_runs(exe, prefix / "lib", tiny_model)


def test_example_builds_with_find_package(prefix, tiny_model, tmp_path):
    project = tmp_path / "app"
    project.mkdir()
    (project / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.18)\nproject(app C)\nfind_package(edgellama 0.1 REQUIRED)\n"
        f"add_executable(simple {(ROOT / 'examples' / 'simple.c').as_posix()})\n"
        "target_link_libraries(simple PRIVATE edgellama::edgellama)\n")
    run(["cmake", "-S", str(project), "-B", str(project / "build"), f"-DCMAKE_PREFIX_PATH={prefix}"])
    run(["cmake", "--build", str(project / "build")])
    check_example_runs(project / "build" / "simple", prefix / "lib", tiny_model)


def test_installed_library_gives_the_python_path_s_logits(prefix, tiny_model):
    if BASELINE not in _core.runnable_levels():
        pytest.skip(f"this installation of the package has no {BASELINE} core to compare with")
    from edgellama.gguf_loader import load_gguf

    ids = np.array([5, 3, 8, 1, 2], dtype=np.int32)
    gguf = load_gguf(tiny_model)
    engine = _core.load_level(BASELINE).LlamaModel(gguf.config.core_dict(), gguf.core_tensors(), 32, 1,
                                                    activations="precise")
    n = len(ids)
    expected = engine.forward_batch(ids, np.zeros(n, np.int32), np.arange(n, dtype=np.int64), np.ones(n, np.uint8))
    installed = str(prefix / "lib" / "libedgellama.so")
    assert capi.cpu_levels(installed) == [BASELINE]
    with capi.Model(tiny_model, library=installed, n_threads=1, n_ctx=32) as model:
        assert model.cpu_level == BASELINE
        np.testing.assert_array_equal(model.decode(ids.tolist(), logits=[True] * n), expected)
