// The rows of one matmul launch: up to three matrices of one type and width that read the same
// input (Q/K/V), their rows numbered through the matrices in order. __host__ __device__, so the
// host execution of the tensor-core tiles (host_warp.h) uses it too.
#pragma once

#include <cstdint>

#include "csrc/cuda/formats.cuh"

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

}  // namespace edgellama::cuda
