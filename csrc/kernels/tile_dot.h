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

// The tiled kernel this build has for the type; nullptr when none (matmul then uses vec_dot row by
// row). With AVX-512 VNNI the model uses row groups instead (row_groups.h), which supersede these.
TileDotFn find_tile_dot(int32_t type_id);
TileDotFn find_tile_dot_avx2(int32_t type_id);

}  // namespace edgellama
