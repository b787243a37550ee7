// Python glue for the llama model: converts Python config/tensor tables and numpy arrays, releases
// the GIL around the forward step. No logic beyond argument conversion lives here.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>

#include "bindings/bindings.h"
#include "bindings/model_args.h"
#include "csrc/model/llama_loader.h"
#include "csrc/model/llama_model.h"

namespace py = pybind11;

namespace edgellama::bindings {

namespace {

std::unique_ptr<LlamaModel> make_model(const py::dict& config, const py::dict& tensors, int64_t n_ctx,
                                       int n_threads, bool weights_file_mapped) {
    LlamaConfig c = config_from_dict(config);
    return std::make_unique<LlamaModel>(c, build_llama_weights(c, tensors_from_dict(tensors)), n_ctx, n_threads,
                                        weights_file_mapped);
}

}  // namespace

void bind_model(py::module_& m) {
    // module_local: each CPU level's module binds the same C++ types, and a process may load several.
    py::class_<LlamaModel>(m, "LlamaModel", py::module_local())
        .def(py::init(&make_model), py::arg("config"), py::arg("tensors"), py::arg("n_ctx"), py::arg("n_threads"),
             py::arg("weights_file_mapped") = false)
        .def("forward", &forward_to_numpy<LlamaModel>, py::arg("tokens"), py::arg("all_logits") = false)
        .def("truncate", &LlamaModel::truncate, py::arg("n"))
        .def("reset", &LlamaModel::reset)
        .def_property_readonly("n_past", &LlamaModel::n_past)
        .def_property_readonly("n_ctx", &LlamaModel::n_ctx)
        .def_property_readonly("n_threads", &LlamaModel::n_threads)
        .def_property_readonly_static("max_batch", [](py::object) { return LlamaModel::kMaxBatch; });
}

}  // namespace edgellama::bindings
