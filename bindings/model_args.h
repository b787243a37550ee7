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
#include <vector>

#include "csrc/kernels/kv_blocks.h"
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

using HalfBits = pybind11::array_t<uint16_t, pybind11::array::c_style | pybind11::array::forcecast>;

// A sequence's KV cache as two uint16 arrays of fp16 bits [n_layer][n_head_kv][n_past][head_dim],
// filled by read(keys, values) with the GIL released (saved state).
template <class Read>
pybind11::tuple cache_arrays(const LlamaConfig& c, int64_t n_past, Read&& read) {
    const std::vector<pybind11::ssize_t> shape{c.n_layer, c.n_head_kv, n_past, c.head_dim};
    pybind11::array_t<uint16_t> keys(shape), values(shape);
    uint16_t* k = keys.mutable_data();
    uint16_t* v = values.mutable_data();
    {
        pybind11::gil_scoped_release release;
        read(k, v);
    }
    return pybind11::make_tuple(keys, values);
}

// The inverse: write(n, keys, values) makes the sequence hold arrays of that shape (checked here).
template <class Write>
void cache_from_arrays(const LlamaConfig& c, const HalfBits& keys, const HalfBits& values, Write&& write) {
    if (keys.ndim() != 4 || values.ndim() != 4 || keys.shape(0) != c.n_layer || keys.shape(1) != c.n_head_kv ||
        keys.shape(3) != c.head_dim) {
        throw std::invalid_argument("keys must be a [n_layer][n_head_kv][n][head_dim] array of this model's shape");
    }
    for (int d = 0; d < 4; ++d) {
        if (values.shape(d) != keys.shape(d)) throw std::invalid_argument("keys and values differ in shape");
    }
    const uint16_t* k = keys.data();
    const uint16_t* v = values.data();
    pybind11::gil_scoped_release release;
    write(keys.shape(2), k, v);
}

// The CPU engine's plain cache rows (KVCache::read): uint16 arrays of fp16 bits
// [n_layer][n_head_kv][n][head_dim] for an f16 cache, uint8 arrays of GGUF blocks
// [n_layer][n_head_kv][n][row bytes] for a quantized one.
inline pybind11::array cache_rows(const LlamaConfig& c, int64_t n, CacheType type) {
    const bool halves = type == CacheType::kF16;
    const std::vector<pybind11::ssize_t> shape{c.n_layer, c.n_head_kv, n, halves ? c.head_dim : row_bytes(type, c.head_dim)};
    return halves ? pybind11::array(pybind11::dtype::of<uint16_t>(), shape)
                  : pybind11::array(pybind11::dtype::of<uint8_t>(), shape);
}

// Whether rows is an array cache_rows(c, n, type) could have made, for some n; returns that n.
inline int64_t cache_rows_count(const LlamaConfig& c, const pybind11::array& rows, CacheType type, const char* name) {
    const pybind11::array like = cache_rows(c, 0, type);
    const bool ok = rows.ndim() == 4 && rows.dtype().is(like.dtype()) &&
                    (rows.flags() & pybind11::array::c_style) && rows.shape(0) == like.shape(0) &&
                    rows.shape(1) == like.shape(1) && rows.shape(3) == like.shape(3);
    if (!ok) {
        throw std::invalid_argument(std::string(name) + " must be a C-contiguous " +
                                    (type == CacheType::kF16 ? "uint16" : "uint8") + " array [" +
                                    std::to_string(c.n_layer) + "][" + std::to_string(c.n_head_kv) + "][n][" +
                                    std::to_string(like.shape(3)) + "] for this model's " + cache_type_name(type) +
                                    " cache");
    }
    return rows.shape(2);
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
