// Row-group kernels (see row_groups.h) for the K-quants Q4_K, Q5_K and Q6_K with the Armv8.2 dot
// product (SDOT), on the AVX-512 kernels' group layout (row_groups_layout_k.h): a 16-row group is
// four quarters of 4 rows, one 32-bit lane per row in a 128-bit register. Each sub-block's
// integer sum is exact and the float sequence per (row, token) is the AVX-512 kernels' own (see
// row_groups_k_avx512.cpp), so the results are the same bits.
#include "csrc/kernels/row_groups.h"

#if defined(__aarch64__) && defined(__ARM_FEATURE_DOTPROD)
#include <arm_neon.h>

#include "csrc/kernels/row_groups_layout_k.h"
#include "csrc/kernels/type_traits.h"

namespace edgellama {
namespace {

using namespace row_groups_k;

constexpr int kQuarterRows = 4;
constexpr int kTokens = 2;  // tokens per pass: the accumulators, scales and codes fit 32 registers

// 16 bytes of chunk `index` for row quarter q: bytes 4k .. 4k+3 of rows 4q .. 4q+3.
inline uint8x16_t chunk_at(const uint8_t* p, int index, int q) { return vld1q_u8(p + 64 * index + 16 * q); }
inline float32x4_t f16x4(const uint8_t* p) { return vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8(p))); }
// Byte b of every 32-bit lane as a float.
inline float32x4_t byte_as_float(uint8x16_t v, int b) {
    const uint32x4_t lanes = vreinterpretq_u32_u8(v);
    return vcvtq_f32_u32(vandq_u32(vshlq_u32(lanes, vdupq_n_s32(-8 * b)), vdupq_n_u32(0xff)));
}
// (v << shift) for shift >= 0, (v >> -shift) otherwise, in every byte.
inline uint8x16_t shift_bytes(uint8x16_t v, int shift) { return vshlq_u8(v, vdupq_n_s8(static_cast<int8_t>(shift))); }

// Scales of one super-block for one row quarter: d·sc_j per sub-block, and for formats with
// mins the mn_j (one per lane) with -dmin.
template <int kSub>
struct QuarterScales {
    float32x4_t dsc[kSub];
    uint8x16_t mn_lo, mn_hi;  // byte j of lane r: mn_j, mn_{j+4}
    float32x4_t neg_dmin;
};

// Q4_K and Q5_K: the 12-byte 6-bit scale/min packing, as the AVX-512 kernels unpack it.
inline void unpack_scales_k(const uint8_t* scale_chunks, const uint8_t* d_f16, int q, QuarterScales<8>& s) {
    const uint8x16_t s0 = chunk_at(scale_chunks, 0, q), s1 = chunk_at(scale_chunks, 1, q),
                     s2 = chunk_at(scale_chunks, 2, q);
    const uint8x16_t low6 = vdupq_n_u8(63), low4 = vdupq_n_u8(0x0f), top2 = vdupq_n_u8(0x30);
    const uint8x16_t sc_lo = vandq_u8(s0, low6);
    const uint8x16_t sc_hi = vorrq_u8(vandq_u8(s2, low4), vandq_u8(vshrq_n_u8(s0, 2), top2));
    s.mn_lo = vandq_u8(s1, low6);
    s.mn_hi = vorrq_u8(vshrq_n_u8(s2, 4), vandq_u8(vshrq_n_u8(s1, 2), top2));
    const float32x4_t d = f16x4(d_f16 + 2 * kQuarterRows * q);
    for (int j = 0; j < 4; ++j) {
        s.dsc[j] = vmulq_f32(d, byte_as_float(sc_lo, j));
        s.dsc[j + 4] = vmulq_f32(d, byte_as_float(sc_hi, j));
    }
    s.neg_dmin = vsubq_f32(vdupq_n_f32(0.0f), f16x4(d_f16 + 32 + 2 * kQuarterRows * q));
}

struct Q4_KFormat : Q4_KLayout {
    static void scales(const uint8_t* g, int q, QuarterScales<8>& s) { unpack_scales_k(g + kScales, g + kD, q, s); }
    // Sub-block j, element group k (elements 4k .. 4k+3): chunk (j / 2) * 8 + k, low nibbles for
    // even j, high nibbles for odd.
    static int8x16_t codes(const uint8_t* g, int j, int k, int q) {
        const uint8x16_t packed = chunk_at(g + kCodes, (j / 2) * 8 + k, q);
        return vreinterpretq_s8_u8(j % 2 == 0 ? vandq_u8(packed, vdupq_n_u8(0x0f)) : vshrq_n_u8(packed, 4));
    }
};

