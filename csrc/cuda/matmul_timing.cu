// A timing probe for one matrix product on the device, for benchmarks/bench_cuda.py: it separates
// the GEMV kernels' own bandwidth from the launch and synchronisation costs of a whole step.
#include <algorithm>
#include <vector>

#include "csrc/cuda/common.cuh"
#include "csrc/cuda/llama_cuda_model.h"
#include "csrc/cuda/ops.h"

namespace edgellama::cuda {

namespace {

constexpr size_t kStreamBytes = size_t(256) << 20;  // several times any L2, so weights come from HBM

struct EventPair {
    cudaEvent_t start = nullptr, stop = nullptr;
    EventPair() {
        check(cudaEventCreate(&start), "cudaEventCreate");
        check(cudaEventCreate(&stop), "cudaEventCreate");
    }
    ~EventPair() {
        cudaEventDestroy(start);
        cudaEventDestroy(stop);
    }
};

}  // namespace

double time_matmul(int32_t type, const uint8_t* host_rows, int64_t rows, int64_t cols, size_t row_bytes,
                   int64_t n_tokens, int repeats, int device) {
    if (piece_elements(type) == 0 || cols % piece_elements(type) != 0 || rows < 1 || n_tokens < 1 || repeats < 1) {
        throw CudaError("time_matmul: bad type or shape");
    }
    check(cudaSetDevice(device), "cudaSetDevice");
    const size_t bytes = static_cast<size_t>(rows) * row_bytes;
    // Copies of the matrix cycled through, so no launch finds its weights in L2.
    const int copies = static_cast<int>(std::min<size_t>(64, std::max<size_t>(1, (kStreamBytes + bytes - 1) / bytes)));
    std::vector<DeviceBuffer> weights(copies);
    for (DeviceBuffer& w : weights) {
        w.allocate(bytes, "timed weight matrix");
        check(cudaMemcpy(w.get(), host_rows, bytes, cudaMemcpyHostToDevice), "upload of the timed matrix");
    }
    const std::vector<float> host_x(static_cast<size_t>(n_tokens * cols), 0.5f);
    DeviceBuffer x(host_x.size() * sizeof(float), "timed input");
    check(cudaMemcpy(x.get(), host_x.data(), host_x.size() * sizeof(float), cudaMemcpyHostToDevice), "input upload");
    DeviceBuffer y(static_cast<size_t>(n_tokens * rows) * sizeof(float), "timed output");
    cudaStream_t stream = nullptr;
    check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
    MatmulInput in;
    in.x = x.as<float>();
    in.n = n_tokens;
    in.cols = cols;
    const ActFormat format = type_traits(type).act_format;
    DeviceBuffer act;
    if (format != ActFormat::F32) {
        act.allocate(static_cast<size_t>(n_tokens) * act_row_bytes(format, cols), "timed int8 input");
        quantize_activations(format, in.x, n_tokens, cols, act.get(), stream);
        (format == ActFormat::Q8_32 ? in.act32 : in.act256) = act.as<uint8_t>();
    }
    DeviceMatrix w;
    w.type = type;
    w.rows = rows;
    w.cols = cols;
    w.row_bytes = row_bytes;
    EventPair events;
    float ms = 0.0f;
    try {
        for (int i = 0; i < copies; ++i) {  // warm-up
            w.data = weights[i].as<uint8_t>();
            matmul(w, in, y.as<float>(), false, stream);
        }
        check(cudaEventRecord(events.start, stream), "cudaEventRecord");
        for (int i = 0; i < repeats; ++i) {
            w.data = weights[i % copies].as<uint8_t>();
            matmul(w, in, y.as<float>(), false, stream);
        }
        check(cudaEventRecord(events.stop, stream), "cudaEventRecord");
        check(cudaEventSynchronize(events.stop), "cudaEventSynchronize");
        check(cudaEventElapsedTime(&ms, events.start, events.stop), "cudaEventElapsedTime");
    } catch (...) {
        cudaStreamDestroy(stream);
        throw;
    }
    cudaStreamDestroy(stream);
    return static_cast<double>(ms) * 1e-3 / repeats;
}

}  // namespace edgellama::cuda
