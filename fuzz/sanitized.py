"""The core built with AddressSanitizer + UndefinedBehaviorSanitizer, as an importable package.

    python -m fuzz.sanitized            build (or reuse) it; print the package folder and the
                                        environment that runs Python against it

CMakeLists.txt's EDGELLAMA_SANITIZE=address,undefined option builds one CPU level (the baseline)
without CUDA into build/sanitize/ (incremental: a second build with unchanged sources takes
seconds). `package()` then assembles a copy of the edgellama sources with the sanitized modules in
place of the normal ones; a process whose PYTHONPATH starts with it imports the sanitized core.
`environment()` gives that process what it needs: the ASan runtime preloaded (Python itself is
not instrumented) with libstdc++ (ASan's C++ exception interceptor must find it at start-up),
leak detection off (the interpreter keeps its memory until exit by design) and UBSan halting at
its first report.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Dict, Optional

ROOT = Path(__file__).resolve().parents[1]
BUILD_DIR = ROOT / "build" / "sanitize"
SANITIZERS = "address,undefined"
# Any of these in a process's output is a sanitizer report.
REPORT_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer", "AddressSanitizer: CHECK",
                  "UndefinedBehaviorSanitizer")


class Unavailable(Exception):
    """This toolchain cannot build or run the sanitized core (the message says what is missing)."""


def runtime_libraries() -> str:
    """LD_PRELOAD value: the compiler's libasan and libstdc++ (Unavailable without libasan)."""
    libs = []
    for name in ("libasan.so", "libstdc++.so"):
        found = subprocess.run(["g++", "-print-file-name=" + name], capture_output=True, text=True).stdout.strip()
        if not found or not os.path.isabs(found) or not os.path.exists(found):
            raise Unavailable(f"the compiler has no {name} (g++ -print-file-name={name})")
        libs.append(os.path.realpath(found))
    return " ".join(libs)


def _pybind11_dir() -> str:
    try:
        import pybind11
    except ImportError:
        raise Unavailable("pybind11 is not installed (needed to build the core)") from None
    return pybind11.get_cmake_dir()


def build(jobs: int = 2, log=print) -> Path:
    """Configures and builds the sanitized core; returns the build folder."""
    if shutil.which("cmake") is None or shutil.which("g++") is None:
        raise Unavailable("cmake and g++ are needed to build the sanitized core")
    runtime_libraries()
    if not (BUILD_DIR / "CMakeCache.txt").is_file():
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        configure = ["cmake", "-S", str(ROOT), "-B", str(BUILD_DIR), *generator, f"-DEDGELLAMA_SANITIZE={SANITIZERS}",
                     "-DCMAKE_BUILD_TYPE=Debug", "-DCMAKE_CXX_COMPILER=g++", f"-Dpybind11_DIR={_pybind11_dir()}",
                     f"-DPython_EXECUTABLE={sys.executable}"]
        done = subprocess.run(configure, capture_output=True, text=True)
        if done.returncode != 0:
            shutil.rmtree(BUILD_DIR, ignore_errors=True)
            raise RuntimeError(f"configuring the sanitized build failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    done = subprocess.run(["cmake", "--build", str(BUILD_DIR), "-j", str(jobs)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"building the sanitized core failed:\n{done.stdout[-4000:]}{done.stderr[-3000:]}")
    return BUILD_DIR


def level(build_dir: Path = BUILD_DIR) -> str:
    """The one CPU level the sanitized build has (x86_64, or generic elsewhere)."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    cores = [p.name[len("_core_"):-len(suffix)] for p in build_dir.glob(f"_core_*{suffix}")]
    if len(cores) != 1:
        raise RuntimeError(f"expected one core module in {build_dir}, found {cores}")
    return cores[0]


def package(target: Path, build_dir: Path = BUILD_DIR) -> Path:
    """target/edgellama: the package sources with the sanitized modules; returns target."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    destination = target / "edgellama"
    if destination.exists():
        shutil.rmtree(destination)
    shutil.copytree(ROOT / "edgellama", destination,
                    ignore=shutil.ignore_patterns("*.so", "__pycache__", "*.pyc"))
    # The test hooks' module too: the tests run under the sanitizers call it (edgellama/_testing.py).
    one_level = level(build_dir)
    for module in (f"_core_{one_level}{suffix}", f"_testing_{one_level}{suffix}", f"_cpu_features{suffix}"):
        shutil.copy2(build_dir / module, destination / module)
    return target


def environment(package_root: Path, base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The environment of a Python process that imports the sanitized package."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join([str(package_root), *filter(None, [env.get("PYTHONPATH")])])
    env["LD_PRELOAD"] = runtime_libraries()
    env["ASAN_OPTIONS"] = "detect_leaks=0:halt_on_error=1:abort_on_error=0"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    env["EDGELLAMA_CPU"] = level()
    return env


def has_report(output: str) -> bool:
    return any(marker in output for marker in REPORT_MARKERS)


def main() -> int:
    try:
        build_dir = build()
    except Unavailable as exc:
        print(f"sanitized build unavailable: {exc}", file=sys.stderr)
        return 1
    root = package(build_dir / "package")
    env = environment(root, {})
    print(f"sanitized package: {root / 'edgellama'}")
    for key in ("PYTHONPATH", "LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "EDGELLAMA_CPU"):
        print(f"export {key}='{env[key]}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
