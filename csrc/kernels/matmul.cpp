#include "csrc/kernels/matmul.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace edgellama {

ActPrecision act_precision_from_name(const std::string& name) {
    if (name == "int8") return ActPrecision::kInt8;
    if (name == "precise") return ActPrecision::kPrecise;
    throw std::invalid_argument("activations must be 'precise' or 'int8', not '" + name + "'");
}

const char* act_precision_name(ActPrecision precision) {
    return precision == ActPrecision::kPrecise ? "precise" : "int8";
}

uint8_t* ActivationBuffer::reserve(int slot, size_t bytes) {
    std::vector<uint8_t>& v = slots_[slot];
    if (v.size() < bytes + 64) v.resize(bytes + 64);
    const uintptr_t base = reinterpret_cast<uintptr_t>(v.data());
    return v.data() + ((64 - base % 64) % 64);
}

namespace {

constexpr int kMaxTargets = kMaxMatmulTargets;

// What one target's kernel reads: the input as it wants it (floats, quantized rows, or rows packed
// for its row-group kernel).
// With the residual precision a token has two quantized rows (parts), one after the other: token
// t's part p is row t · parts + p.
struct TargetInput {
    const uint8_t* rows = nullptr;
    size_t stride = 0;  // bytes from one row to the next
    int parts = 1;
};

// The distinct input forms the targets need: each quantized format and each row-group packing is
// made once, from one token's row, then shared.
struct InputPlan {
    ActFormat formats[kMaxTargets];
    uint8_t* quantized[kMaxTargets];
    size_t quantized_stride[kMaxTargets];
    int n_formats = 0;
    void (*packs[kMaxTargets])(int64_t, const uint8_t*, uint8_t*);
    int pack_format[kMaxTargets];  // which quantized form each packing reads
    uint8_t* packed[kMaxTargets];
    size_t packed_stride[kMaxTargets];
    int n_packs = 0;

    int format_index(ActFormat f) const {
        for (int i = 0; i < n_formats; ++i) if (formats[i] == f) return i;
        return -1;
    }
    int pack_index(void (*p)(int64_t, const uint8_t*, uint8_t*)) const {
        for (int i = 0; i < n_packs; ++i) if (packs[i] == p) return i;
        return -1;
    }
};

// Quantizes and packs x for every target; inputs[i] is what target i reads.
void prepare_inputs(ThreadPool& pool, ActivationBuffer& act, const MatmulTarget* targets, int n_targets,
                    const float* x, int64_t x_stride, int64_t n_tokens, TargetInput* inputs) {
    InputPlan plan;
    const int64_t cols = targets[0].w->cols;
    const int parts = act.precision() == ActPrecision::kPrecise ? 2 : 1;
    for (int i = 0; i < n_targets; ++i) {
        const WeightMatrix& w = *targets[i].w;
        const ActFormat f = w.traits->act_format;
        if (f == ActFormat::F32) {
            inputs[i] = {reinterpret_cast<const uint8_t*>(x), static_cast<size_t>(x_stride) * sizeof(float)};
            continue;
        }
        int fi = plan.format_index(f);
        if (fi < 0) {
            fi = plan.n_formats++;
            plan.formats[fi] = f;
            plan.quantized_stride[fi] = act_row_bytes(f, cols);
            plan.quantized[fi] = act.reserve(fi, plan.quantized_stride[fi] * n_tokens * parts);
        }
        inputs[i] = {plan.quantized[fi], plan.quantized_stride[fi], parts};
        if (w.groups == nullptr) continue;
        int pi = plan.pack_index(w.group_kernel->pack_act);
        if (pi < 0) {
            pi = plan.n_packs++;
            plan.packs[pi] = w.group_kernel->pack_act;
            plan.pack_format[pi] = fi;
            plan.packed_stride[pi] = w.group_kernel->act_bytes(cols);
            plan.packed[pi] = act.reserve(kMaxTargets + pi, plan.packed_stride[pi] * n_tokens * parts);
        }
        inputs[i] = {plan.packed[pi], plan.packed_stride[pi], parts};
    }
    if (plan.n_formats == 0) return;
    auto prepare_range = [&](int64_t begin, int64_t end) {
        for (int64_t row = begin * parts; row < end * parts; row += parts) {
            const float* src = x + row / parts * x_stride;
            for (int fi = 0; fi < plan.n_formats; ++fi) {
                uint8_t* first = plan.quantized[fi] + row * plan.quantized_stride[fi];
                quantize_act_row(plan.formats[fi], src, first, cols);
                if (parts == 2) {
                    quantize_act_residual_row(plan.formats[fi], src, first, first + plan.quantized_stride[fi], cols);
                }
            }
            for (int pi = 0; pi < plan.n_packs; ++pi) {
                const int fi = plan.pack_format[pi];
                for (int p = 0; p < parts; ++p) {
                    plan.packs[pi](cols, plan.quantized[fi] + (row + p) * plan.quantized_stride[fi],
                                   plan.packed[pi] + (row + p) * plan.packed_stride[pi]);
                }
            }
        }
    };
    if (n_tokens == 1) {
        prepare_range(0, 1);  // a decode step: not worth waking the pool
    } else {
        pool.run([&](int ith, int nth) {
            int64_t begin, end;
            split_range(n_tokens, ith, nth, begin, end);
            prepare_range(begin, end);
        });
    }
}

// Rows [row_begin, row_end) one at a time: every weight row is read once and reused for all tokens.
void rows_by_vec_dot(const WeightMatrix& w, int64_t row_begin, int64_t row_end, const TargetInput& in,
                     int64_t n_tokens, float* y, int64_t y_stride) {
    const auto vec_dot = w.traits->vec_dot;
    for (int64_t r = row_begin; r < row_end; ++r) {
        const uint8_t* w_row = w.row(r);
        for (int64_t t = 0; t < n_tokens; ++t) {
            const uint8_t* first = in.rows + t * in.parts * in.stride;
            float dot = vec_dot(w.cols, w_row, first);
            if (in.parts == 2) dot += vec_dot(w.cols, w_row, first + in.stride);
            y[t * y_stride + r] = dot;
        }
    }
}

// Tokens per row-group call with two parts: their rows' results fit a small stack buffer, and
// the group's weights stay in cache from one call to the next.
constexpr int kPartTokens = 16;

// Group g with the residual precision: the kernel takes each token's two rows as two tokens (so
// it dots every weight block against both while it holds it), and their results are added.
// Its rows are [row, row + n_rows).
void group_by_parts(const WeightMatrix& w, int64_t g, int64_t row, int n_rows, const TargetInput& in,
                    int64_t n_tokens, float* y, int64_t y_stride) {
    float partial[2 * kPartTokens][kGroupRows];
    for (int64_t t0 = 0; t0 < n_tokens; t0 += kPartTokens) {
        const int n = static_cast<int>(std::min<int64_t>(kPartTokens, n_tokens - t0));
        w.group_kernel->dot(w.cols, w.groups + g * w.group_bytes, in.rows + t0 * 2 * in.stride, in.stride, 2 * n,
                            &partial[0][0], kGroupRows, n_rows);
        for (int t = 0; t < n; ++t) {
            float* out = y + (t0 + t) * y_stride + row;
            for (int r = 0; r < n_rows; ++r) out[r] = partial[2 * t][r] + partial[2 * t + 1][r];
        }
    }
}

// Units [begin, end) of a target: row groups where it has them, else single rows.
void run_units(const MatmulTarget& target, const TargetInput& in, int64_t n_tokens, int64_t begin, int64_t end) {
    const WeightMatrix& w = *target.w;
    if (w.groups == nullptr) {
        rows_by_vec_dot(w, begin, end, in, n_tokens, target.y, target.y_stride);
        return;
    }
    for (int64_t g = begin; g < end; ++g) {
        const int64_t row = g * kGroupRows;
        const int n_rows = static_cast<int>(std::min<int64_t>(kGroupRows, w.rows - row));
        if (in.parts == 2) {
            group_by_parts(w, g, row, n_rows, in, n_tokens, target.y, target.y_stride);
            continue;
        }
        w.group_kernel->dot(w.cols, w.groups + g * w.group_bytes, in.rows, in.stride, static_cast<int>(n_tokens),
                            target.y + row, target.y_stride, n_rows);
    }
}

int64_t unit_count(const WeightMatrix& w) { return w.groups ? (w.rows + kGroupRows - 1) / kGroupRows : w.rows; }

}  // namespace

