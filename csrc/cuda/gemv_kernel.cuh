// The matrix-vector kernels of decode (one token) and prefill (a tile of up to kGemmTile tokens):
// each weight is decoded once in registers and used for every token of the tile, so the weights
// stream from memory once per tile. One launch may cover up to three matrices of one type and
// width that read the same input (Q/K/V): their rows are numbered through the matrices in order.
//   * gemv_int8_kernel — quantized weights: a block's warps take a few rows per group of warps
//     (gemv_rows.cuh: GemvShape), its threads share the pieces (int8_dot.cuh: int8_lane_partial),
//     codes dotted in integers with the int8 activations as the CPU engine does (precise
//     activations: a token's two rows are two of the tile's, their sums added as they are stored). Its SwiGLU form
//     takes the gate and up matrices, computes the same rows of both in one group and stores
//     silu(gate) * up. Its RoPE form (one token, Q/K/V) also rotates and caches each head its
//     blocks complete.
//   * gemv_float_kernel — F32/F16/BF16 weights: a warp a row, lanes striding over its pieces,
//     decoded to float and multiplied with float32 activations read through the read-only cache.
#pragma once

#include "csrc/cuda/common.cuh"
#include "csrc/cuda/formats.cuh"
#include "csrc/cuda/gemv_rows.cuh"
#include "csrc/cuda/int8_dot.cuh"
#include "csrc/cuda/ops.h"
#include "csrc/cuda/row_segments.cuh"
#include "csrc/cuda/warp.cuh"

namespace edgellama::cuda {

// The first row of this block of a launch of Shape's blocks.
template <class Shape>
__device__ __forceinline__ int64_t block_first_row() {
    return static_cast<int64_t>(blockIdx.x) * Shape::kRowsPerBlock;
}

// The weights never depend on the kernel before (only the activations do), so a GEMV block may
// fetch its rows before waiting for that kernel: under programmatic dependent launch (common.cuh)
// the first blocks of a launch become resident while the previous kernel still runs, and their
// rows then stream into the L2 during it instead of after it. A hint: no value changes.
constexpr int kL2Line = 128;

__device__ __forceinline__ void prefetch_to_l2(const uint8_t* bytes, size_t n) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const uintptr_t end = reinterpret_cast<uintptr_t>(bytes) + n;
    const uintptr_t first_line = reinterpret_cast<uintptr_t>(bytes) & ~uintptr_t(kL2Line - 1);  // in the allocation
    for (uintptr_t a = first_line + threadIdx.x * kL2Line; a < end; a += blockDim.x * kL2Line) {
        asm volatile("prefetch.global.L2 [%0];" ::"l"(a));
    }
#endif
}

// The rows block_first .. block_first + Shape::kRowsPerBlock - 1 of a launch (those below the
// total) into the L2; `also`, when given, the same rows of a second matrix (SwiGLU's up rows).
template <class Shape>
__device__ __forceinline__ void prefetch_block_rows(const RowSegments& seg, size_t row_bytes, int64_t block_first,
                                                    int64_t total_rows, const uint8_t* also = nullptr) {
    for (int i = 0; i < Shape::kRowsPerBlock && block_first + i < total_rows; ++i) {
        const SegmentRow r = locate_row(seg, block_first + i);
        prefetch_to_l2(r.w + static_cast<size_t>(r.row) * row_bytes, row_bytes);
        if (also != nullptr) prefetch_to_l2(also + static_cast<size_t>(r.row) * row_bytes, row_bytes);
    }
}

