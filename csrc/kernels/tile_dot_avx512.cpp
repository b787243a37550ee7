// Tiled dot products for the 32-element block family (Q4_0, Q4_1, Q8_0) with AVX-512 VNNI.
//
// One zmm register holds two 32-element blocks, so each byte-dot instruction covers 64 weights.
// Per (row, token) and block pair the work is one dot, one convert, one scale multiply and one
// FMA; the min term of Q4_0/Q4_1 is accumulated for all rows of the tile at once.
// Q4_0 is Q4_1 with min = -8·d (unsigned nibbles, no sign fix-up). Q8_0's signed weights are
// dotted against activations shifted to unsigned (a + 128), minus 128·Σw of the block.
#include "csrc/kernels/tile_dot.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__) && \
    defined(__AVX512VNNI__) && defined(__F16C__)
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "csrc/kernels/float_convert.h"
#include "csrc/kernels/type_traits.h"
#include "quantize/block_formats.h"

namespace edgellama {
namespace {

inline __m512i load_two(const void* first, const void* second) {
    const __m256i lo = _mm256_loadu_si256(static_cast<const __m256i*>(first));
    const __m256i hi = _mm256_loadu_si256(static_cast<const __m256i*>(second));
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

inline uint32_t load_u32(const void* p) {
    uint32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// Two blocks' nibbles in element order: [lo(b0), hi(b0), lo(b1), hi(b1)] by 128-bit lane. Each
// block's 16 bytes are broadcast from memory into two lanes and the high lanes shifted by 4, so
// no cross-lane shuffle is needed.
inline __m512i unpack_nibbles_two(const uint8_t* qs0, const uint8_t* qs1) {
    const __m512i dup = _mm512_mask_broadcast_i32x4(
        _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs0))), 0xff00,
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs1)));
    const __m512i shifts = _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0);
    return _mm512_and_si512(_mm512_srlv_epi64(dup, shifts), _mm512_set1_epi8(0x0f));
}

// The first 32 bits of block b0 and b1 of each tile row, as floats: lane 4r + {0, 1, 2, 3} holds
// half {0, 1} of row r's block b0 and half {0, 1} of its block b1. Half 0 is d in every format,
// half 1 is m in Q4_1 (and a don't-care byte pair elsewhere). One convert serves the whole tile.
template <class Block>
inline __m512 tile_halves(const Block* const* rows, int64_t b0, int64_t b1) {
    __m128i x[kTileRows];
    for (int r = 0; r < kTileRows; ++r) {
        x[r] = _mm_insert_epi32(_mm_cvtsi32_si128(static_cast<int>(load_u32(&rows[r][b0]))),
                                static_cast<int>(load_u32(&rows[r][b1])), 1);
    }
    const __m256i all = _mm256_set_m128i(_mm_unpacklo_epi64(x[2], x[3]), _mm_unpacklo_epi64(x[0], x[1]));
    return _mm512_cvtph_ps(all);
}

// Row r's scale vector [d(b0) ×8, d(b1) ×8], picked out of tile_halves.
inline __m512 row_scale(__m512 halves, int r) {
    const __m512i idx = _mm512_set_epi32(4 * r + 2, 4 * r + 2, 4 * r + 2, 4 * r + 2, 4 * r + 2, 4 * r + 2,
                                         4 * r + 2, 4 * r + 2, 4 * r, 4 * r, 4 * r, 4 * r, 4 * r, 4 * r, 4 * r,
                                         4 * r);
    return _mm512_permutexvar_ps(idx, halves);
}

// [half h of b0 for rows 0..3, half h of b1 for rows 0..3].
inline __m256 tile_column(__m512 halves, int h) {
    const __m512i idx = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 14 + h, 10 + h, 6 + h, 2 + h, 12 + h, 8 + h,
                                         4 + h, h);
    return _mm512_castps512_ps256(_mm512_permutexvar_ps(idx, halves));
}

