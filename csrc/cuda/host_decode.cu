// The device block decoders of formats.cuh run on the host: a CPU-only machine (CI) checks them
// bit for bit against the CPU dequantizers, since nothing else there can execute GPU code.
// Built with -ffp-contract=off (CMakeLists.txt) so the host compiler rounds like the device code.
#include "csrc/cuda/host_decode.h"

#include <stdexcept>
#include <string>

#include "csrc/cuda/formats.cuh"

namespace edgellama::cuda {

void decode_row_on_host(int32_t type, const uint8_t* row, int64_t cols, float* out) {
    const bool known = dispatch_format(type, [&](auto fmt) {
        using Fmt = decltype(fmt);
        if (cols % Fmt::kPiece != 0) {
            throw std::invalid_argument("row of " + std::to_string(cols) + " elements is not a whole number of pieces");
        }
        for (int64_t p = 0; p < cols / Fmt::kPiece; ++p) {
            float* dst = out + p * Fmt::kPiece;
            Fmt::visit(row, p, [&](int i, float v) { dst[i] = v; });
        }
    });
    if (!known) throw std::invalid_argument("unsupported type " + std::to_string(type));
}

}  // namespace edgellama::cuda
