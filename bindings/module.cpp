// The edgellama._core extension module: one entry point, one call per area.
#include "bindings/bindings.h"

PYBIND11_MODULE(_core, m) {
    m.doc() = "edgellama C++ core: quantized kernels, the llama forward step and the tokenizer merge loops";
    edgellama::bindings::bind_kernels(m);
    edgellama::bindings::bind_model(m);
    edgellama::bindings::bind_bench(m);
    edgellama::bindings::bind_tokenizer(m);
    edgellama::bindings::bind_quantize(m);
}
