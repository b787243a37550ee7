// Row-group kernels (see row_groups.h) for the K-quants Q4_K, Q5_K and Q6_K with AVX-512 VNNI;
// the layout is in row_groups_layout_k.h. Scales are unpacked once per super-block for all 16
// rows (and reused for up to kGroupTokens tokens).
//
// Per (row, token) and super-block, in this order whatever the batch or thread:
//   for each sub-block j: acc = fma(float(isum_j), float(d·sc_j · d_a), acc)
//     (Q6_K: 16 sub-blocks of 16 with isum_j = Σ q·a - 32·Σa exact; Q4_K/Q5_K: 8 of 32, isum_j = Σ q·a)
//   Q4_K/Q5_K then acc = fma(float(Σ_j mn_j·Σa_j), float(-dmin · d_a), acc)  (an exact integer sum)
// d·sc_j is exact in float (an 11-bit by 6- or 8-bit product).
#include "csrc/kernels/row_groups.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__) && \
    defined(__F16C__)
#include <immintrin.h>

#include "csrc/kernels/row_groups_layout_k.h"
#include "csrc/kernels/simd_avx512.h"
#include "csrc/kernels/type_traits.h"

namespace edgellama {
namespace {

using namespace row_groups_k;

inline __m512i chunk_at(const uint8_t* p, int index) { return _mm512_loadu_si512(p + 64 * index); }
inline __m512 f16x16(const uint8_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
// Byte `b` of every 32-bit lane, zero- or sign-extended to the lane.
inline __m512i byte_of(__m512i v, int b) {
    return _mm512_and_si512(_mm512_srli_epi32(v, 8 * b), _mm512_set1_epi32(0xff));
}
inline __m512i signed_byte_of(__m512i v, int b) { return _mm512_srai_epi32(_mm512_slli_epi32(v, 24 - 8 * b), 24); }

// ---------------------------------------------------------------- per-format layouts

// Scales of one super-block for all 16 rows: d·sc_j per sub-block, and for formats with mins the
// mn_j as int16 pairs (mn_0, mn_2), (mn_1, mn_3), (mn_4, mn_6), (mn_5, mn_7) with -dmin.
template <int kSub>
struct SuperScales {
    __m512 dsc[kSub];
    __m512i mn_pairs[4];
    __m512 neg_dmin;
};

// Q4_K and Q5_K share the 12-byte 6-bit scale/min packing.
inline void unpack_scales_k(const uint8_t* scale_chunks, const uint8_t* d_f16, SuperScales<8>& s) {
    const __m512i s0 = chunk_at(scale_chunks, 0), s1 = chunk_at(scale_chunks, 1), s2 = chunk_at(scale_chunks, 2);
    const __m512i low6 = _mm512_set1_epi8(63), low4 = _mm512_set1_epi8(0x0f), top2 = _mm512_set1_epi8(0x30);
    // Bytes j of these lanes are sc_j / mn_j (j < 4) and sc_{j+4} / mn_{j+4}.
    const __m512i sc_lo = _mm512_and_si512(s0, low6);
    const __m512i mn_lo = _mm512_and_si512(s1, low6);
    const __m512i sc_hi = _mm512_or_si512(_mm512_and_si512(s2, low4), _mm512_and_si512(_mm512_srli_epi32(s0, 2), top2));
    const __m512i mn_hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(s2, 4), low4),
                                          _mm512_and_si512(_mm512_srli_epi32(s1, 2), top2));
    const __m512 d = f16x16(d_f16);
    for (int j = 0; j < 4; ++j) {
        s.dsc[j] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(byte_of(sc_lo, j)));
        s.dsc[j + 4] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(byte_of(sc_hi, j)));
    }
    const __m512i even_bytes = _mm512_set1_epi32(0x00ff00ff);
    s.mn_pairs[0] = _mm512_and_si512(mn_lo, even_bytes);                          // (mn_0, mn_2)
    s.mn_pairs[1] = _mm512_and_si512(_mm512_srli_epi32(mn_lo, 8), even_bytes);    // (mn_1, mn_3)
    s.mn_pairs[2] = _mm512_and_si512(mn_hi, even_bytes);                          // (mn_4, mn_6)
    s.mn_pairs[3] = _mm512_and_si512(_mm512_srli_epi32(mn_hi, 8), even_bytes);    // (mn_5, mn_7)
    s.neg_dmin = _mm512_sub_ps(_mm512_setzero_ps(), f16x16(d_f16 + 32));
}

