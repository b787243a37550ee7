// The llama forward step on the GPU: the same sequence of operations as LlamaModel::forward
// (csrc/model/llama_model.cpp), each one a kernel family from ops.h, on one stream.
#include "csrc/cuda/llama_cuda_model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "csrc/cuda/common.cuh"
#include "csrc/cuda/ops.h"

namespace edgellama::cuda {

int device_count(std::string* why) {
    int n = 0;
    const cudaError_t status = cudaGetDeviceCount(&n);
    if (status != cudaSuccess) {
        if (why) *why = std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status);
        cudaGetLastError();
        return 0;
    }
    if (n == 0 && why) *why = "the CUDA driver reports no devices";
    return n;
}

std::string device_description(int device) {
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    char buf[320];
    std::snprintf(buf, sizeof buf, "%s (sm_%d%d, %.1f GiB)", prop.name, prop.major, prop.minor,
                  static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0));
    return buf;
}

namespace {

struct DeviceLayer {
    const float* attn_norm = nullptr;
    const float* ffn_norm = nullptr;
    DeviceMatrix wq, wk, wv, wo, w_gate, w_up, w_down;
};

void check_matrix(const WeightMatrix& w, int64_t rows, int64_t cols, const std::string& what) {
    if (w.data == nullptr || w.rows != rows || w.cols != cols) {
        throw std::invalid_argument(what + ": expected " + std::to_string(rows) + " rows of " + std::to_string(cols) +
                                    ", got " + std::to_string(w.rows) + " of " + std::to_string(w.cols));
    }
}

}  // namespace

struct CudaLlamaModel::Impl {
    LlamaConfig config;
    int64_t n_ctx = 0;
    int n_threads = 1;
    int device = 0;
    int64_t n_past = 0;
    int64_t batch = 0;
    size_t weight_bytes = 0;
    cudaStream_t stream = nullptr;

    std::vector<DeviceBuffer> owned;  // every uploaded weight and norm
    DeviceMatrix token_embd, output;
    const float* output_norm = nullptr;
    std::vector<DeviceLayer> layers;

    DeviceBuffer inv_freq;          // [rope_dim/2] double
    DeviceBuffer k_cache, v_cache;  // [n_layer][n_ctx][kv_width] fp16
    DeviceBuffer step;                  // first position (int64) and token ids (int32) of a step
    std::vector<uint8_t> step_host;     // its host copy
    bool use_graphs = true;
    bool use_mma = true;  // prefill on int8 tensor cores where it applies (gemm_mma.cu)
    std::map<int64_t, cudaGraphExec_t> decode_graphs;  // by attention split count
    DeviceBuffer x, x_norm, q, k_new, v_new, attn_out, gate, up, partials, logits;
    DeviceBuffer act32, act256;  // the current matmul input as int8 blocks (ops.h, MatmulInput)
    static constexpr int64_t kLogitRows = 16;  // logits computed and downloaded this many rows at a time

    ~Impl() {
        for (const auto& entry : decode_graphs) cudaGraphExecDestroy(entry.second);
        if (stream) cudaStreamDestroy(stream);
    }

    int64_t q_width() const { return config.n_head * config.head_dim; }
    int64_t kv_width() const { return config.n_head_kv * config.head_dim; }

    DeviceMatrix upload_matrix(const WeightMatrix& w, const std::string& name) {
        const int piece = piece_elements(w.type);
        if (piece == 0) {
            throw std::invalid_argument("tensor '" + name + "': type " + std::to_string(w.type) +
                                        " is not supported by the CUDA backend");
        }
        if (w.cols % piece != 0) {
            throw std::invalid_argument("tensor '" + name + "': rows of " + std::to_string(w.cols) +
                                        " elements; the CUDA backend needs a multiple of " + std::to_string(piece));
        }
        const size_t bytes = static_cast<size_t>(w.rows) * w.row_bytes;
        owned.emplace_back(bytes, "weight '" + name + "'");
        check(cudaMemcpy(owned.back().get(), w.data, bytes, cudaMemcpyHostToDevice), ("upload of " + name).c_str());
        weight_bytes += bytes;
        DeviceMatrix d;
        d.data = owned.back().as<uint8_t>();
        d.type = w.type;
        d.rows = w.rows;
        d.cols = w.cols;
        d.row_bytes = w.row_bytes;
        return d;
    }

