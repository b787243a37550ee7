#include "csrc/kernels/attention.h"

#include <algorithm>
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

// Softmax of scores[0, n) in place; returns nothing, the weights sum to 1.
void softmax(float* scores, int64_t n) {
    float max_score = -INFINITY;
    for (int64_t t = 0; t < n; ++t) max_score = std::max(max_score, scores[t]);
    float total = 0.0f;
    for (int64_t t = 0; t < n; ++t) {
        scores[t] = std::exp(scores[t] - max_score);
        total += scores[t];
    }
    const float inv_total = 1.0f / total;
    for (int64_t t = 0; t < n; ++t) scores[t] *= inv_total;
}

// All query heads of one GQA group (one KV head) for one token, over positions [0, n_pos): each
// key and value row is read once for the whole group, not once per query head.
void attend_group(const float* q_group, int64_t group, const float* keys, const float* values,
                  int64_t kv_stride, int64_t n_pos, int64_t head_dim, float* scores, int64_t score_stride,
                  float* out_group) {
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    for (int64_t t = 0; t < n_pos; ++t) {
        const float* k = keys + t * kv_stride;
        for (int64_t g = 0; g < group; ++g) scores[g * score_stride + t] = dot(q_group + g * head_dim, k, head_dim) * scale;
    }
    for (int64_t g = 0; g < group; ++g) softmax(scores + g * score_stride, n_pos);
    std::memset(out_group, 0, sizeof(float) * group * head_dim);
    for (int64_t t = 0; t < n_pos; ++t) {
        const float* v = values + t * kv_stride;
        for (int64_t g = 0; g < group; ++g) {
            const float p = scores[g * score_stride + t];
            float* out = out_group + g * head_dim;
            for (int64_t d = 0; d < head_dim; ++d) out[d] += p * v[d];
        }
    }
}

}  // namespace

void attention(ThreadPool& pool, const AttentionShape& shape, const float* q, int64_t n_tokens,
               int64_t first_pos, const float* keys, const float* values, float* out, float* scores,
               int64_t score_stride) {
    const int64_t q_width = shape.n_head * shape.head_dim;
    const int64_t kv_stride = shape.n_head_kv * shape.head_dim;
    const int64_t group = shape.n_head / shape.n_head_kv;
    const int64_t n_items = n_tokens * shape.n_head_kv;
    pool.run([&](int ith, int nth) {
        int64_t begin, end;
        split_range(n_items, ith, nth, begin, end);
        float* my_scores = scores + ith * group * score_stride;
        for (int64_t item = begin; item < end; ++item) {
            const int64_t token = item / shape.n_head_kv, kv_head = item % shape.n_head_kv;
            const int64_t head0 = kv_head * group;  // query heads head0 .. head0+group-1 share this KV head
            attend_group(q + token * q_width + head0 * shape.head_dim, group, keys + kv_head * shape.head_dim,
                         values + kv_head * shape.head_dim, kv_stride, first_pos + token + 1, shape.head_dim,
                         my_scores, score_stride, out + token * q_width + head0 * shape.head_dim);
        }
    });
}

}  // namespace edgellama
