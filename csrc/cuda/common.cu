// Error translation and device allocations of the CUDA engine.
#include "csrc/cuda/common.cuh"

#include <atomic>
#include <cstdio>
#include <cstdlib>

namespace edgellama::cuda {

void check(cudaError_t status, const char* what) {
    if (status == cudaSuccess) return;
    const std::string msg = std::string(what) + ": " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")";
    if (status == cudaErrorMemoryAllocation) throw OutOfMemoryError(msg);
    throw CudaError(msg);
}

bool programmatic_launch_enabled() {
    static const bool allowed = [] {
        const char* v = std::getenv("EDGELLAMA_CUDA_PDL");
        return v == nullptr || std::string(v) != "0";
    }();
    if (!allowed) return false;
    constexpr int kDevices = 64;
    static std::atomic<int> major_of[kDevices] = {};  // compute capability major + 1; 0: not asked yet
    int device = 0;
    if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kDevices) return false;
    int known = major_of[device].load(std::memory_order_relaxed);
    if (known == 0) {
        int major = 0;
        if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) return false;
        known = major + 1;
        major_of[device].store(known, std::memory_order_relaxed);
    }
    return known - 1 >= 9;
}

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

void DeviceBuffer::allocate_host(size_t bytes, const std::string& what) {
    release();
    if (bytes == 0) return;
    void* p = std::calloc(bytes, 1);
    if (p == nullptr) throw OutOfMemoryError("out of host memory allocating " + what + " (" + mib(bytes) + ")");
    ptr_ = p;
    bytes_ = bytes;
    on_host_ = true;
}

void DeviceBuffer::release() {
    if (ptr_ != nullptr) {  // never throws from destructors
        if (on_host_) {
            std::free(ptr_);
        } else {
            cudaFree(ptr_);
        }
    }
    ptr_ = nullptr;
    bytes_ = 0;
    on_host_ = false;
}

}  // namespace edgellama::cuda

namespace edgellama::cuda {

double measure_copy_bandwidth(size_t bytes, int repeats) {
    DeviceBuffer a(bytes, "bandwidth probe source"), b(bytes, "bandwidth probe destination");
    check(cudaMemset(a.get(), 1, bytes), "cudaMemset");
    cudaEvent_t start, stop;
    check(cudaEventCreate(&start), "cudaEventCreate");
    check(cudaEventCreate(&stop), "cudaEventCreate");
    check(cudaMemcpy(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice), "warm-up copy");
    check(cudaEventRecord(start), "cudaEventRecord");
    for (int i = 0; i < repeats; ++i) check(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice), "copy");
    check(cudaEventRecord(stop), "cudaEventRecord");
    check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0.0f;
    check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    return 2.0 * static_cast<double>(bytes) * repeats / (static_cast<double>(ms) * 1e-3);  // read + write
}

}  // namespace edgellama::cuda
