// The matrix-vector kernels of decode (one token) and prefill (a tile of up to kGemmTile tokens):
// each weight is decoded once in registers and used for every token of the tile, so the weights
// stream from memory once per tile. One launch may cover up to three matrices of one type and
// width that read the same input (Q/K/V): their rows are numbered through the matrices in order.
//   * gemv_int8_kernel — quantized weights: a warp takes kRowsPerWarp rows, its lanes share the
//     pieces (int8_dot.cuh: int8_lane_partial), codes dotted in integers with the int8
//     activations as the CPU engine does. Its SwiGLU form takes the gate and up matrices, computes
//     the same rows of both in one warp and stores silu(gate) * up.
//   * gemv_float_kernel — F32/F16/BF16 weights: a warp a row, lanes striding over its pieces,
//     decoded to float and multiplied with float32 activations read through the read-only cache.
#pragma once

#include "csrc/cuda/common.cuh"
#include "csrc/cuda/formats.cuh"
#include "csrc/cuda/int8_dot.cuh"
#include "csrc/cuda/ops.h"
#include "csrc/cuda/row_segments.cuh"

namespace edgellama::cuda {

constexpr int kGemvWarps = 4;  // warps per thread block
// The warp's row of the launch, or -1 past the end (the whole warp leaves together).
__device__ __forceinline__ int64_t warp_row(int64_t total_rows) {
    const int64_t row = static_cast<int64_t>(blockIdx.x) * kGemvWarps + threadIdx.x / kWarp;
    return row < total_rows ? row : -1;
}

// Warp-sums the tile's partial sums; lane 0 stores (or adds) them at out + t * ld.
template <int NT>
__device__ __forceinline__ void store_row_sums(float (&acc)[NT], int n_tok, float* out, int64_t ld, bool accumulate) {
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[t] = warp_sum(acc[t]);
    if (threadIdx.x % kWarp != 0) return;
#pragma unroll
    for (int t = 0; t < NT; ++t) {
        if (t < n_tok) out[t * ld] = accumulate ? out[t * ld] + acc[t] : acc[t];
    }
}

// Activation rows of the tile (the last one repeated past n_tok, so loads stay in bounds).
template <class ActRow, int NT>
__device__ __forceinline__ void tile_rows(const uint8_t* act, size_t act_row_bytes, int64_t cols, int n_tok,
                                          ActRow (&rows)[NT]) {
#pragma unroll
    for (int t = 0; t < NT; ++t) {
        rows[t] = ActRow(act + static_cast<size_t>(t < n_tok ? t : n_tok - 1) * act_row_bytes, cols);
    }
}

constexpr int kRowsPerWarp = 2;  // rows sharing each activation load

template <class Q, int NT>
__global__ void __launch_bounds__(kGemvWarps * kWarp)
gemv_int8_kernel(RowSegments seg, size_t row_bytes, int64_t cols, const uint8_t* __restrict__ act,
                 size_t act_row_bytes, int n_tok, bool accumulate) {
    const int64_t total = seg.total_rows();
    const int64_t first = (static_cast<int64_t>(blockIdx.x) * kGemvWarps + threadIdx.x / kWarp) * kRowsPerWarp;
    if (first >= total) return;  // the whole warp leaves together
    SegmentRow where[kRowsPerWarp];
    const uint8_t* rows[kRowsPerWarp];
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {  // a row past the end re-reads the last one, unstored
        where[i] = locate_row(seg, first + i < total ? first + i : total - 1);
        rows[i] = where[i].w + static_cast<size_t>(where[i].row) * row_bytes;
    }
    typename Q::ActRow at[NT] = {};
    tile_rows<typename Q::ActRow, NT>(act, act_row_bytes, cols, n_tok, at);
    float acc[kRowsPerWarp][NT] = {};
    int8_lane_partial<Q, NT, kRowsPerWarp>(rows, cols / Q::kPiece, threadIdx.x % kWarp, at, acc);
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
        if (first + i < total) store_row_sums<NT>(acc[i], n_tok, where[i].y + where[i].row, where[i].ld, accumulate);
    }
}

