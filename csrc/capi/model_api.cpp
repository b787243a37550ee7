// The model handle of the C ABI: the validated file (LlamaFile), its tokenizer and the CPU engine
// (LlamaModel), with a mutex that serializes the calls that change the cache.
#include "csrc/capi/model_api.h"

#include <sched.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "csrc/capi/defaults.h"
#include "csrc/capi/level_api.h"
#include "csrc/capi/status.h"
#include "csrc/kernels/kv_blocks.h"
#include "csrc/kernels/matmul.h"
#include "csrc/model/llama_file.h"
#include "csrc/model/llama_loader.h"
#include "csrc/model/llama_model.h"
#include "csrc/model/token_batch.h"
#include "csrc/tokenizer/gguf_tokenizer.h"
#include "csrc/tokenizer/tokenizer_metadata.h"

const edgellama_level_api* edgellama_this_level_api();  // level_module.cpp

struct edgellama_model {
    edgellama_handle_header header;  // first: the front reads it (level_api.h)
    std::unique_ptr<edgellama::LlamaFile> file;
    std::unique_ptr<edgellama::tokenizer::GgufTokenizer> tokenizer;  // null when the file has none
    // Why the file's tokenizer cannot run (another model or pre-tokenizer), or "". Such a file
    // still loads, as in the Python package: it runs from token ids, and tokenizing says why not.
    std::string tokenizer_problem;
    std::unique_ptr<edgellama::LlamaModel> engine;
    std::mutex engine_mutex;  // decode and the KV operations: one at a time
};