struct Q4_0Pair {
    using Block = BlockQ4_0;
    static constexpr bool kSigned = false, kHasMin = true;
    static __m512i codes(const Block& b0, const Block& b1) { return unpack_nibbles_two(b0.qs, b1.qs); }
    static __m256 mins(__m512 halves) { return _mm256_mul_ps(tile_column(halves, 0), _mm256_set1_ps(-8.0f)); }
};

struct Q4_1Pair {
    using Block = BlockQ4_1;
    static constexpr bool kSigned = false, kHasMin = true;
    static __m512i codes(const Block& b0, const Block& b1) { return unpack_nibbles_two(b0.qs, b1.qs); }
    static __m256 mins(__m512 halves) { return tile_column(halves, 1); }
};

struct Q8_0Pair {
    using Block = BlockQ8_0;
    static constexpr bool kSigned = true, kHasMin = false;
    static __m512i codes(const Block& b0, const Block& b1) { return load_two(b0.qs, b1.qs); }
    static __m256 mins(__m512) { return _mm256_setzero_ps(); }
};

inline float hsum512(__m512 v) { return _mm512_reduce_add_ps(v); }

// Software prefetch distance along each weight row. Decode streams every weight once per token and
// the hardware prefetcher alone leaves this loop waiting on memory (measured on SmolLM2-135M Q4_1,
// 1 thread: 1.5 KiB ahead 81 tok/s, 3 KiB 94, 6 KiB 100, 12 KiB no better). Tile rows are
// contiguous in the matrix, so reaching past a row's end prefetches the next tiles' rows.
constexpr int kPrefetchBytes = 6144;

template <class F, int T>
struct TileState {
    __m512 acc[kTileRows][T];
    __m256 min_acc[T];  // lane r: the min term of row r from even blocks; lane 4 + r: from odd blocks

    TileState() {
        for (int t = 0; t < T; ++t) {
            min_acc[t] = _mm256_setzero_ps();
            for (int r = 0; r < kTileRows; ++r) acc[r][t] = _mm512_setzero_ps();
        }
    }
};

// One step over blocks b0 and b1 of every tile row. kSingle: b1 == b0 is the odd last block; its
// second half is zeroed (codes, activation scale and sum), so it adds exactly nothing. The
// arithmetic per (row, token) does not depend on T.
// A token's packed activations (see TilePacked in tile_dot.h).
struct PackedAct {
    const uint8_t* codes;  // 64 bytes per pair
    const float* scales;   // 16 per pair
    const float* sums;     // 8 per pair
};

inline PackedAct packed_act(const uint8_t* row, int64_t n) {
    const int64_t n_pairs = (n / kQK32 + 1) / 2;
    return {row, reinterpret_cast<const float*>(row + n_pairs * 64),
            reinterpret_cast<const float*>(row + n_pairs * 128)};
}

template <bool kSigned>
void pack_act_row(int64_t n, const uint8_t* act_row, uint8_t* packed) {
    const auto* blocks = reinterpret_cast<const BlockQ8Act32*>(act_row);
    const int64_t n_blocks = n / kQK32;
    const int64_t n_pairs = (n_blocks + 1) / 2;
    uint8_t* codes = packed;
    float* scales = reinterpret_cast<float*>(packed + n_pairs * 64);
    float* sums = reinterpret_cast<float*>(packed + n_pairs * 128);
    for (int64_t p = 0; p < n_pairs; ++p) {
        const BlockQ8Act32& a0 = blocks[2 * p];
        const bool single = 2 * p + 1 >= n_blocks;
        const BlockQ8Act32& a1 = single ? a0 : blocks[2 * p + 1];
        __m512i a_codes = load_two(a0.qs, a1.qs);
        if constexpr (kSigned) a_codes = _mm512_xor_si512(a_codes, _mm512_set1_epi8(static_cast<char>(0x80)));
        _mm512_storeu_si512(codes + p * 64, a_codes);
        const float d1 = single ? 0.0f : a1.d, sum1 = single ? 0.0f : a1.sum;
        _mm512_storeu_ps(scales + p * 16, _mm512_insertf32x8(_mm512_set1_ps(a0.d), _mm256_set1_ps(d1), 1));
        _mm256_storeu_ps(sums + p * 8, _mm256_insertf128_ps(_mm256_set1_ps(a0.sum), _mm_set1_ps(sum1), 1));
    }
}

