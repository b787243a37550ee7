// Exceptions of the CUDA engine, plain C++ so the pybind11 glue (compiled without nvcc) can map them.
#pragma once

#include <stdexcept>
#include <string>

namespace edgellama::cuda {

// A CUDA runtime call failed (launch error, illegal address, no device ...).
class CudaError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// A device allocation did not fit; the message names the buffer, its size and the free memory.
class OutOfMemoryError : public CudaError {
public:
    using CudaError::CudaError;
};

}  // namespace edgellama::cuda