struct Q4_KFormat : Q4_KLayout {
    static void scales(const uint8_t* g, SuperScales<8>& s) { unpack_scales_k(g + kScales, g + kD, s); }
    // Sub-block j: chunk pair c = j / 2 holds it in its low (j even) or high (j odd) nibbles. The
    // high nibbles stay in place, as 16·q: a mask instead of a shift per chunk, and the sub-block's
    // sum is shifted down once (codes_times_log2).
    static void codes(const uint8_t* g, int j, __m512i* w) {
        const __m512i nibble = _mm512_set1_epi8(static_cast<char>(j % 2 == 0 ? 0x0f : 0xf0));
        for (int k = 0; k < 8; ++k) w[k] = _mm512_and_si512(chunk_at(g + kCodes, (j / 2) * 8 + k), nibble);
    }
    static constexpr int codes_times_log2(int j) { return j % 2 == 0 ? 0 : 4; }
};

struct Q5_KFormat : Q5_KLayout {
    static void scales(const uint8_t* g, SuperScales<8>& s) { unpack_scales_k(g + kScales, g + kD, s); }
    // As Q4_K, plus bit j of each qh byte as bit 4.
    static void codes(const uint8_t* g, int j, __m512i* w) {
        const __m512i low4 = _mm512_set1_epi8(0x0f), bit4 = _mm512_set1_epi8(0x10);
        for (int k = 0; k < 8; ++k) {
            const __m512i packed = chunk_at(g + kCodes, (j / 2) * 8 + k);
            const __m512i low = _mm512_and_si512(j % 2 == 0 ? packed : _mm512_srli_epi16(packed, 4), low4);
            const __m512i qh = chunk_at(g + kHigh, k);
            const __m512i high = j <= 4 ? _mm512_slli_epi16(qh, 4 - j) : _mm512_srli_epi16(qh, j - 4);
            w[k] = _mm512_or_si512(low, _mm512_and_si512(high, bit4));
        }
    }
    static constexpr int codes_times_log2(int) { return 0; }
};

struct Q6_KFormat : Q6_KLayout {
    static void scales(const uint8_t* g, SuperScales<16>& s) {
        const __m512 d = f16x16(g + kD);
        for (int i = 0; i < 16; ++i) {
            s.dsc[i] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(signed_byte_of(chunk_at(g + kScales, i / 4), i % 4)));
        }
    }
    // Sub-block j = 16 elements 16j .. 16j+15: half h = j / 8, element group s = (j % 8) / 2 of the
    // half, l = 16 (j % 2) + 4k. Low nibble from ql[64h + 32 (s & 1) + l] (high nibble for s >= 2),
    // top two bits from qh[32h + l] >> 2s.
    static void codes(const uint8_t* g, int j, __m512i* w) {
        const int h = j / 8, s = (j % 8) / 2;
        const __m512i low4 = _mm512_set1_epi8(0x0f), top2 = _mm512_set1_epi8(0x30);
        for (int k = 0; k < 4; ++k) {
            const int l = 16 * (j % 2) + 4 * k;
            const __m512i ql = chunk_at(g + kLow, (64 * h + 32 * (s & 1) + l) / 4);
            const __m512i qh = chunk_at(g + kHigh, (32 * h + l) / 4);
            const __m512i low = _mm512_and_si512(s >= 2 ? _mm512_srli_epi16(ql, 4) : ql, low4);
            // Bits 2s, 2s+1 of each qh byte to bits 4, 5.
            const __m512i high = s <= 2 ? _mm512_slli_epi16(qh, 4 - 2 * s) : _mm512_srli_epi16(qh, 2);
            w[k] = _mm512_or_si512(low, _mm512_and_si512(high, top2));
        }
    }
    static constexpr int codes_times_log2(int) { return 0; }
};

