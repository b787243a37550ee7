/*
 * edgellama.h: the C ABI of edgellama, for apps written in C, C++, Swift, Kotlin/JNI, Rust, Go, C#.
 *
 * One shared library, libedgellama, runs on any CPU of its architecture: at the first call it
 * loads the core built for the best instruction-set level this CPU supports (a module installed
 * beside it, libedgellama-<level>.so). The library reads and validates GGUF files itself: a
 * malformed or hostile file is an error code and a message, never a crash.
 *
 * Conventions
 * - Every handle is opaque. Nothing crosses this boundary but C types; no C++ exception escapes.
 * - Functions that can fail return an edgellama_status. On failure, edgellama_last_error() gives a
 *   message naming the problem (per thread: it stays until this thread's next failing call).
 * - Outputs go to caller buffers. A buffer that is too small is EDGELLAMA_ERR_BUFFER_TOO_SMALL with
 *   the needed count written to the size out-parameter; nothing else is written then.
 * - Parameter structs start with struct_size: fill them with the *_default_params() functions, so
 *   an app built against this header keeps working when later versions append fields.
 *
 * Thread safety
 * - A model may be shared between threads. Model queries, tokenize and detokenize may run
 *   concurrently with anything. edgellama_decode and the KV operations on one model are serialized
 *   by the model (a second caller waits); the core runs each decode on the model's own threads.
 * - A sampler belongs to one thread at a time (it holds the token history and its generator).
 * - edgellama_model_free / edgellama_sampler_free must not race with any other use of the handle.
 *
 * What stays in Python (edgellama's package): chat templates (Jinja, rendered with the file's
 * template in a sandbox), the OpenAI server, constraints (grammars) and the guard models. A native
 * app renders its prompt itself (the template is in edgellama_model_meta_string(m,
 * "tokenizer.chat_template")) and tokenizes the rendered text with EDGELLAMA_TOKENIZE_SPECIAL so
 * the template's markup becomes control tokens; user text goes through without it, so it never can.
 * The CUDA engine is reachable from Python only.
 */
#ifndef EDGELLAMA_H
#define EDGELLAMA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define EDGELLAMA_API __declspec(dllexport)
#else
#define EDGELLAMA_API __attribute__((visibility("default")))
#endif

/* The ABI's version: bumped when a function's meaning or a struct's existing fields change.
 * Compare EDGELLAMA_ABI_VERSION (what the app was built against) with edgellama_abi_version(). */
#define EDGELLAMA_ABI_VERSION 1

typedef int32_t edgellama_token;
typedef struct edgellama_model edgellama_model;
typedef struct edgellama_sampler edgellama_sampler;

typedef enum edgellama_status {
    EDGELLAMA_OK = 0,
    EDGELLAMA_ERR_INVALID_ARGUMENT = 1,  /* a null pointer, a value out of range, a bad token id */
    EDGELLAMA_ERR_IO = 2,                /* the file cannot be opened or read, or the CPU level's module cannot be loaded */
    EDGELLAMA_ERR_INVALID_MODEL = 3,     /* not a well-formed GGUF llama file (truncated, bad shapes, bad metadata) */
    EDGELLAMA_ERR_UNSUPPORTED_MODEL = 4, /* valid GGUF, but another architecture or tensor type */
    EDGELLAMA_ERR_CONTEXT_FULL = 5,      /* a position beyond the context window (n_ctx) */
    EDGELLAMA_ERR_BUFFER_TOO_SMALL = 6,  /* the needed size was written to the size out-parameter */
    EDGELLAMA_ERR_OUT_OF_MEMORY = 7,
    EDGELLAMA_ERR_MODEL_OUTPUT = 8,      /* the model computed a NaN logit (corrupt weights) */
    EDGELLAMA_ERR_INTERNAL = 9
} edgellama_status;

/* ---- library ------------------------------------------------------------------------------- */

EDGELLAMA_API uint32_t edgellama_abi_version(void);
EDGELLAMA_API const char* edgellama_version(void);                  /* the package version, e.g. "0.1.0" */
EDGELLAMA_API const char* edgellama_status_name(edgellama_status status);  /* "EDGELLAMA_ERR_IO" ... */
/* This thread's last error message ("" when none). Valid until this thread's next call. */
EDGELLAMA_API const char* edgellama_last_error(void);
/* The instruction-set levels this CPU can run and this installation has, best first, comma
 * separated (e.g. "x86_64_v4,x86_64_v3_vnni,x86_64_v3,x86_64"). Thread-safe. */
EDGELLAMA_API const char* edgellama_cpu_levels(void);

/* ---- models -------------------------------------------------------------------------------- */

