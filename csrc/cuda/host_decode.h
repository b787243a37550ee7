// Host execution of the GPU weight decoders, for tests on machines without a GPU.
#pragma once

#include <cstdint>

namespace edgellama::cuda {

// out[0..cols) = the row decoded by the device code path (formats.cuh), run on the CPU.
// row: raw GGUF bytes, aligned as a device row would be (16 bytes). Throws std::invalid_argument.
void decode_row_on_host(int32_t type, const uint8_t* row, int64_t cols, float* out);

}  // namespace edgellama::cuda
