// Row-group kernels (see row_groups.h) for the K-quants Q4_K, Q5_K and Q6_K with AVX-512 VNNI.
//
// A group holds 16 rows; its super-blocks follow one another, each in the type's bytes × 16:
//   Q4_K  codes 32 chunks (c, k): lane r = bytes 4k .. 4k+3 of row r's qs[32c .. 32c+32)   2048
//         scales 3 chunks: lane r = bytes 4i .. 4i+3 of row r's scales[12]                   192
//         d ×16, dmin ×16 (f16)                                                                64
//   Q5_K  as Q4_K, plus qh 8 chunks (lane r = bytes 4k .. 4k+3 of row r's qh) after the codes
//   Q6_K  ql 32 chunks, qh 16 chunks, scales 4 chunks (lane r = dword i of each row's array),
//         d ×16 (f16)
// so a group takes exactly the bytes of its rows. Scales are unpacked once per super-block for
// all 16 rows (and reused for up to kGroupTokens tokens).
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

#include <cstring>

#include "csrc/kernels/type_traits.h"
#include "quantize/block_formats.h"

namespace edgellama {
namespace {

inline uint32_t load_u32(const void* p) {
    uint32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

inline __m512i chunk_at(const uint8_t* p, int index) { return _mm512_loadu_si512(p + 64 * index); }
inline __m512i bytes(uint32_t v) { return _mm512_set1_epi32(static_cast<int>(v)); }
inline __m512 f16x16(const uint8_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
// Byte `b` of every 32-bit lane, zero- or sign-extended to the lane.
inline __m512i byte_of(__m512i v, int b) {
    return _mm512_and_si512(_mm512_srli_epi32(v, 8 * b), _mm512_set1_epi32(0xff));
}
inline __m512i signed_byte_of(__m512i v, int b) { return _mm512_srai_epi32(_mm512_slli_epi32(v, 24 - 8 * b), 24); }

// Scatters 4-byte groups of each row's field into interleaved chunks: chunk i of the group gets
// bytes 4i .. 4i+3 of row r's field in lane r.
inline void interleave(uint8_t* chunks, int n_chunks, const uint8_t* field, int r) {
    for (int i = 0; i < n_chunks; ++i) std::memcpy(chunks + 64 * i + 4 * r, field + 4 * i, 4);
}
inline void deinterleave(const uint8_t* chunks, int n_chunks, uint8_t* field, int r) {
    for (int i = 0; i < n_chunks; ++i) std::memcpy(field + 4 * i, chunks + 64 * i + 4 * r, 4);
}

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

struct Q4_KFormat {
    using Block = BlockQ4_K;
    static constexpr int kSub = 8, kSubSize = 32, kChunksPerSub = 8;
    static constexpr bool kHasMin = true;
    static constexpr size_t kCodes = 0, kScales = 2048, kD = 2048 + 192;
    static constexpr size_t kSuperBytes = 16 * sizeof(Block);

    static void pack(const Block& b, int r, uint8_t* g) {
        interleave(g + kCodes, 32, b.qs, r);
        interleave(g + kScales, 3, b.scales, r);
        std::memcpy(g + kD + 2 * r, &b.d, 2);
        std::memcpy(g + kD + 32 + 2 * r, &b.dmin, 2);
    }
    static void unpack(const uint8_t* g, int r, Block& b) {
        deinterleave(g + kCodes, 32, b.qs, r);
        deinterleave(g + kScales, 3, b.scales, r);
        std::memcpy(&b.d, g + kD + 2 * r, 2);
        std::memcpy(&b.dmin, g + kD + 32 + 2 * r, 2);
    }
    static void scales(const uint8_t* g, SuperScales<8>& s) { unpack_scales_k(g + kScales, g + kD, s); }
    // Sub-block j: chunk pair c = j / 2 holds it in its low (j even) or high (j odd) nibbles.
    static void codes(const uint8_t* g, int j, __m512i* w) {
        const __m512i low4 = _mm512_set1_epi8(0x0f);
        for (int k = 0; k < 8; ++k) {
            const __m512i packed = chunk_at(g + kCodes, (j / 2) * 8 + k);
            w[k] = _mm512_and_si512(j % 2 == 0 ? packed : _mm512_srli_epi16(packed, 4), low4);
        }
    }
};

struct Q5_KFormat {
    using Block = BlockQ5_K;
    static constexpr int kSub = 8, kSubSize = 32, kChunksPerSub = 8;
    static constexpr bool kHasMin = true;
    static constexpr size_t kCodes = 0, kHigh = 2048, kScales = 2048 + 512, kD = 2048 + 512 + 192;
    static constexpr size_t kSuperBytes = 16 * sizeof(Block);

    static void pack(const Block& b, int r, uint8_t* g) {
        interleave(g + kCodes, 32, b.qs, r);
        interleave(g + kHigh, 8, b.qh, r);
        interleave(g + kScales, 3, b.scales, r);
        std::memcpy(g + kD + 2 * r, &b.d, 2);
        std::memcpy(g + kD + 32 + 2 * r, &b.dmin, 2);
    }
    static void unpack(const uint8_t* g, int r, Block& b) {
        deinterleave(g + kCodes, 32, b.qs, r);
        deinterleave(g + kHigh, 8, b.qh, r);
        deinterleave(g + kScales, 3, b.scales, r);
        std::memcpy(&b.d, g + kD + 2 * r, 2);
        std::memcpy(&b.dmin, g + kD + 32 + 2 * r, 2);
    }
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
};

struct Q6_KFormat {
    using Block = BlockQ6_K;
    static constexpr int kSub = 16, kSubSize = 16, kChunksPerSub = 4;
    static constexpr bool kHasMin = false;
    static constexpr size_t kLow = 0, kHigh = 2048, kScales = 2048 + 1024, kD = 2048 + 1024 + 256;
    static constexpr size_t kSuperBytes = 16 * sizeof(Block);

    static void pack(const Block& b, int r, uint8_t* g) {
        interleave(g + kLow, 32, b.ql, r);
        interleave(g + kHigh, 16, b.qh, r);
        interleave(g + kScales, 4, reinterpret_cast<const uint8_t*>(b.scales), r);
        std::memcpy(g + kD + 2 * r, &b.d, 2);
    }
    static void unpack(const uint8_t* g, int r, Block& b) {
        deinterleave(g + kLow, 32, b.ql, r);
        deinterleave(g + kHigh, 16, b.qh, r);
        deinterleave(g + kScales, 4, reinterpret_cast<uint8_t*>(b.scales), r);
        std::memcpy(&b.d, g + kD + 2 * r, 2);
    }
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
};

// ---------------------------------------------------------------- packing

template <class F>
size_t group_bytes(int64_t n) { return static_cast<size_t>(n / kQK256) * F::kSuperBytes; }

template <class F>
void pack_group(int64_t n, const uint8_t* rows, size_t row_stride, int n_rows, uint8_t* dst) {
    const int64_t nsb = n / kQK256;
    std::memset(dst, 0, group_bytes<F>(n));
    for (int r = 0; r < n_rows; ++r) {
        const auto* row = reinterpret_cast<const typename F::Block*>(rows + r * row_stride);
        for (int64_t s = 0; s < nsb; ++s) F::pack(row[s], r, dst + s * F::kSuperBytes);
    }
}

template <class F>
void unpack_row(int64_t n, const uint8_t* group, int r, uint8_t* row) {
    auto* blocks = reinterpret_cast<typename F::Block*>(row);
    for (int64_t s = 0; s < n / kQK256; ++s) F::unpack(group + s * F::kSuperBytes, r, blocks[s]);
}

// Packed activations of one token (nsb super-blocks): nsb × 256 int8 codes, nsb float scales,
// nsb × 16 int32 Q6_K offsets (-32 × the 16-element sums), nsb × 4 int32 pairs of 32-element
// sums (Σa_0, Σa_2), (Σa_1, Σa_3), (Σa_4, Σa_6), (Σa_5, Σa_7) as int16 halves.
size_t act_bytes(int64_t n) {
    const size_t nsb = static_cast<size_t>(n / kQK256);
    return (nsb * (kQK256 + 4 + 64 + 16) + 63) / 64 * 64;
}

struct ActView {
    const int8_t* codes;
    const float* d;
    const int32_t* offset16;
    const int32_t* sum_pairs;
};

inline ActView act_view(const uint8_t* p, int64_t nsb) {
    return {reinterpret_cast<const int8_t*>(p), reinterpret_cast<const float*>(p + nsb * kQK256),
            reinterpret_cast<const int32_t*>(p + nsb * (kQK256 + 4)),
            reinterpret_cast<const int32_t*>(p + nsb * (kQK256 + 4 + 64))};
}

inline int32_t int16_pair(int32_t lo, int32_t hi) {
    return static_cast<int32_t>((static_cast<uint32_t>(static_cast<uint16_t>(hi)) << 16) | static_cast<uint16_t>(lo));
}

void pack_act(int64_t n, const uint8_t* act_row, uint8_t* dst) {
    const auto* blocks = reinterpret_cast<const BlockQ8Act256*>(act_row);
    const int64_t nsb = n / kQK256;
    int8_t* codes = reinterpret_cast<int8_t*>(dst);
    float* d = reinterpret_cast<float*>(dst + nsb * kQK256);
    int32_t* offset16 = reinterpret_cast<int32_t*>(dst + nsb * (kQK256 + 4));
    int32_t* pairs = reinterpret_cast<int32_t*>(dst + nsb * (kQK256 + 4 + 64));
    for (int64_t s = 0; s < nsb; ++s) {
        const BlockQ8Act256& b = blocks[s];
        std::memcpy(codes + s * kQK256, b.qs, kQK256);
        d[s] = b.d;
        int32_t sum32[8];
        for (int i = 0; i < 16; ++i) offset16[s * 16 + i] = -32 * b.bsums[i];
        for (int j = 0; j < 8; ++j) sum32[j] = b.bsums[2 * j] + b.bsums[2 * j + 1];
        pairs[s * 4 + 0] = int16_pair(sum32[0], sum32[2]);
        pairs[s * 4 + 1] = int16_pair(sum32[1], sum32[3]);
        pairs[s * 4 + 2] = int16_pair(sum32[4], sum32[6]);
        pairs[s * 4 + 3] = int16_pair(sum32[5], sum32[7]);
    }
}

// ---------------------------------------------------------------- the dot

// Decode streams each group once per token; run this far ahead of the super-block being dotted
// (1B Llama shape Q4_K_M, 2 threads, decode tok/s: 26.4 at 2 KiB, 28.0 at 4 KiB, 28.3 at 8 KiB).
constexpr int kPrefetchBytes = 4096;

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
                _mm_prefetch(reinterpret_cast<const char*>(sb) + kPrefetchBytes + (j * kLinesPerSub + i) * 64,
                             _MM_HINT_T0);
            }
            __m512i w[F::kChunksPerSub];
            F::codes(sb, j, w);
            __m512i isum[T];
            for (int t = 0; t < T; ++t) {
                isum[t] = F::kHasMin ? _mm512_setzero_si512() : _mm512_set1_epi32(a[t].offset16[s * 16 + j]);
            }
            const int64_t first = s * kQK256 + j * F::kSubSize;
            for (int k = 0; k < F::kChunksPerSub; ++k) {
                for (int t = 0; t < T; ++t) {
                    isum[t] = _mm512_dpbusd_epi32(isum[t], w[k], bytes(load_u32(a[t].codes + first + 4 * k)));
                }
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
    static_assert(kGroupTokens == 8, "the switch below spells out token counts 1..8");
    const __mmask16 valid = static_cast<__mmask16>((1u << n_rows) - 1u);
    for (int t0 = 0; t0 < n_tok; t0 += kGroupTokens) {
        const uint8_t* a = act + t0 * act_stride;
        float* o = out + t0 * out_stride;
        switch (n_tok - t0) {
            case 1: group_dot_tokens<F, 1>(n, group, a, act_stride, o, out_stride, valid); break;
            case 2: group_dot_tokens<F, 2>(n, group, a, act_stride, o, out_stride, valid); break;
            case 3: group_dot_tokens<F, 3>(n, group, a, act_stride, o, out_stride, valid); break;
            case 4: group_dot_tokens<F, 4>(n, group, a, act_stride, o, out_stride, valid); break;
            case 5: group_dot_tokens<F, 5>(n, group, a, act_stride, o, out_stride, valid); break;
            case 6: group_dot_tokens<F, 6>(n, group, a, act_stride, o, out_stride, valid); break;
            case 7: group_dot_tokens<F, 7>(n, group, a, act_stride, o, out_stride, valid); break;
            default: group_dot_tokens<F, 8>(n, group, a, act_stride, o, out_stride, valid); break;
        }
    }
}

template <class F>
const RowGroupKernel kKernel = {group_bytes<F>, pack_group<F>, unpack_row<F>, act_bytes, pack_act, group_dot<F>};

}  // namespace

const RowGroupKernel* find_row_group_kernel_k(int32_t type_id) {
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
const RowGroupKernel* find_row_group_kernel_k(int32_t) { return nullptr; }
}  // namespace edgellama

#endif