struct Q5_KFormat : Q5_KLayout {
    static void scales(const uint8_t* g, int q, QuarterScales<8>& s) { unpack_scales_k(g + kScales, g + kD, q, s); }
    // As Q4_K, plus bit j of each qh byte as bit 4.
    static int8x16_t codes(const uint8_t* g, int j, int k, int q) {
        const uint8x16_t packed = chunk_at(g + kCodes, (j / 2) * 8 + k, q);
        const uint8x16_t low = j % 2 == 0 ? vandq_u8(packed, vdupq_n_u8(0x0f)) : vshrq_n_u8(packed, 4);
        const uint8x16_t high = vandq_u8(shift_bytes(chunk_at(g + kHigh, k, q), 4 - j), vdupq_n_u8(0x10));
        return vreinterpretq_s8_u8(vorrq_u8(low, high));
    }
};

struct Q6_KFormat : Q6_KLayout {
    static void scales(const uint8_t* g, int q, QuarterScales<16>& s) {
        const float32x4_t d = f16x4(g + kD + 2 * kQuarterRows * q);
        for (int i = 0; i < 16; ++i) {
            const int32x4_t lanes = vreinterpretq_s32_u8(chunk_at(g + kScales, i / 4, q));
            // Signed byte i % 4 of each lane: to the top, then an arithmetic shift down.
            const int32x4_t sc = vshrq_n_s32(vshlq_s32(lanes, vdupq_n_s32(24 - 8 * (i % 4))), 24);
            s.dsc[i] = vmulq_f32(d, vcvtq_f32_s32(sc));
        }
    }
    // Sub-block j = elements 16j .. 16j+15, element group k: half h = j / 8, group s = (j % 8) / 2,
    // l = 16 (j % 2) + 4k; low nibble from ql[64h + 32 (s & 1) + l] (high nibble for s >= 2), top
    // two bits from qh[32h + l] >> 2s.
    static int8x16_t codes(const uint8_t* g, int j, int k, int q) {
        const int h = j / 8, s = (j % 8) / 2, l = 16 * (j % 2) + 4 * k;
        const uint8x16_t ql = chunk_at(g + kLow, (64 * h + 32 * (s & 1) + l) / 4, q);
        const uint8x16_t qh = chunk_at(g + kHigh, (32 * h + l) / 4, q);
        const uint8x16_t low = s >= 2 ? vshrq_n_u8(ql, 4) : vandq_u8(ql, vdupq_n_u8(0x0f));
        const uint8x16_t high = vandq_u8(shift_bytes(qh, 4 - 2 * s), vdupq_n_u8(0x30));
        return vreinterpretq_s8_u8(vorrq_u8(low, high));
    }
};

// The activation's 32-element sums Σa_0 .. Σa_7 of one super-block, from the int16 pairs
// (Σa_0, Σa_2), (Σa_1, Σa_3), (Σa_4, Σa_6), (Σa_5, Σa_7) of the packed activations.
inline void sub_block_sums(const int32_t* pairs, int32_t* sums) {
    for (int i = 0; i < 4; ++i) {
        const int first = 4 * (i / 2) + i % 2;  // the pair's sub-blocks: first and first + 2
        sums[first] = static_cast<int16_t>(pairs[i] & 0xffff);
        sums[first + 2] = static_cast<int16_t>(pairs[i] >> 16);
    }
}

// Σ_j mn_j · Σa_j for one quarter and token: the same exact integer as the AVX-512 kernels' sum.
inline int32x4_t min_sum(const QuarterScales<8>& s, const int32_t* sums) {
    int32x4_t sum = vdupq_n_s32(0);
    for (int j = 0; j < 8; ++j) {
        const uint32x4_t lanes = vreinterpretq_u32_u8(j < 4 ? s.mn_lo : s.mn_hi);
        const int32x4_t mn = vreinterpretq_s32_u32(vandq_u32(vshlq_u32(lanes, vdupq_n_s32(-8 * (j % 4))), vdupq_n_u32(0xff)));
        sum = vmlaq_n_s32(sum, mn, sums[j]);
    }
    return sum;
}