// seg: {gate, up} with the same rows; y[0] row t = silu(gate · x_t) * (up · x_t), as swiglu().
template <class Q, int NT>
__global__ void __launch_bounds__(kGemvWarps * kWarp)
gemv_int8_swiglu_kernel(RowSegments seg, size_t row_bytes, int64_t cols, const uint8_t* __restrict__ act,
                        size_t act_row_bytes, int n_tok) {
    const int64_t n_rows = seg.rows[0];
    const int64_t first = (static_cast<int64_t>(blockIdx.x) * kGemvWarps + threadIdx.x / kWarp) * kRowsPerWarp;
    if (first >= n_rows) return;
    const uint8_t* rows[2 * kRowsPerWarp];  // gate rows, then the same up rows
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
        const int64_t r = first + i < n_rows ? first + i : n_rows - 1;
        rows[i] = seg.w[0] + static_cast<size_t>(r) * row_bytes;
        rows[kRowsPerWarp + i] = seg.w[1] + static_cast<size_t>(r) * row_bytes;
    }
    typename Q::ActRow at[NT] = {};
    tile_rows<typename Q::ActRow, NT>(act, act_row_bytes, cols, n_tok, at);
    float acc[2 * kRowsPerWarp][NT] = {};
    int8_lane_partial<Q, NT, 2 * kRowsPerWarp>(rows, cols / Q::kPiece, threadIdx.x % kWarp, at, acc);
#pragma unroll
    for (int i = 0; i < 2 * kRowsPerWarp; ++i) {
#pragma unroll
        for (int t = 0; t < NT; ++t) acc[i][t] = warp_sum(acc[i][t]);
    }
    if (threadIdx.x % kWarp != 0) return;
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
#pragma unroll
        for (int t = 0; t < NT; ++t) {
            if (t < n_tok && first + i < n_rows) seg.y[0][t * n_rows + first + i] = silu_times(acc[i][t], acc[kRowsPerWarp + i][t]);
        }
    }
}

template <class Fmt, int NT>
__global__ void __launch_bounds__(kGemvWarps * kWarp)
gemv_float_kernel(RowSegments seg, size_t row_bytes, int64_t n_pieces, const float* __restrict__ x, int64_t ldx,
                  int n_tok, bool accumulate) {
    const int64_t row = warp_row(seg.total_rows());
    if (row < 0) return;
    const SegmentRow r = locate_row(seg, row);
    const uint8_t* wr = r.w + static_cast<size_t>(r.row) * row_bytes;
    const float* xt[NT];
#pragma unroll
    for (int t = 0; t < NT; ++t) xt[t] = x + static_cast<int64_t>(t < n_tok ? t : n_tok - 1) * ldx;
    float acc[NT];
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
    for (int64_t p = threadIdx.x % kWarp; p < n_pieces; p += kWarp) {
        const int64_t base = p * Fmt::kPiece;
        Fmt::visit(wr, p, [&](int i, float wv) {
#pragma unroll
            for (int t = 0; t < NT; ++t) acc[t] = fmaf(wv, __ldg(xt[t] + base + i), acc[t]);
        });
    }
    store_row_sums<NT>(acc, n_tok, r.y + r.row, r.ld, accumulate);
}

// gemm_mma.cu — the product on int8 tensor cores when it applies (a quantized type, at least
// kMmaMinTokens tokens, use_mma, an sm_80+ device); false, with nothing enqueued, otherwise.
bool int8_mma_supported();
bool mma_applies(int32_t type, const MatmulInput& in);
bool matmul_mma(int32_t type, const RowSegments& seg, size_t row_bytes, const MatmulInput& in, bool accumulate,
                cudaStream_t stream);

}  // namespace edgellama::cuda
