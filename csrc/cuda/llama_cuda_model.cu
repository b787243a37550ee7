// The llama forward step on the GPU: the same sequence of operations as LlamaModel::forward
// (csrc/model/llama_model.cpp), each one a kernel family from ops.h, on one stream.
#include "csrc/cuda/llama_cuda_model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

#include "csrc/core/thread_pool.h"
#include "csrc/cuda/backend.h"
#include "csrc/cuda/common.cuh"
#include "csrc/cuda/greedy_block.cuh"
#include "csrc/cuda/grouped_rows.h"
#include "csrc/cuda/ops.h"
#include "csrc/model/checked_size.h"
#include "csrc/model/token_batch.h"

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

}  // namespace

struct CudaLlamaModel::Impl {
    LlamaConfig config;
    int64_t n_ctx = 0;
    int n_threads = 1;
    int device = 0;
    int64_t n_past = 0;
    int64_t batch = 0;
    size_t weight_bytes = 0;
    std::unique_ptr<Backend> backend;  // the GPU, or the host for tests (backend.h)

    std::vector<DeviceBuffer> owned;  // every uploaded weight and norm
    std::unique_ptr<ThreadPool> upload_threads;  // n_threads threads regrouping rows, during upload()
    DeviceMatrix token_embd, output;
    const float* output_norm = nullptr;
    std::vector<DeviceLayer> layers;

    DeviceBuffer inv_freq;          // [rope_dim/2] double
    std::vector<double> inv_freq_host;  // its host copy (context shift)
    DeviceBuffer k_cache, v_cache;  // [n_layer][n_ctx][kv_width] fp16
    DeviceBuffer step;                  // first position (int64) and token ids (int32) of a step
    std::vector<uint8_t> step_host;     // its host copy
    bool use_graphs = true;
    bool use_mma = true;  // prefill on int8 tensor cores where it applies (gemm_mma.cu)
    CudaOptions options;
    DeviceBuffer x, x_norm, q, k_new, v_new, attn_out, gate, up, partials, logits;
    DeviceBuffer choice;         // the greedy choice of a forward_greedy step (a GreedyChoice)
    DeviceBuffer act32, act256;  // the current matmul input as int8 blocks (ops.h, MatmulInput)
    DeviceBuffer split_counts;   // fused attention's finished splits per (token, head), kept at zero
    DeviceBuffer ffn_act;        // fused_swiglu_quant: ffn_down's int8 input (never the SwiGLU's own input)
    DeviceBuffer ffn_counts;     // fused_swiglu_quant: finished rows per chunk of them, kept at zero
    DeviceBuffer head_counts;    // fused_rope: finished Q/K/V rows per head, kept at zero
    static constexpr int64_t kLogitRows = 16;  // logits computed and downloaded this many rows at a time

    void allocate(DeviceBuffer& buffer, size_t bytes, const std::string& what) { backend->allocate(buffer, bytes, what); }

