/*
 * simple.c: load a GGUF model through edgellama's C ABI, tokenize a prompt, generate, print.
 *
 *   cc simple.c -o simple $(pkg-config --cflags --libs edgellama)
 *   ./simple model.gguf "The capital of France is" 32
 *
 * The prompt is used as it is (no chat template: render one yourself and tokenize it with
 * EDGELLAMA_TOKENIZE_SPECIAL, see include/edgellama.h). Tokens are chosen greedily.
 */
#include <edgellama.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char* what, edgellama_status status) {
    fprintf(stderr, "%s: %s: %s\n", what, edgellama_status_name(status), edgellama_last_error());
    return 1;
}

int main(int argc, char** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.gguf PROMPT [MAX_TOKENS]\n", argv[0]);
        return 2;
    }
    const int max_tokens = argc > 3 ? atoi(argv[3]) : 32;

    edgellama_model_params params;
    edgellama_model_default_params(&params);
    params.n_ctx = 512;
    edgellama_model* model = NULL;
    edgellama_status status = edgellama_model_load(argv[1], &params, &model);
    if (status != EDGELLAMA_OK) return fail("load", status);

    /* The prompt's tokens; n_ctx bounds how many a window can hold. */
    size_t n_prompt = 0;
    edgellama_token* tokens = malloc(sizeof(edgellama_token) * (size_t)edgellama_model_n_ctx(model));
    status = edgellama_tokenize(model, argv[2], strlen(argv[2]), EDGELLAMA_TOKENIZE_ADD_SPECIAL, tokens,
                                (size_t)edgellama_model_n_ctx(model), &n_prompt);
    if (status != EDGELLAMA_OK) return fail("tokenize", status);

    edgellama_sampler_params sampling;
    edgellama_sampler_default_params(&sampling);
    sampling.temperature = 0.0f; /* greedy */
    edgellama_sampler* sampler = NULL;
    status = edgellama_sampler_new(&sampling, &sampler);
    if (status != EDGELLAMA_OK) return fail("sampler", status);

    const int32_t n_vocab = edgellama_model_n_vocab(model);
    float* logits = malloc(sizeof(float) * (size_t)n_vocab);
    size_t n_total = n_prompt;
    size_t n_evaluated = 0;
    size_t n_printed = 0; /* bytes of the generation's text already printed */
    char text[8192];

    printf("%s", argv[2]);
    for (int generated = 0; generated < max_tokens && n_total < (size_t)edgellama_model_n_ctx(model); ++generated) {
        /* Evaluate what is new (the whole prompt first, then one token), at the next positions. */
        const int64_t n_new = (int64_t)(n_total - n_evaluated);
        int32_t seq_ids[512];
        int64_t positions[512];
        for (int64_t i = 0; i < n_new; ++i) {
            seq_ids[i] = 0;
            positions[i] = (int64_t)n_evaluated + i;
        }
        edgellama_batch batch = {n_new, tokens + n_evaluated, seq_ids, positions, NULL}; /* logits of the last */
        status = edgellama_decode(model, &batch, logits, (size_t)n_vocab);
        if (status != EDGELLAMA_OK) return fail("decode", status);
        n_evaluated = n_total;

        edgellama_token next;
        status = edgellama_sampler_sample(sampler, logits, n_vocab, &next);
        if (status != EDGELLAMA_OK) return fail("sample", status);
        if (edgellama_token_is_end(model, next)) break;
        edgellama_sampler_accept(sampler, next);
        tokens[n_total++] = next;

        /* Print the bytes the generation's text gained (a character may span tokens). */
        size_t len = 0;
        status = edgellama_detokenize(model, tokens + n_prompt, n_total - n_prompt, 0, text, sizeof text, &len);
        if (status != EDGELLAMA_OK) return fail("detokenize", status);
        fwrite(text + n_printed, 1, len - n_printed, stdout);
        fflush(stdout);
        n_printed = len;
    }
    printf("\n");

    edgellama_sampler_free(sampler);
    edgellama_model_free(model);
    free(logits);
    free(tokens);
    return 0;
}
