// One warp's share of a prefill product on int8 tensor cores: 32 weight rows x 32 tokens (16 for
// the K-quants), for every quantized type.
//
// mma.m16n8k32 (s8 x s8 -> s32) multiplies a 16x32 tile of weight codes by a 32x8 tile of
// activation codes: K = 32 is exactly one block of the 32-element formats (Q4_0, Q4_1, Q5_0, Q5_1,
// Q8_0) and one Q4_K / Q5_K sub-block; Q6_K's 16-element sub-blocks take mma.m16n8k16. Each MMA
// yields exact integer sums, which are combined and scaled in registers in the CPU's expressions
// and added block after block (super-block after super-block), so every (row, token) equals the
// CPU's scalar vec_dot bit for bit.
//
// The fragments (warp.cuh) give lane (g, c) = (lane / 4, lane % 4) columns 4c..4c+3 and
// 16 + 4c.. of a block, for weight rows g and g + 8 and for token g: exactly what int8_dot.cuh's
// lane j = c loads (lo, hi), for weights and activations alike, so the GEMV's readers feed the
// tensor cores unchanged. Result element i of a tile is row g + 8 (i / 2), token 2c + i % 2; the
// activation scales of those tokens come from lanes 8c and 8c + 4 by shuffle.
//
// Written once for any Warp (warp.cuh: DeviceWarp; host_warp.h: HostWarp, 32 host threads), so
// the tests run this very code on a machine without a GPU.
#pragma once

#include <cstdint>
#include <type_traits>

#include "csrc/cuda/int8_dot.cuh"
#include "csrc/cuda/row_segments.cuh"

namespace edgellama::cuda {

constexpr int kMmaRowTiles = 2;          // 16-row tiles a warp: 32 rows
constexpr int kMmaTokenTiles = 4;        // 8-token tiles a warp: 32 tokens (32-element formats)
constexpr int kMmaKQuantTokenTiles = 2;  // K-quants also hold integer sums: 16 tokens a warp

// The readers each tile function takes.
template <class Q>
constexpr bool kMmaBlock32 = std::is_same_v<typename Q::ActRow, ActRow32> && Q::kLanes == 4;
template <class Q>
constexpr bool kMmaKQuant = std::is_same_v<typename Q::Codes, KQuantCodes>;
template <class Q>
constexpr bool kMmaQ6K = std::is_same_v<typename Q::Codes, Q6KCodes>;

template <class Q>
constexpr int mma_token_tiles() {
    return kMmaBlock32<Q> ? kMmaTokenTiles : kMmaKQuantTokenTiles;
}

// A product's operands: the launch's rows, n_tok int8 activation rows. With precise activations
// (parts = 2) those are n_tok / 2 tokens' (blocks, residual) pairs: the tiles take them as tokens
// and store each token's two results added (MmaOperands::store).
struct MmaProduct {
    RowSegments seg;
    size_t row_bytes;
    int64_t cols;
    const uint8_t* act;
    size_t act_row_bytes;
    int64_t n_tok;
    bool accumulate;
    int parts = 1;
};

// A warp's rows (g and g + 8 of each row tile) and tokens (g of each token tile), clamped into
// range: the clamped ones are computed and never stored.
template <class ActRow, int kTiles>
struct MmaOperands {
    SegmentRow where[kMmaRowTiles][2];
    const uint8_t* rows[kMmaRowTiles][2];
    ActRow tokens[kTiles];

