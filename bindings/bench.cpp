// Python glue for measurement helpers used by `edgellama bench`.
#include "bindings/bindings.h"
#include "csrc/core/bandwidth_probe.h"

namespace py = pybind11;

namespace edgellama::bindings {

void bind_bench(py::module_& m) {
    m.def(
        "measure_read_bandwidth",
        [](int n_threads, size_t bytes, int reps) {
            py::gil_scoped_release release;
            return measure_read_bandwidth(n_threads, bytes, reps);
        },
        py::arg("n_threads"), py::arg("bytes") = size_t(512) << 20, py::arg("reps") = 5,
        "Median memory read bandwidth in GB/s over `reps` passes of a `bytes` buffer.");
}

}  // namespace edgellama::bindings
