// Row-group kernels (see row_groups.h) for the 32-element family Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0
// with AVX-512 VNNI.
//
// Group layout for n-element rows (nb = n / 32 blocks):
//   codes  nb × kCodeChunks × 64 bytes: chunk k of block b holds, in 32-bit lane r, bytes
//          4k .. 4k+3 of row r's qs (Q4/Q5: packed nibbles, 4 chunks, Q5 then a fifth chunk of
//          rearranged qh bits; Q8_0: codes XOR 0x80, i.e. the unsigned code + 128, 8 chunks)
//   d      nb × 16 f16: the rows' block scales
//   m      nb × 16 f16 (Q4_1 only): the rows' block mins
// Packed activations of one token: nb × 32 int8 codes, nb float scales d, nb int32 offset terms,
// nb float sums (d·Σa). The offset term makes the integer block sum exact for formats whose codes
// are shifted: Q4_0 dots unsigned q against a (q - 8 is the weight), so it starts from -8·Σa;
// Q5_0 likewise from -16·Σa; Q8_0 dots w + 128, so it starts from -128·Σa.
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

// Decode streams each group once per token; run this far ahead of the codes being dotted (1B
// Llama shape, 2 threads, decode tok/s: Q4_0 32.4 at 2 KiB, 33.5 at 4 KiB, 32.3 at 8 KiB).
constexpr int kPrefetchBytes = 4096;

struct Q4_0Format {
    using Block = BlockQ4_0;
    static constexpr int kCodeChunks = 4;
    static constexpr bool kHasMin = false;
    static constexpr int32_t kActOffset = -8;
    static uint32_t chunk(const Block& b, int k) { return load_u32(b.qs + 4 * k); }
    static uint16_t min(const Block&) { return 0; }
    static void set(Block& b, int k, uint32_t chunk, uint16_t) { std::memcpy(b.qs + 4 * k, &chunk, 4); }
};

struct Q4_1Format {
    using Block = BlockQ4_1;
    static constexpr int kCodeChunks = 4;
    static constexpr bool kHasMin = true;
    static constexpr int32_t kActOffset = 0;
    static uint32_t chunk(const Block& b, int k) { return load_u32(b.qs + 4 * k); }
    static uint16_t min(const Block& b) { return b.m; }
    static void set(Block& b, int k, uint32_t chunk, uint16_t m) {
        std::memcpy(b.qs + 4 * k, &chunk, 4);
        b.m = m;
    }
};

// Q5_0 / Q5_1: Q4_0 / Q4_1 plus a fifth bit per weight. Chunk 4 holds each row's qh rearranged so
// that bit g of byte i is the fifth bit of element 4g + i: one shift and mask then put element
// group g's fifth bits at bit 4 of every byte (same bytes, another order).
inline uint32_t spread_high_bits(uint32_t qh) {
    uint32_t out = 0;
    for (int g = 0; g < 8; ++g)
        for (int i = 0; i < 4; ++i) out |= ((qh >> (4 * g + i)) & 1u) << (8 * i + g);
    return out;
}
inline uint32_t gather_high_bits(uint32_t spread) {
    uint32_t qh = 0;
    for (int g = 0; g < 8; ++g)
        for (int i = 0; i < 4; ++i) qh |= ((spread >> (8 * i + g)) & 1u) << (4 * g + i);
    return qh;
}

template <class B, bool kMin>
struct Q5Format {
    using Block = B;
    static constexpr int kCodeChunks = 5;
    static constexpr bool kHasMin = kMin;
    static constexpr int32_t kActOffset = kMin ? 0 : -16;
    static uint32_t chunk(const Block& b, int k) { return k < 4 ? load_u32(b.qs + 4 * k) : spread_high_bits(load_u32(b.qh)); }
    static uint16_t min(const Block& b) {
        if constexpr (kMin) return b.m;
        return 0;
    }
    static void set(Block& b, int k, uint32_t chunk, uint16_t m) {
        if (k < 4) {
            std::memcpy(b.qs + 4 * k, &chunk, 4);
        } else {
            const uint32_t qh = gather_high_bits(chunk);
            std::memcpy(b.qh, &qh, 4);
        }
        if constexpr (kMin) b.m = m;
    }
};
using Q5_0Format = Q5Format<BlockQ5_0, false>;
using Q5_1Format = Q5Format<BlockQ5_1, true>;

struct Q8_0Format {
    using Block = BlockQ8_0;
    static constexpr int kCodeChunks = 8;
    static constexpr bool kHasMin = false;
    static constexpr int32_t kActOffset = -128;
    static uint32_t chunk(const Block& b, int k) { return load_u32(b.qs + 4 * k) ^ 0x80808080u; }
    static uint16_t min(const Block&) { return 0; }
    static void set(Block& b, int k, uint32_t chunk, uint16_t) {
        chunk ^= 0x80808080u;
        std::memcpy(b.qs + 4 * k, &chunk, 4);
    }
};

template <class F>
constexpr size_t code_bytes_per_block() { return F::kCodeChunks * 64; }

template <class F>
size_t group_bytes(int64_t n) {
    const size_t nb = static_cast<size_t>(n / kQK32);
    return nb * (code_bytes_per_block<F>() + 32 + (F::kHasMin ? 32 : 0));
}