    const float* upload_vector(const float* v, int64_t n, const std::string& name) {
        owned.emplace_back(static_cast<size_t>(n) * sizeof(float), "weight '" + name + "'");
        check(cudaMemcpy(owned.back().get(), v, n * sizeof(float), cudaMemcpyHostToDevice), ("upload of " + name).c_str());
        weight_bytes += static_cast<size_t>(n) * sizeof(float);
        return owned.back().as<float>();
    }

    void validate(const LlamaWeights& w) const {
        const LlamaConfig& c = config;
        if (c.n_vocab <= 0 || c.n_embd <= 0 || c.n_layer <= 0 || c.n_head <= 0 || c.n_head_kv <= 0 ||
            c.head_dim <= 0 || c.n_ff <= 0) {
            throw std::invalid_argument("model hyper-parameters must be positive");
        }
        if (c.n_head % c.n_head_kv != 0) throw std::invalid_argument("n_head must be a multiple of n_head_kv");
        if (c.rope_dim <= 0 || c.rope_dim > c.head_dim || c.rope_dim % 2 != 0) {
            throw std::invalid_argument("rope dimension must be even and at most head_dim");
        }
        if (c.head_dim > kMaxHeadDim || c.head_dim % 2 != 0) {
            throw std::invalid_argument("the CUDA backend needs an even head_dim of at most " +
                                        std::to_string(kMaxHeadDim) + ", got " + std::to_string(c.head_dim));
        }
        if (static_cast<int64_t>(w.layers.size()) != c.n_layer) {
            throw std::invalid_argument("layer count does not match n_layer");
        }
        if (!w.output_norm) throw std::invalid_argument("output_norm missing");
        check_matrix(w.token_embd, c.n_vocab, c.n_embd, "token_embd");
        check_matrix(w.output, c.n_vocab, c.n_embd, "output");
        for (size_t i = 0; i < w.layers.size(); ++i) {
            const LayerWeights& l = w.layers[i];
            const std::string p = "layer " + std::to_string(i) + " ";
            if (!l.attn_norm || !l.ffn_norm) throw std::invalid_argument(p + "norm weights missing");
            check_matrix(l.wq, q_width(), c.n_embd, p + "attn_q");
            check_matrix(l.wk, kv_width(), c.n_embd, p + "attn_k");
            check_matrix(l.wv, kv_width(), c.n_embd, p + "attn_v");
            check_matrix(l.wo, c.n_embd, q_width(), p + "attn_output");
            check_matrix(l.w_gate, c.n_ff, c.n_embd, p + "ffn_gate");
            check_matrix(l.w_up, c.n_ff, c.n_embd, p + "ffn_up");
            check_matrix(l.w_down, c.n_embd, c.n_ff, p + "ffn_down");
        }
    }

