// Prefill products on int8 tensor cores for every quantized type: the 32-element formats (Q4_0,
// Q4_1, Q5_0, Q5_1, Q8_0) and Q4_K / Q5_K, whose sub-blocks are 32 elements too, with
// mma.m16n8k32; Q6_K, whose sub-blocks are 16, with mma.m16n8k16.
//
// mma.sync.m16n8k32 (s8 x s8 -> s32, sm_80 on) multiplies a 16x32 tile of weight codes by a 32x8
// tile of activation codes: K = 32 is exactly one quant block, so each MMA yields the block's
// exact integer sums for 16 rows x 8 tokens, which are scaled in registers with the CPU's
// expression (d_w * d_a * isum, + m_w * sum_a) and added block after block, in block order: every
// (row, token) is computed exactly as the CPU's scalar vec_dot computes it.
//
// The fragment layouts (PTX ISA, "matrix fragments for mma.m16n8k32", .s8): with g = lane / 4 and
// c = lane % 4, register a0 holds row g, columns 4c..4c+3 of A; a1 row g + 8, same columns; a2 and
// a3 the same rows at columns 16 + 4c..; b0 holds rows 4c..4c+3 of B for column g, b1 rows
// 16 + 4c..; the results d0, d1 are row g, columns 2c and 2c + 1, d2 and d3 row g + 8. Columns
// 4c..4c+3 and 16 + 4c.. of a block are exactly what int8_dot.cuh's lane j = c loads (lo, hi) for
// weights and activations alike, so the GEMV's readers feed the tensor cores unchanged.
#include <algorithm>
#include <type_traits>

#include "csrc/cuda/gemv_kernel.cuh"

namespace edgellama::cuda {

namespace {

constexpr int kRowTiles = 2;    // 16-row tiles a warp: 32 rows
constexpr int kTokenTiles = 4;  // 8-token tiles a warp: 32 tokens
constexpr int kKQuantTokenTiles = 2;  // K-quants hold integer sums too: 16 tokens a warp
constexpr int kMmaWarps = 4;    // warps a block, on consecutive row ranges

// d = a x b for one 16x8x32 int8 tile (sm_80+).
__device__ __forceinline__ void mma_16x8x32(const uint32_t (&a)[4], const uint32_t (&b)[2], int (&d)[4]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%10, %10, %10, %10};\n"
        : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(0));
#else
    __trap();  // the host never launches this kernel below sm_80 (int8_mma_supported)
#endif
}

// d = a x b for one 16x8x16 int8 tile (sm_80+): a0 row g, a1 row g + 8, columns 4c..4c+3; b0 rows
// 4c..4c+3 of column g; d as for 16x8x32.
__device__ __forceinline__ void mma_16x8x16(const uint32_t (&a)[2], uint32_t b, int (&d)[4]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5}, {%6}, {%7, %7, %7, %7};\n"
        : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(b), "r"(0));
#else
    __trap();
#endif
}

// acc (+)= the block's term for one (row, token): (d_w * d_a) * isum, + m_w * sum_a.
template <bool kHasMin>
__device__ __forceinline__ float add_block_term(float acc, float d_w, float m_w, float d_a, float sum_a, int isum) {
    float term = __fmul_rn(__fmul_rn(d_w, d_a), static_cast<float>(isum));
    if constexpr (kHasMin) term = __fadd_rn(term, __fmul_rn(m_w, sum_a));
    return __fadd_rn(acc, term);
}

// Stores (or adds) a warp's result tiles: element i of tile (rt, tt) is row 16rt + 8(i / 2) + g,
// token 8tt + 2c + i % 2 of the warp's range.
template <int kTiles>
__device__ __forceinline__ void store_mma_tiles(const float (&acc)[kRowTiles][kTiles][4],
                                                const SegmentRow (&where)[kRowTiles][2], int64_t row0, int64_t tok0,
                                                int64_t total, int64_t n_tok, int g, int c, bool accumulate) {
#pragma unroll
    for (int rt = 0; rt < kRowTiles; ++rt) {
#pragma unroll
        for (int tt = 0; tt < kTiles; ++tt) {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int h = i / 2;
                const int64_t r = row0 + 16 * rt + 8 * h + g;
                const int64_t t = tok0 + 8 * tt + 2 * c + i % 2;
                if (r >= total || t >= n_tok) continue;
                float* y = where[rt][h].y + t * where[rt][h].ld + where[rt][h].row;
                *y = accumulate ? *y + acc[rt][tt][i] : acc[rt][tt][i];
            }
        }
    }
}