template <class F, int T>
void group_dot_tokens(int64_t n, const uint8_t* group, const uint8_t* act, size_t act_stride, float* out,
                      int64_t out_stride, int n_rows) {
    const int64_t nsb = n / kQK256;
    ActView a[T];
    for (int t = 0; t < T; ++t) a[t] = act_view(act + t * act_stride, nsb);
    float32x4_t acc[T][4];
    for (int t = 0; t < T; ++t)
        for (int q = 0; q < 4; ++q) acc[t][q] = vdupq_n_f32(0.0f);

    for (int64_t s = 0; s < nsb; ++s) {
        const uint8_t* sb = group + s * F::kSuperBytes;
        for (size_t line = 0; line < F::kSuperBytes; line += 64) prefetch_weight_line(sb + line);
        int32_t sums[T][8];  // per token, for the mins (read by all four quarters)
        if constexpr (F::kHasMin) {
            for (int t = 0; t < T; ++t) sub_block_sums(a[t].sum_pairs + s * 4, sums[t]);
        }
        for (int q = 0; q < 4; ++q) {
            QuarterScales<F::kSub> sc;
            F::scales(sb, q, sc);
            for (int j = 0; j < F::kSub; ++j) {
                const int64_t first = s * kQK256 + j * F::kSubSize;
                int8x16_t av[T][2];
                for (int t = 0; t < T; ++t) {
                    av[t][0] = vld1q_s8(a[t].codes + first);
                    if (F::kSubSize == 32) av[t][1] = vld1q_s8(a[t].codes + first + 16);
                }
                int32x4_t isum[T];
                for (int t = 0; t < T; ++t) isum[t] = vdupq_n_s32(F::kHasMin ? 0 : a[t].offset16[s * 16 + j]);
                for (int k = 0; k < F::kChunksPerSub; ++k) {
                    const int8x16_t w = F::codes(sb, j, k, q);
                    for (int t = 0; t < T; ++t) {
                        switch (k % 4) {  // the activation lane must be a constant
                            case 0: isum[t] = vdotq_laneq_s32(isum[t], w, av[t][k / 4], 0); break;
                            case 1: isum[t] = vdotq_laneq_s32(isum[t], w, av[t][k / 4], 1); break;
                            case 2: isum[t] = vdotq_laneq_s32(isum[t], w, av[t][k / 4], 2); break;
                            default: isum[t] = vdotq_laneq_s32(isum[t], w, av[t][k / 4], 3); break;
                        }
                    }
                }
                for (int t = 0; t < T; ++t) {
                    const float32x4_t scale = vmulq_f32(sc.dsc[j], vdupq_n_f32(a[t].d[s]));
                    acc[t][q] = vfmaq_f32(acc[t][q], vcvtq_f32_s32(isum[t]), scale);
                }
            }
            if constexpr (F::kHasMin) {
                for (int t = 0; t < T; ++t) {
                    const float32x4_t scale = vmulq_f32(sc.neg_dmin, vdupq_n_f32(a[t].d[s]));
                    acc[t][q] = vfmaq_f32(acc[t][q], vcvtq_f32_s32(min_sum(sc, sums[t])), scale);
                }
            }
        }
    }
    for (int t = 0; t < T; ++t) {
        float lanes[kGroupRows];
        for (int q = 0; q < 4; ++q) vst1q_f32(lanes + kQuarterRows * q, acc[t][q]);
        for (int r = 0; r < n_rows; ++r) out[t * out_stride + r] = lanes[r];
    }
}

template <class F>
void group_dot(int64_t n, const uint8_t* group, const uint8_t* act, size_t act_stride, int n_tok, float* out,
               int64_t out_stride, int n_rows) {
    for_token_batches<kTokens>(n_tok, [&](int t0, auto tokens) {
        group_dot_tokens<F, decltype(tokens)::value>(n, group, act + t0 * act_stride, act_stride, out + t0 * out_stride,
                                                     out_stride, n_rows);
    });
}

template <class F>
const RowGroupKernel kKernel = {group_bytes<F>, pack_group<F>, unpack_row<F>, act_bytes, pack_act, group_dot<F>};

}  // namespace

const RowGroupKernel* find_row_group_kernel_k_neon(int32_t type_id) {
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
const RowGroupKernel* find_row_group_kernel_k_neon(int32_t) { return nullptr; }
}  // namespace edgellama

#endif
