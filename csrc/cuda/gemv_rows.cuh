// One warp's rows of a quantized matmul (the int8 GEMV of decode, and of prefill tiles up to
// kGemmTile tokens): a warp takes kRowsPerWarp rows, its lanes share the pieces
// (int8_dot.cuh: int8_lane_partial), the warp sums the lanes. Written once for any Warp
// (warp.cuh): the kernels (gemv_kernel.cuh) pass DeviceWarp, the tests HostWarp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "csrc/cuda/common.cuh"
#include "csrc/cuda/int8_dot.cuh"
#include "csrc/cuda/row_segments.cuh"
#include "csrc/cuda/warp.cuh"

namespace edgellama::cuda {

constexpr int kRowsPerWarp = 2;  // rows sharing each activation load

// The int8 rows of the input in the format of Q's activations; throws if they were not prepared.
template <class Q>
inline const uint8_t* activation_blocks(const MatmulInput& in, size_t* row_bytes) {
    constexpr bool k32 = std::is_same_v<typename Q::ActRow, ActRow32>;
    *row_bytes = act_row_bytes(k32 ? ActFormat::Q8_32 : ActFormat::Q8_256, in.cols);
    const uint8_t* blocks = k32 ? in.act32 : in.act256;
    if (blocks == nullptr) throw CudaError("matmul: the input was not quantized for this weight's activation format");
    return blocks;
}


// Warp-sums a row's partial sums of the tile's tokens; lane 0 stores (or adds) them at out + t * ld.
template <int NT, class Warp>
EDGELLAMA_HD void store_row_sums(const Warp& warp, float (&acc)[NT], int n_tok, float* out, int64_t ld,
                                 bool accumulate) {
    warp_reduce_sum_n(warp, acc);
    if (warp.lane() != 0) return;
#pragma unroll
    for (int t = 0; t < NT; ++t) {
        if (t < n_tok) out[t * ld] = accumulate ? out[t * ld] + acc[t] : acc[t];
    }
}

// Activation rows of the tile (the last one repeated past n_tok, so loads stay in bounds).
template <class ActRow, int NT>
EDGELLAMA_HD void tile_rows(const uint8_t* act, size_t act_row_bytes, int64_t cols, int n_tok, ActRow (&rows)[NT]) {
#pragma unroll
    for (int t = 0; t < NT; ++t) {
        rows[t] = ActRow(act + static_cast<size_t>(t < n_tok ? t : n_tok - 1) * act_row_bytes, cols);
    }
}

// Rows first .. first + kRowsPerWarp - 1 of the launch (first < the total) dotted with the tile's
// n_tok activation rows.
template <class Q, int NT, class Warp>
EDGELLAMA_HD void gemv_int8_rows(const Warp& warp, const RowSegments& seg, size_t row_bytes, int64_t cols,
                                 const uint8_t* act, size_t act_row_bytes, int n_tok, bool accumulate, int64_t first) {
    const int64_t total = seg.total_rows();
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
    int8_lane_partial<Q, NT, kRowsPerWarp>(rows, cols / Q::kPiece, warp.lane(), at, acc);
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
        if (first + i < total) {
            store_row_sums<NT>(warp, acc[i], n_tok, where[i].y + where[i].row, where[i].ld, accumulate);
        }
    }
}

// Row `row` of the launch (float weights: F32/F16/BF16) dotted with the tile's float rows x[t]
// (ldx apart): lanes stride over the row's pieces, each weight decoded once and multiplied into
// every token, then the warp sums the lanes.
template <class Fmt, int NT, class Warp>
EDGELLAMA_HD void gemv_float_row(const Warp& warp, const RowSegments& seg, size_t row_bytes, int64_t n_pieces,
                                 const float* x, int64_t ldx, int n_tok, bool accumulate, int64_t row) {
    const SegmentRow r = locate_row(seg, row);
    const uint8_t* wr = r.w + static_cast<size_t>(r.row) * row_bytes;
    const float* xt[NT];
#pragma unroll
    for (int t = 0; t < NT; ++t) xt[t] = x + static_cast<int64_t>(t < n_tok ? t : n_tok - 1) * ldx;
    float acc[NT];
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
    for (int64_t p = warp.lane(); p < n_pieces; p += kWarp) {
        const int64_t base = p * Fmt::kPiece;
        Fmt::visit(wr, p, [&](int i, float wv) {
#pragma unroll
            for (int t = 0; t < NT; ++t) acc[t] = fmaf(wv, load_ro(xt[t] + base + i), acc[t]);
        });
    }
    store_row_sums<NT>(warp, acc, n_tok, r.y + r.row, r.ld, accumulate);
}

// seg: {gate, up} with the same rows; output row t of y[0] = silu(gate · x_t) * (up · x_t), as
// swiglu(), for rows first .. first + kRowsPerWarp - 1.
template <class Q, int NT, class Warp>
EDGELLAMA_HD void gemv_int8_swiglu_rows(const Warp& warp, const RowSegments& seg, size_t row_bytes, int64_t cols,
                                        const uint8_t* act, size_t act_row_bytes, int n_tok, int64_t first) {
    const int64_t n_rows = seg.rows[0];
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
    int8_lane_partial<Q, NT, 2 * kRowsPerWarp>(rows, cols / Q::kPiece, warp.lane(), at, acc);
#pragma unroll
    for (int i = 0; i < 2 * kRowsPerWarp; ++i) warp_reduce_sum_n(warp, acc[i]);
    if (warp.lane() != 0) return;
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
#pragma unroll
        for (int t = 0; t < NT; ++t) {
            if (t < n_tok && first + i < n_rows) {
                seg.y[0][t * n_rows + first + i] = silu_times(acc[i][t], acc[kRowsPerWarp + i][t]);
            }
        }
    }
}

}  // namespace edgellama::cuda
