// Row-group kernels (see row_groups.h) for the K-quants Q4_K, Q5_K and Q6_K with AVX2 (no VNNI),
// on the AVX-512 kernels' group layout (row_groups_layout_k.h): a 16-row group is two halves of
// 8 rows, one 32-bit lane per row in a 256-bit register. Every pass (up to kTokens tokens) walks
// both halves of each sub-block together, so each activation broadcast serves 16 rows and the
// group is read once.
//
// Q5_K and Q6_K have layouts of their own here (Q5_KFiveBitLayout, Q6_KSixBitLayout): without
// AVX-512's three-input logic op, putting a GGUF code back together from its nibble and high bits
// took four to five instructions, as many as its two maddubs in a precise pass. With half of Q5_K's
// codes and three quarters of Q6_K's one AND away from a byte, in cache (decode, 1 thread, Zen 3)
// Q5_K runs 18% faster precise and 22% int8, Q6_K 22% and 27%; prefill 15-17%.
//
// Codes × activations go through maddubs (adjacent pairs into int16), widened to int32 before an
// int16 sum could overflow: 4-bit codes after 8 steps (|sum| <= 16·15·127), 5-bit after 4, 6-bit
// after 2. Every sub-block's integer sum is exact, so the float sequence per (row, token) is the
// AVX-512 kernels' own (see row_groups_k_avx512.cpp).
#include "csrc/kernels/row_groups.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include <algorithm>

#include "csrc/kernels/row_groups_layout_k.h"
#include "csrc/kernels/simd_avx2.h"
#include "csrc/kernels/type_traits.h"

namespace edgellama {
namespace {

using namespace row_groups_k;

constexpr int kHalfRows = 8;
// Tokens per pass, as in row_groups_avx2.cpp: prefill with both halves per pass runs Q4_K and Q6_K
// 8-17% faster than one half at a time (Q5_K within 3%).
constexpr int kTokens = 4;

inline __m256i chunk_at(const uint8_t* p, int index, int half) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 64 * index + 32 * half));
}
inline __m256i bcst4(const int8_t* p) { return _mm256_set1_epi32(static_cast<int>(load_u32(p))); }
inline __m256 f16x8(const uint8_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
inline __m256i byte_of(__m256i v, int b) { return _mm256_and_si256(_mm256_srli_epi32(v, 8 * b), _mm256_set1_epi32(0xff)); }
inline __m256i signed_byte_of(__m256i v, int b) { return _mm256_srai_epi32(_mm256_slli_epi32(v, 24 - 8 * b), 24); }

template <int kSub>
struct SuperScales {
    __m256 dsc[kSub];
    __m256i mn_pairs[4];
    __m256 neg_dmin;
};

// As unpack_scales_k in row_groups_k_avx512.cpp, for one half of the group.
inline void unpack_scales_k(const uint8_t* scale_chunks, const uint8_t* d_f16, int half, SuperScales<8>& s) {
    const __m256i s0 = chunk_at(scale_chunks, 0, half), s1 = chunk_at(scale_chunks, 1, half),
                  s2 = chunk_at(scale_chunks, 2, half);
    const __m256i low6 = _mm256_set1_epi8(63), low4 = _mm256_set1_epi8(0x0f), top2 = _mm256_set1_epi8(0x30);
    const __m256i sc_lo = _mm256_and_si256(s0, low6);
    const __m256i mn_lo = _mm256_and_si256(s1, low6);
    const __m256i sc_hi = _mm256_or_si256(_mm256_and_si256(s2, low4), _mm256_and_si256(_mm256_srli_epi32(s0, 2), top2));
    const __m256i mn_hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(s2, 4), low4),
                                          _mm256_and_si256(_mm256_srli_epi32(s1, 2), top2));
    const __m256 d = f16x8(d_f16 + 16 * half);
    for (int j = 0; j < 4; ++j) {
        s.dsc[j] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(byte_of(sc_lo, j)));
        s.dsc[j + 4] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(byte_of(sc_hi, j)));
    }
    const __m256i even_bytes = _mm256_set1_epi32(0x00ff00ff);
    s.mn_pairs[0] = _mm256_and_si256(mn_lo, even_bytes);
    s.mn_pairs[1] = _mm256_and_si256(_mm256_srli_epi32(mn_lo, 8), even_bytes);
    s.mn_pairs[2] = _mm256_and_si256(mn_hi, even_bytes);
    s.mn_pairs[3] = _mm256_and_si256(_mm256_srli_epi32(mn_hi, 8), even_bytes);
    s.neg_dmin = _mm256_sub_ps(_mm256_setzero_ps(), f16x8(d_f16 + 32 + 16 * half));
}

struct Q4_KFormat : Q4_KLayout {
    static constexpr int kSteps = 8;  // int16-safe maddubs steps per widening
    static void scales(const uint8_t* g, int half, SuperScales<8>& s) { unpack_scales_k(g + kScales, g + kD, half, s); }
    // Step k (elements 4k .. 4k+3) of sub-block j.
    static __m256i code(const uint8_t* g, int half, int j, int k) {
        const __m256i packed = chunk_at(g + kCodes, (j / 2) * 8 + k, half);
        return _mm256_and_si256(j % 2 == 0 ? packed : _mm256_srli_epi16(packed, 4), _mm256_set1_epi8(0x0f));
    }
};

