// The edgellama._cuda extension module: Python glue for the GPU engine (csrc/cuda/). Argument
// conversion and exception mapping only. Kept out of bindings/*.cpp so the CPU module never sees it.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>
#include <memory>
#include <optional>
#include <string>
#include <tuple>

#include "csrc/cuda/grouped_rows.h"
#include "csrc/cuda/host_decode.h"
#include "csrc/cuda/llama_cuda_model.h"
#include "bindings/model_args.h"
#include "csrc/model/llama_loader.h"

namespace py = pybind11;

namespace edgellama::bindings {

namespace {

using cuda::CudaLlamaModel;

struct alignas(16) uint4_words {
    uint32_t w[4];
};

std::unique_ptr<CudaLlamaModel> make_model(const py::dict& config, const py::dict& tensors, int64_t n_ctx,
                                           int n_threads, int device, bool grouped_rows, bool fused_attention,
                                           bool fused_swiglu_quant, bool fused_rope, bool prefetch_weights,
                                           const std::string& activations) {
    const ActPrecision precision = act_precision_from_name(activations);  // ValueError naming the choices
    LlamaConfig c = config_from_dict(config);
    LlamaWeights w = build_llama_weights(c, tensors_from_dict(tensors));
    py::gil_scoped_release release;  // the upload copies gigabytes
    cuda::CudaOptions options;
    options.grouped_rows = grouped_rows;
    options.fused_attention = fused_attention;
    options.fused_swiglu_quant = fused_swiglu_quant;
    options.fused_rope = fused_rope;
    options.prefetch_weights = prefetch_weights;
    options.activations = precision;
    return std::make_unique<CudaLlamaModel>(c, w, n_ctx, n_threads, device, options);
}

using Bytes = py::array_t<uint8_t, py::array::c_style>;

// The bytes of each of `rows` equal rows of weight; throws unless weight is that.
size_t equal_row_bytes(const Bytes& weight, int64_t rows) {
    if (rows <= 0 || weight.size() % rows != 0) throw std::invalid_argument("weight bytes are not `rows` equal rows");
    return static_cast<size_t>(weight.size() / rows);
}

// y, n_tokens rows of `rows` floats, as an array; bytes as an array.
py::array_t<float> token_rows_array(const std::vector<float>& y, int64_t n_tokens, int64_t rows) {
    py::array_t<float> out({n_tokens, rows});
    std::memcpy(out.mutable_data(), y.data(), y.size() * sizeof(float));
    return out;
}
Bytes bytes_array(const std::vector<uint8_t>& bytes) {
    Bytes out(static_cast<py::ssize_t>(bytes.size()));
    std::memcpy(out.mutable_data(), bytes.data(), bytes.size());
    return out;
}

// Rows are copied into 16-byte aligned buffers, as device rows are, before the GPU code reads them.
std::vector<uint4_words> aligned_copy(const py::array_t<uint8_t, py::array::c_style>& row) {
    std::vector<uint4_words> aligned((row.size() + 15) / 16);
    std::memcpy(aligned.data(), row.data(), static_cast<size_t>(row.size()));
    return aligned;
}

py::array_t<float> decode_row_host(int32_t type, const py::array_t<uint8_t, py::array::c_style>& row, int64_t n) {
    const std::vector<uint4_words> aligned = aligned_copy(row);
    py::array_t<float> out(n);
    cuda::decode_row_on_host(type, reinterpret_cast<const uint8_t*>(aligned.data()), n, out.mutable_data());
    return out;
}

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

py::bytes quantize_act_host(int32_t weight_type, const FloatArray& x, bool precise) {
    const std::vector<uint8_t> blocks = cuda::quantize_act_on_host(weight_type, x.data(), x.size(), precise);
    return py::bytes(reinterpret_cast<const char*>(blocks.data()), blocks.size());
}

float int8_dot_host(int32_t weight_type, const py::array_t<uint8_t, py::array::c_style>& row, const FloatArray& x) {
    const std::vector<uint4_words> aligned = aligned_copy(row);
    return cuda::int8_dot_on_host(weight_type, reinterpret_cast<const uint8_t*>(aligned.data()), x.data(), x.size());
}

py::array_t<float> run_matmul(int32_t type, const py::array_t<uint8_t, py::array::c_style>& weight, int64_t rows,
                              int64_t cols, const py::array_t<float, py::array::c_style | py::array::forcecast>& x,
                              bool tensor_cores, bool grouped_rows, bool precise) {
    const size_t row_bytes = equal_row_bytes(weight, rows);
    if (x.ndim() != 2 || x.shape(1) != cols) throw std::invalid_argument("x must be (n_tokens, cols)");
    const int64_t n_tokens = x.shape(0);
    py::array_t<float> y({n_tokens, rows});
    float* out = y.mutable_data();
    {
        py::gil_scoped_release release;
        cuda::run_matmul(type, weight.data(), rows, cols, row_bytes, x.data(), n_tokens, out, tensor_cores,
                         grouped_rows, precise);
    }
    return y;
}


py::tuple greedy_choice_host(const FloatArray& logits) {
    if (logits.ndim() != 1) throw std::invalid_argument("logits must be a 1-D array");
    const auto [token, logprob] = cuda::greedy_choice_on_host(logits.data(), logits.size());
    return py::make_tuple(token, logprob);
}

// The engine options (CudaOptions), each a constructor argument and a read-only property.
struct OptionField {
    const char* name;
    bool cuda::CudaOptions::*member;
    const char* doc;
};
constexpr OptionField kOptionFields[] = {
    {"grouped_rows", &cuda::CudaOptions::grouped_rows,
     "Q4_0 / Q8_0 / Q6_K rows uploaded regrouped for 16-byte loads (constructor argument)."},
    {"fused_attention", &cuda::CudaOptions::fused_attention,
     "Attention's splits merged in its own kernel by each query's last block (constructor argument)."},
    {"fused_swiglu_quant", &cuda::CudaOptions::fused_swiglu_quant,
     "The SwiGLU GEMV quantizes its output for ffn_down itself (constructor argument)."},
    {"fused_rope", &cuda::CudaOptions::fused_rope,
     "A one-token step's Q/K/V GEMV applies RoPE and stores keys and values itself (constructor argument)."},
    {"prefetch_weights", &cuda::CudaOptions::prefetch_weights,
     "GEMV blocks prefetch their weight rows into the L2 before waiting for the kernel before them "
     "(constructor argument)."},
};

// (token, log-probability) of the greedy choice after the tokens (CudaLlamaModel::forward_greedy).
py::tuple forward_greedy(CudaLlamaModel& model,
                         const py::array_t<int32_t, py::array::c_style | py::array::forcecast>& tokens) {
    if (tokens.ndim() != 1) throw std::invalid_argument("tokens must be a 1-D array");
    int32_t token = 0;
    double logprob = 0.0;
    {
        py::gil_scoped_release release;
        model.forward_greedy(tokens.data(), tokens.shape(0), &token, &logprob);
    }
    return py::make_tuple(token, logprob);
}

// (normalized rows, their Q8_32 int8 rows or None, their Q8_256 int8 rows or None); precise: two
// int8 rows a row (the blocks, their residual).
py::tuple rms_norm_host(const py::array_t<float, py::array::c_style | py::array::forcecast>& x,
                        const py::array_t<float, py::array::c_style | py::array::forcecast>& weight, float eps,
                        bool q8_32, bool q8_256, bool precise) {
    if (x.ndim() != 2 || weight.ndim() != 1 || weight.shape(0) != x.shape(1)) {
        throw std::invalid_argument("x must be (rows, n) and weight (n,)");
    }
    const int64_t rows = x.shape(0), n = x.shape(1);
    const int parts = precise ? 2 : 1;
    py::array_t<float> out({rows, n});
    py::object act32 = py::none(), act256 = py::none();
    uint8_t* p32 = nullptr;
    uint8_t* p256 = nullptr;
    if (q8_32) {
        Bytes b(static_cast<py::ssize_t>(rows * parts * act_row_bytes(ActFormat::Q8_32, n)));
        p32 = b.mutable_data();
        act32 = b;
    }
    if (q8_256) {
        Bytes b(static_cast<py::ssize_t>(rows * parts * act_row_bytes(ActFormat::Q8_256, n)));
        p256 = b.mutable_data();
        act256 = b;
    }
    float* o = out.mutable_data();
    {
        py::gil_scoped_release release;
        cuda::rms_norm_on_host(x.data(), weight.data(), o, rows, n, eps, p32, p256, parts);
    }
    return py::make_tuple(out, act32, act256);
}

// (rotated q, k cache, v cache): q (tokens, heads * dim) and k, v (tokens, kv heads * dim) float32;
// the caches (n_ctx, kv heads * dim) fp16 bit patterns, zero where nothing was stored.
py::tuple rope_store_host(py::array_t<float, py::array::c_style | py::array::forcecast> q,
                          const py::array_t<float, py::array::c_style | py::array::forcecast>& k,
                          const py::array_t<float, py::array::c_style | py::array::forcecast>& v, int64_t n_head,
                          int64_t n_head_kv, int64_t head_dim, const py::array_t<double, py::array::c_style>& inv_freq,
                          int64_t first_pos, int64_t n_ctx) {
    const int64_t n_tokens = q.shape(0);
    if (q.ndim() != 2 || q.shape(1) != n_head * head_dim || k.ndim() != 2 || k.shape(0) != n_tokens ||
        k.shape(1) != n_head_kv * head_dim || v.shape(0) != n_tokens || v.shape(1) != k.shape(1) ||
        inv_freq.ndim() != 1 || inv_freq.shape(0) * 2 > head_dim || first_pos < 0 || first_pos + n_tokens > n_ctx) {
        throw std::invalid_argument("bad shapes for rope_store_host");
    }
    py::array_t<float> rotated({n_tokens, n_head * head_dim});
    std::memcpy(rotated.mutable_data(), q.data(), static_cast<size_t>(q.size()) * sizeof(float));
    py::array_t<uint16_t> k_cache({n_ctx, n_head_kv * head_dim}), v_cache({n_ctx, n_head_kv * head_dim});
    std::memset(k_cache.mutable_data(), 0, static_cast<size_t>(k_cache.size()) * 2);
    std::memset(v_cache.mutable_data(), 0, static_cast<size_t>(v_cache.size()) * 2);
    cuda::rope_store_on_host(rotated.mutable_data(), k.data(), v.data(), n_tokens, n_head, n_head_kv, head_dim,
                             inv_freq.shape(0), inv_freq.data(), first_pos,
                             reinterpret_cast<__half*>(k_cache.mutable_data()),
                             reinterpret_cast<__half*>(v_cache.mutable_data()));
    return py::make_tuple(rotated, k_cache, v_cache);
}

// q: (n_tokens, n_head, head_dim) float32; k, v: (n_pos, n_head_kv, head_dim) float16 bit patterns.
// q: (n_tokens, n_head, head_dim) float32; k, v: (n_pos, n_head_kv, head_dim) float16 bit patterns.
cuda::AttentionDims attention_dims_of(const py::array_t<float, py::array::c_style | py::array::forcecast>& q,
                                      const py::array_t<uint16_t, py::array::c_style>& k,
                                      const py::array_t<uint16_t, py::array::c_style>& v, int64_t first_pos) {
    if (q.ndim() != 3 || k.ndim() != 3 || v.ndim() != 3 || k.shape(0) != v.shape(0) || k.shape(1) != v.shape(1) ||
        k.shape(2) != q.shape(2) || v.shape(2) != q.shape(2)) {
        throw std::invalid_argument("q must be (tokens, heads, dim), k and v (positions, kv heads, dim)");
    }
    if (first_pos < 0 || first_pos + q.shape(0) > k.shape(0)) throw std::invalid_argument("positions past the cache");
    return cuda::AttentionDims{q.shape(1), k.shape(1), q.shape(2)};
}

py::array_t<float> attention_result(const cuda::AttentionDims& dims, int64_t n_tokens, const std::vector<float>& out) {
    py::array_t<float> result({n_tokens, dims.n_head, dims.head_dim});
    std::memcpy(result.mutable_data(), out.data(), out.size() * sizeof(float));
    return result;
}

py::array_t<float> attention_host(const py::array_t<float, py::array::c_style | py::array::forcecast>& q,
                                  const py::array_t<uint16_t, py::array::c_style>& k,
                                  const py::array_t<uint16_t, py::array::c_style>& v, int64_t first_pos,
                                  int64_t n_split, bool fused) {
    const cuda::AttentionDims dims = attention_dims_of(q, k, v, first_pos);
    std::vector<float> out;
    {
        py::gil_scoped_release release;
        out = cuda::attention_on_host(dims, q.data(), q.shape(0), first_pos, n_split,
                                      reinterpret_cast<const __half*>(k.data()), reinterpret_cast<const __half*>(v.data()),
                                      fused);
    }
    return attention_result(dims, q.shape(0), out);
}

py::tuple attention_quantized_host(const py::array_t<float, py::array::c_style | py::array::forcecast>& q,
                                   const py::array_t<uint16_t, py::array::c_style>& k,
                                   const py::array_t<uint16_t, py::array::c_style>& v, int64_t first_pos,
                                   int64_t n_split, int act_block, bool precise) {
    const cuda::AttentionDims dims = attention_dims_of(q, k, v, first_pos);
    std::pair<std::vector<float>, std::vector<uint8_t>> result;
    {
        py::gil_scoped_release release;
        result = cuda::attention_quantized_on_host(dims, q.data(), q.shape(0), first_pos, n_split,
                                                   reinterpret_cast<const __half*>(k.data()),
                                                   reinterpret_cast<const __half*>(v.data()), act_block, precise);
    }
    return py::make_tuple(attention_result(dims, q.shape(0), result.first), bytes_array(result.second));
}

py::array_t<float> gemv_host(int32_t type, const py::array_t<uint8_t, py::array::c_style>& weight,
                             const py::object& up, int64_t rows,
                             const py::array_t<float, py::array::c_style | py::array::forcecast>& x, bool precise) {
    const size_t row_bytes = equal_row_bytes(weight, rows);
    if (x.ndim() != 2) throw std::invalid_argument("x must be (n_tokens, cols)");
    const std::vector<uint4_words> aligned = aligned_copy(weight);
    std::vector<uint4_words> aligned_up;
    if (!up.is_none()) {
        const auto up_rows = up.cast<py::array_t<uint8_t, py::array::c_style>>();
        if (up_rows.size() != weight.size()) throw std::invalid_argument("up must be as large as weight");
        aligned_up = aligned_copy(up_rows);
    }
    const int64_t n_tokens = x.shape(0), cols = x.shape(1);
    std::vector<float> y;
    {
        py::gil_scoped_release release;
        y = cuda::gemv_on_host(type, reinterpret_cast<const uint8_t*>(aligned.data()),
                               aligned_up.empty() ? nullptr : reinterpret_cast<const uint8_t*>(aligned_up.data()), rows,
                               row_bytes, x.data(), n_tokens, cols, precise);
    }
    return token_rows_array(y, n_tokens, rows);
}

py::tuple swiglu_quantized_host(int32_t type, const py::array_t<uint8_t, py::array::c_style>& weight,
                                const py::array_t<uint8_t, py::array::c_style>& up, int64_t rows,
                                const py::array_t<float, py::array::c_style | py::array::forcecast>& x, int act_block,
                                bool precise) {
    const size_t row_bytes = equal_row_bytes(weight, rows);
    if (up.size() != weight.size()) throw std::invalid_argument("up must be as large as weight");
    if (x.ndim() != 2) throw std::invalid_argument("x must be (n_tokens, cols)");
    const std::vector<uint4_words> aligned = aligned_copy(weight), aligned_up = aligned_copy(up);
    const int64_t n_tokens = x.shape(0), cols = x.shape(1);
    std::pair<std::vector<float>, std::vector<uint8_t>> result;
    {
        py::gil_scoped_release release;
        result = cuda::swiglu_quantized_on_host(type, reinterpret_cast<const uint8_t*>(aligned.data()),
                                                reinterpret_cast<const uint8_t*>(aligned_up.data()), rows, row_bytes,
                                                x.data(), n_tokens, cols, act_block, precise);
    }
    return py::make_tuple(token_rows_array(result.first, n_tokens, rows), bytes_array(result.second));
}

py::array_t<float> mma_matmul_host(int32_t type, const py::array_t<uint8_t, py::array::c_style>& weight, int64_t rows,
                                   const py::array_t<float, py::array::c_style | py::array::forcecast>& x,
                                   bool precise) {
    const size_t row_bytes = equal_row_bytes(weight, rows);
    if (x.ndim() != 2) throw std::invalid_argument("x must be (n_tokens, cols)");
    const std::vector<uint4_words> aligned = aligned_copy(weight);
    const int64_t n_tokens = x.shape(0), cols = x.shape(1);
    std::vector<float> y;
    {
        py::gil_scoped_release release;
        y = cuda::mma_matmul_on_host(type, reinterpret_cast<const uint8_t*>(aligned.data()), rows, row_bytes, x.data(),
                                     n_tokens, cols, precise);
    }
    return token_rows_array(y, n_tokens, rows);
}

double time_matmul(int32_t type, const py::array_t<uint8_t, py::array::c_style>& weight, int64_t rows, int64_t cols,
                   int64_t n_tokens, int repeats, bool tensor_cores, int gemv_shape, bool grouped_rows,
                   bool prefetch_weights) {
    const size_t row_bytes = equal_row_bytes(weight, rows);
    py::gil_scoped_release release;
    return cuda::time_matmul(type, weight.data(), rows, cols, row_bytes, n_tokens, repeats, tensor_cores, gemv_shape,
                             grouped_rows, prefetch_weights);
}

// (device type, rows regrouped) of `rows` GGUF rows of `type` and `cols` elements.
py::tuple group_rows_host(int32_t type, const py::array_t<uint8_t, py::array::c_style>& weight, int64_t rows,
                          int64_t cols) {
    const size_t row_bytes = equal_row_bytes(weight, rows);
    py::array_t<uint8_t> out(weight.size());
    cuda::group_rows(type, cols, weight.data(), out.mutable_data(), rows, row_bytes);
    return py::make_tuple(cuda::grouped_type(type, cols), out);
}

py::tuple device_count() {
    std::string why;
    const int n = cuda::device_count(&why);
    return py::make_tuple(n, why);
}

}  // namespace

}  // namespace edgellama::bindings

