// One weight matrix prepared exactly as the model prepares it at load (repacked into row groups
// where this build has them), with its own thread pool and scratch: what kernel tests and kernel
// benchmarks run, so they measure the model's matmul and nothing else.
#pragma once

#include <cstdint>

#include "csrc/core/thread_pool.h"
#include "csrc/kernels/matmul.h"
#include "csrc/model/weight_repack.h"

namespace edgellama {

class PreparedMatmul {
public:
    // rows: n_rows GGUF rows of `type` with `cols` elements each, contiguous; the caller keeps them
    // alive (they are read in place unless repacked). row_groups: repack as the model does; throws
    // std::invalid_argument when the type has no row-group kernel in this build. activations: how
    // the input is rounded (ActPrecision).
    PreparedMatmul(int32_t type, const uint8_t* rows, int64_t n_rows, int64_t cols, bool row_groups, int n_threads,
                   ActPrecision activations = ActPrecision::kInt8);

    // y[t][r] = dot(row r, x[t]) for t < n_tokens; x: n_tokens rows of cols floats, y: n_tokens rows of n_rows.
    void run(const float* x, int64_t n_tokens, float* y);

    const WeightMatrix& weights() const { return w_; }

private:
    WeightMatrix w_;
    ThreadPool pool_;
    AlignedBytes groups_;
    ActivationBuffer act_;
};

}  // namespace edgellama