    void upload(const LlamaWeights& w) {
        const LlamaConfig& c = config;
        token_embd = upload_matrix(w.token_embd, "token_embd.weight");
        output = w.output.data == w.token_embd.data ? token_embd : upload_matrix(w.output, "output.weight");
        output_norm = upload_vector(w.output_norm, c.n_embd, "output_norm.weight");
        for (int64_t i = 0; i < c.n_layer; ++i) {
            const LayerWeights& hl = w.layers[i];
            const std::string p = "blk." + std::to_string(i) + ".";
            DeviceLayer l;
            l.attn_norm = upload_vector(hl.attn_norm, c.n_embd, p + "attn_norm.weight");
            l.ffn_norm = upload_vector(hl.ffn_norm, c.n_embd, p + "ffn_norm.weight");
            l.wq = upload_matrix(hl.wq, p + "attn_q.weight");
            l.wk = upload_matrix(hl.wk, p + "attn_k.weight");
            l.wv = upload_matrix(hl.wv, p + "attn_v.weight");
            l.wo = upload_matrix(hl.wo, p + "attn_output.weight");
            l.w_gate = upload_matrix(hl.w_gate, p + "ffn_gate.weight");
            l.w_up = upload_matrix(hl.w_up, p + "ffn_up.weight");
            l.w_down = upload_matrix(hl.w_down, p + "ffn_down.weight");
            layers.push_back(l);
        }
        // RoPE frequencies exactly as the CPU engine computes them, in double.
        const int64_t n_pairs = c.rope_dim / 2;
        std::vector<double> freq(n_pairs);
        for (int64_t i = 0; i < n_pairs; ++i) {
            freq[i] = std::pow(static_cast<double>(c.rope_base),
                               -2.0 * static_cast<double>(i) / static_cast<double>(c.rope_dim));
            if (w.rope_freqs) freq[i] /= w.rope_freqs[i];
        }
        inv_freq.allocate(n_pairs * sizeof(double), "RoPE frequencies");
        check(cudaMemcpy(inv_freq.get(), freq.data(), n_pairs * sizeof(double), cudaMemcpyHostToDevice),
              "upload of RoPE frequencies");
    }

    void allocate_state() {
        const LlamaConfig& c = config;
        const size_t cache_elems = static_cast<size_t>(c.n_layer) * n_ctx * kv_width();
        k_cache.allocate(cache_elems * sizeof(__half), "KV cache keys (n_ctx=" + std::to_string(n_ctx) + ")");
        v_cache.allocate(cache_elems * sizeof(__half), "KV cache values (n_ctx=" + std::to_string(n_ctx) + ")");
        batch = std::min(kMaxBatch, n_ctx);
        const auto f = [&](DeviceBuffer& b, int64_t n, const char* what) {
            b.allocate(static_cast<size_t>(n) * sizeof(float), std::string("scratch ") + what);
        };
        step_host.resize(sizeof(int64_t) + static_cast<size_t>(batch) * sizeof(int32_t));
        step.allocate(step_host.size(), "scratch token ids");
        f(x, batch * c.n_embd, "x");
        f(x_norm, batch * c.n_embd, "x_norm");
        f(q, batch * q_width(), "q");
        f(k_new, batch * kv_width(), "k");
        f(v_new, batch * kv_width(), "v");
        f(attn_out, batch * q_width(), "attn_out");
        f(gate, batch * c.n_ff, "ffn_gate");
        f(up, batch * c.n_ff, "ffn_up");
        const AttentionDims dims{c.n_head, c.n_head_kv, c.head_dim};
        f(partials, static_cast<int64_t>(attention_scratch_floats(dims, batch)), "attention partials");
        f(logits, kLogitRows * c.n_vocab, "logits");
        // Int8 activation blocks for the widest matmul input, in the formats the weights use.
        const int64_t widest = std::max({c.n_embd, q_width(), c.n_ff});
        bool need32 = false, need256 = false;
        for_each_matmul_weight([&](const DeviceMatrix& w) {
            const ActFormat format = type_traits(w.type).act_format;
            need32 |= format == ActFormat::Q8_32;
            need256 |= format == ActFormat::Q8_256;
        });
        if (need32) act32.allocate(batch * act_row_bytes(ActFormat::Q8_32, widest), "scratch int8 activations");
        if (need256) act256.allocate(batch * act_row_bytes(ActFormat::Q8_256, widest), "scratch int8 activations");
    }

    // Every matrix a matmul reads (the embedding only when it is also the output).
    template <class Fn>
    void for_each_matmul_weight(Fn&& fn) const {
        fn(output);
        for (const DeviceLayer& l : layers) {
            for (const DeviceMatrix* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) fn(*w);
        }
    }