// One step over blocks b0 and b1 (pair p) of every tile row. kSingle: b1 == b0 is the odd last
// block; its second half is zeroed (weight codes here, activation scale and sum in the packing),
// so it adds exactly nothing. The arithmetic per (row, token) does not depend on T.
template <class F, int T, bool kSingle>
inline void tile_step(TileState<F, T>& s, const typename F::Block* const* rows, const PackedAct* acts,
                      int64_t b0, int64_t b1) {
    const int64_t p = b0 / 2;
    const __m512 halves = tile_halves(rows, b0, b1);
    for (int r = 0; r < kTileRows; ++r)
        _mm_prefetch(reinterpret_cast<const char*>(&rows[r][b0]) + kPrefetchBytes, _MM_HINT_T0);
    __m512i codes[kTileRows], neg_code_sums[kTileRows];
    for (int r = 0; r < kTileRows; ++r) {
        codes[r] = F::codes(rows[r][b0], rows[r][b1]);
        if constexpr (kSingle) codes[r] = _mm512_zextsi256_si512(_mm512_castsi512_si256(codes[r]));
        if constexpr (F::kSigned) {
            // -128·Σw per 4-byte group, the start value for dotting with (a + 128).
            neg_code_sums[r] = _mm512_sub_epi32(
                _mm512_setzero_si512(),
                _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(static_cast<char>(0x80)), codes[r]));
        }
    }
    const __m256 mins = F::mins(halves);
    for (int t = 0; t < T; ++t) {
        const __m512i a_codes = _mm512_loadu_si512(acts[t].codes + p * 64);
        const __m512 a_scale = _mm512_loadu_ps(acts[t].scales + p * 16);
        for (int r = 0; r < kTileRows; ++r) {
            __m512i isum;
            if constexpr (F::kSigned) {
                isum = _mm512_dpbusd_epi32(neg_code_sums[r], a_codes, codes[r]);
            } else {
                isum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes[r], a_codes);
            }
            const __m512 scale = _mm512_mul_ps(row_scale(halves, r), a_scale);
            s.acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), scale, s.acc[r][t]);
        }
        if constexpr (F::kHasMin) {
            s.min_acc[t] = _mm256_fmadd_ps(mins, _mm256_loadu_ps(acts[t].sums + p * 8), s.min_acc[t]);
        }
    }
}

template <class F, int T>
void tile_dot_pairs(int64_t n, const uint8_t* w, size_t w_stride, const uint8_t* act, size_t act_stride,
                    float* out, int64_t out_stride) {
    using Block = typename F::Block;
    const Block* rows[kTileRows];
    for (int r = 0; r < kTileRows; ++r) rows[r] = reinterpret_cast<const Block*>(w + r * w_stride);
    PackedAct acts[T];
    for (int t = 0; t < T; ++t) acts[t] = packed_act(act + t * act_stride, n);

    TileState<F, T> s;
    const int64_t n_blocks = n / kQK32;
    // The odd last block (if any) runs outside the loop, so the loop body has no branch.
    for (int64_t b = 0; b + 1 < n_blocks; b += 2) tile_step<F, T, false>(s, rows, acts, b, b + 1);
    if (n_blocks % 2 != 0) tile_step<F, T, true>(s, rows, acts, n_blocks - 1, n_blocks - 1);
    for (int t = 0; t < T; ++t) {
        alignas(16) float mins[kTileRows];
        _mm_store_ps(mins, _mm_add_ps(_mm256_castps256_ps128(s.min_acc[t]), _mm256_extractf128_ps(s.min_acc[t], 1)));
        for (int r = 0; r < kTileRows; ++r) out[t * out_stride + r] = hsum512(s.acc[r][t]) + mins[r];
    }
}

