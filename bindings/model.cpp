// Python glue for the llama model: converts Python config/tensor tables and numpy arrays, releases
// the GIL around the forward step. No logic beyond argument conversion lives here.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <stdexcept>
#include <vector>

#include "bindings/bindings.h"
#include "bindings/model_args.h"
#include "csrc/model/llama_loader.h"
#include "csrc/model/llama_model.h"

namespace py = pybind11;

namespace edgellama::bindings {

namespace {

std::unique_ptr<LlamaModel> make_model(const py::dict& config, const py::dict& tensors, int64_t n_ctx,
                                       int n_threads, bool weights_file_mapped, int64_t n_seq,
                                       const std::string& cache_type_k, const std::string& cache_type_v,
                                       const std::string& activations) {
    LlamaConfig c = config_from_dict(config);
    const CacheTypes types{cache_type_from_name(cache_type_k), cache_type_from_name(cache_type_v)};
    return std::make_unique<LlamaModel>(c, build_llama_weights(c, tensors_from_dict(tensors)), n_ctx, n_threads,
                                        weights_file_mapped, n_seq, types, act_precision_from_name(activations));
}

py::tuple seq_read(LlamaModel& m, int64_t seq, std::optional<int64_t> n) {
    const int64_t count = n.value_or(m.n_past(seq));
    py::array keys = cache_rows(m.config(), count, m.cache().types().keys);
    py::array values = cache_rows(m.config(), count, m.cache().types().values);
    auto* k = static_cast<uint8_t*>(keys.mutable_data());
    auto* v = static_cast<uint8_t*>(values.mutable_data());
    {
        py::gil_scoped_release release;
        m.cache().read(seq, count, k, v);
    }
    return py::make_tuple(keys, values);
}

void seq_write(LlamaModel& m, int64_t seq, const py::array& keys, const py::array& values) {
    const CacheTypes types = m.cache().types();
    const int64_t n = cache_rows_count(m.config(), keys, types.keys, "keys");
    if (cache_rows_count(m.config(), values, types.values, "values") != n) {
        throw std::invalid_argument("keys and values hold different numbers of positions");
    }
    const auto* k = static_cast<const uint8_t*>(keys.data());
    const auto* v = static_cast<const uint8_t*>(values.data());
    py::gil_scoped_release release;
    m.cache().write(seq, n, k, v);
}

template <class T>
using CArray = py::array_t<T, py::array::c_style | py::array::forcecast>;

// Batched step: 1-D arrays of equal length; returns logits [rows][n_vocab] (or with hidden the final
// hidden states [rows][n_embd]) of the entries whose want_logits is non-zero, in entry order. The
// GIL is released while the step runs.
py::array_t<float> evaluate(LlamaModel& model, CArray<int32_t> tokens, CArray<int32_t> seq_ids,
                            CArray<int64_t> positions, CArray<uint8_t> want_logits, bool hidden) {
    const int64_t n = tokens.ndim() == 1 ? tokens.shape(0) : -1;
    for (const py::array* a : {static_cast<py::array*>(&seq_ids), static_cast<py::array*>(&positions),
                               static_cast<py::array*>(&want_logits)}) {
        if (n < 0 || a->ndim() != 1 || a->shape(0) != n) {
            throw std::invalid_argument("tokens, seq_ids, positions and want_logits must be 1-D arrays of one length");
        }
    }
    const TokenBatch batch{tokens.data(), seq_ids.data(), positions.data(), want_logits.data(), n};
    const int64_t rows = count_logits_rows(batch);
    py::array_t<float> result({rows, hidden ? model.config().n_embd : model.config().n_vocab});
    float* out = result.mutable_data();
    {
        py::gil_scoped_release release;
        if (hidden) {
            model.forward_hidden(batch, out);
        } else {
            model.forward_batch(batch, out);
        }
    }
    return result;
}

py::array_t<float> forward_batch(LlamaModel& model, CArray<int32_t> tokens, CArray<int32_t> seq_ids,
                                 CArray<int64_t> positions, CArray<uint8_t> want_logits) {
    return evaluate(model, tokens, seq_ids, positions, want_logits, false);
}

py::array_t<float> forward_hidden(LlamaModel& model, CArray<int32_t> tokens, CArray<int32_t> seq_ids,
                                  CArray<int64_t> positions, CArray<uint8_t> want) {
    return evaluate(model, tokens, seq_ids, positions, want, true);
}

}  // namespace

void bind_model(py::module_& m) {
    // module_local: each CPU level's module binds the same C++ types, and a process may load several.
    py::class_<LlamaModel>(m, "LlamaModel", py::module_local())
        .def(py::init(&make_model), py::arg("config"), py::arg("tensors"), py::arg("n_ctx"), py::arg("n_threads"),
             py::arg("weights_file_mapped") = false, py::arg("n_seq") = 1, py::arg("cache_type_k") = "f16",
             py::arg("cache_type_v") = "f16", py::arg("activations") = "int8")
        .def("forward_batch", &forward_batch, py::arg("tokens"), py::arg("seq_ids"), py::arg("positions"),
             py::arg("want_logits"))
        .def("forward_hidden", &forward_hidden, py::arg("tokens"), py::arg("seq_ids"), py::arg("positions"),
             py::arg("want"))
        .def("seq_n_past", [](const LlamaModel& m, int64_t seq) { return m.n_past(seq); }, py::arg("seq"))
        .def("seq_clear", [](LlamaModel& m, int64_t seq) { m.cache().clear(seq); }, py::arg("seq"))
        .def("seq_truncate", [](LlamaModel& m, int64_t seq, int64_t n) { m.cache().truncate(seq, n); },
             py::arg("seq"), py::arg("n"))
        .def("seq_copy_prefix", [](LlamaModel& m, int64_t src, int64_t dst, int64_t n) {
                 m.cache().copy_prefix(src, dst, n);
             }, py::arg("src"), py::arg("dst"), py::arg("n"))
        .def("seq_shift", &LlamaModel::seq_shift, py::arg("seq"), py::arg("n_keep"), py::arg("n_discard"),
             py::call_guard<py::gil_scoped_release>())
        .def("seq_read", &seq_read, py::arg("seq"), py::arg("n") = py::none())
        .def("seq_write", &seq_write, py::arg("seq"), py::arg("keys"), py::arg("values"))
        .def_property_readonly("cache_types", [](LlamaModel& m) {
            return py::make_tuple(cache_type_name(m.cache().types().keys), cache_type_name(m.cache().types().values));
        })
        .def_property_readonly("activations", [](LlamaModel& m) { return act_precision_name(m.activations()); })
        .def("forward", &forward_to_numpy<LlamaModel>, py::arg("tokens"), py::arg("all_logits") = false)
        .def("truncate", &LlamaModel::truncate, py::arg("n"))
        .def("reset", &LlamaModel::reset)
        .def_property_readonly("n_past", [](const LlamaModel& m) { return m.n_past(0); })
        .def_property_readonly("n_ctx", &LlamaModel::n_ctx)
        .def_property_readonly("n_seq", &LlamaModel::n_seq)
        .def_property_readonly("n_threads", &LlamaModel::n_threads)
        .def_property_readonly_static("max_batch", [](py::object) { return LlamaModel::kMaxBatch; });
}

}  // namespace edgellama::bindings
