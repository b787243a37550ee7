// The edgellama._cpu_features module: which core levels this CPU can run and which were built.
// Glue only (csrc/core/cpu_features.cpp decides); compiled for the baseline.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "csrc/core/cpu_features.h"

PYBIND11_MODULE(_cpu_features, m) {
    m.doc() = "Instruction-set levels of the edgellama core: runnable here, and built";
    m.def("runnable_levels", &edgellama::runnable_cpu_levels, "Levels this CPU and OS support, best first.");
    m.attr("BUILT_LEVELS") = pybind11::str(EDGELLAMA_BUILT_LEVELS);
}
