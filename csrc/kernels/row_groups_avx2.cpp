// Row-group kernels (see row_groups.h) for the 32-element family with AVX2 (no VNNI), on the same
// group layout as the AVX-512 kernels (row_groups_layout_32.h): a 16-row group is two halves of
// 8 rows, one 32-bit lane per row in a 256-bit register. Every pass (up to kTokens tokens, a
// decode step's one token or a precise token's two rows among them) walks both halves of each
// block together, so each activation broadcast serves 16 rows and the group is read once. Q5_0
// and Q5_1 keep their codes as Q5FiveBitFormat, half of them whole in a byte: in cache (1 thread,
// Zen 3) decode int8 runs 14-19% faster than from a nibble and a fifth bit, precise 2-3%, prefill
// 7-13%. Q8_0 keeps its signed codes as stored (Q8_0SignedFormat), which saves the XOR that undid
// the + 128 of the shared layout at every step: 1B Q8_0 decode, medians of 5 interleaved rounds,
// precise +5% at 1 thread and +12% at 2 (int8 +3% and +6%).
//
// Without a byte dot into 32-bit lanes, codes × activations go through maddubs (unsigned × signed
// bytes, adjacent pairs summed into int16). Those int16 sums stay exact as long as they cannot
// overflow: 4-bit codes (Q4_0, Q4_1) allow all 8 steps of a block in int16 (|sum| <= 16·15·127),
// 5-bit codes 4 steps; Q8_0's signed weights use |w| against sign(a, w), one step at a time.
// Each block's integer sum is exact, so the float sequence per (row, token) is the AVX-512
// kernels' own: acc = fma(float(isum), float(d_w · d_a), acc), then the Q4_1/Q5_1 min term.
#include "csrc/kernels/row_groups.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include <algorithm>
#include <type_traits>

#include "csrc/kernels/row_groups_layout_32.h"
#include "csrc/kernels/simd_avx2.h"
#include "csrc/kernels/type_traits.h"

namespace edgellama {
namespace {

using namespace row_groups_32;

constexpr int kHalfRows = 8;
// Tokens per pass. Prefill kernel, 64 tokens, 1 thread, Zen 3: 4 tokens over both halves run
// 6-16% faster than 4 over one half at a time (Q4_0, Q4_1, Q8_0; Q5_0 within 3%) and 6-9% faster
// than 2 over both halves.
constexpr int kTokens = 4;

inline __m256i load8(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline __m256i bcst4(const int8_t* p) { return _mm256_set1_epi32(static_cast<int>(load_u32(p))); }
inline __m256 f16x8(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }

// 4- and 5-bit formats: elements 4k .. 4k+3 (lo) and 16 + 4k .. (hi) of a block for one half
// (8 rows) as unsigned bytes (Q4: both nibbles of packed chunk k; Q5: see Q5FiveBitFormat).
template <class F>
inline void load_code_pair(const uint8_t* block, int half, int k, __m256i& lo, __m256i& hi) {
    const __m256i packed = load8(block + 64 * k + 32 * half);
    if constexpr (F::kCodeChunks == 5) {
        static_assert(F::kFiveBitCodes, "the AVX2 kernels hold Q5 codes as Q5FiveBitFormat");
        const __m256i last = load8(block + 256 + 32 * half);
        lo = _mm256_and_si256(packed, _mm256_set1_epi8(0x1f));
        const __m256i top = _mm256_and_si256(_mm256_srli_epi16(packed, 3), _mm256_set1_epi8(0x1c));
        const __m256i low2 = _mm256_and_si256(k == 0 ? last : _mm256_srli_epi16(last, 2 * k), _mm256_set1_epi8(0x03));
        hi = _mm256_or_si256(top, low2);
    } else {
        const __m256i low4 = _mm256_set1_epi8(0x0f);
        lo = _mm256_and_si256(packed, low4);
        hi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low4);
    }
}

// acc[t] += block b's share for one half's 8 rows: fma(float(isum), d_w · d_a), then the min term:
// the same float sequence per (row, token) whatever the token count, so prefill and decode give
// the same bits.
template <class F, int T>
inline void add_block(const uint16_t* d, const uint16_t* m, int64_t b, int half, const ActView* a, const __m256i* isum,
                      __m256* acc) {
    const __m256 dw = f16x8(d + b * kGroupRows + kHalfRows * half);
    for (int t = 0; t < T; ++t) {
        const __m256 scale = _mm256_mul_ps(dw, _mm256_set1_ps(a[t].d[b]));
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), scale, acc[t]);
    }
    if constexpr (F::kHasMin) {
        const __m256 mw = f16x8(m + b * kGroupRows + kHalfRows * half);
        for (int t = 0; t < T; ++t) acc[t] = _mm256_fmadd_ps(mw, _mm256_set1_ps(a[t].sum[b]), acc[t]);
    }
}

// Steps k and k + 4 (4-bit formats: one packed load gives both) of both halves into the sums;
// each token's two broadcasts serve both halves.
template <class F, int T>
inline void add_packed_steps(const uint8_t* block, int k, const int8_t* const* a, __m256i (&sums)[2][T]) {
    __m256i lo[2], hi[2];
    for (int half = 0; half < 2; ++half) load_code_pair<F>(block, half, k, lo[half], hi[half]);
    for (int t = 0; t < T; ++t) {
        const __m256i act_lo = bcst4(a[t] + 4 * k), act_hi = bcst4(a[t] + 16 + 4 * k);
        for (int half = 0; half < 2; ++half) {
#if defined(EDGELLAMA_VNNI_256)
            sums[half][t] = simd::dpbusd(simd::dpbusd(sums[half][t], lo[half], act_lo), hi[half], act_hi);
#else
            const __m256i p = simd::add_i16_in_order(_mm256_maddubs_epi16(lo[half], act_lo), _mm256_maddubs_epi16(hi[half], act_hi));
            sums[half][t] = simd::add_i16_in_order(sums[half][t], p);
#endif
        }
    }
}

