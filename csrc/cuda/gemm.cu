// Prefill products: the GEMV kernel over tiles of kGemmTile tokens, so each weight row streams
// from memory once per tile instead of once per token. A tensor-core GEMM on dequantized tiles
// would be faster for long prompts; this keeps the build free of cuBLAS and small.
#include <algorithm>

#include "csrc/cuda/gemv_kernel.cuh"

namespace edgellama::cuda {

void gemm(const DeviceMatrix& w, const float* x, int64_t ldx, int64_t n, float* y, int64_t ldy, bool accumulate,
          cudaStream_t stream) {
    for (int64_t start = 0; start < n; start += kGemmTile) {
        const int tile = static_cast<int>(std::min<int64_t>(kGemmTile, n - start));
        if (tile == 1) {
            launch_gemv<1>(w, x + start * ldx, ldx, 1, y + start * ldy, ldy, accumulate, stream);
        } else {
            launch_gemv<kGemmTile>(w, x + start * ldx, ldx, tile, y + start * ldy, ldy, accumulate, stream);
        }
    }
}

}  // namespace edgellama::cuda