template <class Q>
__global__ void __launch_bounds__(kMmaWarps * kWarp)
gemm_mma32_kernel(RowSegments seg, size_t row_bytes, int64_t cols, const uint8_t* __restrict__ act,
                  size_t act_row_bytes, int64_t n_tok, bool accumulate) {
    constexpr bool kHasMin = Q::kHasMin;
    const int lane = threadIdx.x % kWarp, g = lane / 4, c = lane % 4;
    const int64_t total = seg.total_rows();
    const int64_t row0 = (static_cast<int64_t>(blockIdx.x) * kMmaWarps + threadIdx.x / kWarp) * (16 * kRowTiles);
    const int64_t tok0 = static_cast<int64_t>(blockIdx.y) * (8 * kTokenTiles);
    if (row0 >= total) return;  // the whole warp leaves together

    // This lane's rows (g and g + 8 of each row tile) and tokens (g of each token tile), clamped
    // into range: the clamped ones are computed and never stored.
    SegmentRow where[kRowTiles][2];
    const uint8_t* rows[kRowTiles][2];
#pragma unroll
    for (int rt = 0; rt < kRowTiles; ++rt) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int64_t r = row0 + 16 * rt + 8 * h + g;
            where[rt][h] = locate_row(seg, r < total ? r : total - 1);
            rows[rt][h] = where[rt][h].w + static_cast<size_t>(where[rt][h].row) * row_bytes;
        }
    }
    ActRow32 tokens[kTokenTiles];
#pragma unroll
    for (int tt = 0; tt < kTokenTiles; ++tt) {
        const int64_t t = tok0 + 8 * tt + g;
        tokens[tt] = ActRow32(act + static_cast<size_t>(t < n_tok ? t : n_tok - 1) * act_row_bytes, cols);
    }

    float acc[kRowTiles][kTokenTiles][4] = {};
    const int64_t n_blocks = cols / kQK32;
    for (int64_t p = 0; p < n_blocks; ++p) {
        typename Q::Codes w[kRowTiles][2];
#pragma unroll
        for (int rt = 0; rt < kRowTiles; ++rt) {
#pragma unroll
            for (int h = 0; h < 2; ++h) w[rt][h] = Q::load(rows[rt][h], p, c);
        }
#pragma unroll
        for (int tt = 0; tt < kTokenTiles; ++tt) {
            const typename Q::Slice s = Q::load_act(tokens[tt], p, c);
            const uint32_t b[2] = {static_cast<uint32_t>(s.lo), static_cast<uint32_t>(s.hi)};
            // Scales of this lane's result columns, tokens 2c and 2c + 1: held by lanes 8c and 8c + 4.
            const float d0 = __shfl_sync(0xffffffffu, s.d, 8 * c), d1 = __shfl_sync(0xffffffffu, s.d, 8 * c + 4);
            const float s0 = __shfl_sync(0xffffffffu, s.sum, 8 * c), s1 = __shfl_sync(0xffffffffu, s.sum, 8 * c + 4);
#pragma unroll
            for (int rt = 0; rt < kRowTiles; ++rt) {
                const uint32_t a[4] = {w[rt][0].lo, w[rt][1].lo, w[rt][0].hi, w[rt][1].hi};
                int isum[4];
                mma_16x8x32(a, b, isum);
                float* out = acc[rt][tt];
                out[0] = add_block_term<kHasMin>(out[0], w[rt][0].d, w[rt][0].m, d0, s0, isum[0]);
                out[1] = add_block_term<kHasMin>(out[1], w[rt][0].d, w[rt][0].m, d1, s1, isum[1]);
                out[2] = add_block_term<kHasMin>(out[2], w[rt][1].d, w[rt][1].m, d0, s0, isum[2]);
                out[3] = add_block_term<kHasMin>(out[3], w[rt][1].d, w[rt][1].m, d1, s1, isum[3]);
            }
        }
    }

    store_mma_tiles<kTokenTiles>(acc, where, row0, tok0, total, n_tok, g, c, accumulate);
}

