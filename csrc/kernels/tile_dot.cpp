#include "csrc/kernels/tile_dot.h"

namespace edgellama {

TileDotFn find_tile_dot(int32_t type_id) { return find_tile_dot_avx2(type_id); }

}  // namespace edgellama
