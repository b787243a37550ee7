// The edgellama._core extension module: one entry point, one call per area.
#include "bindings/bindings.h"

PYBIND11_MODULE(_core, m) {
    m.doc() = "edgellama C++ core: quantized kernels and the llama forward step";
    edgellama::bindings::bind_kernels(m);
    edgellama::bindings::bind_model(m);
    edgellama::bindings::bind_quantize(m);
}
