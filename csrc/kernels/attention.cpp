#include "csrc/kernels/attention.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <vector>

#include "csrc/kernels/elementwise.h"
#include "csrc/kernels/fast_exp.h"
#include "csrc/formats/float_convert.h"
#include "csrc/formats/block_formats.h"

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

// Consecutive tokens of one KV head (a prefill's tile; one token in a decode step). The AVX-512
// path attends them together, widening every key block and value row once for the tile's NT
// tokens × G heads; the portable path one token after another. Row t * G + g is token t's head g.
struct TileTask {
    int64_t head_dim;
    const float* q;  // token t's group (G × head_dim) at q + t * q_stride
    int64_t q_stride;
    int64_t n_pos0;  // token t attends positions [0, n_pos0 + t)
    const uint8_t* keys;    // this KV head's key tiles
    const uint8_t* values;  // this KV head's value rows
    CacheTypes types;
    int64_t key_tile_bytes, value_row_bytes;
    float* scores;  // row r at scores + r * score_stride
    int64_t score_stride;
    float* out;  // token t's group outputs at out + t * out_stride
    int64_t out_stride;
};

// Portable path (any CPU; the compiler maps the 8-float vectors to AVX, SSE or NEON registers),
// one token t of a tile at a time: each key block is widened once for the group, then each head's
// 16 scores are two vector sums over the dimensions. `scratch` holds head_dim × 16 floats.
// (Passed only through memory: a 32-byte vector argument would change the ABI on the baseline.)
typedef float Floats8 __attribute__((vector_size(32)));

void attend_token_portable(const TileTask& task, int64_t group, int t, float* scratch) {
    static_assert(kBlock == 16, "two 8-float vectors per key block");
    const int64_t head_dim = task.head_dim, n_pos = task.n_pos0 + t;
    const float* q_group = task.q + t * task.q_stride;
    float* scores = task.scores + t * group * task.score_stride;  // this token's group rows
    float* out_group = task.out + t * task.out_stride;
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    for (int64_t p0 = 0; p0 < n_pos; p0 += kBlock) {
        widen_key_tile(task.types.keys, task.keys + p0 / kBlock * task.key_tile_bytes, head_dim, scratch);
        const int64_t n = std::min(kBlock, n_pos - p0);
        for (int64_t g = 0; g < group; ++g) {
            const float* q = q_group + g * head_dim;
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
            for (int64_t i = 0; i < n; ++i) scores[g * task.score_stride + p0 + i] = s[i] * scale;
        }
    }
    for (int64_t g = 0; g < group; ++g) softmax(scores + g * task.score_stride, n_pos);
    std::memset(out_group, 0, sizeof(float) * group * head_dim);
    for (int64_t p = 0; p < n_pos; ++p) {
        widen_value_row(task.types.values, task.values + p * task.value_row_bytes, head_dim, scratch);
        for (int64_t g = 0; g < group; ++g) {
            const float prob = scores[g * task.score_stride + p];
            float* out = out_group + g * head_dim;
            for (int64_t d = 0; d < head_dim; ++d) out[d] += prob * scratch[d];
        }
    }
}

#if defined(__AVX512F__)
inline __m512 load_halves(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// Dimension d of a key tile's 16 positions, one lane each: the halves, or a quantized tile's codes
// (q4_0: minus 8) before their block's scale.
template <CacheType KT>
inline __m512 load_key_dim(const uint8_t* tile, int64_t d) {
    if constexpr (KT == CacheType::kF16) {
        return load_halves(reinterpret_cast<const uint16_t*>(tile) + d * kBlock);
    } else if constexpr (KT == CacheType::kQ8_0) {
        const __m128i codes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(tile + d * kBlock));
        return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(codes));
    } else {
        const __m128i packed = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(tile + d * kBlock / 2));
        const __m128i mask = _mm_set1_epi8(0x0f);
        const __m128i codes = _mm_unpacklo_epi64(_mm_and_si128(packed, mask),
                                                 _mm_and_si128(_mm_srli_epi16(packed, 4), mask));
        return _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(codes), _mm512_set1_epi32(8)));
    }
}

