// The one symbol a level module (libedgellama-<level>.so) exports: its table of the ABI's
// functions (level_api.h). Built once per CPU level, with that level's core.
#include "csrc/capi/level_api.h"
#include "csrc/capi/model_api.h"
#include "csrc/capi/sampler_api.h"
#include "csrc/capi/status.h"

#ifndef EDGELLAMA_LEVEL_NAME
#error "EDGELLAMA_LEVEL_NAME must name the CPU level this module is built for"
#endif

namespace {

using namespace edgellama::capi;

const edgellama_level_api kApi = {
    EDGELLAMA_LEVEL_API_VERSION,
    EDGELLAMA_LEVEL_NAME,
    &last_error,
    &model_load, &model_free, &model_n_vocab, &model_n_embd, &model_n_layer, &model_n_ctx, &model_n_ctx_train,
    &model_n_seq, &model_n_threads, &model_meta_string,
    &token_bos, &token_eos, &token_eot, &token_is_end, &token_is_control, &vocab_add_bos, &token_text,
    &tokenize, &detokenize,
    &decode, &seq_length, &seq_clear, &seq_truncate, &seq_copy_prefix,
    &sampler_new, &sampler_free, &sampler_sample, &sampler_accept, &sampler_reset,
};

}  // namespace

const edgellama_level_api* edgellama_this_level_api() { return &kApi; }

extern "C" EDGELLAMA_API const edgellama_level_api* edgellama_level_api_get(void) { return &kApi; }