    // Which int8 block formats the matmuls `users` read.
    struct ActNeeds {
        bool q8_32 = false;
        bool q8_256 = false;
    };
    static ActNeeds act_needs(std::initializer_list<const DeviceMatrix*> users) {
        ActNeeds needs;
        for (const DeviceMatrix* w : users) {
            const ActFormat format = type_traits(w->type).act_format;
            needs.q8_32 |= format == ActFormat::Q8_32;
            needs.q8_256 |= format == ActFormat::Q8_256;
        }
        return needs;
    }

    MatmulInput input_of(const float* x, int64_t n, int64_t cols, ActNeeds needs) const {
        MatmulInput in;
        in.x = x;
        in.n = n;
        in.cols = cols;
        in.act32 = needs.q8_32 ? act32.as<uint8_t>() : nullptr;
        in.act256 = needs.q8_256 ? act256.as<uint8_t>() : nullptr;
        in.use_mma = use_mma;
        return in;
    }

    // The n rows of x (cols each) as the input of the matmuls `users`: quantized once into each
    // activation format they read.
    MatmulInput quantized_input(const float* x, int64_t n, int64_t cols, std::initializer_list<const DeviceMatrix*> users) {
        const ActNeeds needs = act_needs(users);
        if (needs.q8_32) quantize_activations(ActFormat::Q8_32, x, n, cols, act32.get(), stream);
        if (needs.q8_256) quantize_activations(ActFormat::Q8_256, x, n, cols, act256.get(), stream);
        return input_of(x, n, cols, needs);
    }

    // x_norm = RMSNorm of n hidden rows (from x_rows) as the input of `users`, quantized by the
    // same kernel.
    MatmulInput normed_input(const float* x_rows, const float* weight, int64_t n,
                             std::initializer_list<const DeviceMatrix*> users) {
        const ActNeeds needs = act_needs(users);
        rms_norm(x_rows, weight, x_norm.as<float>(), n, config.n_embd, config.rms_eps,
                 needs.q8_32 ? act32.get() : nullptr, needs.q8_256 ? act256.get() : nullptr, stream);
        return input_of(x_norm.as<float>(), n, config.n_embd, needs);
    }

    // The step's first position and token ids, in one upload: kernels read positions on the device
    // so that the captured decode step replays at any position.
    void upload_step(const int32_t* tokens, int64_t n) {
        std::memcpy(step_host.data(), &n_past, sizeof(int64_t));
        std::memcpy(step_host.data() + sizeof(int64_t), tokens, static_cast<size_t>(n) * sizeof(int32_t));
        check(cudaMemcpyAsync(step.get(), step_host.data(), sizeof(int64_t) + n * sizeof(int32_t),
                              cudaMemcpyHostToDevice, stream),
              "upload of token ids");
    }
    const int64_t* step_first_pos() const { return step.as<int64_t>(); }
    const int32_t* step_ids() const { return reinterpret_cast<const int32_t*>(step.as<uint8_t>() + sizeof(int64_t)); }

