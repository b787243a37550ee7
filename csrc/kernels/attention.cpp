#include "csrc/kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "csrc/kernels/fast_exp.h"
#include "csrc/kernels/float_convert.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

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

// One cached row (head_dim halves) widened to float32.
void widen_row(const uint16_t* half_row, float* row, int64_t n) {
    for (int64_t i = 0; i < n; ++i) row[i] = fp16_to_fp32(half_row[i]);
}



// Softmax of scores[0, n) in place; returns nothing, the weights sum to 1.
void softmax(float* scores, int64_t n) {
    float max_score = -INFINITY;
    // Vectorized (a max is exact in any order): as a scalar loop, its chain of dependent maxes was
    // 70% of the softmax and 8% of a 1536-token prefill.
#pragma omp simd reduction(max : max_score)
    for (int64_t t = 0; t < n; ++t) max_score = scores[t] > max_score ? scores[t] : max_score;
    float total = 0.0f;
#pragma omp simd reduction(+ : total)
    for (int64_t t = 0; t < n; ++t) {
        scores[t] = exp_approx(scores[t] - max_score);
        total += scores[t];
    }
    const float inv_total = 1.0f / total;
    for (int64_t t = 0; t < n; ++t) scores[t] *= inv_total;
}

#if defined(__AVX512F__)
// Lane i of the result: the horizontal sum of v[i], for 16 vectors at once. A tree of in-lane and
// cross-lane shuffles costs ~3 instructions per vector instead of ~8 for one reduction each; the
// summation order is fixed, so a score does not depend on which block of 16 its position is in.
inline __m512 hsum16(const __m512* v) {
    __m512 x[8], y[4], z[2];
    for (int i = 0; i < 8; ++i)  // lanes (a, b, a, b) per 128-bit lane
        x[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
    for (int i = 0; i < 4; ++i)  // lanes (v[4i], .., v[4i+3]) per 128-bit lane
        y[i] = _mm512_add_ps(_mm512_shuffle_ps(x[2 * i], x[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(x[2 * i], x[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    for (int i = 0; i < 2; ++i)
        z[i] = _mm512_add_ps(_mm512_shuffle_f32x4(y[2 * i], y[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(y[2 * i], y[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_add_ps(_mm512_shuffle_f32x4(z[0], z[1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(z[0], z[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

constexpr int kFastHeadDim = 64, kFastChunks = kFastHeadDim / 16;

// scores[t] = q·k_t * scale for t < n_pos; 16 positions share one reduction tree, and a partial
// last block is padded with zero vectors (same arithmetic per position either way).
inline __m512 load_halves(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

void scores_64(const float* q, const uint16_t* keys, int64_t n_pos, float scale, float* scores) {
    __m512 qv[kFastChunks];
    for (int c = 0; c < kFastChunks; ++c) qv[c] = _mm512_loadu_ps(q + 16 * c);
    for (int64_t t0 = 0; t0 < n_pos; t0 += 16) {
        const int n = static_cast<int>(std::min<int64_t>(16, n_pos - t0));
        __m512 v[16];
        for (int i = 0; i < 16; ++i) {
            if (i >= n) {
                v[i] = _mm512_setzero_ps();
                continue;
            }
            const uint16_t* k = keys + (t0 + i) * kFastHeadDim;
            __m512 acc = _mm512_mul_ps(qv[0], load_halves(k));
            for (int c = 1; c < kFastChunks; ++c) acc = _mm512_fmadd_ps(qv[c], load_halves(k + 16 * c), acc);
            v[i] = acc;
        }
        const __m512 s = _mm512_mul_ps(hsum16(v), _mm512_set1_ps(scale));
        _mm512_mask_storeu_ps(scores + t0, static_cast<__mmask16>((1u << n) - 1u), s);
    }
}

// out_g = Σ_t p_g[t] · v_t for the group's heads, accumulators in registers, each V row read once.
template <int G>
void weighted_values_64(const float* scores, int64_t score_stride, const uint16_t* values, int64_t n_pos,
                        float* out_group) {
    __m512 acc[G][kFastChunks];
    for (int g = 0; g < G; ++g)
        for (int c = 0; c < kFastChunks; ++c) acc[g][c] = _mm512_setzero_ps();
    for (int64_t t = 0; t < n_pos; ++t) {
        const uint16_t* v = values + t * kFastHeadDim;
        __m512 vv[kFastChunks];
        for (int c = 0; c < kFastChunks; ++c) vv[c] = load_halves(v + 16 * c);
        for (int g = 0; g < G; ++g) {
            const __m512 p = _mm512_set1_ps(scores[g * score_stride + t]);
            for (int c = 0; c < kFastChunks; ++c) acc[g][c] = _mm512_fmadd_ps(p, vv[c], acc[g][c]);
        }
    }
    for (int g = 0; g < G; ++g)
        for (int c = 0; c < kFastChunks; ++c) _mm512_storeu_ps(out_group + g * kFastHeadDim + 16 * c, acc[g][c]);
}

// The AVX-512 path for head_dim 64 and groups of up to 4 query heads; false when it does not apply.
bool attend_group_64(const float* q_group, int64_t group, const uint16_t* keys, const uint16_t* values, int64_t n_pos,
                     int64_t head_dim, float* scores, int64_t score_stride, float* out_group) {
    if (head_dim != kFastHeadDim || group < 1 || group > 4) return false;
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    for (int64_t g = 0; g < group; ++g) {
        scores_64(q_group + g * head_dim, keys, n_pos, scale, scores + g * score_stride);
        softmax(scores + g * score_stride, n_pos);
    }
    switch (group) {
        case 1: weighted_values_64<1>(scores, score_stride, values, n_pos, out_group); break;
        case 2: weighted_values_64<2>(scores, score_stride, values, n_pos, out_group); break;
        case 3: weighted_values_64<3>(scores, score_stride, values, n_pos, out_group); break;
        default: weighted_values_64<4>(scores, score_stride, values, n_pos, out_group); break;
    }
    return true;
}
#endif

// All query heads of one GQA group (one KV head, its rows contiguous) for one token, over
// positions [0, n_pos): each key and value row is read once for the whole group, not once per
// query head.
void attend_group(const float* q_group, int64_t group, const uint16_t* keys, const uint16_t* values, int64_t n_pos,
                  int64_t head_dim, float* scores, int64_t score_stride, float* out_group, float* row) {
#if defined(__AVX512F__)
    if (attend_group_64(q_group, group, keys, values, n_pos, head_dim, scores, score_stride, out_group)) return;
#endif
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    for (int64_t t = 0; t < n_pos; ++t) {
        widen_row(keys + t * head_dim, row, head_dim);
        for (int64_t g = 0; g < group; ++g) scores[g * score_stride + t] = dot(q_group + g * head_dim, row, head_dim) * scale;
    }
    for (int64_t g = 0; g < group; ++g) softmax(scores + g * score_stride, n_pos);
    std::memset(out_group, 0, sizeof(float) * group * head_dim);
    for (int64_t t = 0; t < n_pos; ++t) {
        widen_row(values + t * head_dim, row, head_dim);
        for (int64_t g = 0; g < group; ++g) {
            const float p = scores[g * score_stride + t];
            float* out = out_group + g * head_dim;
            for (int64_t d = 0; d < head_dim; ++d) out[d] += p * row[d];
        }
    }
}

}  // namespace

void attention(ThreadPool& pool, const AttentionShape& shape, const float* q, int64_t n_tokens,
               int64_t first_pos, const uint16_t* keys, const uint16_t* values, int64_t kv_head_stride, float* out,
               float* scores, int64_t score_stride) {
    const int64_t q_width = shape.n_head * shape.head_dim;
    const int64_t group = shape.n_head / shape.n_head_kv;
    const int64_t n_items = n_tokens * shape.n_head_kv;
    pool.run([&](int ith, int nth) {
        int64_t begin, end;
        split_range(n_items, ith, nth, begin, end);
        float* my_scores = scores + ith * group * score_stride;
        thread_local std::vector<float> row;  // one K or V row widened (portable path); grows once
        if (row.size() < static_cast<size_t>(shape.head_dim)) row.resize(static_cast<size_t>(shape.head_dim));
        for (int64_t item = begin; item < end; ++item) {
            const int64_t token = item / shape.n_head_kv, kv_head = item % shape.n_head_kv;
            const int64_t head0 = kv_head * group;  // query heads head0 .. head0+group-1 share this KV head
            attend_group(q + token * q_width + head0 * shape.head_dim, group, keys + kv_head * kv_head_stride,
                         values + kv_head * kv_head_stride, first_pos + token + 1, shape.head_dim, my_scores,
                         score_stride, out + token * q_width + head0 * shape.head_dim, row.data());
        }
    });
}

}  // namespace edgellama
