// The contract between libedgellama (the front: include/edgellama.h's exported functions, compiled
// for the baseline CPU) and the core modules it loads, one per instruction-set level
// (libedgellama-<level>.so, each with the whole core compiled for that level).
//
// A level module exports one symbol, edgellama_level_api_get, returning a table of the ABI's
// functions as that level implements them. Every model and sampler handle a level makes starts with
// a pointer to its level's table (HandleHeader), so the front forwards a call on a handle to the
// level that made it, and models of different levels can live in one process.
#pragma once

#include <cstdint>

#include "include/edgellama.h"

// Bumped whenever this table changes; the front refuses a module of another version.
#define EDGELLAMA_LEVEL_API_VERSION 1u

struct edgellama_level_api {
    uint32_t version;  // EDGELLAMA_LEVEL_API_VERSION
    const char* level; // the instruction-set level this module was built for
    const char* (*last_error)(void);

    edgellama_status (*model_load)(const char*, const edgellama_model_params*, edgellama_model**);
    void (*model_free)(edgellama_model*);
    int32_t (*model_n_vocab)(const edgellama_model*);
    int32_t (*model_n_embd)(const edgellama_model*);
    int32_t (*model_n_layer)(const edgellama_model*);
    int64_t (*model_n_ctx)(const edgellama_model*);
    int64_t (*model_n_ctx_train)(const edgellama_model*);
    int32_t (*model_n_seq)(const edgellama_model*);
    int32_t (*model_n_threads)(const edgellama_model*);
    edgellama_status (*model_meta_string)(const edgellama_model*, const char*, char*, size_t, size_t*);

    edgellama_token (*token_bos)(const edgellama_model*);
    edgellama_token (*token_eos)(const edgellama_model*);
    edgellama_token (*token_eot)(const edgellama_model*);
    int32_t (*token_is_end)(const edgellama_model*, edgellama_token);
    int32_t (*token_is_control)(const edgellama_model*, edgellama_token);
    int32_t (*vocab_add_bos)(const edgellama_model*);
    edgellama_status (*token_text)(const edgellama_model*, edgellama_token, char*, size_t, size_t*);

    edgellama_status (*tokenize)(const edgellama_model*, const char*, size_t, uint32_t, edgellama_token*, size_t,
                                 size_t*);
    edgellama_status (*detokenize)(const edgellama_model*, const edgellama_token*, size_t, uint32_t, char*, size_t,
                                   size_t*);

    edgellama_status (*decode)(edgellama_model*, const edgellama_batch*, float*, size_t);
    int64_t (*seq_length)(edgellama_model*, int32_t);
    edgellama_status (*seq_clear)(edgellama_model*, int32_t);
    edgellama_status (*seq_truncate)(edgellama_model*, int32_t, int64_t);
    edgellama_status (*seq_copy_prefix)(edgellama_model*, int32_t, int32_t, int64_t);

    edgellama_status (*sampler_new)(const edgellama_sampler_params*, edgellama_sampler**);
    void (*sampler_free)(edgellama_sampler*);
    edgellama_status (*sampler_sample)(edgellama_sampler*, const float*, int32_t, edgellama_token*);
    edgellama_status (*sampler_accept)(edgellama_sampler*, edgellama_token);
    void (*sampler_reset)(edgellama_sampler*);
};

// The first member of every handle a level module hands out.
struct edgellama_handle_header {
    const edgellama_level_api* api;
};

extern "C" typedef const edgellama_level_api* (*edgellama_level_api_get_fn)(void);
#define EDGELLAMA_LEVEL_API_SYMBOL "edgellama_level_api_get"
