// Y = X · Wᵀ for quantized weights W, split across the thread pool by weight rows (or row groups).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "csrc/core/thread_pool.h"
#include "csrc/kernels/weight_matrix.h"

namespace edgellama {

// Most matrices one matmul_shared_input call takes (Q/K/V).
constexpr int kMaxMatmulTargets = 3;

// How a matmul with quantized weights rounds its input.
enum class ActPrecision : int32_t {
    // Every block of the input to int8 with one float scale (as llama.cpp does): logits about 0.25
    // RMS from exact arithmetic on SmolLM2-135M.
    kInt8 = 0,
    // The int8 blocks plus a second int8 row for what they left out (quantize_act_residual_row):
    // about 15 bits per block, 0.002 RMS. Every weight block is dotted against both rows while it is
    // in registers, so memory traffic is unchanged and the integer work doubles.
    kPrecise = 1,
};

// "int8" / "precise" (what the API calls them); throws std::invalid_argument for any other name.
ActPrecision act_precision_from_name(const std::string& name);
const char* act_precision_name(ActPrecision precision);

// Activations quantized (and packed for row groups) once per matmul; reused scratch so the
// per-token path never allocates. Its precision applies to every matmul run through it.
class ActivationBuffer {
public:
    explicit ActivationBuffer(ActPrecision precision = ActPrecision::kInt8) : precision_(precision) {}
    ActPrecision precision() const { return precision_; }

    // 64-byte aligned room for `bytes` in slot `slot` (< kSlots); grows, never shrinks.
    uint8_t* reserve(int slot, size_t bytes);
    // One slot per distinct quantized form and one per distinct row-group packing of a call.
    static constexpr int kSlots = 2 * kMaxMatmulTargets;

private:
    ActPrecision precision_;
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
