"""What the emulated x86 levels' tests share (test_avx_vnni_emulated.py, test_avx512_emulated.py):
a level's kernels built into the matmul harness on an AVX2 machine, with an exact AVX2 stand-in
for the instructions it lacks (tests/x86/); the checks are matmul_harness's."""

from __future__ import annotations

import platform
import shutil

import pytest

from matmul_harness import ROOT

from edgellama import _cpu_features

COMPILER = shutil.which("g++")
AVX2_FLAGS = ["-march=x86-64-v3", "-mtune=generic"]

SKIPS = [
    pytest.mark.skipif(not (ROOT / "csrc").is_dir(), reason="needs the source tree (csrc/) to build the harness"),
    pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64")
                       or "x86_64_v3" not in _cpu_features.runnable_levels(), reason="needs an x86-64 CPU with AVX2"),
    pytest.mark.skipif(COMPILER is None, reason="needs g++ to build the harness"),
]