// Q4_K / Q5_K: one MMA per 32-element sub-block. Chunk c of a super-block holds sub-blocks 2c (low
// nibbles) and 2c + 1 (high); the GEMV reader's lanes j = c and j = c + 4 give columns 4c.. and
// 16 + 4c.. of both. As the CPU does (quant_k.cpp, dot_scaled_mins), the sub-blocks' integer sums
// times their 6-bit scales, and the mins times the activation sums, add up in integers over the
// super-block; act.d * (d * isum - dmin * imin) then enters the float sum once a super-block.
template <class Q>
__global__ void __launch_bounds__(kMmaWarps * kWarp)
gemm_mma_kquant_kernel(RowSegments seg, size_t row_bytes, int64_t cols, const uint8_t* __restrict__ act,
                       size_t act_row_bytes, int64_t n_tok, bool accumulate) {
    constexpr int kTiles = kKQuantTokenTiles;
    const int lane = threadIdx.x % kWarp, g = lane / 4, c = lane % 4;
    const int64_t total = seg.total_rows();
    const int64_t row0 = (static_cast<int64_t>(blockIdx.x) * kMmaWarps + threadIdx.x / kWarp) * (16 * kRowTiles);
    const int64_t tok0 = static_cast<int64_t>(blockIdx.y) * (8 * kTiles);
    if (row0 >= total) return;

    SegmentRow where[kRowTiles][2];
    const uint8_t* rows[kRowTiles][2];
#pragma unroll
    for (int rt = 0; rt < kRowTiles; ++rt) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int64_t r = row0 + 16 * rt + 8 * h + g;
            where[rt][h] = locate_row(seg, r < total ? r : total - 1);
            rows[rt][h] = where[rt][h].w + static_cast<size_t>(where[rt][h].row) * row_bytes;
        }
    }
    ActRow256 tokens[kTiles];
#pragma unroll
    for (int tt = 0; tt < kTiles; ++tt) {
        const int64_t t = tok0 + 8 * tt + g;
        tokens[tt] = ActRow256(act + static_cast<size_t>(t < n_tok ? t : n_tok - 1) * act_row_bytes, cols);
    }

    float acc[kRowTiles][kTiles][4] = {};
    const int64_t n_super = cols / kQK256;
    for (int64_t sb = 0; sb < n_super; ++sb) {
        int isum[kRowTiles][kTiles][4] = {}, imin[kRowTiles][kTiles][4] = {};
        typename Q::Codes w[kRowTiles][2][2];  // [row tile][row g / g + 8][lane part c / c + 4]
        typename Q::Slice s[kTiles][2];         // [token tile][lane part c / c + 4]
#pragma unroll
        for (int chunk = 0; chunk < 4; ++chunk) {
            const int64_t p = 4 * sb + chunk;
#pragma unroll
            for (int rt = 0; rt < kRowTiles; ++rt) {
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    w[rt][h][0] = Q::load(rows[rt][h], p, c);
                    w[rt][h][1] = Q::load(rows[rt][h], p, c + 4);
                }
            }
#pragma unroll
            for (int tt = 0; tt < kTiles; ++tt) {
                s[tt][0] = Q::load_act(tokens[tt], p, c);
                s[tt][1] = Q::load_act(tokens[tt], p, c + 4);
                // Activation sums of the two sub-blocks for this lane's result tokens 2c, 2c + 1.
                const int a0_t0 = __shfl_sync(0xffffffffu, s[tt][0].asum0, 8 * c);
                const int a1_t0 = __shfl_sync(0xffffffffu, s[tt][0].asum1, 8 * c);
                const int a0_t1 = __shfl_sync(0xffffffffu, s[tt][0].asum0, 8 * c + 4);
                const int a1_t1 = __shfl_sync(0xffffffffu, s[tt][0].asum1, 8 * c + 4);
                const uint32_t b_lo[2] = {static_cast<uint32_t>(s[tt][0].lo), static_cast<uint32_t>(s[tt][1].lo)};
                const uint32_t b_hi[2] = {static_cast<uint32_t>(s[tt][0].hi), static_cast<uint32_t>(s[tt][1].hi)};
#pragma unroll
                for (int rt = 0; rt < kRowTiles; ++rt) {
                    const uint32_t a_lo[4] = {w[rt][0][0].lo, w[rt][1][0].lo, w[rt][0][1].lo, w[rt][1][1].lo};
                    const uint32_t a_hi[4] = {w[rt][0][0].hi, w[rt][1][0].hi, w[rt][0][1].hi, w[rt][1][1].hi};
                    int sub0[4], sub1[4];
                    mma_16x8x32(a_lo, b_lo, sub0);  // sub-block 2 * chunk
                    mma_16x8x32(a_hi, b_hi, sub1);  // sub-block 2 * chunk + 1
#pragma unroll
                    for (int i = 0; i < 4; ++i) {
                        const typename Q::Codes& k = w[rt][i / 2][0];
                        isum[rt][tt][i] += k.sc0 * sub0[i] + k.sc1 * sub1[i];
                        imin[rt][tt][i] += i % 2 == 0 ? k.mn0 * a0_t0 + k.mn1 * a1_t0 : k.mn0 * a0_t1 + k.mn1 * a1_t1;
                    }
                }
            }
        }
