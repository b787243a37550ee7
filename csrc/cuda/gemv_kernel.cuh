// The matrix-vector kernels of decode (one token) and prefill (a tile of up to kGemmTile tokens):
// one warp per weight row, lanes striding over the row's pieces; each piece of weights is decoded
// once in registers and used for every token of the tile, so the weights stream from memory
// once per tile. One launch may cover up to three matrices of one type and width that read the
// same input (Q/K/V): their rows are numbered through the matrices in order.
//   * gemv_int8_kernel — quantized weights: the piece's codes dotted in integers with the int8
//     activation blocks (int8_dot.cuh), as the CPU engine does. Its SwiGLU form takes the gate
//     and up matrices, computes row r of both in one warp and stores silu(gate) * up.
//   * gemv_float_kernel — F32/F16/BF16 weights: decoded to float and multiplied with float32
//     activations read through the read-only cache.
#pragma once

#include "csrc/cuda/common.cuh"
#include "csrc/cuda/formats.cuh"
#include "csrc/cuda/int8_dot.cuh"
#include "csrc/cuda/ops.h"

namespace edgellama::cuda {

constexpr int kGemvWarps = 4;  // rows per thread block
constexpr int kMaxSegments = 3;

// The matrices of one launch. Output row t of matrix k is y[k] + t * rows[k] (rows[k] wide).
struct RowSegments {
    const uint8_t* w[kMaxSegments] = {};
    float* y[kMaxSegments] = {};
    int64_t rows[kMaxSegments] = {};
    int count = 0;
    __host__ __device__ int64_t total_rows() const {
        int64_t n = 0;
#pragma unroll
        for (int k = 0; k < kMaxSegments; ++k) n += k < count ? rows[k] : 0;  // constant indices: no local copy
        return n;
    }
};

// The matrix, output and row of a launch-wide row number (< total rows). Selected with unrolled
// compares: indexing the parameter arrays with a runtime k would copy them to local memory.
struct SegmentRow {
    const uint8_t* w;
    float* y;
    int64_t ld;  // output row width
    int64_t row;
};
__device__ __forceinline__ SegmentRow locate_row(const RowSegments& s, int64_t row) {
    SegmentRow r{s.w[0], s.y[0], s.rows[0], row};
#pragma unroll
    for (int k = 1; k < kMaxSegments; ++k) {
        if (k < s.count && r.row >= r.ld) {
            r.row -= r.ld;
            r.w = s.w[k];
            r.y = s.y[k];
            r.ld = s.rows[k];
        }
    }
    return r;
}

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
template <class Act, int NT>
__device__ __forceinline__ void tile_rows(const uint8_t* act, size_t act_row_bytes, int n_tok, const Act* (&rows)[NT]) {
#pragma unroll
    for (int t = 0; t < NT; ++t) {
        rows[t] = reinterpret_cast<const Act*>(act + static_cast<size_t>(t < n_tok ? t : n_tok - 1) * act_row_bytes);
    }
}

template <class Q, int NT>
__global__ void __launch_bounds__(kGemvWarps * kWarp)
gemv_int8_kernel(RowSegments seg, size_t row_bytes, int64_t n_pieces, const uint8_t* __restrict__ act,
                 size_t act_row_bytes, int n_tok, bool accumulate) {
    const int64_t row = warp_row(seg.total_rows());
    if (row < 0) return;
    const SegmentRow r = locate_row(seg, row);
    const typename Q::Act* at[NT];
    tile_rows<typename Q::Act, NT>(act, act_row_bytes, n_tok, at);
    float acc[NT];
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
    int8_lane_partial<Q, NT>(r.w + static_cast<size_t>(r.row) * row_bytes, n_pieces, threadIdx.x % kWarp, kWarp, at,
                             acc);
    store_row_sums<NT>(acc, n_tok, r.y + r.row, r.ld, accumulate);
}

// seg: {gate, up} with the same rows; y[0] row t = silu(gate · x_t) * (up · x_t), as swiglu().
template <class Q, int NT>
__global__ void __launch_bounds__(kGemvWarps * kWarp)
gemv_int8_swiglu_kernel(RowSegments seg, size_t row_bytes, int64_t n_pieces, const uint8_t* __restrict__ act,
                        size_t act_row_bytes, int n_tok) {
    const int64_t r = warp_row(seg.rows[0]);
    if (r < 0) return;
    const typename Q::Act* at[NT];
    tile_rows<typename Q::Act, NT>(act, act_row_bytes, n_tok, at);
    float g[NT], u[NT];
#pragma unroll
    for (int t = 0; t < NT; ++t) g[t] = u[t] = 0.0f;
    const int lane = threadIdx.x % kWarp;
    int8_lane_partial<Q, NT>(seg.w[0] + static_cast<size_t>(r) * row_bytes, n_pieces, lane, kWarp, at, g);
    int8_lane_partial<Q, NT>(seg.w[1] + static_cast<size_t>(r) * row_bytes, n_pieces, lane, kWarp, at, u);
#pragma unroll
    for (int t = 0; t < NT; ++t) {
        g[t] = warp_sum(g[t]);
        u[t] = warp_sum(u[t]);
    }
    if (lane != 0) return;
#pragma unroll
    for (int t = 0; t < NT; ++t) {
        if (t < n_tok) seg.y[0][t * seg.rows[0] + r] = silu_times(g[t], u[t]);
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

}  // namespace edgellama::cuda
