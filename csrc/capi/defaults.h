// Default parameter structs, shared by the front (which exports the *_default_params functions)
// and the level modules (which fill in what an older, shorter struct leaves out).
#pragma once

#include <cstring>

#include "include/edgellama.h"

namespace edgellama::capi {

inline void default_model_params(edgellama_model_params* p) {
    std::memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->n_seq = 1;  // n_threads 0, n_ctx 0 and the NULL names mean "the default" (see the header)
}

// edgellama's SamplingParams defaults (edgellama/sampling.py).
inline void default_sampler_params(edgellama_sampler_params* p) {
    std::memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->temperature = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->repeat_penalty = 1.0f;
    p->penalty_last_n = 64;
}

// Copies the caller's struct over the defaults: only the bytes its struct_size covers, so a struct
// from an app built against an older header keeps the defaults of the fields added since.
template <class Params>
bool merge_params(const Params* given, Params* out) {
    if (given->struct_size < sizeof(uint32_t) || given->struct_size > sizeof *out) return false;
    std::memcpy(out, given, given->struct_size);
    out->struct_size = sizeof *out;
    return true;
}

}  // namespace edgellama::capi
