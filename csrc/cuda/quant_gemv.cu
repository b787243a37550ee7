// Matrix products (decode and prefill) over weights in their GGUF formats, and the embedding
// lookup (row dequantize).
#include <algorithm>
#include <type_traits>

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

// The int8 blocks of the input in the format of Q's activations; throws if they were not prepared.
template <class Q>
const uint8_t* activation_blocks(const MatmulInput& in, ActFormat* format) {
    constexpr bool k32 = std::is_same_v<typename Q::Act, BlockQ8Act32>;
    *format = k32 ? ActFormat::Q8_32 : ActFormat::Q8_256;
    const uint8_t* blocks = k32 ? in.act32 : in.act256;
    if (blocks == nullptr) throw CudaError("matmul: the input was not quantized for this weight's activation format");
    return blocks;
}

// One launch per tile of up to kGemmTile tokens (a single token gets the one-token kernel).
template <class LaunchTile>
void for_each_tile(int64_t n, LaunchTile&& launch) {
    for (int64_t start = 0; start < n; start += kGemmTile) {
        const int tile = static_cast<int>(std::min<int64_t>(kGemmTile, n - start));
        launch(start, tile);
    }
}

}  // namespace

int piece_elements(int32_t type) {
    int n = 0;
    dispatch_format(type, [&](auto fmt) { n = decltype(fmt)::kPiece; });
    return n;
}

void matmul(const DeviceMatrix& w, const MatmulInput& in, float* y, int64_t ldy, bool accumulate,
            cudaStream_t stream) {
    if (in.cols != w.cols) throw CudaError("matmul: input rows do not match the weight's columns");
    const unsigned grid = ceil_div(w.rows, kGemvWarps);
    const bool quantized = dispatch_int8_format(w.type, [&](auto fmt) {
        using Q = decltype(fmt);
        ActFormat format;
        const uint8_t* act = activation_blocks<Q>(in, &format);
        const size_t act_bytes = act_row_bytes(format, in.cols);
        const int64_t n_pieces = w.cols / Q::kPiece;
        for_each_tile(in.n, [&](int64_t start, int tile) {
            const uint8_t* a = act + static_cast<size_t>(start) * act_bytes;
            float* yt = y + start * ldy;
            if (tile == 1) {
                gemv_int8_kernel<Q, 1><<<grid, kGemvWarps * kWarp, 0, stream>>>(w.data, w.row_bytes, w.rows, n_pieces,
                                                                               a, act_bytes, 1, yt, ldy, accumulate);
            } else {
                gemv_int8_kernel<Q, kGemmTile><<<grid, kGemvWarps * kWarp, 0, stream>>>(
                    w.data, w.row_bytes, w.rows, n_pieces, a, act_bytes, tile, yt, ldy, accumulate);
            }
            check_launch("gemv_int8_kernel");
        });
    });
    if (quantized) return;
    const bool known = dispatch_format(w.type, [&](auto fmt) {
        using Fmt = decltype(fmt);
        const int64_t n_pieces = w.cols / Fmt::kPiece;
        for_each_tile(in.n, [&](int64_t start, int tile) {
            const float* x = in.x + start * in.cols;
            float* yt = y + start * ldy;
            if (tile == 1) {
                gemv_float_kernel<Fmt, 1><<<grid, kGemvWarps * kWarp, 0, stream>>>(w.data, w.row_bytes, w.rows, n_pieces,
                                                                                  x, in.cols, 1, yt, ldy, accumulate);
            } else {
                gemv_float_kernel<Fmt, kGemmTile><<<grid, kGemvWarps * kWarp, 0, stream>>>(
                    w.data, w.row_bytes, w.rows, n_pieces, x, in.cols, tile, yt, ldy, accumulate);
            }
            check_launch("gemv_float_kernel");
        });
    });
    if (!known) throw CudaError("matmul: unsupported weight type " + std::to_string(w.type));
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