    int64_t q_width() const { return config.n_head * config.head_dim; }
    // Int8 activation rows a token (ops.h MatmulInput::parts): 2 with precise activations.
    int act_parts() const { return options.activations == ActPrecision::kPrecise ? 2 : 1; }
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
        owned.emplace_back();
        allocate(owned.back(), bytes, "weight '" + name + "'");
        const int32_t device_type = options.grouped_rows ? grouped_type(w.type, w.cols) : w.type;
        if (device_type == w.type) {
            backend->to_device(owned.back().get(), w.data, bytes, ("upload of " + name).c_str());
        } else {
            upload_grouped(w, owned.back().as<uint8_t>(), name, *upload_threads);
        }
        weight_bytes += bytes;
        DeviceMatrix d;
        d.data = owned.back().as<uint8_t>();
        d.type = device_type;
        d.rows = w.rows;
        d.cols = w.cols;
        d.row_bytes = w.row_bytes;
        return d;
    }

    // The rows of w regrouped (grouped_rows.h) into dst, some MiB of rows at a time through a
    // host buffer, each chunk's rows split over the upload threads (the copy of pageable memory is
    // staged before to_device returns, so the buffer is free again after it).
    void upload_grouped(const WeightMatrix& w, uint8_t* dst, const std::string& name, ThreadPool& pool) {
        constexpr size_t kChunkBytes = size_t(32) << 20;
        const int64_t chunk_rows = std::max<int64_t>(1, static_cast<int64_t>(kChunkBytes / w.row_bytes));
        std::vector<uint8_t> staging(static_cast<size_t>(std::min(chunk_rows, w.rows)) * w.row_bytes);
        for (int64_t r = 0; r < w.rows; r += chunk_rows) {
            const int64_t n = std::min(chunk_rows, w.rows - r);
            const size_t offset = static_cast<size_t>(r) * w.row_bytes;
            pool.run([&](int thread, int n_threads) {
                int64_t begin, end;
                split_range(n, thread, n_threads, begin, end);
                group_rows(w.type, w.cols, w.data + offset + begin * w.row_bytes, staging.data() + begin * w.row_bytes,
                           end - begin, w.row_bytes);
            });
            backend->to_device(dst + offset, staging.data(), static_cast<size_t>(n) * w.row_bytes,
                               ("upload of " + name).c_str());
        }
        backend->synchronize();  // before `staging` goes (the host backend copies at once; this is cheap)
    }

    const float* upload_vector(const float* v, int64_t n, const std::string& name) {
        owned.emplace_back();
        allocate(owned.back(), static_cast<size_t>(n) * sizeof(float), "weight '" + name + "'");
        backend->to_device(owned.back().get(), v, n * sizeof(float), ("upload of " + name).c_str());
        weight_bytes += static_cast<size_t>(n) * sizeof(float);
        return owned.back().as<float>();
    }

    // The shared checks (validate_llama_shapes), then what only the GPU kernels need.
    void validate(const LlamaWeights& w) const {
        validate_llama_shapes(config, w);
        if (config.head_dim > kMaxHeadDim || config.head_dim % 2 != 0) {
            throw std::invalid_argument("the CUDA backend needs an even head_dim of at most " +
                                        std::to_string(kMaxHeadDim) + ", got " + std::to_string(config.head_dim));
        }
    }

    void upload(const LlamaWeights& w) {
        const LlamaConfig& c = config;
        if (options.grouped_rows) upload_threads = std::make_unique<ThreadPool>(std::max(1, n_threads));
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
        inv_freq_host = freq;
        allocate(inv_freq, n_pairs * sizeof(double), "RoPE frequencies");
        backend->to_device(inv_freq.get(), freq.data(), n_pairs * sizeof(double), "upload of RoPE frequencies");
        backend->synchronize();  // the host copies (weights are read in place, freq is local) must be done
        upload_threads.reset();
    }

    void allocate_state() {
        const LlamaConfig& c = config;
        // Checked: n_ctx comes from the caller, and a wrapped-around size would be a too-small buffer.
        const size_t cache_bytes = checked_bytes("KV cache (n_ctx=" + std::to_string(n_ctx) + ")", sizeof(__half),
                                                 {c.n_layer, n_ctx, kv_width()});
        allocate(k_cache, cache_bytes, "KV cache keys (n_ctx=" + std::to_string(n_ctx) + ")");
        allocate(v_cache, cache_bytes, "KV cache values (n_ctx=" + std::to_string(n_ctx) + ")");
        batch = std::min(kMaxBatch, n_ctx);
        const auto f = [&](DeviceBuffer& b, int64_t n, const char* what) {
            allocate(b, static_cast<size_t>(n) * sizeof(float), std::string("scratch ") + what);
        };
        step_host.resize(sizeof(int64_t) + static_cast<size_t>(batch) * sizeof(int32_t));
        allocate(step, step_host.size(), "scratch token ids");
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
        if (options.fused_attention) allocate_zeros(split_counts, batch * c.n_head, "attention split counts");
        if (options.fused_swiglu_quant) {
            allocate_zeros(ffn_counts, c.n_ff / act_block_size(ActFormat::Q8_32), "SwiGLU chunk counts");
            allocate(ffn_act, batch * act_parts() * act_row_bytes(ActFormat::Q8_32, c.n_ff),
                     "scratch int8 ffn_down input");
        }
        if (options.fused_rope) allocate_zeros(head_counts, c.n_head + c.n_head_kv, "Q/K/V head counts");
        f(logits, kLogitRows * c.n_vocab, "logits");
        allocate(choice, sizeof(GreedyChoice), "scratch greedy choice");
        // Int8 activation blocks for the widest matmul input, in the formats the weights use.
        const int64_t widest = std::max({c.n_embd, q_width(), c.n_ff});
        ActNeeds needs;
        for_each_matmul_weight([&](const DeviceMatrix& w) { needs.add(w); });
        const int64_t act_rows = batch * act_parts();  // precise activations: two rows a token
        const char* what = "scratch int8 activations";
        if (needs.q8_32) allocate(act32, act_rows * act_row_bytes(ActFormat::Q8_32, widest), what);
        if (needs.q8_256) allocate(act256, act_rows * act_row_bytes(ActFormat::Q8_256, widest), what);
    }

    // `n` unsigned zeros.
    void allocate_zeros(DeviceBuffer& buffer, int64_t n, const std::string& what) {
        const std::vector<unsigned> zeros(static_cast<size_t>(n), 0u);
        allocate(buffer, zeros.size() * sizeof(unsigned), what);
        backend->to_device(buffer.get(), zeros.data(), zeros.size() * sizeof(unsigned), ("zeroing " + what).c_str());
        backend->synchronize();  // before `zeros` goes
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
        void add(const DeviceMatrix& w) {
            const ActFormat format = type_traits(gguf_type_of(w.type)).act_format;
            q8_32 |= format == ActFormat::Q8_32;
            q8_256 |= format == ActFormat::Q8_256;
        }
    };
    static ActNeeds act_needs(std::initializer_list<const DeviceMatrix*> users) {
        ActNeeds needs;
        for (const DeviceMatrix* w : users) needs.add(*w);
        return needs;
    }

    MatmulInput input_of(const float* x, int64_t n, int64_t cols, ActNeeds needs) const {
        MatmulInput in;
        in.x = x;
        in.n = n;
        in.cols = cols;
        in.act32 = needs.q8_32 ? act32.as<uint8_t>() : nullptr;
        in.act256 = needs.q8_256 ? act256.as<uint8_t>() : nullptr;
        in.parts = act_parts();
        in.use_mma = use_mma;
        in.prefetch_weights = options.prefetch_weights;
        return in;
    }

    // The n rows of x (cols each) as the input of the matmuls `users`: quantized once into each
    // activation format they read.
    MatmulInput quantized_input(const float* x, int64_t n, int64_t cols, std::initializer_list<const DeviceMatrix*> users) {
        const ActNeeds needs = act_needs(users);
        if (needs.q8_32) backend->quantize_activations(ActFormat::Q8_32, x, n, cols, act32.get(), act_parts());
        if (needs.q8_256) backend->quantize_activations(ActFormat::Q8_256, x, n, cols, act256.get(), act_parts());
        return input_of(x, n, cols, needs);
    }

    // x_norm = RMSNorm of n hidden rows (from x_rows) as the input of `users`, quantized by the
    // same kernel.
    MatmulInput normed_input(const float* x_rows, const float* weight, int64_t n,
                             std::initializer_list<const DeviceMatrix*> users) {
        const ActNeeds needs = act_needs(users);
        backend->rms_norm(x_rows, weight, x_norm.as<float>(), n, config.n_embd, config.rms_eps,
                          needs.q8_32 ? act32.get() : nullptr, needs.q8_256 ? act256.get() : nullptr, act_parts());
        return input_of(x_norm.as<float>(), n, config.n_embd, needs);
    }

    // Where fused attention also quantizes its output as the input of w (attn_output): its int8
    // rows when the attention kernel merges its splits and the heads make whole blocks of w's
    // activation format; none otherwise (quantized by its own kernel, or not at all).
    ActRowsOut attention_act_out(const DeviceMatrix& w) const {
        const int block = act_block_of(w);
        const AttentionDims dims{config.n_head, config.n_head_kv, config.head_dim};
        if (split_counts.get() == nullptr || block == 0 || !attention_can_quantize(dims, block)) return ActRowsOut{};
        return act_rows_out(block == act_block_size(ActFormat::Q8_32) ? act32.as<uint8_t>() : act256.as<uint8_t>(),
                            block, q_width(), act_parts());
    }

    // Where the SwiGLU GEMV also quantizes its output as the input of w (ffn_down): ffn_act, in w's
    // activation format, with fused_swiglu_quant (matmul_swiglu checks the rest); none otherwise.
    ActRowsOut swiglu_act_out(const DeviceMatrix& w) const {
        const int block = act_block_of(w);
        if (ffn_act.get() == nullptr || block == 0) return ActRowsOut{};
        return act_rows_out(ffn_act.as<uint8_t>(), block, w.cols, act_parts());
    }

    // The elements of an int8 activation block of w's format; 0 for float weights (they read floats).
    static int act_block_of(const DeviceMatrix& w) {
        const ActFormat format = type_traits(gguf_type_of(w.type)).act_format;
        return format == ActFormat::F32 ? 0 : static_cast<int>(act_block_size(format));
    }

    // The n float rows x (cols each) whose int8 rows an operation already wrote into `act`.
    MatmulInput input_quantized_in(const float* x, int64_t n, int64_t cols, const ActRowsOut& act) const {
        MatmulInput in = input_of(x, n, cols, ActNeeds{});
        (act.block == act_block_size(ActFormat::Q8_32) ? in.act32 : in.act256) = act.rows;
        return in;
    }

    // The step's first position and token ids, in one upload: kernels read positions on the device
    // so that the captured decode step replays at any position.
    void upload_step(const int32_t* tokens, int64_t n) {
        std::memcpy(step_host.data(), &n_past, sizeof(int64_t));
        std::memcpy(step_host.data() + sizeof(int64_t), tokens, static_cast<size_t>(n) * sizeof(int32_t));
        backend->to_device(step.get(), step_host.data(), sizeof(int64_t) + n * sizeof(int32_t), "upload of token ids");
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
        backend->dequantize_rows(token_embd, step_ids(), n, x.as<float>());
        for (int64_t li = 0; li < c.n_layer; ++li) {
            const DeviceLayer& l = layers[li];
            __half* kc = k_cache.as<__half>() + li * layer_cache;
            __half* vc = v_cache.as<__half>() + li * layer_cache;
            const MatmulInput attn_in = normed_input(x.as<float>(), l.attn_norm, n, {&l.wq, &l.wk, &l.wv});
            const MatmulTarget qkv[3] = {{&l.wq, q.as<float>()}, {&l.wk, k_new.as<float>()}, {&l.wv, v_new.as<float>()}};
            const RopeStore rope{q.as<float>(), k_new.as<float>(), v_new.as<float>(), c.n_head, c.n_head_kv,
                                 c.head_dim, n_pairs, inv_freq.as<double>(), first_pos, kc, vc, c.rope_magnitude};
            if (!backend->matmul_qkv_rope(qkv, attn_in, rope, head_counts.as<unsigned>())) {
                backend->matmul_group(qkv, 3, attn_in, false);
                backend->rope_store(rope, n);
            }
            const ActRowsOut quantized_out = attention_act_out(l.wo);
            backend->attention(dims, q.as<float>(), n, first_pos, n_split, kc, vc, partials.as<float>(),
                               attn_out.as<float>(), split_counts.as<unsigned>(), quantized_out);
            const MatmulInput wo_in = quantized_out.rows != nullptr
                                          ? input_quantized_in(attn_out.as<float>(), n, q_width(), quantized_out)
                                          : quantized_input(attn_out.as<float>(), n, q_width(), {&l.wo});
            matmul(l.wo, wo_in, x.as<float>(), true);  // residual add fused
            const MatmulInput ffn_in = normed_input(x.as<float>(), l.ffn_norm, n, {&l.w_gate, &l.w_up});
            const ActRowsOut down_act = swiglu_act_out(l.w_down);
            const bool down_quantized = backend->matmul_swiglu(l.w_gate, l.w_up, ffn_in, gate.as<float>(),
                                                               up.as<float>(), down_act, ffn_counts.as<unsigned>());
            const MatmulInput down_in = down_quantized ? input_quantized_in(gate.as<float>(), n, c.n_ff, down_act)
                                                       : quantized_input(gate.as<float>(), n, c.n_ff, {&l.w_down});
            matmul(l.w_down, down_in, x.as<float>(), true);
        }
    }

    // logits (device) = output head of the hidden rows [row, row + rows), rows <= kLogitRows.
    void enqueue_logits(int64_t row, int64_t rows) {
        matmul(output, normed_input(x.as<float>() + row * config.n_embd, output_norm, rows, {&output}),
               logits.as<float>(), false);
    }

    void download_logits(float* host, int64_t rows) {
        backend->to_host(host, logits.get(), rows * config.n_vocab * sizeof(float), "download of logits");
    }

    // The greedy choice over the first row of `logits` (device), into `choice`.
    void enqueue_greedy_choice() { backend->greedy_choice(logits.as<float>(), config.n_vocab, choice.get()); }

    void download_choice(GreedyChoice* host) {
        backend->to_host(host, choice.get(), sizeof(GreedyChoice), "download of the greedy choice");
    }

    // out (+)= W in, output rows w.rows wide.
    void matmul(const DeviceMatrix& w, const MatmulInput& in, float* out, bool accumulate) {
        const MatmulTarget target{&w, out};
        backend->matmul_group(&target, 1, in, accumulate);
    }

    // A decode step (one token, its logits into `logits`) with graphs: the backend captures it
    // once per attention split count and replays it (backend.h). Everything it reads is at fixed
    // addresses and the position comes from the uploaded step; the split count is that of the
    // position rounded up to a power of two (decode_graph_splits), whose extra splits are empty
    // and merge as zero weight, so the logits equal kernel-by-kernel launches bit for bit.
    // With `greedy`, the step ends with the greedy choice (its own graphs).
    void decode_step_as_graph(bool greedy) {
        const int64_t n_split = decode_graph_splits(n_past + 1);
        backend->decode_step(2 * n_split + (greedy ? 1 : 0), [&] {
            enqueue_layers(1, n_split);
            enqueue_logits(0, 1);
            if (greedy) enqueue_greedy_choice();
        });
    }

    // The n tokens through every layer; then the logits into host_logits (the last row's, or with
    // all_logits every row's), or the last row's greedy choice into host_choice, or nothing.
    void forward_batch(const int32_t* tokens, int64_t n, float* host_logits, bool all_logits,
                       GreedyChoice* host_choice) {
        upload_step(tokens, n);
        if (n == 1 && (host_logits != nullptr || host_choice != nullptr) && use_graphs) {
            decode_step_as_graph(host_choice != nullptr);
            if (host_choice != nullptr) {
                download_choice(host_choice);
            } else {
                download_logits(host_logits, 1);
            }
        } else {
            enqueue_layers(n, attention_splits(n_past + n, n));
            if (host_choice != nullptr) {
                enqueue_logits(n - 1, 1);
                enqueue_greedy_choice();
                download_choice(host_choice);
            } else if (host_logits != nullptr) {
                const int64_t first_row = all_logits ? 0 : n - 1;
                const int64_t n_rows = all_logits ? n : 1;
                for (int64_t r = 0; r < n_rows; r += kLogitRows) {
                    const int64_t rows = std::min(kLogitRows, n_rows - r);
                    enqueue_logits(first_row + r, rows);
                    download_logits(host_logits + r * config.n_vocab, rows);
                }
            }
        }
        backend->synchronize();
        n_past += n;  // only once every kernel of the batch has finished
    }

    // forward and forward_greedy: the checks, then the tokens in batches of at most `batch`; the
    // last batch gives the logits (host_logits) or the greedy choice (host_choice).
    void forward(const int32_t* tokens, int64_t n_tokens, float* host_logits, bool all_logits,
                 GreedyChoice* host_choice) {
        const LlamaConfig& c = config;
        check_sequence_tokens(tokens, n_tokens, c.n_vocab, n_past, n_ctx);  // the CPU engine's rules (token_batch.h)
        if (device >= 0) check(cudaSetDevice(device), "cudaSetDevice");
        for (int64_t start = 0; start < n_tokens; start += batch) {
            const int64_t n = std::min(batch, n_tokens - start);
            const bool last_chunk = start + n == n_tokens;
            if (all_logits) {
                forward_batch(tokens + start, n, host_logits + start * c.n_vocab, true, nullptr);
            } else {
                forward_batch(tokens + start, n, last_chunk ? host_logits : nullptr, false,
                              last_chunk ? host_choice : nullptr);
            }
        }
    }
};

