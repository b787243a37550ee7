// Where the engine's forward step (llama_cuda_model.cu) runs: on the GPU (DeviceBackend: memory
// from cudaMalloc, the kernels of ops.h on one stream, decode steps replayed as CUDA graphs), or
// on the host for the tests (host_backend.cu: host memory, the same warp and block code run on
// host fibers), so the step's orchestration is exercised without a GPU too.
#pragma once

#include <cuda_fp16.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "csrc/cuda/common.cuh"
#include "csrc/cuda/ops.h"

namespace edgellama::cuda {

class Backend {
public:
    virtual ~Backend() = default;

    virtual void allocate(DeviceBuffer& buffer, size_t bytes, const std::string& what) = 0;
    // Copies in the step's order (the device: enqueued on the stream; src stays valid until
    // synchronize() for pageable host memory is staged at once by CUDA).
    virtual void to_device(void* dst, const void* src, size_t bytes, const char* what) = 0;
    virtual void to_host(void* dst, const void* src, size_t bytes, const char* what) = 0;
    virtual void synchronize() = 0;
    // Enqueues a decode step: `enqueue` issues its operations. The device captures them once per
    // key as a CUDA graph and replays it; the host simply runs them.
    virtual void decode_step(int64_t key, const std::function<void()>& enqueue) = 0;

    // The operations of ops.h, in their order on the backend's stream.
    virtual void dequantize_rows(const DeviceMatrix& w, const int32_t* ids, int64_t n, float* out) = 0;
    virtual void rms_norm(const float* x, const float* weight, float* out, int64_t n_rows, int64_t n, float eps,
                          void* act32, void* act256, int act_parts) = 0;
    virtual void quantize_activations(ActFormat format, const float* x, int64_t n_rows, int64_t cols, void* out,
                                      int parts) = 0;
    virtual void matmul_group(const MatmulTarget* targets, int count, const MatmulInput& in, bool accumulate) = 0;
    virtual bool matmul_swiglu(const DeviceMatrix& w_gate, const DeviceMatrix& w_up, const MatmulInput& in, float* gate,
                               float* up, const ActRowsOut& act_out, unsigned* chunk_counts) = 0;
    virtual void rope_store(const RopeStore& rope, int64_t n_tokens) = 0;
    virtual bool matmul_qkv_rope(const MatmulTarget (&qkv)[3], const MatmulInput& in, const RopeStore& rope,
                                 unsigned* head_counts) = 0;
    virtual void greedy_choice(const float* logits, int64_t n, void* out) = 0;
    virtual void attention(const AttentionDims& dims, const float* q, int64_t n_tokens, const int64_t* first_pos,
                           int64_t n_split, const __half* k_cache, const __half* v_cache, float* partials,
                           float* out, unsigned* split_counts, const ActRowsOut& act_out) = 0;
};

// The GPU `device` (cudaSetDevice'd here), with its own stream.
std::unique_ptr<Backend> make_device_backend(int device);
// The host execution (host_backend.cu): for tests on machines without a GPU; slow.
std::unique_ptr<Backend> make_host_backend();

}  // namespace edgellama::cuda
