// libedgellama: the exported functions of include/edgellama.h. Compiled for the baseline CPU, it
// picks the best instruction-set level this CPU runs (csrc/core/cpu_features.h) among the level
// modules installed beside it (libedgellama-<level>.so), loads that module with dlopen at the
// first call and forwards every call to it. Calls on a model or sampler go to the module that made
// the handle (level_api.h), so a model loaded at another level (params.cpu_level) works alongside.
//
// Each module is opened RTLD_LOCAL and linked -Bsymbolic: the inline functions and templates every
// level compiles (with different instructions) never resolve across levels.
#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "csrc/capi/defaults.h"
#include "csrc/capi/level_api.h"
#include "csrc/core/cpu_features.h"
#include "include/edgellama.h"

#ifndef EDGELLAMA_VERSION_STRING
#error "EDGELLAMA_VERSION_STRING must be defined by the build"
#endif

namespace {

// The documented override of the default level, as the Python package reads it.
constexpr const char* kLevelEnvVar = "EDGELLAMA_CPU";

thread_local std::string g_last_error;

edgellama_status fail(edgellama_status status, const std::string& message) {
    g_last_error = message;
    return status;
}

// The folder this library was loaded from, with a trailing '/' ("" when unknown).
std::string own_folder() {
    Dl_info info{};
    if (dladdr(reinterpret_cast<void*>(&own_folder), &info) == 0 || !info.dli_fname) return {};
    const std::string path = info.dli_fname;
    const size_t slash = path.rfind('/');
    return slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
}

std::string module_path(const std::string& level) { return own_folder() + "libedgellama-" + level + ".so"; }

// Levels this CPU runs whose module is installed, best first.
const std::vector<std::string>& available_levels() {
    static const std::vector<std::string> levels = [] {
        std::vector<std::string> found;
        for (const std::string& level : edgellama::runnable_cpu_levels()) {
            if (access(module_path(level).c_str(), R_OK) == 0) found.push_back(level);
        }
        if (access(module_path("native").c_str(), R_OK) == 0) found.insert(found.begin(), "native");
        return found;
    }();
    return levels;
}

std::string joined(const std::vector<std::string>& names) {
    std::string out;
    for (const std::string& n : names) out += (out.empty() ? "" : ",") + n;
    return out;
}

// The table of a level's module, loaded once (modules stay loaded: handles point into them).
// Returns null and sets the last error when the level is not available or its module is broken.
const edgellama_level_api* level_api(const std::string& level) {
    static std::mutex mutex;
    static std::map<std::string, const edgellama_level_api*> loaded;
    std::lock_guard<std::mutex> lock(mutex);
    if (auto it = loaded.find(level); it != loaded.end()) return it->second;
    const auto& levels = available_levels();
    if (std::find(levels.begin(), levels.end(), level) == levels.end()) {
        fail(EDGELLAMA_ERR_INVALID_ARGUMENT, "CPU level '" + level + "' is not one this CPU runs in this installation "
                                             "(choices: " + (levels.empty() ? "none" : joined(levels)) + ")");
        return nullptr;
    }
    const std::string path = module_path(level);
    void* module = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!module) {
        const char* why = dlerror();
        fail(EDGELLAMA_ERR_IO, "cannot load " + path + ": " + (why ? why : "unknown error"));
        return nullptr;
    }
    auto get = reinterpret_cast<edgellama_level_api_get_fn>(dlsym(module, EDGELLAMA_LEVEL_API_SYMBOL));
    const edgellama_level_api* api = get ? get() : nullptr;
    if (!api || api->version != EDGELLAMA_LEVEL_API_VERSION) {
        fail(EDGELLAMA_ERR_IO, path + " is not a level module of this libedgellama (" + EDGELLAMA_VERSION_STRING + ")");
        return nullptr;
    }
    loaded[level] = api;
    return api;
}

// The level of calls without a handle: EDGELLAMA_CPU when set, else the best available.
const edgellama_level_api* default_api() {
    const char* requested = std::getenv(kLevelEnvVar);
    if (requested && *requested) return level_api(requested);
    const auto& levels = available_levels();
    if (levels.empty()) {
        fail(EDGELLAMA_ERR_IO, "no libedgellama-<level>.so this CPU runs was found in '" + own_folder() + "'");
        return nullptr;
    }
    return level_api(levels.front());
}

