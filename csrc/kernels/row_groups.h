// Row groups: quantized weights (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and the K-quants Q4_K, Q5_K, Q6_K)
// repacked once, at load, into groups of kGroupRows rows whose 4-byte code groups are interleaved
// row by row (layouts: row_groups_layout_32.h, row_groups_layout_k.h).
//
// With AVX-512, one 512-bit register holds the same 4 codes of a block for all 16 rows (one row per
// 32-bit lane). A VNNI byte-dot against one activation's 4 codes broadcast to every lane then
// advances 16 rows at once, and after a block's 8 such steps each lane holds that row's exact
// integer block sum. The float work (convert, scale, accumulate) is then one instruction per block
// for all 16 rows, where a row-at-a-time kernel spends it per row and per 16 elements; the weights
// stay in registers for up to kGroupTokens tokens. AVX2 does the same on 8-row halves with maddubs
// (row_groups_avx2.cpp), Arm's SDOT on 4-row quarters (row_groups_neon.cpp). Decode and prefill run the same kernel, so a batched prefill and
// token-by-token decode round every (row, token) identically.
//
// Every (row, token) is computed in a fixed order, whatever the token count or thread; for the
// 32-element family (the K-quants: see row_groups_k_avx512.cpp):
//   acc = 0; for each block b: isum = Σ q·a (+ the block's integer offset term, exact);
//   acc = fma(float(isum), float(d_w[b] · d_a[b]), acc);  Q4_1/Q5_1 then acc = fma(m[b], s_a[b], acc)
// with s_a the activation block's d·Σa.
//
// Same bytes as the GGUF rows (16 × the type's block bytes per block of a group), so the repacked
// copy replaces the mapped pages instead of adding to them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace edgellama {

// Four bytes of a code group or activation, unaligned.
inline uint32_t load_u32(const void* p) {
    uint32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// The bits of mask in each byte of v: after a shift of the whole word, it keeps each byte's bits
// inside that byte (the AVX2 layouts rearrange codes 4 positions at a time, one per byte).
inline uint32_t each_byte(uint32_t v, uint8_t mask) { return v & (0x01010101u * mask); }

constexpr int kGroupRows = 16;
constexpr int kGroupTokens = 8;

// Decode streams every weight group from memory once per token, so each kernel prefetches every
// line of its groups twice: into L1 kNearPrefetchBytes ahead of the dot, and into L2
// kFarPrefetchBytes ahead, which keeps more lines in flight than the L1 fill buffers allow.
// One 1B-shape-sized matrix from memory, 2 threads, GB/s (read probe 30.5), near only -> both:
// Q4_K 23.8 -> 27.4, Q4_0 25.8 -> 27.7, Q6_K 21.5 -> 23.0, Q8_0 26.3 -> 28.4; flat for a far
// distance of 24 to 64 KiB.
constexpr int kNearPrefetchBytes = 4096, kFarPrefetchBytes = 32768;
inline void prefetch_weight_line(const void* line) {
    const char* p = static_cast<const char*>(line);
    __builtin_prefetch(p + kNearPrefetchBytes, 0, 3);  // x86: prefetcht0
    __builtin_prefetch(p + kFarPrefetchBytes, 0, 1);   // x86: prefetcht2
}

struct RowGroupKernel {
    // Bytes of one group of n-element rows (n a multiple of 32).
    size_t (*group_bytes)(int64_t n);
    // Repacks n_rows (<= kGroupRows; missing rows become zero rows) GGUF rows, row_stride bytes
    // apart, into one group at dst.
    void (*pack_group)(int64_t n, const uint8_t* rows, size_t row_stride, int n_rows, uint8_t* dst);
    // The inverse for one row: writes row r of a group back as its GGUF row bytes (the embedding
    // lookup of a tied output matrix reads its rows from the group copy).
    void (*unpack_row)(int64_t n, const uint8_t* group, int r, uint8_t* row);
    // Bytes of one token's packed activations; pack_act turns a row of BlockQ8Act32 blocks into them.
    size_t (*act_bytes)(int64_t n);
    void (*pack_act)(int64_t n, const uint8_t* act_row, uint8_t* dst);
    // out[t * out_stride + r] = dot(row r of the group, token t) for r < n_rows, t < n_tok (any n_tok >= 1).
    void (*dot)(int64_t n, const uint8_t* group, const uint8_t* act, size_t act_stride, int n_tok, float* out,
                int64_t out_stride, int n_rows);
};

template <int kMax, int T = 1, class Kernel>
inline void with_token_count(int n, int t0, Kernel& kernel) {
    if constexpr (T == kMax) {
        kernel(t0, std::integral_constant<int, T>{});
    } else if (n == T) {
        kernel(t0, std::integral_constant<int, T>{});
    } else {
        with_token_count<kMax, T + 1>(n, t0, kernel);
    }
}

// Runs kernel(t0, std::integral_constant<int, T>{}) over the tokens [0, n_tok) in batches of up to
// kMax: each token count runs its own fully unrolled instantiation of the kernel.
template <int kMax, class Kernel>
inline void for_token_batches(int n_tok, Kernel&& kernel) {
    for (int t0 = 0; t0 < n_tok; t0 += kMax) with_token_count<kMax>(n_tok - t0 < kMax ? n_tok - t0 : kMax, t0, kernel);
}

// nullptr when the type has no row-group kernel in this build (builds without AVX2, float types).
const RowGroupKernel* find_row_group_kernel(int32_t type_id);

// Per family and instruction set (nullptr where the build lacks it); AVX-512 VNNI is preferred.
// On Arm, both families with the dot-product extension (row_groups_neon.cpp, row_groups_k_neon.cpp).
const RowGroupKernel* find_row_group_kernel_32_avx512(int32_t type_id);  // Q4_0, Q4_1, Q5_0, Q5_1, Q8_0
const RowGroupKernel* find_row_group_kernel_k_avx512(int32_t type_id);   // Q4_K, Q5_K, Q6_K
const RowGroupKernel* find_row_group_kernel_32_avx2(int32_t type_id);
const RowGroupKernel* find_row_group_kernel_k_avx2(int32_t type_id);
const RowGroupKernel* find_row_group_kernel_32_neon(int32_t type_id);
const RowGroupKernel* find_row_group_kernel_k_neon(int32_t type_id);

}  // namespace edgellama
