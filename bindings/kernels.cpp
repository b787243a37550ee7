// Kernels the package calls directly (the sampler's log-probability). Glue only: sizes are
// validated here so a bad call raises instead of reading past a buffer. The test hooks into
// single kernels live in bindings/testing/kernels.cpp (edgellama._testing).
#include <pybind11/numpy.h>

#include <string>

#include "bindings/bindings.h"
#include "csrc/kernels/log_softmax.h"

namespace py = pybind11;

namespace edgellama::bindings {

void bind_kernels(py::module_& m) {
    using Floats = py::array_t<float, py::array::c_style | py::array::forcecast>;
    m.def(
        "log_softmax_at",
        [](const Floats& logits, int64_t token) {
            if (logits.ndim() != 1 || logits.size() == 0) throw py::value_error("logits must be a non-empty 1-D array");
            if (token < 0 || token >= logits.size()) {
                throw py::index_error("token " + std::to_string(token) + " outside [0, " +
                                      std::to_string(logits.size()) + ")");
            }
            return log_softmax_at(logits.data(), logits.size(), token);
        },
        py::arg("logits"), py::arg("token"), "log softmax(logits)[token] over a row of logits (within 1e-6).");
}

}  // namespace edgellama::bindings