CudaLlamaModel::CudaLlamaModel(const LlamaConfig& config, const LlamaWeights& host_weights, int64_t n_ctx,
                               int n_threads, int device, const CudaOptions& options)
    : impl_(std::make_unique<Impl>()) {
    if (n_ctx < 1) throw std::invalid_argument("n_ctx must be at least 1");
    Impl& m = *impl_;
    m.config = config;
    m.n_ctx = n_ctx;
    m.n_threads = n_threads;
    m.device = device;
    m.options = options;
    m.validate(host_weights);
    m.backend = device < 0 ? make_host_backend() : make_device_backend(device);
    m.upload(host_weights);
    m.allocate_state();
}

CudaLlamaModel::~CudaLlamaModel() {
    if (impl_ && impl_->device >= 0) cudaSetDevice(impl_->device);  // the buffers are freed on their device
}

void CudaLlamaModel::forward(const int32_t* tokens, int64_t n_tokens, float* logits, bool all_logits) {
    impl_->forward(tokens, n_tokens, logits, all_logits, nullptr);
}

void CudaLlamaModel::forward_greedy(const int32_t* tokens, int64_t n_tokens, int32_t* token, double* logprob) {
    GreedyChoice choice;
    impl_->forward(tokens, n_tokens, nullptr, false, &choice);
    *token = choice.token;
    *logprob = choice.logprob;
}