void matmul_shared_input(ThreadPool& pool, ActivationBuffer& act, const MatmulTarget* targets, int n_targets,
                         const float* x, int64_t x_stride, int64_t n_tokens) {
    if (n_targets < 1 || n_targets > kMaxTargets) throw std::invalid_argument("matmul takes 1 to 3 matrices");
    TargetInput inputs[kMaxTargets];
    prepare_inputs(pool, act, targets, n_targets, x, x_stride, n_tokens, inputs);
    // Threads claim chunks of rows as they go: two threads streaming weights rarely get equal
    // memory bandwidth, and a fixed split left the faster one waiting at the end of every matmul.
    // Chunks shrink as the work runs out (a claim takes 1 / (2 · threads) of what is left), so the
    // last ones are small and the threads finish close together. The targets' units are numbered
    // one after another; a chunk may span two. Which thread computes a row never changes its bits.
    int64_t first_unit[kMaxTargets + 1] = {0};
    for (int i = 0; i < n_targets; ++i) first_unit[i + 1] = first_unit[i] + unit_count(*targets[i].w);
    const int64_t total = first_unit[n_targets];
    std::atomic<int64_t> next{0};
    pool.run([&](int, int nth) {
        int64_t begin = next.load(std::memory_order_relaxed);
        for (;;) {
            if (begin >= total) return;
            const int64_t size = std::max<int64_t>(1, (total - begin) / (2 * nth));
            if (!next.compare_exchange_weak(begin, begin + size, std::memory_order_relaxed)) continue;
            const int64_t end = std::min(total, begin + size);
            for (int i = 0; i < n_targets; ++i) {
                const int64_t lo = std::max(begin, first_unit[i]), hi = std::min(end, first_unit[i + 1]);
                if (lo < hi) run_units(targets[i], inputs[i], n_tokens, lo - first_unit[i], hi - first_unit[i]);
            }
            begin = next.load(std::memory_order_relaxed);
        }
    });
}

void matmul(ThreadPool& pool, ActivationBuffer& act, const WeightMatrix& w, const float* x, int64_t x_stride,
            int64_t n_tokens, float* y, int64_t y_stride) {
    const MatmulTarget target{&w, y, y_stride};
    matmul_shared_input(pool, act, &target, 1, x, x_stride, n_tokens);
}

}  // namespace edgellama
