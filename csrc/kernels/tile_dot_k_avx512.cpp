// Tiled dot products for the K-quants (Q4_K, Q5_K, Q6_K) with AVX-512 VNNI.
//
// Each row's 256-element super-block is unpacked once into four zmm registers of codes in element
// order (64 codes each, one register per 64 activation bytes) plus four int16 scale registers.
// Per (row, token) and 64 elements the work is two instructions: u8 × s8 pair sums (maddubs,
// exact: at most 2 · 63 · 127) and an int16 × int16 dot with the sub-block scales accumulated in
// int32 (vpdpwssd). Once per super-block the int32 lanes are converted, multiplied by d_a and FMA'd
// with d_w. Where the build has GFNI, nibbles and Q6_K's high bit pairs are extracted with one
// bit-matrix multiply (vgf2p8affineqb) per register instead of shift + mask.
//
// Q4_K / Q5_K mins: dmin · Σ_j mn_j · (activation sum of sub-block j) is computed for the four rows
// at once per token, in one int16 madd over [row][sub-block] lanes. Q6_K's −32 offset is the integer
// term −32 · Σ_g sc_g · bsums_g, one more vpdpwssd per (row, token) into the same accumulator.
//
// Every n_tok instantiation performs the same operations in the same order for a given (row, token),
// and the file is built with -ffp-contract=off, so decode (n_tok = 1) and prefill agree bit for bit.
#include "csrc/kernels/tile_dot.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__) && \
    defined(__AVX512VNNI__) && defined(__AVX512VBMI__) && defined(__F16C__)
#include <immintrin.h>

// GCC 12's intrinsic headers self-initialize the "undefined" pass-through operand of unmasked
// AVX-512 intrinsics, which -Wall reports at every inlined use; nothing here reads such a value.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include "csrc/kernels/type_traits.h"
#include "quantize/block_formats.h"