int64_t CudaLlamaModel::n_past() const { return impl_->n_past; }
int64_t CudaLlamaModel::n_ctx() const { return impl_->n_ctx; }
int CudaLlamaModel::n_threads() const { return impl_->n_threads; }
const LlamaConfig& CudaLlamaModel::config() const { return impl_->config; }
size_t CudaLlamaModel::weight_bytes() const { return impl_->weight_bytes; }
std::string CudaLlamaModel::device_name() const {
    return impl_->device < 0 ? "host execution of the GPU code (tests)" : device_description(impl_->device);
}
bool CudaLlamaModel::cuda_graphs() const { return impl_->use_graphs; }
void CudaLlamaModel::set_cuda_graphs(bool enabled) { impl_->use_graphs = enabled; }
const CudaOptions& CudaLlamaModel::options() const { return impl_->options; }
bool CudaLlamaModel::tensor_cores() const { return impl_->use_mma; }
void CudaLlamaModel::set_tensor_cores(bool enabled) { impl_->use_mma = enabled; }

void CudaLlamaModel::truncate(int64_t n) {
    if (n < 0 || n > impl_->n_past) {
        throw std::out_of_range("truncate(" + std::to_string(n) + ") outside [0, " + std::to_string(impl_->n_past) + "]");
    }
    impl_->n_past = n;  // rows past n are simply overwritten later
}