    EDGELLAMA_HD MmaOperands(const MmaProduct& m, int64_t row0, int64_t tok0, int g) {
        const int64_t total = m.seg.total_rows();
#pragma unroll
        for (int rt = 0; rt < kMmaRowTiles; ++rt) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int64_t r = row0 + 16 * rt + 8 * h + g;
                where[rt][h] = locate_row(m.seg, r < total ? r : total - 1);
                rows[rt][h] = where[rt][h].w + static_cast<size_t>(where[rt][h].row) * m.row_bytes;
            }
        }
#pragma unroll
        for (int tt = 0; tt < kTiles; ++tt) {
            const int64_t t = tok0 + 8 * tt + g;
            tokens[tt] = ActRow(m.act + static_cast<size_t>(t < m.n_tok ? t : m.n_tok - 1) * m.act_row_bytes, m.cols);
        }
    }

    // Stores (or adds) the warp's results: element i of tile (rt, tt) is row 16rt + 8(i / 2) + g,
    // token 8tt + 2c + i % 2 of the warp's range. With precise activations a token's two rows are
    // the lane's elements i and i + 1 (tok0 is even): stored as their sum, first + residual, at
    // token (8tt + 2c) / 2, as the CPU adds its two dots.
    EDGELLAMA_HD void store(const float (&acc)[kMmaRowTiles][kTiles][4], const MmaProduct& m, int64_t row0,
                            int64_t tok0, int g, int c) const {
        const int64_t total = m.seg.total_rows();
#pragma unroll
        for (int rt = 0; rt < kMmaRowTiles; ++rt) {
#pragma unroll
            for (int tt = 0; tt < kTiles; ++tt) {
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    const int h = i / 2;
                    const int64_t r = row0 + 16 * rt + 8 * h + g;
                    const int64_t t = tok0 + 8 * tt + 2 * c + i % 2;
                    if (r >= total || t >= m.n_tok) continue;
                    float v = acc[rt][tt][i];
                    int64_t token = t;
                    if (m.parts == 2) {
                        if (i % 2 == 1) continue;  // added into its pair's first
                        v = add_rn(v, acc[rt][tt][i + 1]);
                        token = t / 2;
                    }
                    float* y = where[rt][h].y + token * where[rt][h].ld + where[rt][h].row;
                    *y = m.accumulate ? *y + v : v;
                }
            }
        }
    }
};

// The 32-element formats: one MMA per block, acc += (d_w * d_a) * isum (+ m_w * sum_a), as
// quant_32.cpp's vec_dots.
template <class Q, class Warp>
EDGELLAMA_HD void mma_tile_block32(const Warp& warp, const MmaProduct& m, int64_t row0, int64_t tok0) {
    constexpr int kTiles = kMmaTokenTiles;
    const int g = warp.lane() / 4, c = warp.lane() % 4;
    const MmaOperands<ActRow32, kTiles> op(m, row0, tok0, g);
    float acc[kMmaRowTiles][kTiles][4] = {};
    const int64_t n_blocks = m.cols / kQK32;
    for (int64_t p = 0; p < n_blocks; ++p) {
        typename Q::Codes w[kMmaRowTiles][2];  // [row tile][row g / g + 8]
#pragma unroll
        for (int rt = 0; rt < kMmaRowTiles; ++rt) {
#pragma unroll
            for (int h = 0; h < 2; ++h) w[rt][h] = Q::load(op.rows[rt][h], p, c);
        }
#pragma unroll
        for (int tt = 0; tt < kTiles; ++tt) {
            const typename Q::Slice s = Q::load_act(op.tokens[tt], p, c);
            const uint32_t b[2] = {static_cast<uint32_t>(s.lo), static_cast<uint32_t>(s.hi)};
            const float da[2] = {warp.shfl(s.d, 8 * c), warp.shfl(s.d, 8 * c + 4)};
            const float sa[2] = {warp.shfl(s.sum, 8 * c), warp.shfl(s.sum, 8 * c + 4)};
#pragma unroll
            for (int rt = 0; rt < kMmaRowTiles; ++rt) {
                const uint32_t a[4] = {w[rt][0].lo, w[rt][1].lo, w[rt][0].hi, w[rt][1].hi};
                int isum[4];
                warp.mma_16x8x32(a, b, isum);
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    const typename Q::Codes& k = w[rt][i / 2];
                    float term = mul_rn(mul_rn(k.d, da[i % 2]), static_cast<float>(isum[i]));
                    if constexpr (Q::kHasMin) term = add_rn(term, mul_rn(k.m, sa[i % 2]));
                    acc[rt][tt][i] = add_rn(acc[rt][tt][i], term);
                }
            }
        }
    }
    op.store(acc, m, row0, tok0, g, c);
}