typedef struct edgellama_model_params {
    uint32_t struct_size;      /* sizeof(edgellama_model_params) */
    int32_t n_threads;         /* 0: every CPU this process may run on */
    int64_t n_ctx;             /* each sequence's context window; 0: the file's context_length, at most 2048 */
    int32_t n_seq;             /* independent sequences (KV regions) the model holds; default 1 */
    const char* cpu_level;     /* NULL or "": the best this CPU runs; else one of edgellama_cpu_levels() */
    const char* activations;   /* NULL: "precise" (int8 plus an int8 residual); "int8": llama.cpp's rounding */
    const char* cache_type_k;  /* NULL: "f16"; or "q8_0", "q4_0" ... as edgellama's Python API takes */
    const char* cache_type_v;
} edgellama_model_params;

EDGELLAMA_API void edgellama_model_default_params(edgellama_model_params* params);
/* Opens, validates and maps a GGUF file. *model is set on success (NULL otherwise). */
EDGELLAMA_API edgellama_status edgellama_model_load(const char* path, const edgellama_model_params* params,
                                                    edgellama_model** model);
EDGELLAMA_API void edgellama_model_free(edgellama_model* model);  /* NULL is fine */

EDGELLAMA_API int32_t edgellama_model_n_vocab(const edgellama_model* model);
EDGELLAMA_API int32_t edgellama_model_n_embd(const edgellama_model* model);
EDGELLAMA_API int32_t edgellama_model_n_layer(const edgellama_model* model);
EDGELLAMA_API int64_t edgellama_model_n_ctx(const edgellama_model* model);        /* the window in use */
EDGELLAMA_API int64_t edgellama_model_n_ctx_train(const edgellama_model* model);  /* the file's context_length */
EDGELLAMA_API int32_t edgellama_model_n_seq(const edgellama_model* model);
EDGELLAMA_API int32_t edgellama_model_n_threads(const edgellama_model* model);
EDGELLAMA_API const char* edgellama_model_cpu_level(const edgellama_model* model);  /* the level it runs */
/* A string metadata value (e.g. "general.name", "tokenizer.chat_template"), NUL-terminated into buf.
 * *size: bytes needed including the NUL. EDGELLAMA_ERR_INVALID_ARGUMENT when the key is absent or
 * not a string. */
EDGELLAMA_API edgellama_status edgellama_model_meta_string(const edgellama_model* model, const char* key,
                                                           char* buf, size_t buf_size, size_t* size);

/* ---- vocabulary ---------------------------------------------------------------------------- */

/* Special token ids, or -1 when the vocabulary has none. */
EDGELLAMA_API edgellama_token edgellama_token_bos(const edgellama_model* model);
EDGELLAMA_API edgellama_token edgellama_token_eos(const edgellama_model* model);
EDGELLAMA_API edgellama_token edgellama_token_eot(const edgellama_model* model);
/* 1 when generation should stop at this token (eos, eot and the vocabulary's other end-of-turn
 * control tokens), else 0. */
EDGELLAMA_API int32_t edgellama_token_is_end(const edgellama_model* model, edgellama_token token);
/* 1 for a control token (never produced from plain text), 0 otherwise or out of range. */
EDGELLAMA_API int32_t edgellama_token_is_control(const edgellama_model* model, edgellama_token token);
/* 1 when EDGELLAMA_TOKENIZE_ADD_SPECIAL adds BOS (tokenizer.ggml.add_bos_token). */
EDGELLAMA_API int32_t edgellama_vocab_add_bos(const edgellama_model* model);
/* The token's vocabulary entry as stored, e.g. "Ġthe" or "<|eot_id|>", NUL-terminated into buf. */
EDGELLAMA_API edgellama_status edgellama_token_text(const edgellama_model* model, edgellama_token token,
                                                    char* buf, size_t buf_size, size_t* size);

/* ---- text ---------------------------------------------------------------------------------- */

enum {
    EDGELLAMA_TOKENIZE_ADD_SPECIAL = 1, /* add BOS / EOS where the file says (add_bos_token, add_eos_token) */
    EDGELLAMA_TOKENIZE_SPECIAL = 2,     /* control-token strings in the text become those tokens
                                           (for rendered templates; never for user text) */
    EDGELLAMA_DETOKENIZE_SPECIAL = 4    /* detokenize writes control tokens' text (else omits them) */
};

/* UTF-8 text (len bytes; need not be NUL-terminated; invalid UTF-8 is an error) to tokens.
 * *n_tokens: the count (also when the buffer is too small). A file whose tokenizer edgellama does
 * not run (another tokenizer.ggml.model or .pre) still loads and decodes token ids; tokenize and
 * detokenize return EDGELLAMA_ERR_UNSUPPORTED_MODEL naming it. */