void CudaLlamaModel::reset() { impl_->n_past = 0; }

namespace {

// Rows [first, first + n) of one layer's cache ([n_ctx][width] halves) to or from the host.
void cache_rows_to_host(Backend& b, __half* host, const __half* layer, int64_t first, int64_t n, int64_t width) {
    b.to_host(host, layer + first * width, static_cast<size_t>(n * width) * sizeof(__half), "download of the KV cache");
    b.synchronize();
}

void cache_rows_to_device(Backend& b, __half* layer, const __half* host, int64_t first, int64_t n, int64_t width) {
    b.to_device(layer + first * width, host, static_cast<size_t>(n * width) * sizeof(__half), "upload of the KV cache");
    b.synchronize();
}

}  // namespace

void CudaLlamaModel::read_cache(int64_t n, uint16_t* keys, uint16_t* values) {
    Impl& m = *impl_;
    const LlamaConfig& c = m.config;
    if (n < 0 || n > m.n_past) {
        throw std::out_of_range("read of " + std::to_string(n) + " positions from a cache of " + std::to_string(m.n_past));
    }
    const int64_t width = m.kv_width();
    std::vector<__half> rows(static_cast<size_t>(std::max<int64_t>(1, n * width)));
    for (int which = 0; which < 2; ++which) {
        const __half* cache = (which == 0 ? m.k_cache : m.v_cache).as<__half>();
        uint16_t* out = which == 0 ? keys : values;
        for (int64_t l = 0; l < c.n_layer; ++l) {
            cache_rows_to_host(*m.backend, rows.data(), cache + l * m.n_ctx * width, 0, n, width);
            for (int64_t h = 0; h < c.n_head_kv; ++h) {
                for (int64_t p = 0; p < n; ++p) {
                    std::memcpy(out + ((l * c.n_head_kv + h) * n + p) * c.head_dim, &rows[p * width + h * c.head_dim],
                                sizeof(uint16_t) * c.head_dim);
                }
            }
        }
    }
}

