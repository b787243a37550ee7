// Decode matrix-vector products over quantized weights, and the embedding lookup (row dequantize).
#include "csrc/cuda/gemv_kernel.cuh"

namespace edgellama::cuda {

namespace {

// One thread per piece of the requested rows: out[t][piece] = decoded weights.
template <class Fmt>
__global__ void dequantize_rows_kernel(const uint8_t* __restrict__ w, size_t row_bytes, int64_t rows,
                                       const int32_t* __restrict__ ids, int64_t n_pieces, float* __restrict__ out,
                                       int64_t ld) {
    const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (p >= n_pieces) return;
    const int64_t t = blockIdx.y;
    const int32_t id = ids[t];
    if (id < 0 || id >= rows) return;  // the host checked the ids; never read outside the matrix
    float* dst = out + t * ld + p * Fmt::kPiece;
    Fmt::visit(w + static_cast<size_t>(id) * row_bytes, p, [&](int i, float v) { dst[i] = v; });
}

}  // namespace

int piece_elements(int32_t type) {
    int n = 0;
    dispatch_format(type, [&](auto fmt) { n = decltype(fmt)::kPiece; });
    return n;
}

void gemv(const DeviceMatrix& w, const float* x, float* y, bool accumulate, cudaStream_t stream) {
    launch_gemv<1>(w, x, w.cols, 1, y, w.rows, accumulate, stream);
}

void dequantize_rows(const DeviceMatrix& w, const int32_t* ids, int64_t n, float* out, cudaStream_t stream) {
    if (n <= 0) return;
    constexpr int kThreads = 128;
    const bool known = dispatch_format(w.type, [&](auto fmt) {
        using Fmt = decltype(fmt);
        const int64_t n_pieces = w.cols / Fmt::kPiece;
        const dim3 grid(ceil_div(n_pieces, kThreads), static_cast<unsigned>(n));
        dequantize_rows_kernel<Fmt><<<grid, kThreads, 0, stream>>>(w.data, w.row_bytes, w.rows, ids, n_pieces, out,
                                                                  w.cols);
    });
    if (!known) throw CudaError("dequantize_rows: unsupported weight type " + std::to_string(w.type));
    check_launch("dequantize_rows_kernel");
}

}  // namespace edgellama::cuda