struct Q5_KFormat : Q5_KFiveBitLayout {
    static constexpr int kSteps = 4;
    static void scales(const uint8_t* g, int half, SuperScales<8>& s) { unpack_scales_k(g + kScales, g + kD, half, s); }
    // Step k of sub-block j (see Q5_KFiveBitLayout): j = 2c whole in array c; j = 2c + 1 from its top
    // three bits and the last array's bits 2c, 2c+1.
    static __m256i code(const uint8_t* g, int half, int j, int k) {
        const __m256i word = chunk_at(g + kCodes, (j / 2) * 8 + k, half);
        if (j % 2 == 0) return _mm256_and_si256(word, _mm256_set1_epi8(0x1f));
        const __m256i last = chunk_at(g + kLast, k, half);
        const __m256i top = _mm256_and_si256(_mm256_srli_epi16(word, 3), _mm256_set1_epi8(0x1c));
        const __m256i low = _mm256_and_si256(j == 1 ? last : _mm256_srli_epi16(last, j - 1), _mm256_set1_epi8(0x03));
        return _mm256_or_si256(top, low);
    }
};

struct Q6_KFormat : Q6_KSixBitLayout {
    static constexpr int kSteps = 2;
    static void scales(const uint8_t* g, int half, SuperScales<16>& s) {
        const __m256 d = f16x8(g + kD + 16 * half);
        for (int i = 0; i < 16; ++i) {
            s.dsc[i] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(signed_byte_of(chunk_at(g + kScales, i / 4, half), i % 4)));
        }
    }
    // Sub-block j = 16 elements 16j .. 16j+15: half h = j / 8, code s = (j % 8) / 2 of its set,
    // l = 16 (j % 2) + 4k (see Q6_KSixBitLayout).
    static __m256i code(const uint8_t* g, int half, int j, int k) {
        const int h = j / 8, s = (j % 8) / 2, chunk = (32 * h + 16 * (j % 2) + 4 * k) / 4;
        const auto array = [&](int i) { return chunk_at(g + kCodes + 1024 * i, chunk, half); };
        if (s < 3) return _mm256_and_si256(array(s), _mm256_set1_epi8(0x3f));
        // Top two bits of array i to bits 2i, 2i+1 (16-bit shifts; the masks drop what crosses bytes).
        const __m256i b0 = _mm256_and_si256(_mm256_srli_epi16(array(0), 6), _mm256_set1_epi8(0x03));
        const __m256i b1 = _mm256_and_si256(_mm256_srli_epi16(array(1), 4), _mm256_set1_epi8(0x0c));
        const __m256i b2 = _mm256_and_si256(_mm256_srli_epi16(array(2), 2), _mm256_set1_epi8(0x30));
        return _mm256_or_si256(_mm256_or_si256(b0, b1), b2);
    }
};

// Prefetches the lines of sub-block j of super-block sb (see prefetch_weight_line).
template <class F>
inline void prefetch_sub_block(const uint8_t* sb, int j) {
    constexpr size_t kLinesPerSub = (F::kSuperBytes / F::kSub + 63) / 64;
    for (size_t i = 0; i < kLinesPerSub; ++i) prefetch_weight_line(sb + (j * kLinesPerSub + i) * 64);
}

// Where a sub-block's integer sum starts: the activation's offset term (formats with a min have none).
template <class F>
inline __m256i sub_block_start(const ActView& a, int64_t s, int j) {
    return F::kHasMin ? _mm256_setzero_si256() : _mm256_set1_epi32(a.offset16[s * 16 + j]);
}

// A sub-block's and a super-block's min term's share of acc: the same float sequence per (row,
// token) whatever the token count, so prefill and decode give the same bits.
template <int kSub, int T>
inline void add_sub_block(const SuperScales<kSub>& sc, int j, const ActView* a, int64_t s, const __m256i* isum,
                          __m256* acc) {
    for (int t = 0; t < T; ++t) {
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(sc.dsc[j], _mm256_set1_ps(a[t].d[s])), acc[t]);
    }
}

template <int kSub, int T>
inline void add_min_term(const SuperScales<kSub>& sc, const ActView* a, int64_t s, __m256* acc) {
    for (int t = 0; t < T; ++t) {
        __m256i msum = _mm256_setzero_si256();
        for (int i = 0; i < 4; ++i) {
            msum = _mm256_add_epi32(msum, _mm256_madd_epi16(sc.mn_pairs[i], _mm256_set1_epi32(a[t].sum_pairs[s * 4 + i])));
        }
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_mul_ps(sc.neg_dmin, _mm256_set1_ps(a[t].d[s])), acc[t]);
    }
}

