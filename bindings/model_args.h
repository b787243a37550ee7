// Conversion of the Python-side model description (ModelConfig.core_dict() and
// GGUFModel.core_tensors()) into the core's types. Shared by the CPU module (_core) and the GPU
// module (_cuda), header-only so each module compiles it on its own.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <tuple>

#include "csrc/model/llama_loader.h"

namespace edgellama::bindings {

inline LlamaConfig config_from_dict(const pybind11::dict& d) {
    LlamaConfig c;
    c.n_vocab = d["n_vocab"].cast<int64_t>();
    c.n_embd = d["n_embd"].cast<int64_t>();
    c.n_layer = d["n_layer"].cast<int64_t>();
    c.n_head = d["n_head"].cast<int64_t>();
    c.n_head_kv = d["n_head_kv"].cast<int64_t>();
    c.head_dim = d["head_dim"].cast<int64_t>();
    c.n_ff = d["n_ff"].cast<int64_t>();
    c.rope_dim = d["rope_dim"].cast<int64_t>();
    c.rope_base = d["rope_base"].cast<float>();
    c.rms_eps = d["rms_eps"].cast<float>();
    if (d.contains("rope_magnitude")) c.rope_magnitude = d["rope_magnitude"].cast<float>();
    return c;
}

// tensors: {name: (address, type_id, rows, cols)}; addresses point into buffers Python keeps alive.
inline TensorMap tensors_from_dict(const pybind11::dict& d) {
    TensorMap map;
    for (auto item : d) {
        auto t = item.second.cast<std::tuple<uintptr_t, int32_t, int64_t, int64_t>>();
        map[item.first.cast<std::string>()] =
            TensorRef{reinterpret_cast<const void*>(std::get<0>(t)), std::get<1>(t), std::get<2>(t), std::get<3>(t)};
    }
    return map;
}

// Runs engine.forward (the CPU LlamaModel or the GPU engine: same signature) on a 1-D token array
// with the GIL released; returns logits [n_vocab], or [n_tokens][n_vocab] when all_logits.
template <class Engine>
pybind11::array_t<float> forward_to_numpy(
    Engine& engine, pybind11::array_t<int32_t, pybind11::array::c_style | pybind11::array::forcecast> tokens,
    bool all_logits) {
    if (tokens.ndim() != 1) throw std::invalid_argument("tokens must be a 1-D array");
    const int64_t n = tokens.shape(0);
    const int64_t n_vocab = engine.config().n_vocab;
    pybind11::array_t<float> logits =
        all_logits ? pybind11::array_t<float>({n, n_vocab}) : pybind11::array_t<float>({n_vocab});
    const int32_t* ids = tokens.data();
    float* out = logits.mutable_data();
    {
        pybind11::gil_scoped_release release;
        engine.forward(ids, n, out, all_logits);
    }
    return logits;
}

}  // namespace edgellama::bindings
