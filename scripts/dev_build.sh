#!/usr/bin/env bash
# Incremental developer build: compiles the core's modules (edgellama._core_<level> for each CPU
# level and its test hooks edgellama._testing_<level>, edgellama._cpu_features) and edgellama._cuda
# where nvcc is found into build/dev, unstripped with symbols for perf, and copies them next to the
# Python sources, so `PYTHONPATH=. pytest` runs against the working tree without a reinstall. Extra
# arguments go to cmake (e.g. -DEDGELLAMA_CUDA=off).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build/dev -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" "$@" >/dev/null
cmake --build build/dev
# Install by rename, never by overwriting in place: a running process keeps its mapped copy.
install_module() { cp "$1" "edgellama/.$(basename "$1").tmp" && mv -f "edgellama/.$(basename "$1").tmp" "edgellama/$(basename "$1")"; }
# One core and one test module per CPU level plus the level detector; stale modules (levels no longer built, the
# former single _core module, which would shadow edgellama/_core.py) go first.
rm -f edgellama/_core.cpython*.so edgellama/_core_*.so edgellama/_testing_*.so edgellama/_cpu_features*.so
for module in build/dev/_core_*.so build/dev/_testing_*.so build/dev/_cpu_features*.so; do install_module "$module"; done
if compgen -G "build/dev/_cuda*.so" >/dev/null; then
  for module in build/dev/_cuda*.so; do install_module "$module"; done
else
  rm -f edgellama/_cuda*.so
fi