// Dimensions [d0, d0 + 16) of a value row as floats (d0 a multiple of 16: inside one block).
template <CacheType VT>
inline __m512 load_value_chunk(const uint8_t* row, int64_t d0) {
    if constexpr (VT == CacheType::kF16) {
        return load_halves(reinterpret_cast<const uint16_t*>(row) + d0);
    } else if constexpr (VT == CacheType::kQ8_0) {
        const BlockQ8_0& block = reinterpret_cast<const BlockQ8_0*>(row)[d0 / kQK32];
        const __m128i codes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block.qs + d0 % kQK32));
        return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(codes)), _mm512_set1_ps(fp16_to_fp32(block.d)));
    } else {
        const BlockQ4_0& block = reinterpret_cast<const BlockQ4_0*>(row)[d0 / kQK32];
        const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block.qs));
        const __m128i codes = _mm_and_si128(_mm_srli_epi16(packed, d0 % kQK32 == 0 ? 0 : 4), _mm_set1_epi8(0x0f));
        const __m512 centred = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(codes), _mm512_set1_epi32(8)));
        return _mm512_mul_ps(centred, _mm512_set1_ps(fp16_to_fp32(block.d)));
    }
}

// scores[t][g][p] = q_tg·k_p · scale: per tile of 16 positions, each dimension's 16 keys are
// widened once and multiplied into every row's sums, lane i holding position p0 + i. Even and odd
// dimensions go to separate sums (two chains of dependent FMAs per row, not one); a quantized
// tile's sums run over one block of 32 dimensions, then take the block's 16 scales. A row's
// arithmetic does not depend on NT, so a prefill and a token-by-token decode agree bit for bit.
template <int G, int NT, CacheType KT>
void tile_scores(const TileTask& task) {
    const int64_t head_dim = task.head_dim, n_max = task.n_pos0 + NT - 1;
    const __m512 scale = _mm512_set1_ps(1.0f / std::sqrt(static_cast<float>(head_dim)));
    const int64_t span = KT == CacheType::kF16 ? head_dim : kQK32;  // dimensions per scale
    for (int64_t p0 = 0; p0 < n_max; p0 += kBlock) {
        const uint8_t* tile = task.keys + p0 / kBlock * task.key_tile_bytes;
        const uint16_t* scales = nullptr;  // a quantized tile's [head_dim / 32][16] scales, after its codes
        if constexpr (KT != CacheType::kF16) {
            scales = reinterpret_cast<const uint16_t*>(tile + task.key_tile_bytes) - head_dim / kQK32 * kBlock;
        }
        __m512 total[NT][G];
        for (int t = 0; t < NT; ++t)
            for (int g = 0; g < G; ++g) total[t][g] = _mm512_setzero_ps();
        for (int64_t b0 = 0; b0 < head_dim; b0 += span) {
            __m512 even[NT][G], odd[NT][G];
            for (int t = 0; t < NT; ++t)
                for (int g = 0; g < G; ++g) even[t][g] = odd[t][g] = _mm512_setzero_ps();
            for (int64_t d = b0; d < b0 + span; d += 2) {
                const __m512 k0 = load_key_dim<KT>(tile, d), k1 = load_key_dim<KT>(tile, d + 1);
                for (int t = 0; t < NT; ++t) {
                    for (int g = 0; g < G; ++g) {
                        const float* q = task.q + t * task.q_stride + g * head_dim + d;
                        even[t][g] = _mm512_fmadd_ps(_mm512_set1_ps(q[0]), k0, even[t][g]);
                        odd[t][g] = _mm512_fmadd_ps(_mm512_set1_ps(q[1]), k1, odd[t][g]);
                    }
                }
            }
            for (int t = 0; t < NT; ++t) {
                for (int g = 0; g < G; ++g) {
                    const __m512 sum = _mm512_add_ps(even[t][g], odd[t][g]);
                    if constexpr (KT == CacheType::kF16) {
                        total[t][g] = sum;
                    } else {
                        total[t][g] = _mm512_fmadd_ps(sum, load_halves(scales + b0 / kQK32 * kBlock), total[t][g]);
                    }
                }
            }
        }
        for (int t = 0; t < NT; ++t) {
            const int64_t n_pos = task.n_pos0 + t;
            if (p0 >= n_pos) continue;
            const auto valid = static_cast<__mmask16>((1u << std::min(kBlock, n_pos - p0)) - 1u);
            for (int g = 0; g < G; ++g) {
                _mm512_mask_storeu_ps(task.scores + (t * G + g) * task.score_stride + p0, valid,
                                      _mm512_mul_ps(total[t][g], scale));
            }
        }
    }
}

