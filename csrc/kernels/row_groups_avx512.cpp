// Row-group kernels (see row_groups.h) for the 32-element family Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0
// with AVX-512 VNNI; the layout is in row_groups_layout_32.h.
#include "csrc/kernels/row_groups.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__) && \
    defined(__F16C__)
#include <immintrin.h>

#include "csrc/kernels/row_groups_layout_32.h"
#include "csrc/kernels/simd_avx512.h"
#include "csrc/kernels/type_traits.h"

namespace edgellama {
namespace {

using namespace row_groups_32;


// Block b's codes of all 16 rows as unsigned bytes: w[k] holds elements 4k .. 4k+3 of every row.
template <class F, bool kHighTimes16>
inline void load_codes(const uint8_t* p, __m512i* w) {
    if constexpr (F::kCodeChunks == 5) {
        const __m512i low_nibbles = _mm512_set1_epi8(0x0f), bit4 = _mm512_set1_epi8(0x10);
        const __m512i high = _mm512_loadu_si512(p + 256);
        // Fifth bits of element group g to bit 4 of each byte, then OR'd onto the nibbles.
        auto with_high = [&](__m512i nibbles, int g) {
            const __m512i h = g <= 4 ? _mm512_slli_epi32(high, 4 - g) : _mm512_srli_epi32(high, g - 4);
            return _mm512_ternarylogic_epi32(nibbles, h, bit4, 0xf8);  // nibbles | (h & bit4)
        };
        for (int k = 0; k < 4; ++k) {
            const __m512i packed = _mm512_loadu_si512(p + 64 * k);
            w[k] = with_high(_mm512_and_si512(packed, low_nibbles), k);
            w[k + 4] = with_high(_mm512_and_si512(_mm512_srli_epi16(packed, 4), low_nibbles), k + 4);
        }
    } else if constexpr (F::kCodeChunks == 4) {
        const __m512i low_nibbles = _mm512_set1_epi8(0x0f), high_nibbles = _mm512_set1_epi8(static_cast<char>(0xf0));
        for (int k = 0; k < 4; ++k) {
            const __m512i packed = _mm512_loadu_si512(p + 64 * k);
            w[k] = _mm512_and_si512(packed, low_nibbles);  // elements 4k ..
            // Elements 16 + 4k .., or 16 times them left in place (a mask, no shift).
            w[k + 4] = kHighTimes16 ? _mm512_and_si512(packed, high_nibbles)
                                    : _mm512_and_si512(_mm512_srli_epi16(packed, 4), low_nibbles);
        }
    } else {
        for (int k = 0; k < 8; ++k) w[k] = _mm512_loadu_si512(p + 64 * k);
    }
}

// Q4_0 / Q4_1 for one token: the high nibbles are dotted as 16·q into a sum of their own, shifted
// down once per block (exact: dpbusd does not saturate and |16·Σ q·a| < 2^20), which trades four
// shifts for one on the port the byte dots also need and splits the block's chain of dependent
// dots in two (+15% GB/s from cache). Batches share the unpacking among their tokens and have no
// registers to spare for the second sums.
template <class F, int T>
constexpr bool kHighNibblesTimes16 = F::kCodeChunks == 4 && T == 1;

template <class F, int T>
void group_dot_tokens(int64_t n, const uint8_t* group, const uint8_t* act, size_t act_stride, float* out,
                      int64_t out_stride, __mmask16 valid) {
    const int64_t nb = n / kQK32;
    const uint8_t* codes = group;
    const uint16_t* d = reinterpret_cast<const uint16_t*>(group + nb * code_bytes_per_block<F>());
    const uint16_t* m = d + nb * kGroupRows;
    ActView a[T];
    for (int t = 0; t < T; ++t) a[t] = act_view(act + t * act_stride, nb);
    __m512 acc[T];
    for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();

    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* block_codes = codes + b * code_bytes_per_block<F>();
        for (int k = 0; k < F::kCodeChunks; ++k) {
            prefetch_weight_line(block_codes + 64 * k);
        }
        __m512i w[8];
        load_codes<F, kHighNibblesTimes16<F, T>>(block_codes, w);
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(d + b * kGroupRows)));
        __m512i isum[T], isum_high16[T];
        for (int t = 0; t < T; ++t) {
            isum[t] = _mm512_set1_epi32(a[t].offset[b]);
            isum_high16[t] = _mm512_setzero_si512();
        }
        for (int k = 0; k < 8; ++k) {
            for (int t = 0; t < T; ++t) {
                __m512i& sum = kHighNibblesTimes16<F, T> && k >= 4 ? isum_high16[t] : isum[t];
                sum = dpbusd_broadcast(sum, w[k], a[t].codes + b * kQK32 + 4 * k);
            }
        }
        if constexpr (kHighNibblesTimes16<F, T>) {
            for (int t = 0; t < T; ++t) isum[t] = _mm512_add_epi32(isum[t], _mm512_srai_epi32(isum_high16[t], 4));
        }
        for (int t = 0; t < T; ++t) {
            const __m512 scale = _mm512_mul_ps(dw, _mm512_set1_ps(a[t].d[b]));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), scale, acc[t]);
        }
        if constexpr (F::kHasMin) {
            const __m512 mw =
                _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(m + b * kGroupRows)));
            for (int t = 0; t < T; ++t) acc[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(a[t].sum[b]), acc[t]);
        }
    }
    for (int t = 0; t < T; ++t) _mm512_mask_storeu_ps(out + t * out_stride, valid, acc[t]);
}

template <class F>
void group_dot(int64_t n, const uint8_t* group, const uint8_t* act, size_t act_stride, int n_tok, float* out,
               int64_t out_stride, int n_rows) {
    const __mmask16 valid = static_cast<__mmask16>((1u << n_rows) - 1u);
    for_token_batches<kGroupTokens>(n_tok, [&](int t0, auto tokens) {
        group_dot_tokens<F, decltype(tokens)::value>(n, group, act + t0 * act_stride, act_stride, out + t0 * out_stride,
                                                     out_stride, valid);
    });
}

template <class F>
const RowGroupKernel kKernel = {group_bytes<F>, pack_group<F>, unpack_row<F>, act_bytes, pack_act<F>, group_dot<F>};

}  // namespace

const RowGroupKernel* find_row_group_kernel_32_avx512(int32_t type_id) {
    return row_groups_32::kernel_for_type(type_id, [](auto format) { return &kKernel<decltype(format)>; });
}

}  // namespace edgellama

#else

namespace edgellama {
const RowGroupKernel* find_row_group_kernel_32_avx512(int32_t) { return nullptr; }
}  // namespace edgellama

#endif
