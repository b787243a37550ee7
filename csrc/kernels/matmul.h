// Y = X · Wᵀ for a quantized weight W, split across the thread pool by weight rows.
#pragma once

#include <cstdint>
#include <vector>

#include "csrc/core/thread_pool.h"
#include "csrc/model/llama_weights.h"

namespace edgellama {

// Activations quantized once per matmul; reused scratch so the per-token path never allocates.
class ActivationBuffer {
public:
    // Makes room for n_tokens rows of `cols` values in `format` (grows, never shrinks).
    uint8_t* reserve(ActFormat format, int64_t n_tokens, int64_t cols);
    // Room for n_tokens rows of `row_bytes` prepacked bytes, 64-byte aligned.
    uint8_t* reserve_packed(int64_t n_tokens, size_t row_bytes);

private:
    std::vector<uint8_t> bytes_;
    std::vector<uint8_t> packed_;
};

// x: [n_tokens] rows of w.cols floats, row stride x_stride.
// y: [n_tokens] rows of w.rows floats, row stride y_stride.
void matmul(ThreadPool& pool, ActivationBuffer& act, const WeightMatrix& w, const float* x,
            int64_t x_stride, int64_t n_tokens, float* y, int64_t y_stride);

}  // namespace edgellama