// out_tg = Σ_p s_tg[p] · v_p, kChunks × 16 dimensions at a time with every row's sums in
// registers: each value row is widened once for the tile. Positions every token attends come
// first, then the last NT - 1, each for the tokens that attend it (each row's sum runs over its
// positions in order, whatever NT).
template <int G, int NT, int kChunks, CacheType VT>
void tile_values(const TileTask& task) {
    const int64_t head_dim = task.head_dim;
    for (int64_t d0 = 0; d0 < head_dim; d0 += 16 * kChunks) {
        __m512 acc[NT * G][kChunks];
        for (int r = 0; r < NT * G; ++r)
            for (int c = 0; c < kChunks; ++c) acc[r][c] = _mm512_setzero_ps();
        auto add_position = [&](int64_t p, int first_token) {
            const uint8_t* row = task.values + p * task.value_row_bytes;
            __m512 v[kChunks];
            for (int c = 0; c < kChunks; ++c) v[c] = load_value_chunk<VT>(row, d0 + 16 * c);
            for (int r = first_token * G; r < NT * G; ++r) {
                const __m512 prob = _mm512_set1_ps(task.scores[r * task.score_stride + p]);
                for (int c = 0; c < kChunks; ++c) acc[r][c] = _mm512_fmadd_ps(prob, v[c], acc[r][c]);
            }
        };
        for (int64_t p = 0; p < task.n_pos0; ++p) add_position(p, 0);
        for (int t = 1; t < NT; ++t) add_position(task.n_pos0 + t - 1, t);  // tokens t .. NT-1 attend it
        for (int r = 0; r < NT * G; ++r) {
            float* out = task.out + (r / G) * task.out_stride + (r % G) * head_dim + d0;
            for (int c = 0; c < kChunks; ++c) _mm512_storeu_ps(out + 16 * c, acc[r][c]);
        }
    }
}

template <int G, int NT>
void softmax_rows(const TileTask& task) {
    for (int r = 0; r < NT * G; ++r) softmax(task.scores + r * task.score_stride, task.n_pos0 + r / G);
}

// Tokens per tile for a group of G query heads: at most 8 rows (16 score sums in registers).
constexpr int tile_tokens(int group) { return group <= 2 ? 4 : group <= 4 ? 2 : 1; }

using TileFn = void (*)(const TileTask&);
constexpr int kTypes = 3;  // CacheType values
using TileFns = std::array<std::array<TileFn, kMaxTileTokens + 1>, 9>;  // [group][tokens]

// Per tile: the scores (by key type), the softmax, the weighted values (by value type).
template <int G, int NT, int Stage, CacheType T>
constexpr TileFn tile_fn() {
    if constexpr (NT > tile_tokens(G)) {
        return nullptr;
    } else if constexpr (Stage == 0) {
        return tile_scores<G, NT, T>;
    } else if constexpr (Stage == 1) {
        return softmax_rows<G, NT>;
    } else {
        return tile_values<G, NT, (NT * G <= 6 ? 4 : 2), T>;  // at most 24 accumulators in flight
    }
}

template <int Stage, CacheType T, int G>
constexpr std::array<TileFn, kMaxTileTokens + 1> tile_fns_of_group() {
    return {nullptr, tile_fn<G, 1, Stage, T>(), tile_fn<G, 2, Stage, T>(), tile_fn<G, 3, Stage, T>(),
            tile_fn<G, 4, Stage, T>()};
}

// Groups of 1 to 8 query heads (Llama 3: 4, TinyLlama: 8) with head_dim a multiple of 64.
template <int Stage, CacheType T>
constexpr TileFns tile_fns() {
    return {std::array<TileFn, kMaxTileTokens + 1>{}, tile_fns_of_group<Stage, T, 1>(),
            tile_fns_of_group<Stage, T, 2>(), tile_fns_of_group<Stage, T, 3>(), tile_fns_of_group<Stage, T, 4>(),
            tile_fns_of_group<Stage, T, 5>(), tile_fns_of_group<Stage, T, 6>(), tile_fns_of_group<Stage, T, 7>(),
            tile_fns_of_group<Stage, T, 8>()};
}