template <class F>
void tile_dot_packed(int64_t n, const uint8_t* w, size_t w_stride, const uint8_t* act, size_t act_stride,
                     int n_tok, float* out, int64_t out_stride) {
    with_token_count(n_tok, [&](auto t) {
        tile_dot_pairs<F, decltype(t)::value>(n, w, w_stride, act, act_stride, out, out_stride);
    });
}

// Prepacked weights: one 4-row tile's per-pair vectors, exactly the values tile_step builds, so a
// prefill that reuses a tile for many tokens builds them once. Per pair: codes[kTileRows] (second
// half zeroed for the odd last block), row scales[kTileRows], mins, and for signed codes the
// -128·Σw start values.
template <class F>
struct PackedWeightPair {
    __m512i codes[kTileRows];
    __m512 row_scales[kTileRows];
    __m512i neg_code_sums[F::kSigned ? kTileRows : 1];
    __m256 mins;
    __m256 pad;
};

template <class F, bool kSingle>
inline void pack_weight_pair(const typename F::Block* const* rows, int64_t b0, int64_t b1, PackedWeightPair<F>& dst) {
    const __m512 halves = tile_halves(rows, b0, b1);
    for (int r = 0; r < kTileRows; ++r) {
        __m512i codes = F::codes(rows[r][b0], rows[r][b1]);
        if constexpr (kSingle) codes = _mm512_zextsi256_si512(_mm512_castsi512_si256(codes));
        _mm512_store_si512(&dst.codes[r], codes);
        if constexpr (F::kSigned) {
            _mm512_store_si512(&dst.neg_code_sums[r],
                               _mm512_sub_epi32(_mm512_setzero_si512(),
                                                _mm512_dpbusd_epi32(_mm512_setzero_si512(),
                                                                    _mm512_set1_epi8(static_cast<char>(0x80)), codes)));
        }
        _mm512_store_ps(&dst.row_scales[r], row_scale(halves, r));
    }
    _mm256_store_ps(reinterpret_cast<float*>(&dst.mins), F::mins(halves));
}

template <class F>
void pack_weight_tile(int64_t n, const uint8_t* w, size_t w_stride, uint8_t* packed) {
    using Block = typename F::Block;
    const Block* rows[kTileRows];
    for (int r = 0; r < kTileRows; ++r) rows[r] = reinterpret_cast<const Block*>(w + r * w_stride);
    auto* dst = reinterpret_cast<PackedWeightPair<F>*>(packed);
    const int64_t n_blocks = n / kQK32;
    for (int64_t b = 0; b + 1 < n_blocks; b += 2) pack_weight_pair<F, false>(rows, b, b + 1, dst[b / 2]);
    if (n_blocks % 2 != 0) pack_weight_pair<F, true>(rows, n_blocks - 1, n_blocks - 1, dst[n_blocks / 2]);
}

