// K-quant encoders: Q4_K, Q5_K (scale + min per 32-element sub-block) and Q6_K (signed scale per
// 16-element sub-block), each in 256-element super-blocks.
//
// Quality comes from the per-sub-block fit. Rather than mapping [min, max] onto the code range,
// we try a sweep of candidate inverse scales around nmax / (max - min); for each we round the
// codes, solve the weighted least-squares problem for the best scale (and offset) given those
// codes, and keep the candidate with the lowest weighted squared error. Weights are
// mean|x| + |x|, so large weights (which matter most to a matmul) are fitted more closely while
// small ones still count. The sub-block scales are then quantized to 6 (or 8) bits against a
// super-block f16 scale, and the codes are re-derived from the scales actually stored.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "csrc/formats/float_convert.h"
#include "csrc/formats/block_formats.h"
#include "quantize/codecs.h"

namespace edgellama::quantize {
namespace {

constexpr int kSub = 32;                 // Q4_K / Q5_K sub-block
constexpr int kNumSub = kQK256 / kSub;   // 8
constexpr int kSub6 = 16;                // Q6_K sub-block
constexpr int kNumSub6 = kQK256 / kSub6; // 16

inline int round_int(float v) { return static_cast<int>(std::nearbyint(v)); }
inline int clamp_int(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

// Fits x[0..n) ~ scale * L - offset with integer L in [0, nmax] and offset >= 0 (the formats
// subtract a non-negative min). Returns scale, writes offset.
float fit_scale_min(const float* x, const float* w, int n, int nmax, float* offset_out) {
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; ++i) {
        lo = std::min(lo, x[i]);
        hi = std::max(hi, x[i]);
    }
    if (lo > 0.0f) lo = 0.0f;  // the offset can only move values down
    if (hi <= lo) {
        *offset_out = -lo;
        return 0.0f;
    }
    // Starting point: plain min/max mapping.
    float best_scale = (hi - lo) / static_cast<float>(nmax);
    float best_min = lo;
    auto error_of = [&](float scale, float mn) {
        double err = 0.0;
        const float inv = scale != 0.0f ? 1.0f / scale : 0.0f;
        for (int i = 0; i < n; ++i) {
            const int l = clamp_int(round_int((x[i] - mn) * inv), 0, nmax);
            const float diff = scale * static_cast<float>(l) + mn - x[i];
            err += static_cast<double>(w[i]) * diff * diff;
        }
        return err;
    };
    double best_err = error_of(best_scale, best_min);
    constexpr int kSteps = 20;
    int codes[kSub];
    for (int step = 0; step <= kSteps; ++step) {
        const float iscale = (static_cast<float>(nmax) - 1.0f + 0.1f * static_cast<float>(step)) / (hi - lo);
        double sw = 0, sl = 0, sl2 = 0, sx = 0, sxl = 0;
        for (int i = 0; i < n; ++i) {
            const int l = clamp_int(round_int(iscale * (x[i] - lo)), 0, nmax);
            codes[i] = l;
            const double wi = w[i];
            sw += wi;
            sl += wi * l;
            sl2 += wi * l * l;
            sx += wi * x[i];
            sxl += wi * l * x[i];
        }
        const double det = sw * sl2 - sl * sl;
        if (det <= 0) continue;
        double scale = (sw * sxl - sx * sl) / det;
        double mn = (sl2 * sx - sl * sxl) / det;
        if (mn > 0) {  // offset must be <= 0: refit the scale alone
            mn = 0;
            scale = sl2 > 0 ? sxl / sl2 : 0;
        }
        if (scale <= 0) continue;
        double err = 0;
        for (int i = 0; i < n; ++i) {
            const double diff = scale * codes[i] + mn - x[i];
            err += w[i] * diff * diff;
        }
        if (err < best_err) {
            best_err = err;
            best_scale = static_cast<float>(scale);
            best_min = static_cast<float>(mn);
        }
    }
    *offset_out = -best_min;
    return best_scale;
}

// Fits x[0..n) ~ scale * L with integer L in [-nmax, nmax - 1]. Returns scale (may be negative).
float fit_signed_scale(const float* x, const float* w, int n, int nmax) {
    float amax = 0.0f, vmax = 0.0f;
    for (int i = 0; i < n; ++i) {
        if (std::fabs(x[i]) > amax) {
            amax = std::fabs(x[i]);
            vmax = x[i];
        }
    }
    if (amax == 0.0f) return 0.0f;
    float best_scale = 0.0f;
    double best_score = -1.0;  // maximise (sum w x L)^2 / sum w L^2 == minimise the error
    for (int step = -9; step <= 9; ++step) {
        const float iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(step)) / vmax;
        double sxl = 0, sl2 = 0;
        for (int i = 0; i < n; ++i) {
            const int l = clamp_int(round_int(iscale * x[i]), -nmax, nmax - 1);
            sxl += static_cast<double>(w[i]) * x[i] * l;
            sl2 += static_cast<double>(w[i]) * l * l;
        }
        if (sl2 <= 0) continue;
        const double score = sxl * sxl / sl2;
        if (score > best_score) {
            best_score = score;
            best_scale = static_cast<float>(sxl / sl2);
        }
    }
    return best_scale;
}

void importance_weights(const float* x, float* w) {
    double sum_abs = 0;
    for (int i = 0; i < kQK256; ++i) sum_abs += std::fabs(x[i]);
    const float mean_abs = static_cast<float>(sum_abs / kQK256);
    for (int i = 0; i < kQK256; ++i) w[i] = mean_abs + std::fabs(x[i]);
}

// Packs 6-bit sc[8], mn[8] into the 12 scale bytes (inverse of the decoder's unpacking).
void pack_k_scale_min(const uint8_t* sc, const uint8_t* mn, uint8_t* s) {
    for (int j = 0; j < 4; ++j) {
        s[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        s[j + 4] = static_cast<uint8_t>((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
        s[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0x0f) | ((mn[j + 4] & 0x0f) << 4));
    }
}

// Shared by Q4_K and Q5_K: fits one super-block and returns its codes q[256] in [0, nmax].
void encode_scale_min_block(const float* x, int nmax, uint16_t* d_out, uint16_t* dmin_out, uint8_t* scales,
                            uint8_t* q) {
    float w[kQK256];
    importance_weights(x, w);
    float sub_scale[kNumSub], sub_min[kNumSub];
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < kNumSub; ++j) {
        sub_scale[j] = fit_scale_min(x + kSub * j, w + kSub * j, kSub, nmax, &sub_min[j]);
        max_scale = std::max(max_scale, sub_scale[j]);
        max_min = std::max(max_min, sub_min[j]);
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    uint8_t sc[kNumSub], mn[kNumSub];
    for (int j = 0; j < kNumSub; ++j) {
        sc[j] = static_cast<uint8_t>(clamp_int(round_int(inv_scale * sub_scale[j]), 0, 63));
        mn[j] = static_cast<uint8_t>(clamp_int(round_int(inv_min * sub_min[j]), 0, 63));
    }
    *d_out = fp32_to_fp16(max_scale / 63.0f);
    *dmin_out = fp32_to_fp16(max_min / 63.0f);
    pack_k_scale_min(sc, mn, scales);
    // Codes from the scales as stored.
    const float d = fp16_to_fp32(*d_out), dmin = fp16_to_fp32(*dmin_out);
    for (int j = 0; j < kNumSub; ++j) {
        const float step = d * sc[j];
        const float off = dmin * mn[j];
        for (int i = 0; i < kSub; ++i) {
            const int l = step != 0.0f ? round_int((x[kSub * j + i] + off) / step) : 0;
            q[kSub * j + i] = static_cast<uint8_t>(clamp_int(l, 0, nmax));
        }
    }
}

void pack_low_nibbles(const uint8_t* q, uint8_t* qs) {
    for (int c = 0; c < kNumSub / 2; ++c) {
        for (int l = 0; l < kSub; ++l) {
            qs[32 * c + l] = static_cast<uint8_t>((q[64 * c + l] & 0x0f) | ((q[64 * c + 32 + l] & 0x0f) << 4));
        }
    }
}

}  // namespace

void quantize_row_q4_k(const float* x, void* dst, int64_t n) {
    auto* out = static_cast<BlockQ4_K*>(dst);
    uint8_t q[kQK256];
    for (int64_t b = 0; b < n / kQK256; ++b, x += kQK256) {
        encode_scale_min_block(x, 15, &out[b].d, &out[b].dmin, out[b].scales, q);
        pack_low_nibbles(q, out[b].qs);
    }
}

void quantize_row_q5_k(const float* x, void* dst, int64_t n) {
    auto* out = static_cast<BlockQ5_K*>(dst);
    uint8_t q[kQK256];
    for (int64_t b = 0; b < n / kQK256; ++b, x += kQK256) {
        encode_scale_min_block(x, 31, &out[b].d, &out[b].dmin, out[b].scales, q);
        pack_low_nibbles(q, out[b].qs);
        std::memset(out[b].qh, 0, sizeof out[b].qh);
        for (int j = 0; j < kNumSub; ++j) {
            for (int l = 0; l < kSub; ++l) out[b].qh[l] |= static_cast<uint8_t>(((q[kSub * j + l] >> 4) & 1) << j);
        }
    }
}

void quantize_row_q6_k(const float* x, void* dst, int64_t n) {
    auto* out = static_cast<BlockQ6_K*>(dst);
    for (int64_t b = 0; b < n / kQK256; ++b, x += kQK256) {
        float w[kQK256];
        importance_weights(x, w);
        float sub_scale[kNumSub6];
        float vmax = 0.0f, amax = 0.0f;
        for (int j = 0; j < kNumSub6; ++j) {
            sub_scale[j] = fit_signed_scale(x + kSub6 * j, w + kSub6 * j, kSub6, 32);
            if (std::fabs(sub_scale[j]) > amax) {
                amax = std::fabs(sub_scale[j]);
                vmax = sub_scale[j];
            }
        }
        BlockQ6_K& blk = out[b];
        std::memset(&blk, 0, sizeof blk);
        if (amax == 0.0f) {
            blk.d = fp32_to_fp16(0.0f);
            std::memset(blk.ql, 0, sizeof blk.ql);
            // codes 32 == value 0: low nibble 0, high bits 2 -> qh = 0b10 in every 2-bit slot
            std::memset(blk.qh, 0xaa, sizeof blk.qh);
            continue;
        }
        const float iscale = -128.0f / vmax;
        for (int j = 0; j < kNumSub6; ++j) {
            blk.scales[j] = static_cast<int8_t>(std::min(127, round_int(iscale * sub_scale[j])));
        }
        blk.d = fp32_to_fp16(1.0f / iscale);
        const float d = fp16_to_fp32(blk.d);
        uint8_t q[kQK256];
        for (int j = 0; j < kNumSub6; ++j) {
            const float step = d * blk.scales[j];
            for (int i = 0; i < kSub6; ++i) {
                const int l = step != 0.0f ? round_int(x[kSub6 * j + i] / step) : 0;
                q[kSub6 * j + i] = static_cast<uint8_t>(clamp_int(l, -32, 31) + 32);
            }
        }
        for (int h = 0; h < 2; ++h) {
            for (int s = 0; s < 4; ++s) {
                for (int l = 0; l < 32; ++l) {
                    const uint8_t code = q[128 * h + 32 * s + l];
                    blk.ql[64 * h + (s & 1) * 32 + l] |= static_cast<uint8_t>((code & 0x0f) << (s >= 2 ? 4 : 0));
                    blk.qh[32 * h + l] |= static_cast<uint8_t>((code >> 4) << (2 * s));
                }
            }
        }
    }
}

}  // namespace edgellama::quantize
