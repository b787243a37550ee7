// Prefill products on int8 tensor cores (the tiles: mma_tiles.cuh): one kernel per reader, a warp
// per 32 rows x 32 (K-quants: 16) tokens, and the checks of when they apply.
#include "csrc/cuda/gemv_kernel.cuh"
#include "csrc/cuda/mma_tiles.cuh"
#include "csrc/cuda/warp.cuh"

namespace edgellama::cuda {

namespace {

constexpr int kMmaWarps = 4;  // warps a block, on consecutive row ranges

template <class Q>
__global__ void __launch_bounds__(kMmaWarps * kWarp) gemm_mma_kernel(MmaProduct m) {
    wait_for_prior_kernels();
    const int64_t row0 = (static_cast<int64_t>(blockIdx.x) * kMmaWarps + threadIdx.x / kWarp) * (16 * kMmaRowTiles);
    const int64_t tok0 = static_cast<int64_t>(blockIdx.y) * (8 * mma_token_tiles<Q>());
    if (row0 >= m.seg.total_rows()) return;  // the whole warp leaves together
    mma_tile<Q>(DeviceWarp{}, m, row0, tok0);
}

}  // namespace

bool int8_mma_supported() {
    static const bool supported = [] {
        int device = 0, major = 0;
        return cudaGetDevice(&device) == cudaSuccess &&
               cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess && major >= 8;
    }();
    return supported;
}

bool mma_applies(int32_t type, const MatmulInput& in) {
    return in.use_mma && in.n >= kMmaMinTokens && dispatch_int8_format(type, [](auto) {}) && int8_mma_supported();
}

bool matmul_mma(int32_t type, const RowSegments& seg, size_t row_bytes, const MatmulInput& in, bool accumulate,
                cudaStream_t stream) {
    if (!mma_applies(type, in)) return false;
    dispatch_int8_format(type, [&](auto fmt) {
        using Q = decltype(fmt);
        size_t act_bytes = 0;
        const uint8_t* act = activation_blocks<Q>(in, &act_bytes);
        const int64_t act_rows = in.n * in.parts;  // precise activations: two rows a token (MmaProduct)
        const MmaProduct m{seg, row_bytes, in.cols, act, act_bytes, act_rows, accumulate, in.parts};
        const dim3 grid(ceil_div(seg.total_rows(), kMmaWarps * 16 * kMmaRowTiles),
                        ceil_div(act_rows, 8 * mma_token_tiles<Q>()));
        launch("gemm_mma_kernel", gemm_mma_kernel<Q>, grid, kMmaWarps * kWarp, stream, m);
    });
    return true;
}

}  // namespace edgellama::cuda
