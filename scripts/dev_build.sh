#!/usr/bin/env bash
# Incremental developer build: compiles edgellama._core into build/dev and copies it next to the
# Python sources (unstripped, with symbols for perf), so `PYTHONPATH=. pytest` runs against the working tree without a reinstall.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build/dev -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" >/dev/null
cmake --build build/dev
cp build/dev/_core*.so edgellama/