    // Embedding and every layer for the n uploaded tokens; attention splits the positions n_split ways.
    void enqueue_layers(int64_t n, int64_t n_split) {
        const LlamaConfig& c = config;
        const int64_t n_pairs = c.rope_dim / 2;
        const AttentionDims dims{c.n_head, c.n_head_kv, c.head_dim};
        const size_t layer_cache = static_cast<size_t>(n_ctx) * kv_width();
        const int64_t* first_pos = step_first_pos();
        dequantize_rows(token_embd, step_ids(), n, x.as<float>(), stream);
        for (int64_t li = 0; li < c.n_layer; ++li) {
            const DeviceLayer& l = layers[li];
            __half* kc = k_cache.as<__half>() + li * layer_cache;
            __half* vc = v_cache.as<__half>() + li * layer_cache;
            const MatmulInput attn_in = normed_input(x.as<float>(), l.attn_norm, n, {&l.wq, &l.wk, &l.wv});
            matmul_group({{&l.wq, q.as<float>()}, {&l.wk, k_new.as<float>()}, {&l.wv, v_new.as<float>()}}, attn_in,
                         false, stream);
            rope_store(q.as<float>(), k_new.as<float>(), v_new.as<float>(), n, c.n_head, c.n_head_kv, c.head_dim,
                       n_pairs, inv_freq.as<double>(), first_pos, kc, vc, stream);
            attention(dims, q.as<float>(), n, first_pos, n_split, kc, vc, partials.as<float>(), attn_out.as<float>(),
                      stream);
            matmul(l.wo, quantized_input(attn_out.as<float>(), n, q_width(), {&l.wo}), x.as<float>(), true,
                   stream);  // residual add fused
            const MatmulInput ffn_in = normed_input(x.as<float>(), l.ffn_norm, n, {&l.w_gate, &l.w_up});
            matmul_swiglu(l.w_gate, l.w_up, ffn_in, gate.as<float>(), up.as<float>(), stream);
            matmul(l.w_down, quantized_input(gate.as<float>(), n, c.n_ff, {&l.w_down}), x.as<float>(), true, stream);
        }
    }

    // logits (device) = output head of the hidden rows [row, row + rows), rows <= kLogitRows.
    void enqueue_logits(int64_t row, int64_t rows) {
        matmul(output, normed_input(x.as<float>() + row * config.n_embd, output_norm, rows, {&output}),
               logits.as<float>(), false, stream);
    }

    void download_logits(float* host, int64_t rows) {
        check(cudaMemcpyAsync(host, logits.get(), rows * config.n_vocab * sizeof(float), cudaMemcpyDeviceToHost, stream),
              "download of logits");
    }

    // A decode step (one token, its logits into `logits`) as one CUDA graph: a step is ~11
    // kernels a layer, each too short to hide its launch, so replaying the whole step as one
    // launch removes the host's launch overhead. Everything it reads is at fixed addresses and the
    // position comes from the uploaded step; only attention's split count varies, so there is one
    // graph per count (positions rounded up to a power of two: a handful of graphs), captured on
    // first use. Splits past the positions are empty and merge as zero weight, so the logits equal
    // kernel-by-kernel launches bit for bit.
    void launch_decode_graph() {
        const int64_t n_split = decode_graph_splits(n_past + 1);
        auto found = decode_graphs.find(n_split);
        if (found == decode_graphs.end()) found = decode_graphs.emplace(n_split, capture_decode_graph(n_split)).first;
        check(cudaGraphLaunch(found->second, stream), "cudaGraphLaunch (decode step)");
    }

    cudaGraphExec_t capture_decode_graph(int64_t n_split) {
        check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
        cudaGraph_t graph = nullptr;
        try {
            enqueue_layers(1, n_split);
            enqueue_logits(0, 1);
        } catch (...) {
            cudaStreamEndCapture(stream, &graph);  // leave the stream usable
            if (graph != nullptr) cudaGraphDestroy(graph);
            cudaGetLastError();
            throw;
        }
        check(cudaStreamEndCapture(stream, &graph), "cudaStreamEndCapture");
        cudaGraphExec_t exec = nullptr;
        const cudaError_t status = cudaGraphInstantiateWithFlags(&exec, graph, 0);
        cudaGraphDestroy(graph);
        check(status, "cudaGraphInstantiate (decode step)");
        return exec;
    }

    void forward_batch(const int32_t* tokens, int64_t n, float* host_logits, bool all_logits) {
        upload_step(tokens, n);
        if (n == 1 && host_logits != nullptr && use_graphs) {
            launch_decode_graph();
            download_logits(host_logits, 1);
        } else {
            enqueue_layers(n, attention_splits(n_past + n, n));
            if (host_logits != nullptr) {
                const int64_t first_row = all_logits ? 0 : n - 1;
                const int64_t n_rows = all_logits ? n : 1;
                for (int64_t r = 0; r < n_rows; r += kLogitRows) {
                    const int64_t rows = std::min(kLogitRows, n_rows - r);
                    enqueue_logits(first_row + r, rows);
                    download_logits(host_logits + r * config.n_vocab, rows);
                }
            }
        }
        check(cudaStreamSynchronize(stream), "forward step");
        n_past += n;  // only once every kernel of the batch has finished
    }
};

