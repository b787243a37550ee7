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
// Checks the launch of the kernel just enqueued (configuration errors show up here).
void check_launch(const char* kernel);

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
