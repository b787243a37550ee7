// The core extension module, built once per instruction-set level as edgellama._core_<level>
// (EDGELLAMA_MODULE_NAME); edgellama/_core.py imports the best one. One call per area.
#include "bindings/bindings.h"

#ifndef EDGELLAMA_MODULE_NAME
#error "EDGELLAMA_MODULE_NAME must name the module (_core_<level>)"
#endif

PYBIND11_MODULE(EDGELLAMA_MODULE_NAME, m) {
    m.doc() = "edgellama C++ core: quantized kernels, the llama forward step and the tokenizer merge loops";
    edgellama::bindings::bind_kernels(m);
    edgellama::bindings::bind_model(m);
    edgellama::bindings::bind_bench(m);
    edgellama::bindings::bind_tokenizer(m);
    edgellama::bindings::bind_quantize(m);
    edgellama::bindings::bind_gguf(m);
}