// Exact Σ code·a over block b for both halves' rows and T tokens, plus each activation's offset term
// (with VNNI one byte dot per step, exact in int32; Q8_0's stored codes + 128 are then offset by
// -128·Σa, as in the AVX-512 kernel).
template <class F, int T>
inline void block_sums(const uint8_t* block, const int8_t* const* a, const int32_t* offset, __m256i (&sum)[2][T]) {
    constexpr bool kOffsetTerm = F::kActOffset != 0;
    for (int half = 0; half < 2; ++half)
        for (int t = 0; t < T; ++t) sum[half][t] = _mm256_set1_epi32(kOffsetTerm ? offset[t] : 0);
    if constexpr (F::kCodeChunks == 8) {
#if defined(EDGELLAMA_VNNI_256)
        for (int k = 0; k < 8; ++k)
            for (int half = 0; half < 2; ++half) {
                const __m256i w = load8(block + 64 * k + 32 * half);
                for (int t = 0; t < T; ++t) sum[half][t] = simd::dpbusd(sum[half][t], w, bcst4(a[t] + 4 * k));
            }
#else
        // The signed codes' own dot, one step at a time (no offset term).
        static_assert(F::kSignedCodes, "the maddubs route holds Q8_0 as Q8_0SignedFormat");
        for (int k = 0; k < 8; ++k) {
            __m256i signed_w[2];
            for (int half = 0; half < 2; ++half) signed_w[half] = load8(block + 64 * k + 32 * half);
            for (int t = 0; t < T; ++t) {
                const __m256i act = bcst4(a[t] + 4 * k);
                for (int half = 0; half < 2; ++half) {
                    sum[half][t] = simd::add_i32_in_order(sum[half][t], simd::dot_s8s8(signed_w[half], act));
                }
            }
        }
#endif
    } else {
#if defined(EDGELLAMA_VNNI_256)
        for (int k = 0; k < 4; ++k) add_packed_steps<F, T>(block, k, a, sum);
#else
        // int16 sums, widened before they could overflow: after 8 steps of 4-bit codes, 4 of 5-bit.
        constexpr int kPackedPerWidening = F::kCodeChunks == 5 ? 2 : 4;
        const __m256i ones = _mm256_set1_epi16(1);
        for (int k0 = 0; k0 < 4; k0 += kPackedPerWidening) {
            __m256i s16[2][T];
            for (int half = 0; half < 2; ++half)
                for (int t = 0; t < T; ++t) s16[half][t] = _mm256_setzero_si256();
            for (int k = k0; k < k0 + kPackedPerWidening; ++k) add_packed_steps<F, T>(block, k, a, s16);
            for (int half = 0; half < 2; ++half)
                for (int t = 0; t < T; ++t) sum[half][t] = _mm256_add_epi32(sum[half][t], _mm256_madd_epi16(s16[half][t], ones));
        }
#endif
    }
}

// out[t * out_stride + r] for T tokens and the group's rows, in one pass over the group.
template <class F, int T>
void dot_tokens(int64_t n, const uint8_t* group, const uint8_t* act, size_t act_stride, float* out, int64_t out_stride,
                int n_rows) {
    const int64_t nb = n / kQK32;
    const uint16_t* d = reinterpret_cast<const uint16_t*>(group + nb * code_bytes_per_block<F>());
    const uint16_t* m = d + nb * kGroupRows;
    ActView a[T];
    for (int t = 0; t < T; ++t) a[t] = act_view(act + t * act_stride, nb);
    __m256 acc[2][T];
    for (int half = 0; half < 2; ++half)
        for (int t = 0; t < T; ++t) acc[half][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* block = group + b * code_bytes_per_block<F>();
        for (int k = 0; k < F::kCodeChunks; ++k) prefetch_weight_line(block + 64 * k);
        const int8_t* codes[T];
        int32_t offset[T];
        for (int t = 0; t < T; ++t) {
            codes[t] = a[t].codes + b * kQK32;
            offset[t] = a[t].offset[b];
        }
        __m256i isum[2][T];
        block_sums<F, T>(block, codes, offset, isum);
        for (int half = 0; half < 2; ++half) add_block<F, T>(d, m, b, half, a, isum[half], acc[half]);
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
const RowGroupKernel kKernel = {group_bytes<F>, pack_group<F>, unpack_row<F>, act_bytes, pack_act<F>, group_dot<F>};

}  // namespace

const RowGroupKernel* find_row_group_kernel_32_avx2(int32_t type_id) {
    return row_groups_32::kernel_for_type(type_id, [](auto format) -> const RowGroupKernel* {
        using F = decltype(format);
        if constexpr (std::is_same_v<F, Q5_0Format>) {
            return &kKernel<Q5FiveBitFormat<BlockQ5_0, false>>;
        } else if constexpr (std::is_same_v<F, Q5_1Format>) {
            return &kKernel<Q5FiveBitFormat<BlockQ5_1, true>>;
#if !defined(EDGELLAMA_VNNI_256)
        } else if constexpr (std::is_same_v<F, Q8_0Format>) {
            return &kKernel<Q8_0SignedFormat>;
#endif
        } else {
            return &kKernel<F>;
        }
    });
}

}  // namespace edgellama

#else

namespace edgellama {
const RowGroupKernel* find_row_group_kernel_32_avx2(int32_t) { return nullptr; }
}  // namespace edgellama

#endif
