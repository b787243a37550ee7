#include "csrc/kernels/tile_dot.h"

namespace edgellama {

TileDotFn find_tile_dot(int32_t type_id) {
    if (TileDotFn f = find_tile_dot_avx512(type_id)) return f;
    if (TileDotFn f = find_tile_dot_k_avx512(type_id)) return f;
    return find_tile_dot_avx2(type_id);
}

TilePacked find_tile_packed(int32_t type_id) { return find_tile_packed_avx512(type_id); }

}  // namespace edgellama
