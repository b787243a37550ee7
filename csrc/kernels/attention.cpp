#include "csrc/kernels/attention.h"

#include <cmath>
#include <cstring>

namespace edgellama {

namespace {

float dot(const float* a, const float* b, int64_t n) {
    float sum = 0.0f;
    // A float reduction only vectorizes when reordering is allowed; head_dim is small, so the
    // reordering changes nothing that matters (and it is the same order on every call).
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
    return sum;
}

// One query head of one token against positions [0, n_pos).
void attend_one_head(const float* q_head, const float* keys, const float* values, int64_t kv_stride,
                     int64_t n_pos, int64_t head_dim, float* scores, float* out_head) {
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    float max_score = -INFINITY;
    for (int64_t t = 0; t < n_pos; ++t) {
        scores[t] = dot(q_head, keys + t * kv_stride, head_dim) * scale;
        if (scores[t] > max_score) max_score = scores[t];
    }
    float total = 0.0f;
    for (int64_t t = 0; t < n_pos; ++t) {
        scores[t] = std::exp(scores[t] - max_score);
        total += scores[t];
    }
    std::memset(out_head, 0, sizeof(float) * head_dim);
    for (int64_t t = 0; t < n_pos; ++t) {
        const float p = scores[t] / total;
        const float* v = values + t * kv_stride;
        for (int64_t d = 0; d < head_dim; ++d) out_head[d] += p * v[d];
    }
}

}  // namespace

void attention(ThreadPool& pool, const AttentionShape& shape, const float* q, int64_t n_tokens,
               int64_t first_pos, const float* keys, const float* values, float* out, float* scores,
               int64_t score_stride) {
    const int64_t q_width = shape.n_head * shape.head_dim;
    const int64_t kv_stride = shape.n_head_kv * shape.head_dim;
    const int64_t group = shape.n_head / shape.n_head_kv;
    const int64_t n_items = n_tokens * shape.n_head;
    pool.run([&](int ith, int nth) {
        int64_t begin, end;
        split_range(n_items, ith, nth, begin, end);
        float* my_scores = scores + ith * score_stride;
        for (int64_t item = begin; item < end; ++item) {
            const int64_t token = item / shape.n_head, head = item % shape.n_head;
            const int64_t kv_offset = (head / group) * shape.head_dim;
            attend_one_head(q + token * q_width + head * shape.head_dim, keys + kv_offset,
                            values + kv_offset, kv_stride, first_pos + token + 1, shape.head_dim,
                            my_scores, out + token * q_width + head * shape.head_dim);
        }
    });
}

}  // namespace edgellama