// sums[half][t] + exact Σ code·a over sub-block j for both halves' rows; each step's activation
// broadcast serves both halves. The maddubs int16 sums are widened before they could overflow.
template <class F, int T>
inline void add_sub_block_sums(const uint8_t* sb, int j, const int8_t* const* a, __m256i (&sums)[2][T]) {
#if defined(EDGELLAMA_VNNI_256)
    for (int k = 0; k < F::kChunksPerSub; ++k) {
        const __m256i w0 = F::code(sb, 0, j, k), w1 = F::code(sb, 1, j, k);
        for (int t = 0; t < T; ++t) {
            const __m256i act = bcst4(a[t] + 4 * k);
            sums[0][t] = simd::dpbusd(sums[0][t], w0, act);
            sums[1][t] = simd::dpbusd(sums[1][t], w1, act);
        }
    }
#else
    const __m256i ones = _mm256_set1_epi16(1);
    for (int k0 = 0; k0 < F::kChunksPerSub; k0 += F::kSteps) {
        __m256i s16[2][T] = {};  // every element is set by step k0 (the initializer quiets -Wmaybe-uninitialized)
        for (int k = k0; k < k0 + F::kSteps; ++k) {
            const __m256i w0 = F::code(sb, 0, j, k), w1 = F::code(sb, 1, j, k);
            for (int t = 0; t < T; ++t) {
                const __m256i act = bcst4(a[t] + 4 * k);
                const __m256i p0 = _mm256_maddubs_epi16(w0, act), p1 = _mm256_maddubs_epi16(w1, act);
                s16[0][t] = k == k0 ? p0 : simd::add_i16_in_order(s16[0][t], p0);
                s16[1][t] = k == k0 ? p1 : simd::add_i16_in_order(s16[1][t], p1);
            }
        }
        for (int half = 0; half < 2; ++half)
            for (int t = 0; t < T; ++t) sums[half][t] = _mm256_add_epi32(sums[half][t], _mm256_madd_epi16(s16[half][t], ones));
    }
#endif
}

// out[t * out_stride + r] for T tokens and the group's rows, in one pass over the group.
template <class F, int T>
void dot_tokens(int64_t n, const uint8_t* group, const uint8_t* act, size_t act_stride, float* out, int64_t out_stride,
                int n_rows) {
    const int64_t nsb = n / kQK256;
    ActView a[T];
    for (int t = 0; t < T; ++t) a[t] = act_view(act + t * act_stride, nsb);
    __m256 acc[2][T];
    for (int half = 0; half < 2; ++half)
        for (int t = 0; t < T; ++t) acc[half][t] = _mm256_setzero_ps();
    for (int64_t s = 0; s < nsb; ++s) {
        const uint8_t* sb = group + s * F::kSuperBytes;
        SuperScales<F::kSub> sc[2];
        F::scales(sb, 0, sc[0]);
        F::scales(sb, 1, sc[1]);
        for (int j = 0; j < F::kSub; ++j) {
            prefetch_sub_block<F>(sb, j);
            const int64_t first = s * kQK256 + j * F::kSubSize;
            const int8_t* codes[T];
            __m256i isum[2][T];
            for (int t = 0; t < T; ++t) {
                codes[t] = a[t].codes + first;
                isum[0][t] = isum[1][t] = sub_block_start<F>(a[t], s, j);
            }
            add_sub_block_sums<F, T>(sb, j, codes, isum);
            for (int half = 0; half < 2; ++half) add_sub_block<F::kSub, T>(sc[half], j, a, s, isum[half], acc[half]);
        }
        if constexpr (F::kHasMin) {
            for (int half = 0; half < 2; ++half) add_min_term<F::kSub, T>(sc[half], a, s, acc[half]);
        }
    }
    for (int half = 0; half * kHalfRows < n_rows; ++half) {
        const int rows = std::min(kHalfRows, n_rows - half * kHalfRows);
        for (int t = 0; t < T; ++t) simd::store_first(out + t * out_stride + half * kHalfRows, acc[half][t], rows);
    }
}

template <class F>
void group_dot(int64_t n, const uint8_t* group, const uint8_t* act, size_t act_stride, int n_tok, float* out,
               int64_t out_stride, int n_rows) {
    for_token_batches<kTokens>(n_tok, [&](int t0, auto tokens) {
        dot_tokens<F, decltype(tokens)::value>(n, group, act + t0 * act_stride, act_stride, out + t0 * out_stride,
                                               out_stride, n_rows);
    });
}

template <class F>
const RowGroupKernel kKernel = {group_bytes<F>, pack_group<F>, unpack_row<F>, act_bytes, pack_act, group_dot<F>};

}  // namespace

const RowGroupKernel* find_row_group_kernel_k_avx2(int32_t type_id) {
    switch (static_cast<TensorType>(type_id)) {
        case TensorType::Q4_K: return &kKernel<Q4_KFormat>;
        case TensorType::Q5_K: return &kKernel<Q5_KFormat>;
        case TensorType::Q6_K: return &kKernel<Q6_KFormat>;
        default: return nullptr;
    }
}

}  // namespace edgellama

#else

namespace edgellama {
const RowGroupKernel* find_row_group_kernel_k_avx2(int32_t) { return nullptr; }
}  // namespace edgellama

#endif
