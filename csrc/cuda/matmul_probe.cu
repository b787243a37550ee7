// One matrix product on the device, outside any model: run_matmul returns its result (GPU tests
// compare it bit for bit with the host execution of the same code), time_matmul its speed
// (benchmarks/bench_cuda.py: the GEMV kernels' own bandwidth, without a step's other costs).
#include <algorithm>
#include <vector>

#include "csrc/cuda/common.cuh"
#include "csrc/cuda/grouped_rows.h"
#include "csrc/cuda/llama_cuda_model.h"
#include "csrc/cuda/ops.h"

namespace edgellama::cuda {

namespace {

constexpr size_t kStreamBytes = size_t(256) << 20;  // several times any L2, so weights come from HBM

class Stream {
public:
    Stream() { check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate"); }
    ~Stream() { cudaStreamDestroy(stream_); }
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;
    cudaStream_t get() const { return stream_; }

private:
    cudaStream_t stream_ = nullptr;
};

class EventPair {
public:
    EventPair() {
        check(cudaEventCreate(&start), "cudaEventCreate");
        check(cudaEventCreate(&stop), "cudaEventCreate");
    }
    ~EventPair() {
        cudaEventDestroy(start);
        cudaEventDestroy(stop);
    }
    EventPair(const EventPair&) = delete;
    EventPair& operator=(const EventPair&) = delete;
    cudaEvent_t start = nullptr, stop = nullptr;
};

// A weight matrix uploaded `copies` times (grouped where asked and possible: grouped_rows.h) and an
// input of n_tokens rows, quantized as the weight's type reads it (parts int8 rows a token: 2 for
// precise activations).
struct Probe {
    std::vector<DeviceBuffer> weights;
    DeviceMatrix matrix;
    DeviceBuffer x, act, y;
    MatmulInput in;

    Probe(int32_t type, const uint8_t* host_rows, int64_t rows, int64_t cols, size_t row_bytes, const float* host_x,
          int64_t n_tokens, int copies, bool grouped, cudaStream_t stream, int parts = 1) {
        const int piece = piece_elements(type);
        if (piece == 0 || cols % piece != 0 || rows < 1 || n_tokens < 1 || row_bytes != weight_row_bytes(type, cols)) {
            throw CudaError("matmul probe: bad weight type or shape");
        }
        const size_t bytes = static_cast<size_t>(rows) * row_bytes;
        const int32_t device_type = grouped ? grouped_type(type, cols) : type;
        std::vector<uint8_t> regrouped;
        if (device_type != type) {
            regrouped.resize(bytes);
            group_rows(type, cols, host_rows, regrouped.data(), rows, row_bytes);
            host_rows = regrouped.data();
        }
        weights.resize(copies);
        for (DeviceBuffer& w : weights) {
            w.allocate(bytes, "probe weight matrix");
            check(cudaMemcpyAsync(w.get(), host_rows, bytes, cudaMemcpyHostToDevice, stream), "upload of the probe matrix");
        }
        matrix.data = weights[0].as<uint8_t>();
        matrix.type = device_type;
        matrix.rows = rows;
        matrix.cols = cols;
        matrix.row_bytes = row_bytes;
        x.allocate(static_cast<size_t>(n_tokens * cols) * sizeof(float), "probe input");
        check(cudaMemcpyAsync(x.get(), host_x, x.bytes(), cudaMemcpyHostToDevice, stream), "upload of the probe input");
        // The uploads go on the probe's own stream: a plain cudaMemcpy from pageable memory may
        // return before its DMA lands, and the probe's non-blocking stream does not wait for the
        // legacy stream, so kernels read half-copied inputs under load (seen on an H100 with 8
        // test processes). Waiting here also keeps `regrouped` alive until it has been read.
        check(cudaStreamSynchronize(stream), "upload of the probe matrix and input");
        y.allocate(static_cast<size_t>(n_tokens * rows) * sizeof(float), "probe output");
        in.x = x.as<float>();
        in.n = n_tokens;
        in.cols = cols;
        in.parts = parts;
        const ActFormat format = type_traits(type).act_format;
        if (format != ActFormat::F32) {
            act.allocate(static_cast<size_t>(n_tokens * parts) * act_row_bytes(format, cols), "probe int8 input");
            quantize_activations(format, in.x, n_tokens, cols, act.get(), parts, stream);
            (format == ActFormat::Q8_32 ? in.act32 : in.act256) = act.as<uint8_t>();
        }
    }

