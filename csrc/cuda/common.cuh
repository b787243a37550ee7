// Shared pieces of the CUDA engine: error checks that become C++ exceptions, RAII device buffers
// (warp reductions: warp.cuh). Included by .cu files only (the public header llama_cuda_model.h
// has no CUDA types).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "csrc/cuda/cuda_errors.h"

namespace edgellama::cuda {

// Throws CudaError with the call site and CUDA's message when a runtime call failed.
void check(cudaError_t status, const char* what);
// Programmatic dependent launch (sm_90+): the engine's kernels are launched while the kernel
// before them in the stream is still finishing (its last blocks, its flush), so that a chain of
// short dependent kernels (a decode step has ~11 a layer) does not pay each launch's latency in
// full. Every kernel begins with wait_for_prior_kernels(): nothing of the kernel runs before the
// previous one has completed and its writes are visible, so the results are those of plain
// launches; then it lets the next kernel launch (whose blocks wait in turn). EDGELLAMA_CUDA_PDL=0
// turns it off; below sm_90 it is off.
__device__ __forceinline__ void wait_for_prior_kernels() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

bool programmatic_launch_enabled();  // for the current device

// kernel<<<grid, block, 0, stream>>>(args...), programmatic where enabled; throws on a launch error.
template <class... Params, class... Args>
void launch(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream, Args... args) {
    cudaLaunchConfig_t config = {};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = 0;
    config.stream = stream;
    cudaLaunchAttribute programmatic[1];
    programmatic[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    programmatic[0].val.programmaticStreamSerializationAllowed = 1;
    if (programmatic_launch_enabled()) {
        config.attrs = programmatic;
        config.numAttrs = 1;
    }
    check(cudaLaunchKernelEx(&config, kernel, static_cast<Params>(args)...), name);
}

// One device allocation, freed with the object. allocate() throws OutOfMemoryError naming `what`.
// allocate_host() takes host memory instead, for the engine's host execution (host_backend.cu).
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    DeviceBuffer(size_t bytes, const std::string& what) { allocate(bytes, what); }
    ~DeviceBuffer() { release(); }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_), on_host_(o.on_host_) {
        o.ptr_ = nullptr;
        o.bytes_ = 0;
    }
    DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
        if (this != &o) {
            release();
            ptr_ = o.ptr_;
            bytes_ = o.bytes_;
            on_host_ = o.on_host_;
            o.ptr_ = nullptr;
            o.bytes_ = 0;
        }
        return *this;
    }

    void allocate(size_t bytes, const std::string& what);
    void allocate_host(size_t bytes, const std::string& what);
    void release();
    template <typename T>
    T* as() const { return static_cast<T*>(ptr_); }
    void* get() const { return ptr_; }
    size_t bytes() const { return bytes_; }

private:
    void* ptr_ = nullptr;
    size_t bytes_ = 0;
    bool on_host_ = false;
};

constexpr int kWarp = 32;

// SwiGLU's element: silu(g) * u = g / (1 + e^-g) * u.
__host__ __device__ __forceinline__ float silu_times(float g, float u) { return g / (1.0f + expf(-g)) * u; }

inline unsigned ceil_div(int64_t a, int64_t b) { return static_cast<unsigned>((a + b - 1) / b); }

}  // namespace edgellama::cuda
