// The core extension module, built once per instruction-set level as edgellama._core_<level>
// (EDGELLAMA_MODULE_NAME); edgellama/_core.py imports the best one. One call per area. It binds
// what the package uses; hooks only tests call are in bindings/testing/ (edgellama._testing_<level>).
#include "bindings/bindings.h"

#ifndef EDGELLAMA_MODULE_NAME
#error "EDGELLAMA_MODULE_NAME must name the module (_core_<level>)"
#endif

PYBIND11_MODULE(EDGELLAMA_MODULE_NAME, m) {
    m.doc() = "edgellama C++ core: the llama forward step, the quantizer and the tokenizer merge loops";
    edgellama::bindings::bind_kernels(m);
    edgellama::bindings::bind_model(m);
    edgellama::bindings::bind_bench(m);
    edgellama::bindings::bind_tokenizer(m);
    edgellama::bindings::bind_quantize(m);
}
