// The rows of one matmul launch: up to three matrices of one type and width that read the same
// input (Q/K/V), their rows numbered through the matrices in order. __host__ __device__, so the
// host execution of the tensor-core tiles (host_warp.h) uses it too.
#pragma once

#include <cstdint>
#include <type_traits>

#include "csrc/cuda/cuda_errors.h"
#include "csrc/cuda/formats.cuh"
#include "csrc/cuda/ops.h"

namespace edgellama::cuda {

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
EDGELLAMA_HD SegmentRow locate_row(const RowSegments& s, int64_t row) {
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

inline bool same_layout(const DeviceMatrix& a, const DeviceMatrix& b) {
    return a.type == b.type && a.cols == b.cols && a.row_bytes == b.row_bytes;
}

// The launch of the fused gate/up/SwiGLU GEMV: {gate, up} of one layout and shape, output `gate`.
inline bool swiglu_fusable(const DeviceMatrix& w_gate, const DeviceMatrix& w_up, int64_t cols) {
    return same_layout(w_gate, w_up) && w_gate.rows == w_up.rows && cols == w_gate.cols;
}
inline RowSegments swiglu_segments(const DeviceMatrix& w_gate, const DeviceMatrix& w_up, float* gate) {
    RowSegments seg;
    seg.w[0] = w_gate.data;
    seg.w[1] = w_up.data;
    seg.y[0] = gate;
    seg.rows[0] = seg.rows[1] = w_gate.rows;
    seg.count = 2;
    return seg;
}

// What the one-launch SwiGLU quantizes into: act_out where it is asked for, counts are given, the
// gate rows are whole blocks of it, with rows of w_gate.rows codes, and its rows a token are the
// input's (`parts`); else nothing.
inline ActRowsOut swiglu_act_out(const DeviceMatrix& w_gate, const ActRowsOut& act_out, const unsigned* counts,
                                 int parts) {
    if (act_out.rows == nullptr || counts == nullptr || act_out.block <= 0 || w_gate.rows % act_out.block != 0 ||
        act_out.parts != parts ||
        act_out.row_bytes != act_rows_out(act_out.rows, act_out.block, w_gate.rows).row_bytes) {
        return ActRowsOut{};
    }
    return act_out;
}

// seg advanced to the tile starting at token `start` (every matrix's outputs move `start` rows).
inline RowSegments at_token(RowSegments seg, int64_t start) {
    for (int k = 0; k < seg.count; ++k) seg.y[k] += start * seg.rows[k];
    return seg;
}

// act advanced to the tile starting at token `start` (unset stays unset).
inline ActRowsOut at_token(ActRowsOut act, int64_t start) {
    if (act.rows != nullptr) act.rows = act.token_row(start);
    return act;
}

// The tiles of up to kGemmTile activation rows a matmul of n rows is cut into (a single row gets
// the one-token kernel): launch(start, tile, std::integral_constant<int, NT>) for each. With
// precise activations (parts = 2) one token's pair of rows, a decode step's, gets a tile of two:
// the kGemmTile-row tile would repeat its last row into six dead ones, four times the dot work
// and accumulators. Other two-row matmuls keep the kGemmTile tile.
template <class LaunchTile>
void for_each_tile(int64_t n, LaunchTile&& launch, int parts = 1) {
    if (parts == 2 && n == 2) {
        launch(int64_t{0}, 2, std::integral_constant<int, 2>{});
        return;
    }
    for (int64_t start = 0; start < n; start += kGemmTile) {
        const int tile = static_cast<int>(n - start < kGemmTile ? n - start : kGemmTile);
        if (tile == 1) {
            launch(start, tile, std::integral_constant<int, 1>{});
        } else {
            launch(start, tile, std::integral_constant<int, kGemmTile>{});
        }
    }
}

// Cuts a matmul group's targets into runs of up to kMaxSegments matrices of one layout (one launch
// each) and calls fn(first matrix of the run, its RowSegments); the backends share this cut.
template <class Fn>
void for_each_launch_group(const MatmulTarget* targets, int count, int64_t cols, Fn&& fn) {
    int i = 0;
    while (i < count) {
        const DeviceMatrix& first = *targets[i].w;
        if (cols != first.cols) throw CudaError("matmul: input rows do not match the weight's columns");
        RowSegments seg;
        while (i < count && seg.count < kMaxSegments && same_layout(*targets[i].w, first)) {
            seg.w[seg.count] = targets[i].w->data;
            seg.y[seg.count] = targets[i].y;
            seg.rows[seg.count] = targets[i].w->rows;
            ++seg.count;
            ++i;
        }
        fn(first, seg);
    }
}

}  // namespace edgellama::cuda