namespace edgellama {
namespace {

constexpr __mmask64 kEvenBytes = 0x5555555555555555ULL;  // low byte of every int16 lane

struct alignas(64) Index64 {
    uint8_t b[64];
};

// Byte / word permutation indices, built once at compile time.
struct Indices {
    // Q4_K / Q5_K, in-lane byte shuffle of one row's 16 scale/min bytes (broadcast to all lanes):
    // int16 lane i of the scale register for chunk c is scale 2c (i < 16) or 2c + 1, zero-extended.
    Index64 kq_scale[4];
    // Q4_K / Q5_K: int16 lane 8r + j = min j of row r (bytes 16r + 8 + j).
    Index64 kq_mins;
    // Q6_K: int16 lane i of scale register k takes int16 lane 4k + i / 8 of the sign-extended scales.
    Index64 q6_scale[4];
};

constexpr Indices make_indices() {
    Indices x{};
    for (int c = 0; c < 4; ++c) {
        for (int i = 0; i < 32; ++i) {
            x.kq_scale[c].b[2 * i] = static_cast<uint8_t>(i < 16 ? 2 * c : 2 * c + 1);
            x.kq_scale[c].b[2 * i + 1] = 0x80;  // zero
        }
    }
    for (int i = 0; i < 32; ++i) x.kq_mins.b[2 * i] = static_cast<uint8_t>(16 * (i / 8) + 8 + i % 8);
    for (int k = 0; k < 4; ++k) {
        for (int i = 0; i < 32; ++i) {
            x.q6_scale[k].b[2 * i] = static_cast<uint8_t>(4 * k + i / 8);  // vpermw word indices, little-endian
            x.q6_scale[k].b[2 * i + 1] = 0;
        }
    }
    return x;
}

constexpr Indices kIdx = make_indices();

inline __m512i load_idx(const Index64& i) { return _mm512_load_si512(i.b); }
inline __m128i load16(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline __m512i load64(const void* p) { return _mm512_loadu_si512(p); }

// Both 32-byte halves of a zmm loaded from the same 32 bytes.
inline __m512i broadcast32(const void* p) { return _mm512_broadcast_i64x4(load32(p)); }

// The 4-bit codes of 64 elements from 32 bytes: [low nibbles (sub-block 2c), high nibbles (2c + 1)].
inline __m512i nibbles_lo_hi(const uint8_t* qs) {
    const __m512i z = broadcast32(qs);
#if defined(__GFNI__)
    // One bit-matrix multiply per byte, with a different matrix per 64-bit lane: the low half keeps
    // bits 0..3, the high half moves bits 4..7 down (result bit i = parity(matrix byte 7 - i & x)).
    const __m512i pick = _mm512_setr_epi64(0x0102040800000000LL, 0x0102040800000000LL, 0x0102040800000000LL,
                                           0x0102040800000000LL, 0x1020408000000000LL, 0x1020408000000000LL,
                                           0x1020408000000000LL, 0x1020408000000000LL);
    return _mm512_gf2p8affine_epi64_epi8(z, pick, 0);
#else
    return _mm512_and_si512(_mm512_mask_srli_epi16(z, 0xFFFF0000u, z, 4), _mm512_set1_epi8(0x0f));
#endif
}

struct Q4K {
    using Block = BlockQ4_K;
    struct Extra {};
    static Extra extra(const Block&) { return {}; }
    static __m512i codes(const Block& blk, int c, const Extra&) { return nibbles_lo_hi(blk.qs + 32 * c); }
};

// Q5_K: bit j of qh[l] is bit 4 of element l of sub-block j. qh is broadcast to both halves; the
// half for sub-block j is shifted (within 16-bit lanes) so that bit j lands on bit 4. A shift of at
// most 4 left or 3 right moves no neighbouring byte's bit onto bit 4.
struct Q5K {
    using Block = BlockQ5_K;
    struct Extra {
        __m512i qh;
    };
    static Extra extra(const Block& blk) { return {broadcast32(blk.qh)}; }
    static __m512i codes(const Block& blk, int c, const Extra& e) {
        __m512i high;
        if (c < 2) {  // left by 4 - 2c (low half), 3 - 2c (high half)
            const __m512i cnt = _mm512_mask_set1_epi16(_mm512_set1_epi16(static_cast<short>(4 - 2 * c)), 0xFFFF0000u,
                                                       static_cast<short>(3 - 2 * c));
            high = _mm512_sllv_epi16(e.qh, cnt);
        } else {  // right by 2c - 4, 2c - 3
            const __m512i cnt = _mm512_mask_set1_epi16(_mm512_set1_epi16(static_cast<short>(2 * c - 4)), 0xFFFF0000u,
                                                       static_cast<short>(2 * c - 3));
            high = _mm512_srlv_epi16(e.qh, cnt);
        }
        // nibbles | (high & 0x10)
        return _mm512_ternarylogic_epi32(nibbles_lo_hi(blk.qs + 32 * c), high, _mm512_set1_epi8(0x10), 0xF8);
    }
};

// The four rows' d and dmin (lanes 2r, 2r + 1) from the first 4 bytes of their blocks.
inline __m256 row_d_dmin(__m512i head) {
    const __m512i pick = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    return _mm256_cvtph_ps(_mm512_castsi512_si128(_mm512_permutexvar_epi32(pick, head)));
}

// The 6-bit scales and mins of the four rows. head: lane r = bytes 0..15 of row r's block (d, dmin,
// scales[12]), as 32-bit words [d|dmin, u0, u1, u2]. Result lane r: bytes 0..7 the scales, 8..15 the
// mins (see unpack_k_scale_min in quant_k.cpp):
//   sc[0..3] = u0 & 0x3f..          sc[4..7] = (u2 & 0x0f..) | ((u0 >> 2) & 0x30..)
//   mn[0..3] = u1 & 0x3f..          mn[4..7] = ((u2 >> 4) & 0x0f..) | ((u1 >> 2) & 0x30..)
inline __m512i unpack_scales_mins4(__m512i head) {
    const __m512i p = _mm512_shuffle_epi32(head, static_cast<_MM_PERM_ENUM>(_MM_SHUFFLE(2, 2, 1, 1)));  // u0 u0 u1 u1
    const __m512i q = _mm512_shuffle_epi32(head, static_cast<_MM_PERM_ENUM>(_MM_SHUFFLE(3, 3, 3, 3)));  // u2 × 4
    const __m512i p_shift = _mm512_broadcast_i32x4(_mm_setr_epi32(0, 2, 0, 2));
    const __m512i p_mask = _mm512_broadcast_i32x4(_mm_setr_epi32(0x3f3f3f3f, 0x30303030, 0x3f3f3f3f, 0x30303030));
    const __m512i q_shift = _mm512_broadcast_i32x4(_mm_setr_epi32(0, 0, 0, 4));
    const __m512i q_mask = _mm512_broadcast_i32x4(_mm_setr_epi32(0, 0x0f0f0f0f, 0, 0x0f0f0f0f));
    const __m512i a = _mm512_and_si512(_mm512_srlv_epi32(p, p_shift), p_mask);
    return _mm512_ternarylogic_epi32(a, _mm512_srlv_epi32(q, q_shift), q_mask, 0xF8);  // a | (b & c)
}

inline __m512i head4(const uint8_t* const* rows, size_t offset) {
    __m512i h = _mm512_zextsi128_si512(load16(rows[0] + offset));
    h = _mm512_inserti32x4(h, load16(rows[1] + offset), 1);
    h = _mm512_inserti32x4(h, load16(rows[2] + offset), 2);
    return _mm512_inserti32x4(h, load16(rows[3] + offset), 3);
}

// Q4_K and Q5_K: value = d · sc_j · q − dmin · mn_j.
// Software prefetch of one weight block kPrefetchBytes ahead along its row: decode streams every
// weight once per token and the hardware prefetcher alone leaves these loops waiting on memory.
// Tile rows are contiguous in the matrix, so reaching past a row's end fetches the next tiles'.
constexpr int kPrefetchBytes = 6144;

template <class Block>
inline void prefetch_ahead(const Block& blk) {
    const char* p = reinterpret_cast<const char*>(&blk) + kPrefetchBytes;
    for (size_t off = 0; off < sizeof(Block); off += 64) _mm_prefetch(p + off, _MM_HINT_T0);
}

template <class F, int T>
void tile_dot_scaled_mins(int64_t n, const uint8_t* w, size_t w_stride, const uint8_t* act, size_t act_stride,
                          float* out, int64_t out_stride) {
    using Block = typename F::Block;
    const Block* rows[kTileRows];
    for (int r = 0; r < kTileRows; ++r) rows[r] = reinterpret_cast<const Block*>(w + r * w_stride);
    const BlockQ8Act256* acts[T];
    for (int t = 0; t < T; ++t) acts[t] = reinterpret_cast<const BlockQ8Act256*>(act + t * act_stride);

    __m512 acc[kTileRows][T];
    __m512 min_acc[T];  // lanes 4r .. 4r + 3: partial min terms of row r
    for (int t = 0; t < T; ++t) {
        min_acc[t] = _mm512_setzero_ps();
        for (int r = 0; r < kTileRows; ++r) acc[r][t] = _mm512_setzero_ps();
    }
    const __m512i by_row4 = _mm512_setr_epi32(1, 1, 1, 1, 3, 3, 3, 3, 5, 5, 5, 5, 7, 7, 7, 7);
    const __m512i by_row_d = _mm512_setr_epi32(0, 2, 4, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    const int64_t n_blocks = n / kQK256;
    for (int64_t b = 0; b < n_blocks; ++b) {
        const uint8_t* block_bytes[kTileRows];
        for (int r = 0; r < kTileRows; ++r) {
            block_bytes[r] = reinterpret_cast<const uint8_t*>(rows[r] + b);
            prefetch_ahead(rows[r][b]);
        }
        const __m512i head = head4(block_bytes, 0);
        const __m512i sm = unpack_scales_mins4(head);
        const __m256 d_dmin = row_d_dmin(head);
        const __m512 dmin16 = _mm512_permutexvar_ps(by_row4, _mm512_zextps256_ps512(d_dmin));
        alignas(16) float d_row[kTileRows];
        _mm_store_ps(d_row, _mm512_castps512_ps128(_mm512_permutexvar_ps(by_row_d, _mm512_zextps256_ps512(d_dmin))));

#pragma GCC unroll 4
        for (int r = 0; r < kTileRows; ++r) {
            const Block& blk = rows[r][b];
            const typename F::Extra extra = F::extra(blk);
            const __m512i row_sm = _mm512_shuffle_i32x4(sm, sm, 0x55 * r);  // row r's lane everywhere
            __m512i codes[4], scales[4];
            for (int c = 0; c < 4; ++c) {
                codes[c] = F::codes(blk, c, extra);
                scales[c] = _mm512_shuffle_epi8(row_sm, load_idx(kIdx.kq_scale[c]));
            }
            for (int t = 0; t < T; ++t) {
                const int8_t* aq = acts[t][b].qs;
                __m512i isum = _mm512_madd_epi16(_mm512_maddubs_epi16(codes[0], load64(aq)), scales[0]);
                for (int c = 1; c < 4; ++c) {
                    isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(codes[c], load64(aq + 64 * c)), scales[c]);
                }
                const __m512 scaled = _mm512_mul_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(acts[t][b].d));
                acc[r][t] = _mm512_fmadd_ps(scaled, _mm512_set1_ps(d_row[r]), acc[r][t]);
            }
        }

        const __m512i mins = _mm512_maskz_permutexvar_epi8(kEvenBytes, load_idx(kIdx.kq_mins), sm);
        for (int t = 0; t < T; ++t) {
            const BlockQ8Act256& a = acts[t][b];
            // Activation sums of the eight 32-element sub-blocks (|sum| <= 32 · 127: fits int16).
            const __m128i bs8 = _mm_hadd_epi16(load16(a.bsums), load16(a.bsums + 8));
            const __m512i m = _mm512_madd_epi16(mins, _mm512_broadcast_i32x4(bs8));
            min_acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(m), _mm512_mul_ps(dmin16, _mm512_set1_ps(a.d)), min_acc[t]);
        }
    }
    for (int t = 0; t < T; ++t) {
        alignas(64) float m[16];
        _mm512_store_ps(m, min_acc[t]);
        for (int r = 0; r < kTileRows; ++r) {
            const float row_min = (m[4 * r] + m[4 * r + 1]) + (m[4 * r + 2] + m[4 * r + 3]);
            out[t * out_stride + r] = _mm512_reduce_add_ps(acc[r][t]) - row_min;
        }
    }
}

// Q6_K: value = d · sc_g · (q − 32), q a 6-bit code, sc_g a signed 8-bit scale per 16 elements.
template <int T>
void tile_dot_q6_k(int64_t n, const uint8_t* w, size_t w_stride, const uint8_t* act, size_t act_stride, float* out,
                   int64_t out_stride) {
    const BlockQ6_K* rows[kTileRows];
    for (int r = 0; r < kTileRows; ++r) rows[r] = reinterpret_cast<const BlockQ6_K*>(w + r * w_stride);
    const BlockQ8Act256* acts[T];
    for (int t = 0; t < T; ++t) acts[t] = reinterpret_cast<const BlockQ8Act256*>(act + t * act_stride);

    __m512 acc[kTileRows][T];
    for (int t = 0; t < T; ++t) {
        for (int r = 0; r < kTileRows; ++r) acc[r][t] = _mm512_setzero_ps();
    }
    const __m512i m0f = _mm512_set1_epi8(0x0f);
#if defined(__GFNI__)
    // Top two bits of group s (qh bits 2s, 2s + 1) onto bits 4, 5. Result bit i of a byte =
    // parity(matrix byte 7 - i & x), so bits 4, 5 come from matrix bytes 3, 2; one matrix per 64-bit lane.
    const __m512i pick01 = _mm512_setr_epi64(0x01020000, 0x01020000, 0x01020000, 0x01020000,  // bits 0, 1
                                             0x04080000, 0x04080000, 0x04080000, 0x04080000);  // bits 2, 3
    const __m512i pick23 = _mm512_setr_epi64(0x10200000, 0x10200000, 0x10200000, 0x10200000,  // bits 4, 5
                                             0x40800000, 0x40800000, 0x40800000, 0x40800000);  // bits 6, 7
#else
    // Groups 0 | 1 shift left 4 | 2, groups 2 | 3 right 0 | 2, then keep bits 4, 5.
    const __m512i m30 = _mm512_set1_epi8(0x30);
    const __m512i left_01 = _mm512_mask_set1_epi16(_mm512_set1_epi16(4), 0xFFFF0000u, 2);
    const __m512i right_23 = _mm512_mask_set1_epi16(_mm512_setzero_si512(), 0xFFFF0000u, 2);
#endif
    const int64_t n_blocks = n / kQK256;
    for (int64_t b = 0; b < n_blocks; ++b) {
        for (int r = 0; r < kTileRows; ++r) prefetch_ahead(rows[r][b]);
        __m128i d_bits = _mm_setzero_si128();
        d_bits = _mm_insert_epi16(d_bits, rows[0][b].d, 0);
        d_bits = _mm_insert_epi16(d_bits, rows[1][b].d, 1);
        d_bits = _mm_insert_epi16(d_bits, rows[2][b].d, 2);
        d_bits = _mm_insert_epi16(d_bits, rows[3][b].d, 3);
        alignas(16) float d_row[kTileRows];
        _mm_store_ps(d_row, _mm_cvtph_ps(d_bits));

#pragma GCC unroll 4
        for (int r = 0; r < kTileRows; ++r) {
            const BlockQ6_K& blk = rows[r][b];
            const __m256i sc16 = _mm256_cvtepi8_epi16(load16(blk.scales));
            __m512i scales[4], codes[4];
            for (int k = 0; k < 4; ++k) {
                scales[k] = _mm512_permutexvar_epi16(load_idx(kIdx.q6_scale[k]), _mm512_zextsi256_si512(sc16));
            }
            // −32 · sc_g in the low half, zero above: dotted with the 16 activation sums.
            const __m512i offset =
                _mm512_zextsi256_si512(_mm256_slli_epi16(_mm256_sub_epi16(_mm256_setzero_si256(), sc16), 5));
            for (int h = 0; h < 2; ++h) {
                const __m512i ql = load64(blk.ql + 64 * h);
                const __m512i qh = broadcast32(blk.qh + 32 * h);
#if defined(__GFNI__)
                const __m512i hi01 = _mm512_gf2p8affine_epi64_epi8(qh, pick01, 0);
                const __m512i hi23 = _mm512_gf2p8affine_epi64_epi8(qh, pick23, 0);
#else
                const __m512i hi01 = _mm512_and_si512(_mm512_sllv_epi16(qh, left_01), m30);
                const __m512i hi23 = _mm512_and_si512(_mm512_srlv_epi16(qh, right_23), m30);
#endif
                codes[2 * h] = _mm512_ternarylogic_epi32(ql, m0f, hi01, 0xEA);  // (ql & 0x0f) | hi
                codes[2 * h + 1] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(ql, 4), m0f, hi23, 0xEA);
            }
            for (int t = 0; t < T; ++t) {
                const BlockQ8Act256& a = acts[t][b];
                __m512i isum = _mm512_madd_epi16(_mm512_maddubs_epi16(codes[0], load64(a.qs)), scales[0]);
                for (int k = 1; k < 4; ++k) {
                    isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(codes[k], load64(a.qs + 64 * k)), scales[k]);
                }
                isum = _mm512_dpwssd_epi32(isum, offset, _mm512_zextsi256_si512(load32(a.bsums)));
                const __m512 scaled = _mm512_mul_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(a.d));
                acc[r][t] = _mm512_fmadd_ps(scaled, _mm512_set1_ps(d_row[r]), acc[r][t]);
            }
        }
    }
    for (int t = 0; t < T; ++t) {
        for (int r = 0; r < kTileRows; ++r) out[t * out_stride + r] = _mm512_reduce_add_ps(acc[r][t]);
    }
}