// Q4_K / Q5_K: one MMA per 32-element sub-block. Chunk c of a super-block holds sub-blocks 2c (low
// nibbles) and 2c + 1 (high); the reader's lanes j = c and j = c + 4 give columns 4c.. and
// 16 + 4c.. of both. As quant_k.cpp's dot_scaled_mins, sums times 6-bit scales and mins times
// activation sums add up in integers over the super-block, then act.d * (d * isum - dmin * imin)
// joins the float sum.
template <class Q, class Warp>
EDGELLAMA_HD void mma_tile_kquant(const Warp& warp, const MmaProduct& m, int64_t row0, int64_t tok0) {
    constexpr int kTiles = kMmaKQuantTokenTiles;
    const int g = warp.lane() / 4, c = warp.lane() % 4;
    const MmaOperands<ActRow256, kTiles> op(m, row0, tok0, g);
    float acc[kMmaRowTiles][kTiles][4] = {};
    const int64_t n_super = m.cols / kQK256;
    for (int64_t sb = 0; sb < n_super; ++sb) {
        int isum[kMmaRowTiles][kTiles][4] = {}, imin[kMmaRowTiles][kTiles][4] = {};
        typename Q::Codes w[kMmaRowTiles][2][2];  // [row tile][row g / g + 8][lane part c / c + 4]
        typename Q::Slice s[kTiles][2];            // [token tile][lane part c / c + 4]
#pragma unroll
        for (int chunk = 0; chunk < 4; ++chunk) {
            const int64_t p = 4 * sb + chunk;
#pragma unroll
            for (int rt = 0; rt < kMmaRowTiles; ++rt) {
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    w[rt][h][0] = Q::load(op.rows[rt][h], p, c);
                    w[rt][h][1] = Q::load(op.rows[rt][h], p, c + 4);
                }
            }
#pragma unroll
            for (int tt = 0; tt < kTiles; ++tt) {
                s[tt][0] = Q::load_act(op.tokens[tt], p, c);
                s[tt][1] = Q::load_act(op.tokens[tt], p, c + 4);
                // The two sub-blocks' activation sums of this lane's result tokens 2c, 2c + 1.
                const int asum0[2] = {warp.shfl(s[tt][0].asum0, 8 * c), warp.shfl(s[tt][0].asum0, 8 * c + 4)};
                const int asum1[2] = {warp.shfl(s[tt][0].asum1, 8 * c), warp.shfl(s[tt][0].asum1, 8 * c + 4)};
                const uint32_t b_lo[2] = {static_cast<uint32_t>(s[tt][0].lo), static_cast<uint32_t>(s[tt][1].lo)};
                const uint32_t b_hi[2] = {static_cast<uint32_t>(s[tt][0].hi), static_cast<uint32_t>(s[tt][1].hi)};
#pragma unroll
                for (int rt = 0; rt < kMmaRowTiles; ++rt) {
                    const uint32_t a_lo[4] = {w[rt][0][0].lo, w[rt][1][0].lo, w[rt][0][1].lo, w[rt][1][1].lo};
                    const uint32_t a_hi[4] = {w[rt][0][0].hi, w[rt][1][0].hi, w[rt][0][1].hi, w[rt][1][1].hi};
                    int sub0[4], sub1[4];
                    warp.mma_16x8x32(a_lo, b_lo, sub0);  // sub-block 2 * chunk
                    warp.mma_16x8x32(a_hi, b_hi, sub1);  // sub-block 2 * chunk + 1
#pragma unroll
                    for (int i = 0; i < 4; ++i) {
                        const typename Q::Codes& k = w[rt][i / 2][0];
                        isum[rt][tt][i] += k.sc0 * sub0[i] + k.sc1 * sub1[i];
                        imin[rt][tt][i] += k.mn0 * asum0[i % 2] + k.mn1 * asum1[i % 2];
                    }
                }
            }
        }
#pragma unroll
        for (int tt = 0; tt < kTiles; ++tt) {
            const float da[2] = {warp.shfl(s[tt][0].d, 8 * c), warp.shfl(s[tt][0].d, 8 * c + 4)};
#pragma unroll
            for (int rt = 0; rt < kMmaRowTiles; ++rt) {
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    const typename Q::Codes& k = w[rt][i / 2][0];
                    const float term = kquant_scaled(da[i % 2], k.d, k.dmin, isum[rt][tt][i], imin[rt][tt][i]);
                    acc[rt][tt][i] = add_rn(acc[rt][tt][i], term);
                }
            }
        }
    }
    op.store(acc, m, row0, tok0, g, c);
}

