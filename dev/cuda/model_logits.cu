/*
The trainer's forward logits of a model file on given tokens, for comparisons with other implementations
(dev/check_hf_logits.py --trainer-logits). Builds the family's device model exactly as the trainer does
(BF16 weights rounded from the file's values, the same kernels), runs the forward without targets and
writes the logits of the real vocabulary as float32.

  make build/dev/model_logits && ./build/dev/model_logits MODEL_FILE TOKENS_FILE B T OUT_FILE

TOKENS_FILE: int32 little-endian, B*T ids; row b = tokens [b*T, (b+1)*T). OUT_FILE: float32 little-endian
[B*T, V], row b*T + t = the logits at position t of sequence b (the padded columns V..Vp left out).
Only GPT-2 model files have a device model yet; a Llama file is refused with exit status 2.
*/
#include <stdio.h>
#include <stdlib.h>
#include "gpt2.cuh"
#include "llama_model.h"

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s MODEL_FILE TOKENS_FILE B T OUT_FILE\n", argv[0]);
        return 1;
    }
    const char *model_path = argv[1], *tokens_path = argv[2], *out_path = argv[5];
    char *end1, *end2;
    const long B = strtol(argv[3], &end1, 10), T = strtol(argv[4], &end2, 10);
    if (*end1 != '\0' || *end2 != '\0' || B < 1 || T < 1 || B * T > (1L << 24)) fatal("B '%s' and T '%s' must be positive integers", argv[3], argv[4]);
    if (llama_model_file_is_llama(model_path)) {
        fprintf(stderr, "error: '%s' is a Llama model file; the Llama device model is not built yet\n", model_path);
        return 2;
    }
    char err[1024];
    GPT2Config cfg;
    int version = 0;
    float *params = NULL;
    if (gpt2_model_file_load(model_path, NULL, &cfg, &version, &params, err, sizeof(err)) != 0) fatal("%s", err);
    if (T > cfg.max_seq_len) fatal("T %ld exceeds the model's maximum sequence length %d", T, cfg.max_seq_len);
    const size_t N = (size_t)B * T;
    int *tokens = (int *)malloc_check(N * sizeof(int));
    FILE *f = fopen_check(tokens_path, "rb");
    fread_check(tokens, sizeof(int), N, f);
    if (fgetc(f) != EOF) fatal("'%s' holds more than B*T = %zu tokens", tokens_path, N);
    fclose(f);
    for (size_t i = 0; i < N; i++)
        if (tokens[i] < 0 || tokens[i] >= cfg.vocab_size) fatal("'%s': token %d at %zu is outside [0, %d)", tokens_path, tokens[i], i, cfg.vocab_size);
    Model m;
    if (model_build(&m, &GPT2_FAMILY, &cfg, (int)N, 1, PRECISION_BF16, NULL, err, sizeof(err)) != 0) fatal("%s", err);
    model_set_params(&m, params);
    model_forward(&m, 0, tokens, NULL, (int)B, (int)T, 0.0f);
    cudaCheck(cudaStreamSynchronize(m.stream));
    const int V = cfg.vocab_size, Vp = cfg.padded_vocab_size;
    bf16 *logits = (bf16 *)malloc_check(N * Vp * sizeof(bf16));
    cudaCheck(cudaMemcpy(logits, model_logits(&m, 0), N * Vp * sizeof(bf16), cudaMemcpyDeviceToHost));
    float *row = (float *)malloc_check((size_t)V * sizeof(float));
    f = fopen_check(out_path, "wb");
    for (size_t i = 0; i < N; i++) {
        for (int v = 0; v < V; v++) row[v] = __bfloat162float(logits[i * Vp + v]);
        fwrite_check(row, sizeof(float), (size_t)V, f);
    }
    if (fclose(f) != 0) fatal("cannot write '%s'", out_path);
    printf("wrote %s: logits of %ld x %ld tokens over %d tokens of vocabulary\n", out_path, B, T, V);
    model_free(&m);
    free(params); free(tokens); free(logits); free(row);
    return 0;
}