template <class F>
void pack_group(int64_t n, const uint8_t* rows, size_t row_stride, int n_rows, uint8_t* dst) {
    using Block = typename F::Block;
    const int64_t nb = n / kQK32;
    uint8_t* codes = dst;
    uint16_t* d = reinterpret_cast<uint16_t*>(dst + nb * code_bytes_per_block<F>());
    uint16_t* m = d + nb * kGroupRows;
    std::memset(dst, 0, group_bytes<F>(n));
    for (int r = 0; r < n_rows; ++r) {
        const auto* row = reinterpret_cast<const Block*>(rows + r * row_stride);
        for (int64_t b = 0; b < nb; ++b) {
            for (int k = 0; k < F::kCodeChunks; ++k) {
                const uint32_t c = F::chunk(row[b], k);
                std::memcpy(codes + b * code_bytes_per_block<F>() + k * 64 + 4 * r, &c, 4);
            }
            d[b * kGroupRows + r] = row[b].d;
            if constexpr (F::kHasMin) m[b * kGroupRows + r] = F::min(row[b]);
        }
    }
}

template <class F>
void unpack_row(int64_t n, const uint8_t* group, int r, uint8_t* row) {
    using Block = typename F::Block;
    const int64_t nb = n / kQK32;
    const uint16_t* d = reinterpret_cast<const uint16_t*>(group + nb * code_bytes_per_block<F>());
    const uint16_t* m = d + nb * kGroupRows;
    auto* blocks = reinterpret_cast<Block*>(row);
    for (int64_t b = 0; b < nb; ++b) {
        blocks[b].d = d[b * kGroupRows + r];
        const uint16_t min = F::kHasMin ? m[b * kGroupRows + r] : 0;
        for (int k = 0; k < F::kCodeChunks; ++k) {
            F::set(blocks[b], k, load_u32(group + b * code_bytes_per_block<F>() + k * 64 + 4 * r), min);
        }
    }
}

size_t act_bytes(int64_t n) {
    const size_t nb = static_cast<size_t>(n / kQK32);
    return (nb * (kQK32 + 12) + 63) / 64 * 64;
}

struct ActView {
    const int8_t* codes;
    const float* d;
    const int32_t* offset;
    const float* sum;
};

inline ActView act_view(const uint8_t* p, int64_t nb) {
    return {reinterpret_cast<const int8_t*>(p), reinterpret_cast<const float*>(p + nb * kQK32),
            reinterpret_cast<const int32_t*>(p + nb * (kQK32 + 4)), reinterpret_cast<const float*>(p + nb * (kQK32 + 8))};
}

template <class F>
void pack_act(int64_t n, const uint8_t* act_row, uint8_t* dst) {
    const auto* blocks = reinterpret_cast<const BlockQ8Act32*>(act_row);
    const int64_t nb = n / kQK32;
    int8_t* codes = reinterpret_cast<int8_t*>(dst);
    float* d = reinterpret_cast<float*>(dst + nb * kQK32);
    int32_t* offset = reinterpret_cast<int32_t*>(dst + nb * (kQK32 + 4));
    float* sum = reinterpret_cast<float*>(dst + nb * (kQK32 + 8));
    for (int64_t b = 0; b < nb; ++b) {
        std::memcpy(codes + b * kQK32, blocks[b].qs, kQK32);
        int32_t s = 0;
        for (int i = 0; i < kQK32; ++i) s += blocks[b].qs[i];
        d[b] = blocks[b].d;
        offset[b] = F::kActOffset * s;
        sum[b] = blocks[b].sum;
    }
}

// Block b's codes of all 16 rows as unsigned bytes: w[k] holds elements 4k .. 4k+3 of every row.
template <class F>
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
        const __m512i low_nibbles = _mm512_set1_epi8(0x0f);
        for (int k = 0; k < 4; ++k) {
            const __m512i packed = _mm512_loadu_si512(p + 64 * k);
            w[k] = _mm512_and_si512(packed, low_nibbles);                          // elements 4k ..
            w[k + 4] = _mm512_and_si512(_mm512_srli_epi16(packed, 4), low_nibbles);  // elements 16 + 4k ..
        }
    } else {
        for (int k = 0; k < 8; ++k) w[k] = _mm512_loadu_si512(p + 64 * k);
    }
}

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
            _mm_prefetch(reinterpret_cast<const char*>(block_codes) + kPrefetchBytes + 64 * k, _MM_HINT_T0);
        }
        __m512i w[8];
        load_codes<F>(block_codes, w);
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(d + b * kGroupRows)));
        __m512i isum[T];
        for (int t = 0; t < T; ++t) isum[t] = _mm512_set1_epi32(a[t].offset[b]);
        for (int k = 0; k < 8; ++k) {
            for (int t = 0; t < T; ++t) {
                const __m512i a4 = _mm512_set1_epi32(static_cast<int>(load_u32(a[t].codes + b * kQK32 + 4 * k)));
                isum[t] = _mm512_dpbusd_epi32(isum[t], w[k], a4);
            }
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
const RowGroupKernel kKernel = {group_bytes<F>, pack_group<F>, unpack_row<F>, act_bytes, pack_act<F>, group_dot<F>};

}  // namespace

const RowGroupKernel* find_row_group_kernel_32(int32_t type_id) {
    switch (static_cast<TensorType>(type_id)) {
        case TensorType::Q4_0: return &kKernel<Q4_0Format>;
        case TensorType::Q4_1: return &kKernel<Q4_1Format>;
        case TensorType::Q5_0: return &kKernel<Q5_0Format>;
        case TensorType::Q5_1: return &kKernel<Q5_1Format>;
        case TensorType::Q8_0: return &kKernel<Q8_0Format>;
        default: return nullptr;
    }
}

}  // namespace edgellama

#else

namespace edgellama {
const RowGroupKernel* find_row_group_kernel_32(int32_t) { return nullptr; }
}  // namespace edgellama

#endif
