// The ABI's model, vocabulary, text and decoding functions as a level module implements them
// (level_module.cpp puts them in its table). Every function catches everything: see status.h.
#pragma once

#include "include/edgellama.h"

namespace edgellama::capi {

edgellama_status model_load(const char* path, const edgellama_model_params* params, edgellama_model** out);
void model_free(edgellama_model* model);
int32_t model_n_vocab(const edgellama_model* m);
int32_t model_n_embd(const edgellama_model* m);
int32_t model_n_layer(const edgellama_model* m);
int64_t model_n_ctx(const edgellama_model* m);
int64_t model_n_ctx_train(const edgellama_model* m);
int32_t model_n_seq(const edgellama_model* m);
int32_t model_n_threads(const edgellama_model* m);
edgellama_status model_meta_string(const edgellama_model* m, const char* key, char* buf, size_t buf_size,
                                   size_t* size);

edgellama_token token_bos(const edgellama_model* m);
edgellama_token token_eos(const edgellama_model* m);
edgellama_token token_eot(const edgellama_model* m);
int32_t token_is_end(const edgellama_model* m, edgellama_token token);
int32_t token_is_control(const edgellama_model* m, edgellama_token token);
int32_t vocab_add_bos(const edgellama_model* m);
edgellama_status token_text(const edgellama_model* m, edgellama_token token, char* buf, size_t buf_size,
                            size_t* size);
edgellama_status tokenize(const edgellama_model* m, const char* text, size_t len, uint32_t flags,
                          edgellama_token* tokens, size_t capacity, size_t* n_tokens);
edgellama_status detokenize(const edgellama_model* m, const edgellama_token* tokens, size_t n_tokens,
                            uint32_t flags, char* buf, size_t buf_size, size_t* len);

edgellama_status decode(edgellama_model* m, const edgellama_batch* batch, float* out, size_t out_capacity);
int64_t seq_length(edgellama_model* m, int32_t seq);
edgellama_status seq_clear(edgellama_model* m, int32_t seq);
edgellama_status seq_truncate(edgellama_model* m, int32_t seq, int64_t n);
edgellama_status seq_copy_prefix(edgellama_model* m, int32_t src, int32_t dst, int64_t n);

}  // namespace edgellama::capi