void CudaLlamaModel::write_cache(int64_t n, const uint16_t* keys, const uint16_t* values) {
    Impl& m = *impl_;
    const LlamaConfig& c = m.config;
    if (n < 0 || n > m.n_ctx) {
        throw std::out_of_range("a state of " + std::to_string(n) + " positions does not fit a window of " +
                                std::to_string(m.n_ctx));
    }
    const int64_t width = m.kv_width();
    std::vector<__half> rows(static_cast<size_t>(std::max<int64_t>(1, n * width)));
    for (int which = 0; which < 2; ++which) {
        __half* cache = (which == 0 ? m.k_cache : m.v_cache).as<__half>();
        const uint16_t* in = which == 0 ? keys : values;
        for (int64_t l = 0; l < c.n_layer; ++l) {
            for (int64_t h = 0; h < c.n_head_kv; ++h) {
                for (int64_t p = 0; p < n; ++p) {
                    std::memcpy(&rows[p * width + h * c.head_dim], in + ((l * c.n_head_kv + h) * n + p) * c.head_dim,
                                sizeof(uint16_t) * c.head_dim);
                }
            }
            cache_rows_to_device(*m.backend, cache + l * m.n_ctx * width, rows.data(), 0, n, width);
        }
    }
    m.n_past = n;
}

