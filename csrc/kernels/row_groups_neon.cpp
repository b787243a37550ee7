// Row-group kernels (see row_groups.h) for the 32-element family Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0
// with the Armv8.2 dot product (SDOT); the layout is in row_groups_layout_32.h.
//
// A 128-bit register holds one 4-byte code group of 4 rows, so a group's 16 rows are 4 row
// quarters. SDOT with an indexed activation lane adds 4 products per row: after a block, each lane
// holds its row's exact integer block sum, the same integer the AVX-512 kernel forms (Q8_0's codes
// are turned back into signed bytes instead of adding an offset), and the float work follows the
// same sequence, so results match the x86 kernels bit for bit.
#include "csrc/kernels/row_groups.h"

#if defined(__aarch64__) && defined(__ARM_FEATURE_DOTPROD)
#include <arm_neon.h>

#include "csrc/kernels/row_groups_layout_32.h"
#include "csrc/kernels/type_traits.h"

namespace edgellama {
namespace {

using namespace row_groups_32;

constexpr int kQuarterRows = 4;
constexpr int kTokens = 4;  // 16 accumulators + 4 sums + 8 activation registers fit 32 registers

// Codes of row quarter `quarter`, element group g (elements 4g .. 4g+3) of one block, as int8.
template <class F, int g>
inline int8x16_t codes(const uint8_t* block, int quarter) {
    const uint8_t* p = block + 16 * quarter;
    if constexpr (F::kCodeChunks == 8) {  // Q8_0: stored as code + 128
        return vreinterpretq_s8_u8(veorq_u8(vld1q_u8(p + 64 * g), vdupq_n_u8(0x80)));
    } else {
        const uint8x16_t packed = vld1q_u8(p + 64 * (g % 4));
        uint8x16_t q = g < 4 ? vandq_u8(packed, vdupq_n_u8(0x0f)) : vshrq_n_u8(packed, 4);
        if constexpr (F::kCodeChunks == 5) {  // fifth bits of group g sit at bit g of chunk 4
            const uint8x16_t high = vld1q_u8(p + 256);
            const uint8x16_t bit4 = g <= 4 ? vshlq_n_u8(high, 4 - g) : vshrq_n_u8(high, g - 4);
            q = vorrq_u8(q, vandq_u8(bit4, vdupq_n_u8(0x10)));
        }
        return vreinterpretq_s8_u8(q);
    }
}

// isum[t] += Σ over element group g of q·a for one row quarter; a[t] holds the block's codes.
template <class F, int T, int g>
inline void dot_group(const uint8_t* block, int quarter, const int8x16_t (*a)[2], int32x4_t* isum) {
    const int8x16_t w = codes<F, g>(block, quarter);
    for (int t = 0; t < T; ++t) isum[t] = vdotq_laneq_s32(isum[t], w, a[t][g / 4], g % 4);
}

template <class F, int T>
void group_dot_tokens(int64_t n, const uint8_t* group, const uint8_t* act, size_t act_stride, float* out,
                      int64_t out_stride, int n_rows) {
    const int64_t nb = n / kQK32;
    const uint16_t* d = reinterpret_cast<const uint16_t*>(group + nb * code_bytes_per_block<F>());
    const uint16_t* m = d + nb * kGroupRows;
    ActView av[T];
    for (int t = 0; t < T; ++t) av[t] = act_view(act + t * act_stride, nb);
    float32x4_t acc[T][4];
    for (int t = 0; t < T; ++t)
        for (int q = 0; q < 4; ++q) acc[t][q] = vdupq_n_f32(0.0f);

    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* block = group + b * code_bytes_per_block<F>();
        for (int k = 0; k < F::kCodeChunks; ++k) prefetch_weight_line(block + 64 * k);
        int8x16_t a[T][2];  // elements 0-15 and 16-31
        for (int t = 0; t < T; ++t) {
            a[t][0] = vld1q_s8(av[t].codes + b * kQK32);
            a[t][1] = vld1q_s8(av[t].codes + b * kQK32 + 16);
        }
        // Q8_0 dots its signed codes: no offset term (the AVX-512 kernel's code + 128 and its
        // -128·Σa make the same integer).
        const int32_t offset_scale = F::kCodeChunks == 8 ? 0 : 1;
        for (int q = 0; q < 4; ++q) {
            int32x4_t isum[T];
            for (int t = 0; t < T; ++t) isum[t] = vdupq_n_s32(offset_scale * av[t].offset[b]);
            dot_group<F, T, 0>(block, q, a, isum);
            dot_group<F, T, 1>(block, q, a, isum);
            dot_group<F, T, 2>(block, q, a, isum);
            dot_group<F, T, 3>(block, q, a, isum);
            dot_group<F, T, 4>(block, q, a, isum);
            dot_group<F, T, 5>(block, q, a, isum);
            dot_group<F, T, 6>(block, q, a, isum);
            dot_group<F, T, 7>(block, q, a, isum);
            const float32x4_t dw = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(d + b * kGroupRows + kQuarterRows * q)));
            for (int t = 0; t < T; ++t) {
                const float32x4_t scale = vmulq_f32(dw, vdupq_n_f32(av[t].d[b]));
                acc[t][q] = vfmaq_f32(acc[t][q], vcvtq_f32_s32(isum[t]), scale);
            }
            if constexpr (F::kHasMin) {
                const float32x4_t mw = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(m + b * kGroupRows + kQuarterRows * q)));
                for (int t = 0; t < T; ++t) acc[t][q] = vfmaq_f32(acc[t][q], mw, vdupq_n_f32(av[t].sum[b]));
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
const RowGroupKernel kKernel = {group_bytes<F>, pack_group<F>, unpack_row<F>, act_bytes, pack_act<F>, group_dot<F>};

}  // namespace

const RowGroupKernel* find_row_group_kernel_32_neon(int32_t type_id) {
    return row_groups_32::kernel_for_type(type_id, [](auto format) { return &kKernel<decltype(format)>; });
}

}  // namespace edgellama

#else

namespace edgellama {
const RowGroupKernel* find_row_group_kernel_32_neon(int32_t) { return nullptr; }
}  // namespace edgellama

#endif
