// The forward step's GPU backend: cudaMalloc'd buffers, the kernels of ops.h on one stream, and
// the decode step as CUDA graphs.
#include <map>
#include <vector>

#include "csrc/cuda/backend.h"

namespace edgellama::cuda {

namespace {

class DeviceBackend final : public Backend {
public:
    explicit DeviceBackend(int device) : device_(device) {
        check(cudaSetDevice(device), "cudaSetDevice");
        check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    }

    ~DeviceBackend() override {
        cudaSetDevice(device_);
        for (const auto& entry : graphs_) cudaGraphExecDestroy(entry.second);
        if (stream_) cudaStreamDestroy(stream_);
    }

    void allocate(DeviceBuffer& buffer, size_t bytes, const std::string& what) override { buffer.allocate(bytes, what); }

    void to_device(void* dst, const void* src, size_t bytes, const char* what) override {
        check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_), what);
    }

    void to_host(void* dst, const void* src, size_t bytes, const char* what) override {
        check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_), what);
    }

    void synchronize() override { check(cudaStreamSynchronize(stream_), "forward step"); }

    // A decode step is ~11 kernels a layer, each too short to hide its launch, so the whole step is
    // captured once per key (the attention split count) as a CUDA graph and replayed as one launch.
    void decode_step(int64_t key, const std::function<void()>& enqueue) override {
        auto found = graphs_.find(key);
        if (found == graphs_.end()) found = graphs_.emplace(key, capture(enqueue)).first;
        check(cudaGraphLaunch(found->second, stream_), "cudaGraphLaunch (decode step)");
    }

    void dequantize_rows(const DeviceMatrix& w, const int32_t* ids, int64_t n, float* out) override {
        cuda::dequantize_rows(w, ids, n, out, stream_);
    }
    void rms_norm(const float* x, const float* weight, float* out, int64_t n_rows, int64_t n, float eps, void* act32,
                  void* act256, int act_parts) override {
        cuda::rms_norm(x, weight, out, n_rows, n, eps, act32, act256, act_parts, stream_);
    }
    void quantize_activations(ActFormat format, const float* x, int64_t n_rows, int64_t cols, void* out,
                              int parts) override {
        cuda::quantize_activations(format, x, n_rows, cols, out, parts, stream_);
    }
    void matmul_group(const MatmulTarget* targets, int count, const MatmulInput& in, bool accumulate) override {
        cuda::matmul_group(targets, count, in, accumulate, stream_);
    }
    bool matmul_swiglu(const DeviceMatrix& w_gate, const DeviceMatrix& w_up, const MatmulInput& in, float* gate,
                       float* up, const ActRowsOut& act_out, unsigned* chunk_counts) override {
        return cuda::matmul_swiglu(w_gate, w_up, in, gate, up, act_out, chunk_counts, stream_);
    }
    void rope_store(const RopeStore& rope, int64_t n_tokens) override { cuda::rope_store(rope, n_tokens, stream_); }
    bool matmul_qkv_rope(const MatmulTarget (&qkv)[3], const MatmulInput& in, const RopeStore& rope,
                         unsigned* head_counts) override {
        return cuda::matmul_qkv_rope(qkv, in, rope, head_counts, stream_);
    }
    void greedy_choice(const float* logits, int64_t n, void* out) override {
        cuda::greedy_choice(logits, n, out, stream_);
    }
    void attention(const AttentionDims& dims, const float* q, int64_t n_tokens, const int64_t* first_pos,
                   int64_t n_split, const __half* k_cache, const __half* v_cache, float* partials, float* out,
                   unsigned* split_counts, const ActRowsOut& act_out) override {
        cuda::attention(dims, q, n_tokens, first_pos, n_split, k_cache, v_cache, partials, out, split_counts, act_out,
                        stream_);
    }

private:
    cudaGraphExec_t capture(const std::function<void()>& enqueue) {
        check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
        cudaGraph_t graph = nullptr;
        try {
            enqueue();
        } catch (...) {
            cudaStreamEndCapture(stream_, &graph);  // leave the stream usable
            if (graph != nullptr) cudaGraphDestroy(graph);
            cudaGetLastError();
            throw;
        }
        check(cudaStreamEndCapture(stream_, &graph), "cudaStreamEndCapture");
        cudaGraphExec_t exec = nullptr;
        const cudaError_t status = cudaGraphInstantiateWithFlags(&exec, graph, 0);
        cudaGraphDestroy(graph);
        check(status, "cudaGraphInstantiate (decode step)");
        return exec;
    }

    int device_;
    cudaStream_t stream_ = nullptr;
    std::map<int64_t, cudaGraphExec_t> graphs_;
};

}  // namespace

std::unique_ptr<Backend> make_device_backend(int device) { return std::make_unique<DeviceBackend>(device); }

}  // namespace edgellama::cuda