template <class F>
void dispatch_scaled_mins(int64_t n, const uint8_t* w, size_t w_stride, const uint8_t* act, size_t act_stride,
                          int n_tok, float* out, int64_t out_stride) {
    with_token_count(n_tok, [&](auto t) {
        tile_dot_scaled_mins<F, decltype(t)::value>(n, w, w_stride, act, act_stride, out, out_stride);
    });
}

void dispatch_q6_k(int64_t n, const uint8_t* w, size_t w_stride, const uint8_t* act, size_t act_stride, int n_tok,
                   float* out, int64_t out_stride) {
    with_token_count(n_tok, [&](auto t) {
        tile_dot_q6_k<decltype(t)::value>(n, w, w_stride, act, act_stride, out, out_stride);
    });
}

}  // namespace

TileDotFn find_tile_dot_k_avx512(int32_t type_id) {
    switch (static_cast<TensorType>(type_id)) {
        case TensorType::Q4_K: return dispatch_scaled_mins<Q4K>;
        case TensorType::Q5_K: return dispatch_scaled_mins<Q5K>;
        case TensorType::Q6_K: return dispatch_q6_k;
        default: return nullptr;
    }
}

}  // namespace edgellama

#else

namespace edgellama {
TileDotFn find_tile_dot_k_avx512(int32_t) { return nullptr; }
}  // namespace edgellama

#endif