namespace edgellama::capi {

namespace {

constexpr int64_t kDefaultMaxContext = 2048;  // as the Python API's default window
constexpr int32_t kMaxSequences = 256;        // as the Python API's n_parallel limit

int32_t cpus_available() {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
    return static_cast<int32_t>(std::max(1u, std::thread::hardware_concurrency()));
}

int32_t cpus_total() { return static_cast<int32_t>(std::max(1u, std::thread::hardware_concurrency())); }

std::string name_or(const char* name, const char* fallback) { return name && *name ? name : fallback; }

// Reads the caller's params: only the fields its struct_size covers (an older, shorter struct keeps
// the defaults for the rest).
edgellama_model_params read_params(const edgellama_model_params* given) {
    edgellama_model_params p;
    default_model_params(&p);
    if (given && !merge_params(given, &p)) {
        throw std::invalid_argument("edgellama_model_params.struct_size is " + std::to_string(given->struct_size) +
                                    "; fill the struct with edgellama_model_default_params()");
    }
    return p;
}

void check_ranges(const edgellama_model_params& p) {
    if (p.n_threads < 0 || p.n_threads > cpus_total()) {
        throw std::invalid_argument("n_threads must be in [0, " + std::to_string(cpus_total()) +
                                    "] (0: every CPU available), got " + std::to_string(p.n_threads));
    }
    if (p.n_ctx < 0 || p.n_ctx > std::numeric_limits<int32_t>::max()) {
        throw std::invalid_argument("n_ctx must be in [0, 2147483647] (0: the model's), got " + std::to_string(p.n_ctx));
    }
    if (p.n_seq < 1 || p.n_seq > kMaxSequences) {
        throw std::invalid_argument("n_seq must be in [1, " + std::to_string(kMaxSequences) + "], got " +
                                    std::to_string(p.n_seq));
    }
}

const tokenizer::GgufTokenizer& tokenizer_of(const edgellama_model* m) {
    if (!m) throw std::invalid_argument("the model is NULL");
    if (!m->tokenizer && !m->tokenizer_problem.empty()) throw tokenizer::UnsupportedTokenizerError(m->tokenizer_problem);
    if (!m->tokenizer) throw std::invalid_argument("the model file has no tokenizer (tokenizer.ggml.model)");
    return *m->tokenizer;
}

LlamaModel& engine_of(edgellama_model* m) {
    if (!m) throw std::invalid_argument("the model is NULL");
    return *m->engine;
}

void load_tokenizer(edgellama_model& m) {
    if (!tokenizer::GgufTokenizer::has_tokenizer(m.file->gguf())) return;
    try {
        m.tokenizer = tokenizer::GgufTokenizer::from_gguf(m.file->gguf());
    } catch (const tokenizer::UnsupportedTokenizerError& e) {
        m.tokenizer_problem = e.what();
    }
}

}  // namespace

// ---- models ----------------------------------------------------------------------------------

edgellama_status model_load(const char* path, const edgellama_model_params* params, edgellama_model** out) {
    if (!out) return fail(EDGELLAMA_ERR_INVALID_ARGUMENT, "the model out-parameter is NULL");
    *out = nullptr;
    if (!path) return fail(EDGELLAMA_ERR_INVALID_ARGUMENT, "the path is NULL");
    return guarded([&] {
        const edgellama_model_params p = read_params(params);
        check_ranges(p);
        auto m = std::make_unique<edgellama_model>();
        m->header.api = edgellama_this_level_api();
        m->file = LlamaFile::open(path);
        load_tokenizer(*m);
        const LlamaFile& f = *m->file;
        const int64_t n_ctx = p.n_ctx ? p.n_ctx : std::min(kDefaultMaxContext, f.context_length());
        const int n_threads = p.n_threads ? p.n_threads : cpus_available();
        const CacheTypes types{cache_type_from_name(name_or(p.cache_type_k, "f16")),
                               cache_type_from_name(name_or(p.cache_type_v, "f16"))};
        const ActPrecision activations = act_precision_from_name(name_or(p.activations, "precise"));
        m->engine = std::make_unique<LlamaModel>(f.config(), build_llama_weights(f.config(), f.tensors()), n_ctx,
                                                 n_threads, f.matrices_in_mapping(), p.n_seq, types, activations);
        *out = m.release();
    });
}

void model_free(edgellama_model* m) { delete m; }

int32_t model_n_vocab(const edgellama_model* m) { return m ? static_cast<int32_t>(m->file->config().n_vocab) : -1; }
int32_t model_n_embd(const edgellama_model* m) { return m ? static_cast<int32_t>(m->file->config().n_embd) : -1; }
int32_t model_n_layer(const edgellama_model* m) { return m ? static_cast<int32_t>(m->file->config().n_layer) : -1; }
int64_t model_n_ctx(const edgellama_model* m) { return m ? m->engine->n_ctx() : -1; }
int64_t model_n_ctx_train(const edgellama_model* m) { return m ? m->file->context_length() : -1; }
int32_t model_n_seq(const edgellama_model* m) { return m ? static_cast<int32_t>(m->engine->n_seq()) : -1; }
int32_t model_n_threads(const edgellama_model* m) { return m ? m->engine->n_threads() : -1; }

edgellama_status model_meta_string(const edgellama_model* m, const char* key, char* buf, size_t buf_size,
                                   size_t* size) {
    if (!m || !key) return fail(EDGELLAMA_ERR_INVALID_ARGUMENT, "the model or the key is NULL");
    const GgufValue* value = m->file->metadata(key);
    if (!value || value->type != GgufType::String) {
        return fail(EDGELLAMA_ERR_INVALID_ARGUMENT, std::string("metadata '") + key +
                                                        (value ? "' is not a string" : "' is not in the file"));
    }
    return copy_out(value->text, true, buf, buf_size, size);
}

// ---- vocabulary --------------------------------------------------------------------------------

namespace {

// The tokenizer of a model that has one, else null (queries that cannot fail answer "none" then).
const tokenizer::GgufTokenizer* vocab(const edgellama_model* m) { return m ? m->tokenizer.get() : nullptr; }

bool in_vocab(const tokenizer::GgufTokenizer& t, edgellama_token token) { return token >= 0 && token < t.n_vocab(); }

}  // namespace

edgellama_token token_bos(const edgellama_model* m) { return vocab(m) ? vocab(m)->bos() : -1; }
edgellama_token token_eos(const edgellama_model* m) { return vocab(m) ? vocab(m)->eos() : -1; }
edgellama_token token_eot(const edgellama_model* m) { return vocab(m) ? vocab(m)->eot() : -1; }
int32_t vocab_add_bos(const edgellama_model* m) { return vocab(m) && vocab(m)->add_bos() ? 1 : 0; }

int32_t token_is_end(const edgellama_model* m, edgellama_token token) {
    const tokenizer::GgufTokenizer* t = vocab(m);
    return t && in_vocab(*t, token) && t->is_end(token) ? 1 : 0;
}

int32_t token_is_control(const edgellama_model* m, edgellama_token token) {
    const tokenizer::GgufTokenizer* t = vocab(m);
    return t && in_vocab(*t, token) && t->is_control(token) ? 1 : 0;
}

edgellama_status token_text(const edgellama_model* m, edgellama_token token, char* buf, size_t buf_size,
                            size_t* size) {
    edgellama_status copied = EDGELLAMA_OK;
    const edgellama_status s = guarded([&] {
        const tokenizer::GgufTokenizer& t = tokenizer_of(m);
        if (!in_vocab(t, token)) {
            throw std::out_of_range("token " + std::to_string(token) + " is outside the vocabulary [0, " +
                                    std::to_string(t.n_vocab()) + ")");
        }
        copied = copy_out(t.token_text(token), true, buf, buf_size, size);
    });
    return s != EDGELLAMA_OK ? s : copied;
}

// ---- text ----------------------------------------------------------------------------------------

edgellama_status tokenize(const edgellama_model* m, const char* text, size_t len, uint32_t flags,
                          edgellama_token* tokens, size_t capacity, size_t* n_tokens) {
    if (!n_tokens) return fail(EDGELLAMA_ERR_INVALID_ARGUMENT, "the n_tokens out-parameter is NULL");
    if (!text && len > 0) return fail(EDGELLAMA_ERR_INVALID_ARGUMENT, "the text is NULL");
    std::vector<int32_t> ids;
    const edgellama_status s = guarded([&] {
        ids = tokenizer_of(m).encode(std::string_view(text ? text : "", len), flags & EDGELLAMA_TOKENIZE_ADD_SPECIAL,
                                     flags & EDGELLAMA_TOKENIZE_SPECIAL);
    });
    if (s != EDGELLAMA_OK) return s;
    *n_tokens = ids.size();
    if (ids.size() > capacity) {
        return fail(EDGELLAMA_ERR_BUFFER_TOO_SMALL, "the text is " + std::to_string(ids.size()) +
                                                        " tokens; the buffer holds " + std::to_string(capacity));
    }
    if (!ids.empty() && !tokens) return fail(EDGELLAMA_ERR_INVALID_ARGUMENT, "the token buffer is NULL");
    std::copy(ids.begin(), ids.end(), tokens);
    return EDGELLAMA_OK;
}

edgellama_status detokenize(const edgellama_model* m, const edgellama_token* tokens, size_t n_tokens,
                            uint32_t flags, char* buf, size_t buf_size, size_t* len) {
    if (!tokens && n_tokens > 0) return fail(EDGELLAMA_ERR_INVALID_ARGUMENT, "the token array is NULL");
    std::string text;
    const edgellama_status s = guarded([&] {
        text = tokenizer_of(m).decode(tokens, n_tokens, flags & EDGELLAMA_DETOKENIZE_SPECIAL);
    });
    return s != EDGELLAMA_OK ? s : copy_out(text, false, buf, buf_size, len);
}

// ---- decoding and the cache ------------------------------------------------------------------

edgellama_status decode(edgellama_model* m, const edgellama_batch* batch, float* out, size_t out_capacity) {
    if (!batch) return fail(EDGELLAMA_ERR_INVALID_ARGUMENT, "the batch is NULL");
    return guarded([&] {
        LlamaModel& engine = engine_of(m);
        if (batch->n <= 0) throw std::invalid_argument("the batch is empty (n = " + std::to_string(batch->n) + ")");
        if (!batch->token || !batch->seq_id || !batch->pos) {
            throw std::invalid_argument("the batch's token, seq_id and pos arrays must not be NULL");
        }
        std::vector<uint8_t> last_only;
        const uint8_t* want = batch->logits;
        if (!want) {
            last_only.assign(static_cast<size_t>(batch->n), 0);
            last_only.back() = 1;
            want = last_only.data();
        }
        const TokenBatch tokens{batch->token, batch->seq_id, batch->pos, want, batch->n};
        const int64_t rows = count_logits_rows(tokens);
        const int64_t n_vocab = engine.config().n_vocab;
        if (rows > 0 && (!out || static_cast<uint64_t>(rows) > out_capacity / static_cast<uint64_t>(n_vocab))) {
            throw std::invalid_argument("the logits buffer holds " + std::to_string(out_capacity) + " floats; " +
                                        std::to_string(rows) + " rows of " + std::to_string(n_vocab) + " are needed");
        }
        std::lock_guard<std::mutex> lock(m->engine_mutex);
        engine.forward_batch(tokens, out);
    });
}

int64_t seq_length(edgellama_model* m, int32_t seq) {
    if (!m || seq < 0 || seq >= m->engine->n_seq()) return -1;
    std::lock_guard<std::mutex> lock(m->engine_mutex);
    return m->engine->n_past(seq);
}

namespace {

template <class Op>
edgellama_status cache_op(edgellama_model* m, Op op) {
    return guarded([&] {
        LlamaModel& engine = engine_of(m);
        std::lock_guard<std::mutex> lock(m->engine_mutex);
        op(engine.cache());
    });
}

}  // namespace

edgellama_status seq_clear(edgellama_model* m, int32_t seq) {
    return cache_op(m, [&](KVCache& c) { c.clear(seq); });
}
edgellama_status seq_truncate(edgellama_model* m, int32_t seq, int64_t n) {
    return cache_op(m, [&](KVCache& c) { c.truncate(seq, n); });
}
edgellama_status seq_copy_prefix(edgellama_model* m, int32_t src, int32_t dst, int64_t n) {
    return cache_op(m, [&](KVCache& c) { c.copy_prefix(src, dst, n); });
}

}  // namespace edgellama::capi