template <int Stage>
constexpr std::array<TileFns, kTypes> stage_fns() {
    return {tile_fns<Stage, CacheType::kF16>(), tile_fns<Stage, CacheType::kQ8_0>(),
            tile_fns<Stage, CacheType::kQ4_0>()};
}

constexpr std::array<TileFns, kTypes> kScoreFns = stage_fns<0>();
constexpr TileFns kSoftmaxFns = tile_fns<1, CacheType::kF16>();
constexpr std::array<TileFns, kTypes> kValueFns = stage_fns<2>();

bool has_fast_path(const AttentionShape& shape) {
    const int64_t group = shape.n_head / shape.n_head_kv;
    return shape.head_dim % 64 == 0 && group >= 1 && group <= 8;
}
int tile_size(const AttentionShape& shape) {
    return has_fast_path(shape) ? tile_tokens(static_cast<int>(shape.n_head / shape.n_head_kv)) : 1;
}
void attend_tile_fast(const AttentionShape& shape, int n_tokens, const TileTask& task) {
    const int64_t group = shape.n_head / shape.n_head_kv;
    kScoreFns[static_cast<int>(task.types.keys)][group][n_tokens](task);
    kSoftmaxFns[group][n_tokens](task);
    kValueFns[static_cast<int>(task.types.values)][group][n_tokens](task);
}
#else
bool has_fast_path(const AttentionShape&) { return false; }
int tile_size(const AttentionShape&) { return 1; }
void attend_tile_fast(const AttentionShape&, int, const TileTask&) {}
#endif

}  // namespace

void attention(ThreadPool& pool, const AttentionShape& shape, const KVLayout& layout, const float* q,
               const AttentionRun* runs, int64_t n_runs, float* out, float* scores, int64_t score_stride) {
    const int64_t q_width = shape.n_head * shape.head_dim;
    const int64_t group = shape.n_head / shape.n_head_kv;
    const int tile = tile_size(shape);
    const int64_t key_tile = key_tile_bytes(layout.types.keys, shape.head_dim);
    const int64_t value_row = row_bytes(layout.types.values, shape.head_dim);
    // Work items of run r: [item_start[r], item_start[r + 1]), tile-major then KV head.
    thread_local std::vector<int64_t> item_start;
    item_start.assign(static_cast<size_t>(n_runs) + 1, 0);
    for (int64_t r = 0; r < n_runs; ++r) {
        item_start[r + 1] = item_start[r] + (runs[r].n_tokens + tile - 1) / tile * shape.n_head_kv;
    }
    const int64_t* starts = item_start.data();
    pool.run([&](int ith, int nth) {
        int64_t begin, end;
        split_range(starts[n_runs], ith, nth, begin, end);
        float* my_scores = scores + ith * kMaxTileTokens * group * score_stride;
        thread_local std::vector<float> scratch;  // one widened key block (portable path); grows once
        int64_t r = std::upper_bound(starts, starts + n_runs + 1, begin) - starts - 1;
        for (int64_t item = begin; item < end; ++item) {
            while (item >= starts[r + 1]) ++r;
            const AttentionRun& run = runs[r];
            const int64_t local = item - starts[r];
            const int64_t token0 = local / shape.n_head_kv * tile, kv_head = local % shape.n_head_kv;
            const int64_t head0 = kv_head * group;  // query heads head0 .. head0+group-1 share this KV head
            const int64_t row0 = run.first_row + token0;
            const int n = static_cast<int>(std::min<int64_t>(tile, run.n_tokens - token0));
            const TileTask task{shape.head_dim,
                                q + row0 * q_width + head0 * shape.head_dim,
                                q_width,
                                run.first_pos + token0 + 1,
                                run.keys + kv_head * layout.key_head_stride,
                                run.values + kv_head * layout.value_head_stride,
                                layout.types,
                                key_tile,
                                value_row,
                                my_scores,
                                score_stride,
                                out + row0 * q_width + head0 * shape.head_dim,
                                q_width};
            if (has_fast_path(shape)) {
                attend_tile_fast(shape, n, task);
                continue;
            }
            if (scratch.size() < static_cast<size_t>(shape.head_dim * kBlock)) scratch.resize(shape.head_dim * kBlock);
            for (int t = 0; t < n; ++t) attend_token_portable(task, group, t, scratch.data());
        }
    });
}

}  // namespace edgellama
