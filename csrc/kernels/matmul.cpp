#include "csrc/kernels/matmul.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

namespace edgellama {

uint8_t* ActivationBuffer::reserve(ActFormat format, int64_t n_tokens, int64_t cols) {
    const size_t needed = act_row_bytes(format, cols) * static_cast<size_t>(n_tokens);
    if (bytes_.size() < needed) bytes_.resize(needed);
    return bytes_.data();
}

uint8_t* ActivationBuffer::reserve_packed(int64_t n_tokens, size_t row_bytes) {
    const size_t needed = row_bytes * static_cast<size_t>(n_tokens) + 64;
    if (packed_.size() < needed) packed_.resize(needed);
    const uintptr_t base = reinterpret_cast<uintptr_t>(packed_.data());
    return packed_.data() + ((64 - base % 64) % 64);
}

namespace {

// Quantizes each token's activation row into the weight type's dot-product format.
const uint8_t* quantize_activations(ThreadPool& pool, ActivationBuffer& act, const WeightMatrix& w,
                                    const float* x, int64_t x_stride, int64_t n_tokens,
                                    size_t& act_stride) {
    const ActFormat format = w.traits->act_format;
    act_stride = act_row_bytes(format, w.cols);
    uint8_t* dst = act.reserve(format, n_tokens, w.cols);
    auto quantize_range = [&](int64_t begin, int64_t end) {
        for (int64_t t = begin; t < end; ++t) {
            quantize_act_row(format, x + t * x_stride, dst + t * act_stride, w.cols);
        }
    };
    if (n_tokens == 1) {
        quantize_range(0, 1);  // a decode step: not worth waking the pool
    } else {
        pool.run([&](int ith, int nth) {
            int64_t begin, end;
            split_range(n_tokens, ith, nth, begin, end);
            quantize_range(begin, end);
        });
    }
    return dst;
}

// Rows [row_begin, row_end) one at a time: every weight row is read once and reused for all tokens.
void rows_by_vec_dot(const WeightMatrix& w, int64_t row_begin, int64_t row_end, const uint8_t* act_rows,
                     size_t act_stride, int64_t n_tokens, float* y, int64_t y_stride) {
    const auto vec_dot = w.traits->vec_dot;
    for (int64_t r = row_begin; r < row_end; ++r) {
        const uint8_t* w_row = w.row(r);
        for (int64_t t = 0; t < n_tokens; ++t) {
            y[t * y_stride + r] = vec_dot(w.cols, w_row, act_rows + t * act_stride);
        }
    }
}

// Row groups (weights repacked at load): each thread takes whole groups and runs every token
// through each of them, kGroupTokens at a time, while the group stays in its L1/L2.
void matmul_row_groups(ThreadPool& pool, ActivationBuffer& act, const WeightMatrix& w, const uint8_t* act_rows,
                       size_t act_stride, int64_t n_tokens, float* y, int64_t y_stride) {
    const RowGroupKernel& k = *w.group_kernel;
    const size_t packed_stride = k.act_bytes(w.cols);
    uint8_t* packed = act.reserve_packed(n_tokens, packed_stride);
    auto pack_range = [&](int64_t begin, int64_t end) {
        for (int64_t t = begin; t < end; ++t) k.pack_act(w.cols, act_rows + t * act_stride, packed + t * packed_stride);
    };
    if (n_tokens == 1) {
        pack_range(0, 1);
    } else {
        pool.run([&](int ith, int nth) {
            int64_t begin, end;
            split_range(n_tokens, ith, nth, begin, end);
            pack_range(begin, end);
        });
    }
    // Threads claim chunks of groups as they go rather than a fixed half each: two threads
    // streaming weights rarely get equal memory bandwidth, and a fixed split left the faster one
    // waiting at the end of every matmul. Which thread computes a group never changes its bits.
    const int64_t n_groups = (w.rows + kGroupRows - 1) / kGroupRows;
    const int64_t chunk = std::max<int64_t>(1, n_groups / (pool.size() * 8));
    std::atomic<int64_t> next_group{0};
    pool.run([&](int, int) {
        for (int64_t begin; (begin = next_group.fetch_add(chunk, std::memory_order_relaxed)) < n_groups;) {
            const int64_t end = std::min(n_groups, begin + chunk);
            for (int64_t g = begin; g < end; ++g) {
                const int64_t row = g * kGroupRows;
                const int n_rows = static_cast<int>(std::min<int64_t>(kGroupRows, w.rows - row));
                k.dot(w.cols, w.groups + g * w.group_bytes, packed, packed_stride, static_cast<int>(n_tokens),
                      y + row, y_stride, n_rows);
            }
        }
    });
}

}  // namespace

void matmul(ThreadPool& pool, ActivationBuffer& act, const WeightMatrix& w, const float* x,
            int64_t x_stride, int64_t n_tokens, float* y, int64_t y_stride) {
    const uint8_t* act_rows;
    size_t act_stride;
    if (w.traits->act_format == ActFormat::F32) {
        act_rows = reinterpret_cast<const uint8_t*>(x);
        act_stride = static_cast<size_t>(x_stride) * sizeof(float);
    } else {
        act_rows = quantize_activations(pool, act, w, x, x_stride, n_tokens, act_stride);
    }
    if (w.groups != nullptr) {
        matmul_row_groups(pool, act, w, act_rows, act_stride, n_tokens, y, y_stride);
        return;
    }
    pool.run([&](int ith, int nth) {
        int64_t row_begin, row_end;
        split_range(w.rows, ith, nth, row_begin, row_end);
        rows_by_vec_dot(w, row_begin, row_end, act_rows, act_stride, n_tokens, y, y_stride);
    });
}

}  // namespace edgellama