#pragma unroll
        for (int tt = 0; tt < kTiles; ++tt) {
            const float da0 = __shfl_sync(0xffffffffu, s[tt][0].d, 8 * c);
            const float da1 = __shfl_sync(0xffffffffu, s[tt][0].d, 8 * c + 4);
#pragma unroll
            for (int rt = 0; rt < kRowTiles; ++rt) {
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    const typename Q::Codes& k = w[rt][i / 2][0];
                    const float term = __fmul_rn(i % 2 == 0 ? da0 : da1,
                                                 __fsub_rn(__fmul_rn(k.d, static_cast<float>(isum[rt][tt][i])),
                                                           __fmul_rn(k.dmin, static_cast<float>(imin[rt][tt][i]))));
                    acc[rt][tt][i] = __fadd_rn(acc[rt][tt][i], term);
                }
            }
        }
    }
    store_mma_tiles<kTiles>(acc, where, row0, tok0, total, n_tok, g, c, accumulate);
}

// Q6_K: one mma.m16n8k16 per 16-element sub-block (each has its own int8 scale). The GEMV reader's
// lane j holds words 2j and 2j + 1 of a 32-element part, so column words c of the part's two
// sub-blocks come from its lanes c / 2 and 2 + c / 2 (word c % 2 of each), with the sub-block's
// scale. As the CPU does, scales times sums add up in integers over the super-block, then
// (d * act.d) * isum joins the float sum.
template <class Q>
__global__ void __launch_bounds__(kMmaWarps * kWarp)
gemm_mma_q6k_kernel(RowSegments seg, size_t row_bytes, int64_t cols, const uint8_t* __restrict__ act,
                    size_t act_row_bytes, int64_t n_tok, bool accumulate) {
    constexpr int kTiles = kKQuantTokenTiles;
    const int lane = threadIdx.x % kWarp, g = lane / 4, c = lane % 4;
    const int64_t total = seg.total_rows();
    const int64_t row0 = (static_cast<int64_t>(blockIdx.x) * kMmaWarps + threadIdx.x / kWarp) * (16 * kRowTiles);
    const int64_t tok0 = static_cast<int64_t>(blockIdx.y) * (8 * kTiles);
    if (row0 >= total) return;

    SegmentRow where[kRowTiles][2];
    const uint8_t* rows[kRowTiles][2];
#pragma unroll
    for (int rt = 0; rt < kRowTiles; ++rt) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int64_t r = row0 + 16 * rt + 8 * h + g;
            where[rt][h] = locate_row(seg, r < total ? r : total - 1);
            rows[rt][h] = where[rt][h].w + static_cast<size_t>(where[rt][h].row) * row_bytes;
        }
    }
    ActRow256 tokens[kTiles];
#pragma unroll
    for (int tt = 0; tt < kTiles; ++tt) {
        const int64_t t = tok0 + 8 * tt + g;
        tokens[tt] = ActRow256(act + static_cast<size_t>(t < n_tok ? t : n_tok - 1) * act_row_bytes, cols);
    }
    const auto word = [c](uint32_t w0, uint32_t w1) { return c % 2 == 0 ? w0 : w1; };
    const auto act_word = [c](int a0, int a1) { return static_cast<uint32_t>(c % 2 == 0 ? a0 : a1); };

    float acc[kRowTiles][kTiles][4] = {};
    const int64_t n_super = cols / kQK256;
    for (int64_t sb = 0; sb < n_super; ++sb) {
        int isum[kRowTiles][kTiles][4] = {};
        typename Q::Codes w[kRowTiles][2][2];  // [row tile][row g / g + 8][sub-block of the part]
        typename Q::Slice s[kTiles][2];         // [token tile][sub-block of the part]
#pragma unroll
        for (int part = 0; part < 8; ++part) {
            const int64_t p = 8 * sb + part;
#pragma unroll
            for (int rt = 0; rt < kRowTiles; ++rt) {
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    w[rt][h][0] = Q::load(rows[rt][h], p, c / 2);
                    w[rt][h][1] = Q::load(rows[rt][h], p, 2 + c / 2);
                }
            }
#pragma unroll
            for (int tt = 0; tt < kTiles; ++tt) {
                s[tt][0] = Q::load_act(tokens[tt], p, c / 2);
                s[tt][1] = Q::load_act(tokens[tt], p, 2 + c / 2);
#pragma unroll
                for (int rt = 0; rt < kRowTiles; ++rt) {
#pragma unroll
                    for (int sub = 0; sub < 2; ++sub) {
                        const uint32_t a[2] = {word(w[rt][0][sub].w0, w[rt][0][sub].w1),
                                               word(w[rt][1][sub].w0, w[rt][1][sub].w1)};
                        int sums[4];
                        mma_16x8x16(a, act_word(s[tt][sub].a0, s[tt][sub].a1), sums);
#pragma unroll
                        for (int i = 0; i < 4; ++i) isum[rt][tt][i] += w[rt][i / 2][sub].sc * sums[i];
                    }
                }
            }
        }