// ---------------------------------------------------------------- the dot


template <class F, int T>
void group_dot_tokens(int64_t n, const uint8_t* group, const uint8_t* act, size_t act_stride, float* out,
                      int64_t out_stride, __mmask16 valid) {
    const int64_t nsb = n / kQK256;
    ActView a[T];
    for (int t = 0; t < T; ++t) a[t] = act_view(act + t * act_stride, nsb);
    __m512 acc[T];
    for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();

    for (int64_t s = 0; s < nsb; ++s) {
        const uint8_t* sb = group + s * F::kSuperBytes;
        SuperScales<F::kSub> sc;
        F::scales(sb, sc);
        __m512 d_a[T];
        for (int t = 0; t < T; ++t) d_a[t] = _mm512_set1_ps(a[t].d[s]);
        for (int j = 0; j < F::kSub; ++j) {
            // Spread over the sub-blocks: a burst of prefetches for a whole super-block fills the
            // line-fill buffers and stalls.
            constexpr size_t kLinesPerSub = (F::kSuperBytes / F::kSub + 63) / 64;
            for (size_t i = 0; i < kLinesPerSub; ++i) {
                prefetch_weight_line(sb + (j * kLinesPerSub + i) * 64);
            }
            __m512i w[F::kChunksPerSub];
            F::codes(sb, j, w);
            __m512i isum[T];
            for (int t = 0; t < T; ++t) {
                isum[t] = F::kHasMin ? _mm512_setzero_si512() : _mm512_set1_epi32(a[t].offset16[s * 16 + j]);
            }
            const int64_t first = s * kQK256 + j * F::kSubSize;
            if constexpr (T == 1) {
                // One token: two chains of dependent dots instead of one, half the latency.
                __m512i odd = _mm512_setzero_si512();
                for (int k = 0; k < F::kChunksPerSub; k += 2) {
                    isum[0] = dpbusd_broadcast(isum[0], w[k], a[0].codes + first + 4 * k);
                    odd = dpbusd_broadcast(odd, w[k + 1], a[0].codes + first + 4 * k + 4);
                }
                isum[0] = _mm512_add_epi32(isum[0], odd);
            } else {
                for (int k = 0; k < F::kChunksPerSub; ++k) {
                    for (int t = 0; t < T; ++t) {
                        isum[t] = dpbusd_broadcast(isum[t], w[k], a[t].codes + first + 4 * k);
                    }
                }
            }
            // Codes given as 2^e·q make 2^e·Σ q·a: exact (no saturation, |Σ| < 2^21), shifted back.
            if (const int e = F::codes_times_log2(j); e != 0) {
                for (int t = 0; t < T; ++t) isum[t] = _mm512_srai_epi32(isum[t], e);
            }
            for (int t = 0; t < T; ++t) {
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(sc.dsc[j], d_a[t]), acc[t]);
            }
        }
        if constexpr (F::kHasMin) {
            for (int t = 0; t < T; ++t) {
                __m512i msum = _mm512_setzero_si512();
                for (int i = 0; i < 4; ++i) {
                    msum = _mm512_dpwssd_epi32(msum, sc.mn_pairs[i], _mm512_set1_epi32(a[t].sum_pairs[s * 4 + i]));
                }
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(msum), _mm512_mul_ps(sc.neg_dmin, d_a[t]), acc[t]);
            }
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
const RowGroupKernel kKernel = {group_bytes<F>, pack_group<F>, unpack_row<F>, act_bytes, pack_act, group_dot<F>};

}  // namespace

const RowGroupKernel* find_row_group_kernel_k_avx512(int32_t type_id) {
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
const RowGroupKernel* find_row_group_kernel_k_avx512(int32_t) { return nullptr; }
}  // namespace edgellama

#endif
