#include "csrc/capi/sampler_api.h"

#include <memory>
#include <stdexcept>
#include <string>

#include "csrc/capi/defaults.h"
#include "csrc/capi/level_api.h"
#include "csrc/capi/status.h"
#include "csrc/sampling/sampler.h"

const edgellama_level_api* edgellama_this_level_api();  // level_module.cpp

struct edgellama_sampler {
    edgellama_handle_header header;  // first: the front reads it (level_api.h)
    std::unique_ptr<edgellama::Sampler> sampler;
};

namespace edgellama::capi {

namespace {

SamplerSettings settings_from(const edgellama_sampler_params& p) {
    SamplerSettings s;
    s.temperature = p.temperature;
    s.top_k = p.top_k;
    s.top_p = p.top_p;
    s.min_p = p.min_p;
    s.repeat_penalty = p.repeat_penalty;
    s.frequency_penalty = p.frequency_penalty;
    s.presence_penalty = p.presence_penalty;
    s.penalty_last_n = p.penalty_last_n;
    s.seed = p.seed;
    return s;
}

Sampler& sampler_of(edgellama_sampler* s) {
    if (!s) throw std::invalid_argument("the sampler is NULL");
    return *s->sampler;
}

}  // namespace

edgellama_status sampler_new(const edgellama_sampler_params* params, edgellama_sampler** out) {
    if (!out) return fail(EDGELLAMA_ERR_INVALID_ARGUMENT, "the sampler out-parameter is NULL");
    *out = nullptr;
    return guarded([&] {
        edgellama_sampler_params p;
        default_sampler_params(&p);
        if (params && !merge_params(params, &p)) {
            throw std::invalid_argument("edgellama_sampler_params.struct_size is " + std::to_string(params->struct_size) +
                                        "; fill the struct with edgellama_sampler_default_params()");
        }
        auto s = std::make_unique<edgellama_sampler>();
        s->header.api = edgellama_this_level_api();
        s->sampler = std::make_unique<Sampler>(settings_from(p));
        *out = s.release();
    });
}

void sampler_free(edgellama_sampler* s) { delete s; }

edgellama_status sampler_sample(edgellama_sampler* s, const float* logits, int32_t n_vocab, edgellama_token* token) {
    if (!token) return fail(EDGELLAMA_ERR_INVALID_ARGUMENT, "the token out-parameter is NULL");
    if (!logits) return fail(EDGELLAMA_ERR_INVALID_ARGUMENT, "the logits are NULL");
    return guarded([&] { *token = sampler_of(s).sample(logits, n_vocab); });
}

edgellama_status sampler_accept(edgellama_sampler* s, edgellama_token token) {
    return guarded([&] { sampler_of(s).accept(token); });
}

void sampler_reset(edgellama_sampler* s) {
    if (s) s->sampler->reset();
}

}  // namespace edgellama::capi