#pragma unroll
        for (int tt = 0; tt < kTiles; ++tt) {
            const float da0 = __shfl_sync(0xffffffffu, s[tt][0].d, 8 * c);
            const float da1 = __shfl_sync(0xffffffffu, s[tt][0].d, 8 * c + 4);
#pragma unroll
            for (int rt = 0; rt < kRowTiles; ++rt) {
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    const float term = __fmul_rn(__fmul_rn(w[rt][i / 2][0].d, i % 2 == 0 ? da0 : da1),
                                                 static_cast<float>(isum[rt][tt][i]));
                    acc[rt][tt][i] = __fadd_rn(acc[rt][tt][i], term);
                }
            }
        }
    }
    store_mma_tiles<kTiles>(acc, where, row0, tok0, total, n_tok, g, c, accumulate);
}

// The GEMV readers of the 32-element formats, whose lane j loads block words j and 4 + j.
template <class Q>
constexpr bool kMmaReadable32 = std::is_same_v<typename Q::ActRow, ActRow32> && Q::kLanes == 4;
template <class Q>
constexpr bool kMmaReadableKQuant = std::is_same_v<typename Q::Codes, KQuantCodes>;
template <class Q>
constexpr bool kMmaReadableQ6K = std::is_same_v<typename Q::Codes, Q6KCodes>;

}  // namespace

bool int8_mma_supported() {
    static const bool supported = [] {
        int device = 0, major = 0;
        return cudaGetDevice(&device) == cudaSuccess &&
               cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess && major >= 8;
    }();
    return supported;
}

bool mma_applies(int32_t type, const MatmulInput& in) {
    if (!in.use_mma || in.n < kMmaMinTokens || !int8_mma_supported()) return false;
    bool readable = false;
    dispatch_int8_format(type, [&](auto fmt) {
        using Q = decltype(fmt);
        readable = kMmaReadable32<Q> || kMmaReadableKQuant<Q> || kMmaReadableQ6K<Q>;
    });
    return readable;
}

bool matmul_mma(int32_t type, const RowSegments& seg, size_t row_bytes, const MatmulInput& in, bool accumulate,
                cudaStream_t stream) {
    if (!mma_applies(type, in)) return false;
    bool launched = false;
    const unsigned row_blocks = ceil_div(seg.total_rows(), kMmaWarps * 16 * kRowTiles);
    dispatch_int8_format(type, [&](auto fmt) {
        using Q = decltype(fmt);
        if constexpr (kMmaReadable32<Q>) {
            if (in.act32 == nullptr) return;
            const dim3 grid(row_blocks, ceil_div(in.n, 8 * kTokenTiles));
            gemm_mma32_kernel<Q><<<grid, kMmaWarps * kWarp, 0, stream>>>(
                seg, row_bytes, in.cols, in.act32, act_row_bytes(ActFormat::Q8_32, in.cols), in.n, accumulate);
            check_launch("gemm_mma32_kernel");
            launched = true;
        } else if constexpr (kMmaReadableKQuant<Q>) {
            if (in.act256 == nullptr) return;
            const dim3 grid(row_blocks, ceil_div(in.n, 8 * kKQuantTokenTiles));
            gemm_mma_kquant_kernel<Q><<<grid, kMmaWarps * kWarp, 0, stream>>>(
                seg, row_bytes, in.cols, in.act256, act_row_bytes(ActFormat::Q8_256, in.cols), in.n, accumulate);
            check_launch("gemm_mma_kquant_kernel");
            launched = true;
        } else if constexpr (kMmaReadableQ6K<Q>) {
            if (in.act256 == nullptr) return;
            const dim3 grid(row_blocks, ceil_div(in.n, 8 * kKQuantTokenTiles));
            gemm_mma_q6k_kernel<Q><<<grid, kMmaWarps * kWarp, 0, stream>>>(
                seg, row_bytes, in.cols, in.act256, act_row_bytes(ActFormat::Q8_256, in.cols), in.n, accumulate);
            check_launch("gemm_mma_q6k_kernel");
            launched = true;
        }
    });
    return launched;
}

}  // namespace edgellama::cuda
