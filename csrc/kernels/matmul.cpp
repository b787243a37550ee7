#include "csrc/kernels/matmul.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace edgellama {

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
struct TargetInput {
    const uint8_t* rows = nullptr;
    size_t stride = 0;
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
            plan.quantized[fi] = act.reserve(fi, plan.quantized_stride[fi] * n_tokens);
        }
        inputs[i] = {plan.quantized[fi], plan.quantized_stride[fi]};
        if (w.groups == nullptr) continue;
        int pi = plan.pack_index(w.group_kernel->pack_act);
        if (pi < 0) {
            pi = plan.n_packs++;
            plan.packs[pi] = w.group_kernel->pack_act;
            plan.pack_format[pi] = fi;
            plan.packed_stride[pi] = w.group_kernel->act_bytes(cols);
            plan.packed[pi] = act.reserve(kMaxTargets + pi, plan.packed_stride[pi] * n_tokens);
        }
        inputs[i] = {plan.packed[pi], plan.packed_stride[pi]};
    }
    if (plan.n_formats == 0) return;
    auto prepare_range = [&](int64_t begin, int64_t end) {
        for (int64_t t = begin; t < end; ++t) {
            for (int fi = 0; fi < plan.n_formats; ++fi) {
                quantize_act_row(plan.formats[fi], x + t * x_stride, plan.quantized[fi] + t * plan.quantized_stride[fi],
                                 cols);
            }
            for (int pi = 0; pi < plan.n_packs; ++pi) {
                const int fi = plan.pack_format[pi];
                plan.packs[pi](cols, plan.quantized[fi] + t * plan.quantized_stride[fi],
                               plan.packed[pi] + t * plan.packed_stride[pi]);
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
        for (int64_t t = 0; t < n_tokens; ++t) y[t * y_stride + r] = vec_dot(w.cols, w_row, in.rows + t * in.stride);
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
