// The test-only extension module, built once per instruction-set level next to the core as
// edgellama._testing_<level> (EDGELLAMA_MODULE_NAME); edgellama/_testing.py imports the level
// _core chose. It holds the hooks that only tests and benchmarks call (single kernels, codecs,
// the native GGUF reader, the bare merge loops), so that the shipped _core keeps what the
// package uses.
#include "bindings/testing/testing.h"

#ifndef EDGELLAMA_MODULE_NAME
#error "EDGELLAMA_MODULE_NAME must name the module (_testing_<level>)"
#endif

PYBIND11_MODULE(EDGELLAMA_MODULE_NAME, m) {
    m.doc() = "edgellama test hooks: single kernels, the codecs, the native GGUF reader and the merge loops";
    edgellama::bindings::testing::bind_kernels(m);
    edgellama::bindings::testing::bind_quantize(m);
    edgellama::bindings::testing::bind_gguf(m);
    edgellama::bindings::testing::bind_tokenizer(m);
}