EDGELLAMA_API edgellama_status edgellama_tokenize(const edgellama_model* model, const char* text, size_t len,
                                                  uint32_t flags, edgellama_token* tokens, size_t capacity,
                                                  size_t* n_tokens);
/* Tokens to the bytes of their text, not NUL-terminated (*len: the byte count). Byte tokens may
 * leave a UTF-8 sequence unfinished at the end: stream by detokenizing the whole generation. */
EDGELLAMA_API edgellama_status edgellama_detokenize(const edgellama_model* model, const edgellama_token* tokens,
                                                    size_t n_tokens, uint32_t flags, char* buf, size_t buf_size,
                                                    size_t* len);

/* ---- decoding ------------------------------------------------------------------------------ */

/* A batch of n entries (parallel arrays): entry i puts token[i] at position pos[i] of sequence
 * seq_id[i]. A sequence's entries come in order and continue its cache: the first one's position
 * is the sequence's current length (edgellama_seq_length). logits[i] != 0 asks for entry i's
 * logits; logits may be NULL, which asks for the last entry's only. */
typedef struct edgellama_batch {
    int64_t n;
    const edgellama_token* token;
    const int32_t* seq_id;
    const int64_t* pos;
    const uint8_t* logits;
} edgellama_batch;

/* Evaluates a batch and appends it to the sequences' caches. out: rows x n_vocab floats, one row
 * per entry that asked, in entry order (out_capacity counts floats). On failure nothing is
 * evaluated and the caches are unchanged. */
EDGELLAMA_API edgellama_status edgellama_decode(edgellama_model* model, const edgellama_batch* batch,
                                                float* out, size_t out_capacity);

/* ---- KV cache ------------------------------------------------------------------------------ */

EDGELLAMA_API int64_t edgellama_seq_length(edgellama_model* model, int32_t seq_id);  /* -1: no such sequence */
EDGELLAMA_API edgellama_status edgellama_seq_clear(edgellama_model* model, int32_t seq_id);
/* Keeps the first n positions of the sequence. */
EDGELLAMA_API edgellama_status edgellama_seq_truncate(edgellama_model* model, int32_t seq_id, int64_t n);
/* Replaces dst's cache with src's first n positions (a shared prompt prefix computed once). */
EDGELLAMA_API edgellama_status edgellama_seq_copy_prefix(edgellama_model* model, int32_t src, int32_t dst,
                                                         int64_t n);

/* ---- sampling ------------------------------------------------------------------------------ */

/* The chain, in this order (a step is skipped when disabled): penalties over the last
 * penalty_last_n accepted tokens; greedy when temperature == 0; temperature; top-k; min-p;
 * top-p; a draw with the sampler's seeded generator. Defaults are edgellama's Python defaults. */
typedef struct edgellama_sampler_params {
    uint32_t struct_size;     /* sizeof(edgellama_sampler_params) */
    float temperature;        /* >= 0; 0 is greedy. Default 0.8 */
    int32_t top_k;            /* >= 0; 0 disables. Default 40 */
    float top_p;              /* (0, 1]; 1 disables. Default 0.95 */
    float min_p;              /* [0, 1]; 0 disables. Default 0.05 */
    float repeat_penalty;     /* > 0; 1 disables. Default 1 */
    float frequency_penalty;  /* 0 disables */
    float presence_penalty;   /* 0 disables */
    int32_t penalty_last_n;   /* >= -1: window of recent tokens; 0 disables, -1 all. Default 64 */
    uint64_t seed;            /* the generator's seed: equal seeds, equal draws. Default 0 */
} edgellama_sampler_params;

EDGELLAMA_API void edgellama_sampler_default_params(edgellama_sampler_params* params);
EDGELLAMA_API edgellama_status edgellama_sampler_new(const edgellama_sampler_params* params,
                                                     edgellama_sampler** sampler);
EDGELLAMA_API void edgellama_sampler_free(edgellama_sampler* sampler);  /* NULL is fine */
/* Chooses a token from one row of logits (n_vocab floats; not modified). Does not record it. */
EDGELLAMA_API edgellama_status edgellama_sampler_sample(edgellama_sampler* sampler, const float* logits,
                                                        int32_t n_vocab, edgellama_token* token);
/* Records a token in the history the penalties see (the prompt's tokens, then each one chosen). */
EDGELLAMA_API edgellama_status edgellama_sampler_accept(edgellama_sampler* sampler, edgellama_token token);
/* Forgets the history and reseeds the generator with the params' seed. */
EDGELLAMA_API void edgellama_sampler_reset(edgellama_sampler* sampler);

#ifdef __cplusplus
}
#endif

#endif /* EDGELLAMA_H */