CudaLlamaModel::CudaLlamaModel(const LlamaConfig& config, const LlamaWeights& host_weights, int64_t n_ctx,
                               int n_threads, int device)
    : impl_(std::make_unique<Impl>()) {
    if (n_ctx < 1) throw std::invalid_argument("n_ctx must be at least 1");
    Impl& m = *impl_;
    m.config = config;
    m.n_ctx = n_ctx;
    m.n_threads = n_threads;
    m.device = device;
    m.validate(host_weights);
    check(cudaSetDevice(device), "cudaSetDevice");
    check(cudaStreamCreateWithFlags(&m.stream, cudaStreamNonBlocking), "cudaStreamCreate");
    m.upload(host_weights);
    m.allocate_state();
}

CudaLlamaModel::~CudaLlamaModel() {
    if (impl_) cudaSetDevice(impl_->device);
}

void CudaLlamaModel::forward(const int32_t* tokens, int64_t n_tokens, float* logits, bool all_logits) {
    Impl& m = *impl_;
    const LlamaConfig& c = m.config;
    if (n_tokens <= 0) throw std::invalid_argument("forward needs at least one token");
    if (m.n_past + n_tokens > m.n_ctx) {
        throw std::length_error("context overflow: " + std::to_string(m.n_past) + " cached + " +
                                std::to_string(n_tokens) + " new tokens exceed n_ctx " + std::to_string(m.n_ctx));
    }
    for (int64_t i = 0; i < n_tokens; ++i) {
        if (tokens[i] < 0 || tokens[i] >= c.n_vocab) {
            throw std::out_of_range("token id " + std::to_string(tokens[i]) + " outside the vocabulary [0, " +
                                    std::to_string(c.n_vocab) + ")");
        }
    }
    check(cudaSetDevice(m.device), "cudaSetDevice");
    for (int64_t start = 0; start < n_tokens; start += m.batch) {
        const int64_t n = std::min(m.batch, n_tokens - start);
        const bool last_chunk = start + n == n_tokens;
        if (all_logits) {
            m.forward_batch(tokens + start, n, logits + start * c.n_vocab, true);
        } else {
            m.forward_batch(tokens + start, n, last_chunk ? logits : nullptr, false);
        }
    }
}

int64_t CudaLlamaModel::n_past() const { return impl_->n_past; }
int64_t CudaLlamaModel::n_ctx() const { return impl_->n_ctx; }
int CudaLlamaModel::n_threads() const { return impl_->n_threads; }
const LlamaConfig& CudaLlamaModel::config() const { return impl_->config; }
size_t CudaLlamaModel::weight_bytes() const { return impl_->weight_bytes; }
std::string CudaLlamaModel::device_name() const { return device_description(impl_->device); }
bool CudaLlamaModel::cuda_graphs() const { return impl_->use_graphs; }
void CudaLlamaModel::set_cuda_graphs(bool enabled) { impl_->use_graphs = enabled; }
bool CudaLlamaModel::tensor_cores() const { return impl_->use_mma; }
void CudaLlamaModel::set_tensor_cores(bool enabled) { impl_->use_mma = enabled; }

void CudaLlamaModel::truncate(int64_t n) {
    if (n < 0 || n > impl_->n_past) {
        throw std::out_of_range("truncate(" + std::to_string(n) + ") outside [0, " + std::to_string(impl_->n_past) + "]");
    }
    impl_->n_past = n;  // rows past n are simply overwritten later
}

void CudaLlamaModel::reset() { impl_->n_past = 0; }

}  // namespace edgellama::cuda
