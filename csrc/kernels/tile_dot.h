// Register-tiled dot products: kTileRows weight rows against up to kTileTokens activation rows.
//
// A single-row vec_dot is latency-bound (one FMA chain, one horizontal sum per row) and, in a
// prefill, unpacks each weight block once per token. A tile keeps kTileRows × n_tok independent
// accumulators in registers, so the chains overlap, activation blocks load once per tile row set,
// and each weight block is unpacked once for up to kTileTokens tokens.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace edgellama {

constexpr int kTileRows = 4;
constexpr int kTileTokens = 4;

// out[t * out_stride + r] = dot(weight row r, activation row t) for r < kTileRows, t < n_tok
// (1 <= n_tok <= kTileTokens). w: kTileRows rows, w_stride bytes apart; act: n_tok rows in the
// type's activation format, act_stride bytes apart; n elements per row.
using TileDotFn = void (*)(int64_t n, const uint8_t* w, size_t w_stride, const uint8_t* act, size_t act_stride,
                           int n_tok, float* out, int64_t out_stride);

// Calls kernel(std::integral_constant<int, T>{}) with T = n_tok as a compile-time constant, so each
// token count runs its own fully unrolled instantiation.
template <class Kernel>
inline void with_token_count(int n_tok, Kernel&& kernel) {
    static_assert(kTileTokens == 4, "with_token_count spells out the token counts 1..4");
    switch (n_tok) {
        case 1: return kernel(std::integral_constant<int, 1>{});
        case 2: return kernel(std::integral_constant<int, 2>{});
        case 3: return kernel(std::integral_constant<int, 3>{});
        default: return kernel(std::integral_constant<int, 4>{});
    }
}

// The widest tiled kernel this build has for the type; nullptr when none (matmul then uses
// vec_dot row by row).
TileDotFn find_tile_dot(int32_t type_id);

// Per-ISA tables (nullptr where the build lacks the instruction set).
TileDotFn find_tile_dot_avx512(int32_t type_id);    // Q4_0, Q4_1, Q8_0
TileDotFn find_tile_dot_k_avx512(int32_t type_id);  // Q4_K, Q5_K, Q6_K
TileDotFn find_tile_dot_avx2(int32_t type_id);

// Prepacked activations for the 32-element block family (AVX-512): each token's activation row
// (BlockQ8Act32 blocks) is repacked once per matmul into the vectors the tile loop consumes, so
// building them is not repeated for every 4-row tile. Per token, for P = ceil(n / 64) block pairs:
// P × 64 code bytes (Q8_0: shifted to unsigned), then P × 16 floats [d(b0) ×8, d(b1) ×8], then
// P × 8 floats [sum(b0) ×4, sum(b1) ×4]; an odd last block has zero d and sum in its second half.
// `dot` takes packed rows (act_stride = packed_row_bytes(n)) and computes exactly what the
// type's find_tile_dot kernel computes. Both members are nullptr where the build has no such path.
struct TilePacked {
    void (*pack)(int64_t n, const uint8_t* act_row, uint8_t* packed) = nullptr;
    TileDotFn dot = nullptr;
    // Optional, for many tokens per tile: pack_weights turns kTileRows rows (w_stride bytes apart)
    // into weight_pair_bytes per block pair (64-byte aligned dst); dot_packed_weights takes such a
    // tile as w (w_stride unused) with packed activations and computes exactly what `dot` does.
    void (*pack_weights)(int64_t n, const uint8_t* w, size_t w_stride, uint8_t* packed) = nullptr;
    TileDotFn dot_packed_weights = nullptr;
    size_t weight_pair_bytes = 0;
};
inline size_t tile_packed_row_bytes(int64_t n) { return static_cast<size_t>((n / 32 + 1) / 2) * (64 + 64 + 32); }
TilePacked find_tile_packed(int32_t type_id);
TilePacked find_tile_packed_avx512(int32_t type_id);

}  // namespace edgellama
