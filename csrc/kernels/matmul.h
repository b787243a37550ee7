// Y = X · Wᵀ for quantized weights W, split across the thread pool by weight rows (or row groups).
#pragma once

#include <cstdint>
#include <vector>

#include "csrc/core/thread_pool.h"
#include "csrc/model/llama_weights.h"

namespace edgellama {

// Most matrices one matmul_shared_input call takes (Q/K/V).
constexpr int kMaxMatmulTargets = 3;

// Activations quantized (and packed for row groups) once per matmul; reused scratch so the
// per-token path never allocates.
class ActivationBuffer {
public:
    // 64-byte aligned room for `bytes` in slot `slot` (< kSlots); grows, never shrinks.
    uint8_t* reserve(int slot, size_t bytes);
    // One slot per distinct quantized form and one per distinct row-group packing of a call.
    static constexpr int kSlots = 2 * kMaxMatmulTargets;

private:
    std::vector<uint8_t> slots_[kSlots];
};

// One weight matrix of a matmul and where its output goes: y rows of w.rows floats, y_stride apart.
struct MatmulTarget {
    const WeightMatrix* w;
    float* y;
    int64_t y_stride;
};

// Several matrices applied to the same input (Q/K/V, gate/up): x is quantized and packed once per
// format, and all the matrices' rows are shared out in one job, so a decode step waits at one
// barrier instead of one per matrix. At most kMaxMatmulTargets; all have x's width as their cols.
// x: [n_tokens] rows of cols floats, row stride x_stride.
void matmul_shared_input(ThreadPool& pool, ActivationBuffer& act, const MatmulTarget* targets, int n_targets,
                         const float* x, int64_t x_stride, int64_t n_tokens);

// x: [n_tokens] rows of w.cols floats, row stride x_stride.
// y: [n_tokens] rows of w.rows floats, row stride y_stride.
void matmul(ThreadPool& pool, ActivationBuffer& act, const WeightMatrix& w, const float* x,
            int64_t x_stride, int64_t n_tokens, float* y, int64_t y_stride);

}  // namespace edgellama