void CudaLlamaModel::shift(int64_t n_keep, int64_t n_discard) {
    Impl& m = *impl_;
    const LlamaConfig& c = m.config;
    const int64_t held = m.n_past;
    if (n_keep < 0 || n_discard < 1 || n_keep > held - n_discard) {
        throw std::out_of_range("shift of " + std::to_string(n_discard) + " positions after " + std::to_string(n_keep) +
                                " in a sequence of " + std::to_string(held));
    }
    const int64_t width = m.kv_width(), n_move = held - n_keep - n_discard, n_pairs = c.rope_dim / 2;
    std::vector<float> cos_v(n_pairs), sin_v(n_pairs);  // RoPE of position -n_discard, as the CPU's rope_angles
    for (int64_t i = 0; i < n_pairs; ++i) {
        const double angle = -static_cast<double>(n_discard) * m.inv_freq_host[i];
        cos_v[i] = static_cast<float>(std::cos(angle));
        sin_v[i] = static_cast<float>(std::sin(angle));
    }
    std::vector<__half> rows(static_cast<size_t>(std::max<int64_t>(1, n_move * width)));
    for (int64_t l = 0; l < c.n_layer; ++l) {
        __half* keys = m.k_cache.as<__half>() + l * m.n_ctx * width;
        __half* values = m.v_cache.as<__half>() + l * m.n_ctx * width;
        cache_rows_to_host(*m.backend, rows.data(), values, n_keep + n_discard, n_move, width);
        cache_rows_to_device(*m.backend, values, rows.data(), n_keep, n_move, width);
        cache_rows_to_host(*m.backend, rows.data(), keys, n_keep + n_discard, n_move, width);
        for (int64_t r = 0; r < n_move * c.n_head_kv; ++r) {  // one key of one head
            __half* key = &rows[r * c.head_dim];
            for (int64_t i = 0; i < n_pairs; ++i) {
                const float a = __half2float(key[2 * i]), b = __half2float(key[2 * i + 1]);
                key[2 * i] = __float2half_rn(a * cos_v[i] - b * sin_v[i]);
                key[2 * i + 1] = __float2half_rn(a * sin_v[i] + b * cos_v[i]);
            }
        }
        cache_rows_to_device(*m.backend, keys, rows.data(), n_keep, n_move, width);
    }
    m.n_past = held - n_discard;
}

}  // namespace edgellama::cuda