// kPrefetch: the form that prefetches (a separate instantiation, one-token launches only, so that
// the kernels without it keep their code and registers).
template <class Q, int NT, class Shape, bool kPrefetch = false>
__global__ void __launch_bounds__(kGemvWarps * kWarp)
gemv_int8_kernel(RowSegments seg, size_t row_bytes, int64_t cols, const uint8_t* __restrict__ act,
                 size_t act_row_bytes, int n_tok, bool accumulate, int parts) {
    if constexpr (kPrefetch) prefetch_block_rows<Shape>(seg, row_bytes, block_first_row<Shape>(), seg.total_rows());
    wait_for_prior_kernels();
    __shared__ GemvShared<Shape::kRows, NT> shared;
    gemv_int8_rows<Q, NT, Shape>(DeviceBlock<GemvShared<Shape::kRows, NT>>{shared}, seg, row_bytes, cols, act,
                                 act_row_bytes, n_tok, accumulate, block_first_row<Shape>(), parts);
}

template <class Q, int NT, class Shape, bool kPrefetch = false>
__global__ void __launch_bounds__(kGemvWarps * kWarp)
gemv_int8_swiglu_kernel(RowSegments seg, size_t row_bytes, int64_t cols, const uint8_t* __restrict__ act,
                        size_t act_row_bytes, int n_tok, ActRowsOut act_out, unsigned* chunk_counts, int parts) {
    if constexpr (kPrefetch) {
        prefetch_block_rows<Shape>(seg, row_bytes, block_first_row<Shape>(), seg.rows[0], seg.w[1]);
    }
    wait_for_prior_kernels();
    __shared__ GemvShared<2 * Shape::kRows, NT> shared;
    gemv_int8_swiglu_rows<Q, NT, Shape>(DeviceBlock<GemvShared<2 * Shape::kRows, NT>>{shared}, seg, row_bytes, cols,
                                        act, act_row_bytes, n_tok, block_first_row<Shape>(), act_out, chunk_counts,
                                        parts);
}

template <class Q, class Shape, bool kPrefetch = false>
__global__ void __launch_bounds__(kGemvWarps * kWarp)
gemv_int8_rope_kernel(RowSegments seg, size_t row_bytes, int64_t cols, const uint8_t* __restrict__ act,
                      size_t act_row_bytes, RopeStore rope, unsigned* head_counts) {
    if constexpr (kPrefetch) prefetch_block_rows<Shape>(seg, row_bytes, block_first_row<Shape>(), seg.total_rows());
    wait_for_prior_kernels();
    __shared__ GemvShared<Shape::kRows, 1> shared;
    gemv_int8_rope_rows<Q, Shape>(DeviceBlock<GemvShared<Shape::kRows, 1>>{shared}, seg, row_bytes, cols, act,
                                  act_row_bytes, block_first_row<Shape>(), rope, head_counts);
}

// A warp's row of the float GEMV, or -1 past the end (the whole warp leaves together).
__device__ __forceinline__ int64_t warp_row(int64_t total_rows) {
    const int64_t row = static_cast<int64_t>(blockIdx.x) * kGemvWarps + threadIdx.x / kWarp;
    return row < total_rows ? row : -1;
}

template <class Fmt, int NT>
__global__ void __launch_bounds__(kGemvWarps * kWarp)
gemv_float_kernel(RowSegments seg, size_t row_bytes, int64_t n_pieces, const float* __restrict__ x, int64_t ldx,
                  int n_tok, bool accumulate) {
    wait_for_prior_kernels();
    const int64_t row = warp_row(seg.total_rows());
    if (row < 0) return;
    gemv_float_row<Fmt, NT>(DeviceWarp{}, seg, row_bytes, n_pieces, x, ldx, n_tok, accumulate, row);
}

// gemm_mma.cu — the product on int8 tensor cores when it applies (a quantized type, at least
// kMmaMinTokens tokens, use_mma, an sm_80+ device); false, with nothing enqueued, otherwise.
bool int8_mma_supported();
bool mma_applies(int32_t type, const MatmulInput& in);
bool matmul_mma(int32_t type, const RowSegments& seg, size_t row_bytes, const MatmulInput& in, bool accumulate,
                cudaStream_t stream);

}  // namespace edgellama::cuda