PYBIND11_MODULE(_cuda, m) {
    using edgellama::bindings::CudaLlamaModel;
    namespace b = edgellama::bindings;
    m.doc() = "edgellama CUDA engine: the llama forward step on an NVIDIA GPU";

    // Exceptions derive from edgellama.errors so callers catch one hierarchy. Translators run
    // newest first: the OOM subclass is registered after its base.
    py::module_ errors = py::module_::import("edgellama.errors");
    py::register_exception<edgellama::cuda::CudaError>(m, "CudaError", errors.attr("DeviceError"));
    py::register_exception<edgellama::cuda::OutOfMemoryError>(m, "OutOfMemoryError",
                                                               errors.attr("DeviceOutOfMemoryError"));

    // The `activations` the engine takes (Llama(device="cuda", activations=...) checks against it).
    m.attr("ACTIVATIONS") = py::make_tuple("int8", "precise");
    m.def("device_count", &b::device_count,
          "(number of visible CUDA devices, reason when 0) — never raises");
    m.def("decode_row_host", &b::decode_row_host, py::arg("type_id"), py::arg("data"), py::arg("n"),
          "Decode one GGUF row with the GPU's block decoders, executed on the CPU (for tests).");
    m.def("quantize_act_host", &b::quantize_act_host, py::arg("weight_type"), py::arg("x"), py::arg("precise") = false,
          "The int8 activation blocks the GPU dots with this weight type, computed on the CPU (for tests); precise: "
          "two rows, the blocks and their residual (precise activations).");
    m.def("int8_dot_host", &b::int8_dot_host, py::arg("weight_type"), py::arg("weight_row"), py::arg("x"),
          "dot(weight row, x) by the GPU's int8 path, executed on the CPU (for tests).");
    m.def("measure_copy_bandwidth", &edgellama::cuda::measure_copy_bandwidth, py::arg("bytes") = size_t(1) << 30,
          py::arg("repeats") = 10, py::call_guard<py::gil_scoped_release>(),
          "Device-to-device copy bandwidth in bytes/s, counting bytes read and written.");
    m.def("run_matmul", &b::run_matmul, py::arg("type_id"), py::arg("weight"), py::arg("rows"), py::arg("cols"),
          py::arg("x"), py::arg("tensor_cores") = true, py::arg("grouped_rows") = false, py::arg("precise") = false,
          "y = x @ W.T by the model's matmul kernels on GPU 0 (for tests); x is (n_tokens, cols); precise: x as "
          "precise activations (two int8 rows a token).");
    m.def("group_rows_host", &b::group_rows_host, py::arg("type_id"), py::arg("weight"), py::arg("rows"),
          py::arg("cols"),
          "(device type id, bytes): GGUF rows regrouped as the GPU keeps them when uploaded with grouped_rows.");
    m.def("greedy_choice_host", &b::greedy_choice_host, py::arg("logits"),
          "(token, logprob) of the greedy choice kernel's block code run on host threads.");
    m.def("rms_norm_host", &b::rms_norm_host, py::arg("x"), py::arg("weight"), py::arg("eps"), py::arg("q8_32"),
          py::arg("q8_256"), py::arg("precise") = false,
          "The GPU's RMSNorm block code (with its fused quantization; precise: two int8 rows a row) run on CPU "
          "threads (for tests).");
    m.def("rope_store_host", &b::rope_store_host, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("n_head"),
          py::arg("n_head_kv"), py::arg("head_dim"), py::arg("inv_freq"), py::arg("first_pos"), py::arg("n_ctx"),
          "The GPU's RoPE-and-store thread code run on the CPU (for tests).");
    m.def("attention_splits", &edgellama::cuda::attention_splits, py::arg("max_pos"), py::arg("n_tokens"),
          "How many ways attention splits the positions of n_tokens queries (the last sees max_pos).");
    m.def("decode_graph_splits", &edgellama::cuda::decode_graph_splits, py::arg("max_pos"),
          "The split count of the captured decode step for a token that sees max_pos positions.");
    m.def("attention_host", &b::attention_host, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("first_pos"),
          py::arg("n_split"), py::arg("fused") = false,
          "The GPU's attention kernels' block code run on CPU threads (for tests); fused: the one-kernel form.");
    m.def("attention_quantized_host", &b::attention_quantized_host, py::arg("q"), py::arg("k"), py::arg("v"),
          py::arg("first_pos"), py::arg("n_split"), py::arg("act_block"), py::arg("precise") = false,
          "(out, int8 activation rows of act_block 32 or 256): the fused attention block code with its quantization, "
          "run on CPU threads (for tests); precise: two int8 rows a token.");
    m.def("gemv_host", &b::gemv_host, py::arg("type_id"), py::arg("weight"), py::arg("up"), py::arg("rows"),
          py::arg("x"), py::arg("precise") = false,
          "y = x @ W.T (or, with up, silu(x @ W.T) * (x @ U.T)) by the int8 GEMV's block code on the CPU (for tests); "
          "precise: x as precise activations.");
    m.def("swiglu_quantized_host", &b::swiglu_quantized_host, py::arg("type_id"), py::arg("weight"), py::arg("up"),
          py::arg("rows"), py::arg("x"), py::arg("act_block"), py::arg("precise") = false,
          "(silu(x @ W.T) * (x @ U.T), its int8 activation rows of act_block 32 or 256): the one-launch SwiGLU GEMV "
          "that also quantizes its output, run on CPU threads (for tests); precise: precise activations in and out.");
    m.def("mma_matmul_host", &b::mma_matmul_host, py::arg("type_id"), py::arg("weight"), py::arg("rows"), py::arg("x"),
          py::arg("precise") = false,
          "y = x @ W.T by the tensor-core prefill tiles, run on the CPU (32 threads a warp; for tests); precise: x as "
          "precise activations.");
    m.def("time_matmul", &b::time_matmul, py::arg("type_id"), py::arg("weight"), py::arg("rows"), py::arg("cols"),
          py::arg("n_tokens") = 1, py::arg("repeats") = 50, py::arg("tensor_cores") = true, py::arg("gemv_shape") = -1,
          py::arg("grouped_rows") = false, py::arg("prefetch_weights") = false,
          "Seconds per y = W x on GPU 0 (weights streamed from device memory), for benchmarks; gemv_shape >= 0: "
          "one token's product by that GEMV block shape (gemv_probe_shapes()); grouped_rows: the matrix uploaded "
          "grouped where its type allows; prefetch_weights: GEMV blocks prefetch their rows before waiting for the "
          "launch before.");
    m.def("gemv_probe_shapes", &edgellama::cuda::gemv_probe_shapes,
          "Names of the int8 GEMV variants time_matmul(gemv_shape=i) compares (block shapes, then pieces in flight).");
    m.def("device_description", &edgellama::cuda::device_description, py::arg("device") = 0);
    py::class_<CudaLlamaModel> model(m, "CudaLlamaModel");
    model.def(py::init(&b::make_model), py::arg("config"), py::arg("tensors"), py::arg("n_ctx"), py::arg("n_threads"),
             py::arg("device") = 0, py::arg("grouped_rows") = false, py::arg("fused_attention") = false,
             py::arg("fused_swiglu_quant") = false, py::arg("fused_rope") = false,
             py::arg("prefetch_weights") = false, py::arg("activations") = "int8")
        .def("forward", &b::forward_to_numpy<CudaLlamaModel>, py::arg("tokens"), py::arg("all_logits") = false)
        .def("forward_greedy", &b::forward_greedy, py::arg("tokens"),
             "(token, logprob): forward, then the greedy choice of the last token made on the device (the "
             "first largest logit and its log-softmax); only those come back.")
        .def("truncate", &CudaLlamaModel::truncate, py::arg("n"))
        .def("reset", &CudaLlamaModel::reset)
        .def("read_cache", [](CudaLlamaModel& m, std::optional<int64_t> n) {
                 const int64_t count = n.value_or(m.n_past());
                 if (count < 0 || count > m.n_past()) throw std::out_of_range("read_cache: n outside [0, n_past]");
                 return b::cache_arrays(m.config(), count, [&](uint16_t* k, uint16_t* v) { m.read_cache(count, k, v); });
             }, py::arg("n") = py::none(),
             "(keys, values) of the first n positions (default all) as fp16 bits [n_layer][n_head_kv][n][head_dim].")
        .def("write_cache", [](CudaLlamaModel& m, const b::HalfBits& keys, const b::HalfBits& values) {
                 b::cache_from_arrays(m.config(), keys, values,
                                      [&](int64_t n, const uint16_t* k, const uint16_t* v) { m.write_cache(n, k, v); });
             }, py::arg("keys"), py::arg("values"))
        .def("shift", &CudaLlamaModel::shift, py::arg("n_keep"), py::arg("n_discard"),
             py::call_guard<py::gil_scoped_release>())
        .def_property_readonly("n_past", &CudaLlamaModel::n_past)
        .def_property_readonly("n_ctx", &CudaLlamaModel::n_ctx)
        .def_property_readonly("n_threads", &CudaLlamaModel::n_threads)
        .def_property_readonly("weight_bytes", &CudaLlamaModel::weight_bytes)
        .def_property_readonly("device_name", &CudaLlamaModel::device_name)
        .def_property_readonly(
            "activations",
            [](const CudaLlamaModel& m) { return std::string(edgellama::act_precision_name(m.options().activations)); },
            "How matmuls with quantized weights round their input: \"int8\" or \"precise\" (constructor argument).")
        .def_property("cuda_graphs", &CudaLlamaModel::cuda_graphs, &CudaLlamaModel::set_cuda_graphs,
                      "Decode steps as one captured CUDA graph (True by default).")
        .def_property("tensor_cores", &CudaLlamaModel::tensor_cores, &CudaLlamaModel::set_tensor_cores,
                      "Prefill (16+ tokens) of quantized weights on int8 tensor cores (True by default, sm_80+).")
        .def_property_readonly_static("max_batch", [](py::object) { return CudaLlamaModel::kMaxBatch; });
    for (const b::OptionField& option : b::kOptionFields) {  // each constructor argument, read back
        model.def_property_readonly(
            option.name, [member = option.member](const CudaLlamaModel& m) { return m.options().*member; },
            option.doc);
    }
}
