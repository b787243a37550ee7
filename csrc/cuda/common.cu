// Error translation and device allocations of the CUDA engine.
#include "csrc/cuda/common.cuh"

#include <cstdio>

namespace edgellama::cuda {

void check(cudaError_t status, const char* what) {
    if (status == cudaSuccess) return;
    const std::string msg = std::string(what) + ": " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")";
    if (status == cudaErrorMemoryAllocation) throw OutOfMemoryError(msg);
    throw CudaError(msg);
}

void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

namespace {

std::string mib(size_t bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
    return buf;
}

}  // namespace

void DeviceBuffer::allocate(size_t bytes, const std::string& what) {
    release();
    if (bytes == 0) return;
    void* p = nullptr;
    const cudaError_t status = cudaMalloc(&p, bytes);
    if (status == cudaErrorMemoryAllocation) {
        cudaGetLastError();  // clear the sticky-free error so later calls are not blamed for it
        size_t free_bytes = 0, total_bytes = 0;
        cudaMemGetInfo(&free_bytes, &total_bytes);
        throw OutOfMemoryError("out of GPU memory allocating " + what + " (" + mib(bytes) + "); " +
                               mib(free_bytes) + " free of " + mib(total_bytes));
    }
    check(status, ("cudaMalloc for " + what).c_str());
    ptr_ = p;
    bytes_ = bytes;
}

void DeviceBuffer::release() {
    if (ptr_ != nullptr) cudaFree(ptr_);  // never throws from destructors
    ptr_ = nullptr;
    bytes_ = 0;
}

}  // namespace edgellama::cuda