template <class F, int T>
void tile_dot_pw(int64_t n, const uint8_t* w, const uint8_t* act, size_t act_stride, float* out, int64_t out_stride) {
    const auto* pw = reinterpret_cast<const PackedWeightPair<F>*>(w);
    PackedAct acts[T];
    for (int t = 0; t < T; ++t) acts[t] = packed_act(act + t * act_stride, n);
    TileState<F, T> s;
    const int64_t n_pairs = (n / kQK32 + 1) / 2;
    for (int64_t p = 0; p < n_pairs; ++p) {
        const PackedWeightPair<F>& q = pw[p];
        __m512i codes[kTileRows];
        for (int r = 0; r < kTileRows; ++r) codes[r] = _mm512_load_si512(&q.codes[r]);
        for (int t = 0; t < T; ++t) {
            const __m512i a_codes = _mm512_loadu_si512(acts[t].codes + p * 64);
            const __m512 a_scale = _mm512_loadu_ps(acts[t].scales + p * 16);
            for (int r = 0; r < kTileRows; ++r) {
                __m512i isum;
                if constexpr (F::kSigned) {
                    isum = _mm512_dpbusd_epi32(_mm512_load_si512(&q.neg_code_sums[r]), a_codes, codes[r]);
                } else {
                    isum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes[r], a_codes);
                }
                const __m512 scale = _mm512_mul_ps(_mm512_load_ps(reinterpret_cast<const float*>(&q.row_scales[r])), a_scale);
                s.acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), scale, s.acc[r][t]);
            }
            if constexpr (F::kHasMin) {
                s.min_acc[t] = _mm256_fmadd_ps(_mm256_load_ps(reinterpret_cast<const float*>(&q.mins)),
                                               _mm256_loadu_ps(acts[t].sums + p * 8), s.min_acc[t]);
            }
        }
    }
    for (int t = 0; t < T; ++t) {
        alignas(16) float mins[kTileRows];
        _mm_store_ps(mins, _mm_add_ps(_mm256_castps256_ps128(s.min_acc[t]), _mm256_extractf128_ps(s.min_acc[t], 1)));
        for (int r = 0; r < kTileRows; ++r) out[t * out_stride + r] = hsum512(s.acc[r][t]) + mins[r];
    }
}

template <class F>
void tile_dot_pw_dispatch(int64_t n, const uint8_t* w, size_t, const uint8_t* act, size_t act_stride, int n_tok,
                          float* out, int64_t out_stride) {
    with_token_count(n_tok, [&](auto t) {
        tile_dot_pw<F, decltype(t)::value>(n, w, act, act_stride, out, out_stride);
    });
}

template <class F>
TilePacked packed_fns() {
    TilePacked p;
    p.pack = pack_act_row<F::kSigned>;
    p.dot = tile_dot_packed<F>;
    p.pack_weights = pack_weight_tile<F>;
    p.dot_packed_weights = tile_dot_pw_dispatch<F>;
    p.weight_pair_bytes = sizeof(PackedWeightPair<F>);
    return p;
}

// Unpacked activations (BlockQ8Act32 rows): packs this call's tokens, then runs the packed kernel.
template <class F>
void tile_dot_dispatch(int64_t n, const uint8_t* w, size_t w_stride, const uint8_t* act, size_t act_stride,
                       int n_tok, float* out, int64_t out_stride) {
    thread_local std::vector<uint8_t> packed;
    const size_t row_bytes = tile_packed_row_bytes(n);
    if (packed.size() < row_bytes * n_tok) packed.resize(row_bytes * n_tok);
    for (int t = 0; t < n_tok; ++t) pack_act_row<F::kSigned>(n, act + t * act_stride, packed.data() + t * row_bytes);
    tile_dot_packed<F>(n, w, w_stride, packed.data(), row_bytes, n_tok, out, out_stride);
}

}  // namespace

TileDotFn find_tile_dot_avx512(int32_t type_id) {
    switch (static_cast<TensorType>(type_id)) {
        case TensorType::Q4_0: return tile_dot_dispatch<Q4_0Pair>;
        case TensorType::Q4_1: return tile_dot_dispatch<Q4_1Pair>;
        case TensorType::Q8_0: return tile_dot_dispatch<Q8_0Pair>;
        default: return nullptr;
    }
}

TilePacked find_tile_packed_avx512(int32_t type_id) {
    switch (static_cast<TensorType>(type_id)) {
        case TensorType::Q4_0: return packed_fns<Q4_0Pair>();
        case TensorType::Q4_1: return packed_fns<Q4_1Pair>();
        case TensorType::Q8_0: return packed_fns<Q8_0Pair>();
        default: return {};
    }
}

}  // namespace edgellama

#else

namespace edgellama {
TileDotFn find_tile_dot_avx512(int32_t) { return nullptr; }
TilePacked find_tile_packed_avx512(int32_t) { return {}; }
}  // namespace edgellama

#endif
