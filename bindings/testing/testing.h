// Declarations of the per-area binding functions of the test-only module
// (edgellama._testing_<level>, bindings/testing/module.cpp). Glue only: no logic here.
#pragma once

#include <pybind11/pybind11.h>

namespace edgellama::bindings::testing {
void bind_kernels(pybind11::module_& m);
void bind_quantize(pybind11::module_& m);
void bind_gguf(pybind11::module_& m);
void bind_tokenizer(pybind11::module_& m);
}  // namespace edgellama::bindings::testing
