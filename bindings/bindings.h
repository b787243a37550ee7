// Declarations of the per-area binding functions that module.cpp calls. Glue only: no logic here.
#pragma once

#include <pybind11/pybind11.h>

namespace edgellama::bindings {
void bind_kernels(pybind11::module_& m);
void bind_model(pybind11::module_& m);
void bind_bench(pybind11::module_& m);
void bind_tokenizer(pybind11::module_& m);
void bind_quantize(pybind11::module_& m);
}  // namespace edgellama::bindings