    // gemv_shape >= 0: the product by that GEMV probe shape (ops.h), else as the model runs it.
    void run(int copy, cudaStream_t stream, int gemv_shape = -1) {
        matrix.data = weights[copy].as<uint8_t>();
        if (gemv_shape >= 0) {
            matmul_with_gemv_shape(gemv_shape, matrix, in, y.as<float>(), stream);
        } else {
            matmul(matrix, in, y.as<float>(), false, stream);
        }
    }
};

}  // namespace

void run_matmul(int32_t type, const uint8_t* host_rows, int64_t rows, int64_t cols, size_t row_bytes,
                const float* host_x, int64_t n_tokens, float* host_y, bool use_mma, bool grouped_rows, bool precise,
                int device) {
    check(cudaSetDevice(device), "cudaSetDevice");
    Stream stream;
    Probe probe(type, host_rows, rows, cols, row_bytes, host_x, n_tokens, 1, grouped_rows, stream.get(),
                precise ? 2 : 1);
    probe.in.use_mma = use_mma;
    probe.run(0, stream.get());
    check(cudaMemcpyAsync(host_y, probe.y.get(), probe.y.bytes(), cudaMemcpyDeviceToHost, stream.get()),
          "download of the probe output");
    check(cudaStreamSynchronize(stream.get()), "probe matmul");
}

double time_matmul(int32_t type, const uint8_t* host_rows, int64_t rows, int64_t cols, size_t row_bytes,
                   int64_t n_tokens, int repeats, bool use_mma, int gemv_shape, bool grouped_rows,
                   bool prefetch_weights, int device) {
    if (repeats < 1) throw CudaError("time_matmul: repeats must be positive");
    check(cudaSetDevice(device), "cudaSetDevice");
    const size_t bytes = static_cast<size_t>(rows) * row_bytes;
    // Copies of the matrix cycled through, so no launch finds its weights in L2.
    const int copies = static_cast<int>(std::min<size_t>(64, std::max<size_t>(1, (kStreamBytes + bytes - 1) / bytes)));
    const std::vector<float> host_x(static_cast<size_t>(n_tokens * cols), 0.5f);
    Stream stream;
    Probe probe(type, host_rows, rows, cols, row_bytes, host_x.data(), n_tokens, copies, grouped_rows, stream.get());
    probe.in.use_mma = use_mma;
    probe.in.prefetch_weights = prefetch_weights;
    EventPair events;
    for (int i = 0; i < copies; ++i) probe.run(i, stream.get(), gemv_shape);  // warm-up
    check(cudaEventRecord(events.start, stream.get()), "cudaEventRecord");
    for (int i = 0; i < repeats; ++i) probe.run(i % copies, stream.get(), gemv_shape);
    check(cudaEventRecord(events.stop, stream.get()), "cudaEventRecord");
    check(cudaEventSynchronize(events.stop), "cudaEventSynchronize");
    float ms = 0.0f;
    check(cudaEventElapsedTime(&ms, events.start, events.stop), "cudaEventElapsedTime");
    return static_cast<double>(ms) * 1e-3 / repeats;
}

std::vector<std::string> gemv_probe_shapes() {
    std::vector<std::string> names;
    for (int i = 0; i < gemv_probe_shape_count(); ++i) names.push_back(gemv_probe_shape_name(i));
    return names;
}

}  // namespace edgellama::cuda
