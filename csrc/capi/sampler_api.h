// The ABI's sampling functions as a level module implements them (see status.h for errors).
#pragma once

#include "include/edgellama.h"

namespace edgellama::capi {

edgellama_status sampler_new(const edgellama_sampler_params* params, edgellama_sampler** out);
void sampler_free(edgellama_sampler* s);
edgellama_status sampler_sample(edgellama_sampler* s, const float* logits, int32_t n_vocab, edgellama_token* token);
edgellama_status sampler_accept(edgellama_sampler* s, edgellama_token token);
void sampler_reset(edgellama_sampler* s);

}  // namespace edgellama::capi