// Q6_K: one mma.m16n8k16 per 16-element sub-block (each has its own int8 scale). The reader's
// lane j holds words 2j and 2j + 1 of a 32-element part, so column word c of the part's two
// sub-blocks comes from its lanes c / 2 and 2 + c / 2 (word c % 2 of each), with the sub-block's
// scale. As quant_k.cpp's Q6_K vec_dot, scales times sums add up in integers over the super-block,
// then (d * act.d) * isum joins the float sum.
template <class Q, class Warp>
EDGELLAMA_HD void mma_tile_q6k(const Warp& warp, const MmaProduct& m, int64_t row0, int64_t tok0) {
    constexpr int kTiles = kMmaKQuantTokenTiles;
    const int g = warp.lane() / 4, c = warp.lane() % 4;
    const MmaOperands<ActRow256, kTiles> op(m, row0, tok0, g);
    float acc[kMmaRowTiles][kTiles][4] = {};
    const int64_t n_super = m.cols / kQK256;
    for (int64_t sb = 0; sb < n_super; ++sb) {
        int isum[kMmaRowTiles][kTiles][4] = {};
        typename Q::Codes w[kMmaRowTiles][2][2];  // [row tile][row g / g + 8][sub-block of the part]
        typename Q::Slice s[kTiles][2];            // [token tile][sub-block of the part]
#pragma unroll
        for (int part = 0; part < 8; ++part) {
            const int64_t p = 8 * sb + part;
#pragma unroll
            for (int rt = 0; rt < kMmaRowTiles; ++rt) {
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    w[rt][h][0] = Q::load(op.rows[rt][h], p, c / 2);
                    w[rt][h][1] = Q::load(op.rows[rt][h], p, 2 + c / 2);
                }
            }
#pragma unroll
            for (int tt = 0; tt < kTiles; ++tt) {
                s[tt][0] = Q::load_act(op.tokens[tt], p, c / 2);
                s[tt][1] = Q::load_act(op.tokens[tt], p, 2 + c / 2);
#pragma unroll
                for (int rt = 0; rt < kMmaRowTiles; ++rt) {
#pragma unroll
                    for (int sub = 0; sub < 2; ++sub) {
                        const uint32_t a[2] = {c % 2 == 0 ? w[rt][0][sub].w0 : w[rt][0][sub].w1,
                                               c % 2 == 0 ? w[rt][1][sub].w0 : w[rt][1][sub].w1};
                        const auto b = static_cast<uint32_t>(c % 2 == 0 ? s[tt][sub].a0 : s[tt][sub].a1);
                        int sums[4];
                        warp.mma_16x8x16(a, b, sums);
#pragma unroll
                        for (int i = 0; i < 4; ++i) isum[rt][tt][i] += w[rt][i / 2][sub].sc * sums[i];
                    }
                }
            }
        }
#pragma unroll
        for (int tt = 0; tt < kTiles; ++tt) {
            const float da[2] = {warp.shfl(s[tt][0].d, 8 * c), warp.shfl(s[tt][0].d, 8 * c + 4)};
#pragma unroll
            for (int rt = 0; rt < kMmaRowTiles; ++rt) {
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    const float term = mul_rn(mul_rn(w[rt][i / 2][0].d, da[i % 2]), static_cast<float>(isum[rt][tt][i]));
                    acc[rt][tt][i] = add_rn(acc[rt][tt][i], term);
                }
            }
        }
    }
    op.store(acc, m, row0, tok0, g, c);
}

// The tile function of a reader (all quantized types).
template <class Q, class Warp>
EDGELLAMA_HD void mma_tile(const Warp& warp, const MmaProduct& m, int64_t row0, int64_t tok0) {
    if constexpr (kMmaBlock32<Q>) {
        mma_tile_block32<Q>(warp, m, row0, tok0);
    } else if constexpr (kMmaKQuant<Q>) {
        mma_tile_kquant<Q>(warp, m, row0, tok0);
    } else {
        static_assert(kMmaQ6K<Q>, "a reader without a tensor-core tile");
        mma_tile_q6k<Q>(warp, m, row0, tok0);
    }
}

}  // namespace edgellama::cuda
