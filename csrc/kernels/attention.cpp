#include "csrc/kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "csrc/kernels/elementwise.h"
#include "csrc/kernels/fast_exp.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace edgellama {

namespace {

constexpr int64_t kBlock = kAttentionKeyBlock;

// Softmax of scores[0, n) in place; the weights sum to 1.
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

// The attention of one GQA group (the query heads of one KV head) for one token over positions
// [0, n_pos). keys/values: this KV head's, in the cache layout of attention.h.
struct GroupTask {
    const float* q_group;  // group × head_dim
    int64_t group, head_dim, n_pos;
    const uint16_t* keys;
    const uint16_t* values;
    float* scores;  // group rows of score_stride floats
    int64_t score_stride;
    float* out_group;  // group × head_dim
};

// Portable path (any CPU; the compiler maps the 8-float vectors to AVX, SSE or NEON registers):
// each key block is widened once for the group, then each head's 16 scores are two vector sums
// over the dimensions. `scratch` holds head_dim × 16 floats.
// (Passed only through memory: a 32-byte vector argument would change the ABI on the baseline.)
typedef float Floats8 __attribute__((vector_size(32)));

void attend_group_portable(const GroupTask& task, float* scratch) {
    static_assert(kBlock == 16, "two 8-float vectors per key block");
    const int64_t head_dim = task.head_dim;
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    for (int64_t t0 = 0; t0 < task.n_pos; t0 += kBlock) {
        half_to_float_row(task.keys + t0 * head_dim, scratch, head_dim * kBlock);
        const int64_t n = std::min(kBlock, task.n_pos - t0);
        for (int64_t g = 0; g < task.group; ++g) {
            const float* q = task.q_group + g * head_dim;
            Floats8 lo = {}, hi = {};
            for (int64_t d = 0; d < head_dim; ++d) {
                Floats8 k_lo, k_hi;
                std::memcpy(&k_lo, scratch + d * kBlock, sizeof k_lo);
                std::memcpy(&k_hi, scratch + d * kBlock + 8, sizeof k_hi);
                lo += q[d] * k_lo;
                hi += q[d] * k_hi;
            }
            float s[kBlock];
            std::memcpy(s, &lo, sizeof lo);
            std::memcpy(s + 8, &hi, sizeof hi);
            for (int64_t i = 0; i < n; ++i) task.scores[g * task.score_stride + t0 + i] = s[i] * scale;
        }
    }
    for (int64_t g = 0; g < task.group; ++g) softmax(task.scores + g * task.score_stride, task.n_pos);
    std::memset(task.out_group, 0, sizeof(float) * task.group * head_dim);
    for (int64_t t = 0; t < task.n_pos; ++t) {
        half_to_float_row(task.values + t * head_dim, scratch, head_dim);
        for (int64_t g = 0; g < task.group; ++g) {
            const float p = task.scores[g * task.score_stride + t];
            float* out = task.out_group + g * head_dim;
            for (int64_t d = 0; d < head_dim; ++d) out[d] += p * scratch[d];
        }
    }
}

#if defined(__AVX512F__)
inline __m512 load_halves(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// scores[g][t] = q_g·k_t · scale: per block of 16 positions, each dimension's 16 keys are widened
// once and multiplied into all G heads' sums, lane i holding position t0 + i. Even and odd
// dimensions go to separate sums (two chains of dependent FMAs per head, not one).
template <int G>
void group_scores(const GroupTask& task) {
    const int64_t head_dim = task.head_dim;
    const __m512 scale = _mm512_set1_ps(1.0f / std::sqrt(static_cast<float>(head_dim)));
    for (int64_t t0 = 0; t0 < task.n_pos; t0 += kBlock) {
        const uint16_t* block = task.keys + t0 * head_dim;
        __m512 even[G], odd[G];
        for (int g = 0; g < G; ++g) even[g] = odd[g] = _mm512_setzero_ps();
        for (int64_t d = 0; d < head_dim; d += 2) {
            const __m512 k0 = load_halves(block + d * kBlock), k1 = load_halves(block + (d + 1) * kBlock);
            for (int g = 0; g < G; ++g) {
                const float* q = task.q_group + g * head_dim + d;
                even[g] = _mm512_fmadd_ps(_mm512_set1_ps(q[0]), k0, even[g]);
                odd[g] = _mm512_fmadd_ps(_mm512_set1_ps(q[1]), k1, odd[g]);
            }
        }
        const auto valid = static_cast<__mmask16>((1u << std::min(kBlock, task.n_pos - t0)) - 1u);
        for (int g = 0; g < G; ++g) {
            _mm512_mask_storeu_ps(task.scores + g * task.score_stride + t0, valid,
                                  _mm512_mul_ps(_mm512_add_ps(even[g], odd[g]), scale));
        }
    }
}

// out_g = Σ_t p_g[t] · v_t, kChunks × 16 dimensions at a time with the G heads' sums in
// registers: each value row is widened once for the group.
template <int G, int kChunks>
void group_values(const GroupTask& task) {
    const int64_t head_dim = task.head_dim;
    for (int64_t d0 = 0; d0 < head_dim; d0 += 16 * kChunks) {
        __m512 acc[G][kChunks];
        for (int g = 0; g < G; ++g)
            for (int c = 0; c < kChunks; ++c) acc[g][c] = _mm512_setzero_ps();
        for (int64_t t = 0; t < task.n_pos; ++t) {
            __m512 v[kChunks];
            for (int c = 0; c < kChunks; ++c) v[c] = load_halves(task.values + t * head_dim + d0 + 16 * c);
            for (int g = 0; g < G; ++g) {
                const __m512 p = _mm512_set1_ps(task.scores[g * task.score_stride + t]);
                for (int c = 0; c < kChunks; ++c) acc[g][c] = _mm512_fmadd_ps(p, v[c], acc[g][c]);
            }
        }
        for (int g = 0; g < G; ++g)
            for (int c = 0; c < kChunks; ++c) _mm512_storeu_ps(task.out_group + g * head_dim + d0 + 16 * c, acc[g][c]);
    }
}

template <int G>
void attend_group_avx512(const GroupTask& task) {
    group_scores<G>(task);
    for (int g = 0; g < G; ++g) softmax(task.scores + g * task.score_stride, task.n_pos);
    group_values<G, (G <= 4 ? 4 : 2)>(task);  // at most 32 accumulators in flight
}

// Groups of 1 to 8 query heads (Llama 3: 4, TinyLlama: 8) with head_dim a multiple of 64.
bool attend_group_fast(const GroupTask& task) {
    using Fn = void (*)(const GroupTask&);
    static constexpr Fn kByGroup[] = {nullptr,
                                      attend_group_avx512<1>,
                                      attend_group_avx512<2>,
                                      attend_group_avx512<3>,
                                      attend_group_avx512<4>,
                                      attend_group_avx512<5>,
                                      attend_group_avx512<6>,
                                      attend_group_avx512<7>,
                                      attend_group_avx512<8>};
    if (task.head_dim % 64 != 0 || task.group < 1 || task.group > 8) return false;
    kByGroup[task.group](task);
    return true;
}
#else
bool attend_group_fast(const GroupTask&) { return false; }
#endif

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
        thread_local std::vector<float> scratch;  // one widened key block (portable path); grows once
        for (int64_t item = begin; item < end; ++item) {
            const int64_t token = item / shape.n_head_kv, kv_head = item % shape.n_head_kv;
            const int64_t head0 = kv_head * group;  // query heads head0 .. head0+group-1 share this KV head
            const GroupTask task{q + token * q_width + head0 * shape.head_dim,
                                 group,
                                 shape.head_dim,
                                 first_pos + token + 1,
                                 keys + kv_head * kv_head_stride,
                                 values + kv_head * kv_head_stride,
                                 scores + ith * group * score_stride,
                                 score_stride,
                                 out + token * q_width + head0 * shape.head_dim};
            if (attend_group_fast(task)) continue;
            if (scratch.size() < static_cast<size_t>(shape.head_dim * kBlock)) scratch.resize(shape.head_dim * kBlock);
            attend_group_portable(task, scratch.data());
        }
    });
}

}  // namespace edgellama