const edgellama_level_api* api_of(const void* handle) {
    return static_cast<const edgellama_handle_header*>(handle)->api;
}

// A failing call's message, copied from the module's thread-local error to ours.
edgellama_status forwarded(const edgellama_level_api* api, edgellama_status status) {
    if (status != EDGELLAMA_OK) g_last_error = api->last_error();
    return status;
}

edgellama_status null_handle(const char* what) {
    return fail(EDGELLAMA_ERR_INVALID_ARGUMENT, std::string("the ") + what + " is NULL");
}

}  // namespace

extern "C" {

uint32_t edgellama_abi_version(void) { return EDGELLAMA_ABI_VERSION; }
const char* edgellama_version(void) { return EDGELLAMA_VERSION_STRING; }
const char* edgellama_last_error(void) { return g_last_error.c_str(); }

const char* edgellama_cpu_levels(void) {
    static const std::string levels = joined(available_levels());
    return levels.c_str();
}

const char* edgellama_status_name(edgellama_status status) {
    switch (status) {
        case EDGELLAMA_OK: return "EDGELLAMA_OK";
        case EDGELLAMA_ERR_INVALID_ARGUMENT: return "EDGELLAMA_ERR_INVALID_ARGUMENT";
        case EDGELLAMA_ERR_IO: return "EDGELLAMA_ERR_IO";
        case EDGELLAMA_ERR_INVALID_MODEL: return "EDGELLAMA_ERR_INVALID_MODEL";
        case EDGELLAMA_ERR_UNSUPPORTED_MODEL: return "EDGELLAMA_ERR_UNSUPPORTED_MODEL";
        case EDGELLAMA_ERR_CONTEXT_FULL: return "EDGELLAMA_ERR_CONTEXT_FULL";
        case EDGELLAMA_ERR_BUFFER_TOO_SMALL: return "EDGELLAMA_ERR_BUFFER_TOO_SMALL";
        case EDGELLAMA_ERR_OUT_OF_MEMORY: return "EDGELLAMA_ERR_OUT_OF_MEMORY";
        case EDGELLAMA_ERR_MODEL_OUTPUT: return "EDGELLAMA_ERR_MODEL_OUTPUT";
        case EDGELLAMA_ERR_INTERNAL: return "EDGELLAMA_ERR_INTERNAL";
    }
    return "EDGELLAMA_ERR_UNKNOWN";
}

// ---- models ----------------------------------------------------------------------------------

void edgellama_model_default_params(edgellama_model_params* params) {
    if (params) edgellama::capi::default_model_params(params);
}

edgellama_status edgellama_model_load(const char* path, const edgellama_model_params* params,
                                      edgellama_model** model) {
    if (model) *model = nullptr;
    // A level named in params is read only as far as the caller's struct reaches (struct_size).
    const bool names_level = params && params->struct_size >= offsetof(edgellama_model_params, cpu_level) +
                                                                   sizeof(params->cpu_level) &&
                             params->cpu_level && *params->cpu_level;
    const edgellama_level_api* api = names_level ? level_api(params->cpu_level) : default_api();
    if (!api) return names_level ? EDGELLAMA_ERR_INVALID_ARGUMENT : EDGELLAMA_ERR_IO;
    return forwarded(api, api->model_load(path, params, model));
}

void edgellama_model_free(edgellama_model* model) {
    if (model) api_of(model)->model_free(model);
}

const char* edgellama_model_cpu_level(const edgellama_model* m) { return m ? api_of(m)->level : ""; }

// Queries that cannot fail: the module answers -1 / 0 for a NULL handle, so a NULL is passed on.
#define EDGELLAMA_QUERY(ret, name, fallback)                                        \
    ret edgellama_##name(const edgellama_model* m) { return m ? api_of(m)->name(m) : fallback; }
EDGELLAMA_QUERY(int32_t, model_n_vocab, -1)
EDGELLAMA_QUERY(int32_t, model_n_embd, -1)
EDGELLAMA_QUERY(int32_t, model_n_layer, -1)
EDGELLAMA_QUERY(int64_t, model_n_ctx, -1)
EDGELLAMA_QUERY(int64_t, model_n_ctx_train, -1)
EDGELLAMA_QUERY(int32_t, model_n_seq, -1)
EDGELLAMA_QUERY(int32_t, model_n_threads, -1)
EDGELLAMA_QUERY(edgellama_token, token_bos, -1)
EDGELLAMA_QUERY(edgellama_token, token_eos, -1)
EDGELLAMA_QUERY(edgellama_token, token_eot, -1)
EDGELLAMA_QUERY(int32_t, vocab_add_bos, 0)
#undef EDGELLAMA_QUERY

int32_t edgellama_token_is_end(const edgellama_model* m, edgellama_token t) {
    return m ? api_of(m)->token_is_end(m, t) : 0;
}
int32_t edgellama_token_is_control(const edgellama_model* m, edgellama_token t) {
    return m ? api_of(m)->token_is_control(m, t) : 0;
}

edgellama_status edgellama_model_meta_string(const edgellama_model* m, const char* key, char* buf,
                                             size_t buf_size, size_t* size) {
    if (!m) return null_handle("model");
    return forwarded(api_of(m), api_of(m)->model_meta_string(m, key, buf, buf_size, size));
}

edgellama_status edgellama_token_text(const edgellama_model* m, edgellama_token token, char* buf,
                                      size_t buf_size, size_t* size) {
    if (!m) return null_handle("model");
    return forwarded(api_of(m), api_of(m)->token_text(m, token, buf, buf_size, size));
}

edgellama_status edgellama_tokenize(const edgellama_model* m, const char* text, size_t len, uint32_t flags,
                                    edgellama_token* tokens, size_t capacity, size_t* n_tokens) {
    if (!m) return null_handle("model");
    return forwarded(api_of(m), api_of(m)->tokenize(m, text, len, flags, tokens, capacity, n_tokens));
}

edgellama_status edgellama_detokenize(const edgellama_model* m, const edgellama_token* tokens, size_t n_tokens,
                                      uint32_t flags, char* buf, size_t buf_size, size_t* len) {
    if (!m) return null_handle("model");
    return forwarded(api_of(m), api_of(m)->detokenize(m, tokens, n_tokens, flags, buf, buf_size, len));
}

edgellama_status edgellama_decode(edgellama_model* m, const edgellama_batch* batch, float* out,
                                  size_t out_capacity) {
    if (!m) return null_handle("model");
    return forwarded(api_of(m), api_of(m)->decode(m, batch, out, out_capacity));
}

// ---- KV cache --------------------------------------------------------------------------------

int64_t edgellama_seq_length(edgellama_model* m, int32_t seq) { return m ? api_of(m)->seq_length(m, seq) : -1; }

edgellama_status edgellama_seq_clear(edgellama_model* m, int32_t seq) {
    if (!m) return null_handle("model");
    return forwarded(api_of(m), api_of(m)->seq_clear(m, seq));
}

edgellama_status edgellama_seq_truncate(edgellama_model* m, int32_t seq, int64_t n) {
    if (!m) return null_handle("model");
    return forwarded(api_of(m), api_of(m)->seq_truncate(m, seq, n));
}

edgellama_status edgellama_seq_copy_prefix(edgellama_model* m, int32_t src, int32_t dst, int64_t n) {
    if (!m) return null_handle("model");
    return forwarded(api_of(m), api_of(m)->seq_copy_prefix(m, src, dst, n));
}

// ---- sampling --------------------------------------------------------------------------------

void edgellama_sampler_default_params(edgellama_sampler_params* params) {
    if (params) edgellama::capi::default_sampler_params(params);
}

edgellama_status edgellama_sampler_new(const edgellama_sampler_params* params, edgellama_sampler** sampler) {
    if (sampler) *sampler = nullptr;
    const edgellama_level_api* api = default_api();
    if (!api) return EDGELLAMA_ERR_IO;
    return forwarded(api, api->sampler_new(params, sampler));
}

void edgellama_sampler_free(edgellama_sampler* s) {
    if (s) api_of(s)->sampler_free(s);
}

edgellama_status edgellama_sampler_sample(edgellama_sampler* s, const float* logits, int32_t n_vocab,
                                          edgellama_token* token) {
    if (!s) return null_handle("sampler");
    return forwarded(api_of(s), api_of(s)->sampler_sample(s, logits, n_vocab, token));
}

edgellama_status edgellama_sampler_accept(edgellama_sampler* s, edgellama_token token) {
    if (!s) return null_handle("sampler");
    return forwarded(api_of(s), api_of(s)->sampler_accept(s, token));
}

void edgellama_sampler_reset(edgellama_sampler* s) {
    if (s) api_of(s)->sampler_reset(s);
}

}  // extern "C"
