"""Builds, drives and checks tests/arm/matmul_harness.cpp, the core's matmul as a plain program:
for the Arm builds under qemu (test_arm.py) and the x86 levels built with emulated instructions
(test_avx_vnni_emulated.py, test_avx512_emulated.py)."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from test_kernels import N, act_rows, weight_rows
from test_precise_activations import assert_float64_dots, random_code_rows

from edgellama import _testing

ROOT = Path(__file__).resolve().parents[1]


def harness_sources() -> list[str]:
    kernels = sorted((ROOT / "csrc" / "kernels").glob("*.cpp")) + sorted((ROOT / "quantize").glob("*.cpp"))
    named = ["tests/arm/matmul_harness.cpp", "csrc/core/thread_pool.cpp", "csrc/core/cpu_features.cpp",
             "csrc/model/prepared_matmul.cpp", "csrc/model/weight_repack.cpp", "csrc/model/llama_weights.cpp"]
    return [str(ROOT / n) for n in named] + [str(p) for p in kernels]


CORE_FLAGS = ["-std=gnu++17", "-O3", "-fno-math-errno", "-fopenmp-simd", "-ffp-contract=off"]


def compile_sources(compiler: str, flags: list[str], sources: list[str], out: Path, link: bool = True) -> Path:
    """The core's flags (CMakeLists.txt) plus `flags`, with contraction off everywhere as in the
    files whose bits matter (row groups, quantization); elsewhere it only moves roundings. `link`:
    a program, else one object file."""
    cmd = [compiler, *CORE_FLAGS, *flags, f"-I{ROOT}", *sources, *(["-lpthread"] if link else ["-c"]), "-o", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def build_harness(compiler: str, flags: list[str], out: Path, static: bool = True, sources: list[str] | None = None):
    """The harness program from `sources` (default: harness_sources(); object files are linked as
    they are), each compiled on its own core. `static` (Linux only) for a binary run under qemu,
    which then needs no sysroot."""
    sources = sources or harness_sources()

    def object_of(numbered):
        index, source = numbered
        if source.endswith(".o"):
            return source
        return str(compile_sources(compiler, flags, [source], out.with_name(f"{out.name}.{index}.o"), link=False))

    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        objects = list(pool.map(object_of, enumerate(sources)))
    link_static = ["-static"] if static and sys.platform.startswith("linux") else []
    return compile_sources(compiler, [*flags, *link_static], objects, out)


def run_harness(command: list[str], *args: str, stdin: bytes = b"") -> bytes:
    done = subprocess.run([*command, *args], input=stdin, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return done.stdout


def harness_matmul(command: list[str], qtype, rows: np.ndarray, x: np.ndarray, activations: str = "int8"):
    """(whether row groups ran, y[t][r]) from the harness run as `command`."""
    head = struct.pack("<iiiqqq", int(qtype), 1, int(activations == "precise"), rows.shape[0], x.shape[1], x.shape[0])
    out = run_harness(command, "matmul", stdin=head + rows.tobytes() + x.astype(np.float32).tobytes())
    ran_row_groups = struct.unpack("<i", out[:4])[0] == 1
    return ran_row_groups, np.frombuffer(out[4:], np.float32).reshape(x.shape[0], rows.shape[0])


def check_matmul(command: list[str], qtype, activations: str, n_tokens: int, seed: int, expect_row_groups: bool):
    """The harness's matmul against float64 dots and, where its row groups ran, against this
    machine's own kernels' bits (exact integer block sums, one float sequence on every level)."""
    rng = np.random.default_rng(seed + int(qtype))
    rows = np.stack(weight_rows(rng, qtype, N)[:5] * 4)[:19]  # 19 rows: a partial group of 16
    x = np.stack(act_rows(rng, N) * 2)[:n_tokens]
    ran_row_groups, got = harness_matmul(command, qtype, rows, x, activations)
    assert ran_row_groups == expect_row_groups
    assert_float64_dots(got, _testing, qtype, rows, x, activations)
    if ran_row_groups:
        here = _testing.PreparedMatmul(int(qtype), rows, N, True, 1, activations=activations).run(x)
        np.testing.assert_array_equal(got, here)


def check_every_code(command: list[str], qtype, seed: int):
    """Random code bytes (the extremes included), int8 and precise, against float64 dots."""
    rng = np.random.default_rng(seed + int(qtype))
    rows, x = random_code_rows(rng, qtype, N, 19), np.stack(act_rows(rng, N))[:5]
    for activations in ("int8", "precise"):
        _, got = harness_matmul(command, qtype, rows, x, activations)
        assert_float64_dots(got, _testing, qtype, rows, x, activations)
