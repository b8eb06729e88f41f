// GPT-2 trainer. Run with -h for the flags (core/train_config.h); one GPU:
//   ./train_gpt -e d12 -b 64 -t 1024 -d 524288 -o out
// Several processes (mpirun) are laid out as tp x pp x dp by the flags, but only the one-process
// path (one GPU, BF16) is built so far; with more processes the program says so and exits 2.
//
// What a run does: builds a fresh model (-e d12|d24|d36|d48, initialized from --seed) or loads a
// model file, plans the device memory (tensor registry: report printed, the run refused before
// allocating when it does not fit), then trains: each step accumulates gradients over d/(B*T)
// micro-batches, clips the global norm, and takes an AdamW step with the learning-rate schedule.
// Every step prints step, loss, lr, grad norm, ms, tokens/s and MFU. MFU = FLOPs per token * tokens/s
// / 989 TFLOP/s (H100 SXM dense BF16 peak), with FLOPs per token = 6 * parameters + 6 * L * T * C
// (gpt2_flops_per_token in gpt2.cuh: forward + backward of every weight, plus causal attention).
// Validation loss every -v steps over -m batches; a text sample of -g tokens every -s steps (sampled
// from the softmax with the host RNG, starting from <|endoftext|>, forward-only at the sample length).
//
// Output directory (-o): log.txt (format in core/logger.h) and, every -n steps and at the last step,
// a checkpoint of two files named by the number of steps completed, S (8 digits; core/train_run.h):
//   model_S.bin   llm.c model file, version 3 (fp32 master weights)
//   state_S.bin   training-state file (AdamW moments, step, RNG, data position; core/checkpoint.h)
// Both are written atomically, the model file first, so a state file implies its model file is
// complete. -y 1 resumes from the latest checkpoint: the largest S for which both files exist. The
// resumed run continues bit-exactly (same losses as an uninterrupted run) when the flags are the same.
//
// Exit status: 0 after -h or a finished run, 1 on any error (with a message), 2 when the run needs a
// path that is not built yet (several processes).
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#ifdef USE_MPI
#include <mpi.h>
#endif

#include "core/checkpoint.h"
#include "core/flags.h"
#include "core/gpt2_model.h"
#include "core/logger.h"
#include "core/lr_schedule.h"
#include "core/rng.h"
#include "core/train_run.h"
#include "core/train_config.h"
#include "core/utils.h"
#include "dataloader/dataloader.h"
#include "dataloader/tokenizer.h"
#include "gpt2.cuh"

// Exit status when the run needs a path that is not built yet (several processes).
#define EXIT_NOT_BUILT 2
// GPT-2's <|endoftext|> token, the start of every sample.
#define GPT2_EOT 50256

static const char USAGE[] =
    "usage: train_gpt [flags]      (several processes: mpirun -np N ./train_gpt [flags])\n"
    "Trains GPT-2 on llm.c token shards (made by dev/data/prepare.py). Each step prints the loss, learning rate,\n"
    "gradient norm, time, tokens/s and MFU: FLOPs/token = 6 * parameters + 6 * layers * T * channels, against\n"
    "989 TFLOP/s (H100 SXM dense BF16). With -o: log.txt and checkpoints model_S.bin + state_S.bin (S = steps done);\n"
    "-y 1 resumes from the largest S.";

// ---------------------------------------------------------------------------------------------------
// Processes

// This process's rank and the number of processes: from MPI when built with it (mpirun, or one
// process when started alone), else a single process.
static void processes_init(int *argc, char ***argv, int *rank, int *world) {
#ifdef USE_MPI
    int rc = MPI_Init(argc, argv);
    if (rc != MPI_SUCCESS) fatal("MPI_Init failed with code %d", rc);
    if (MPI_Comm_rank(MPI_COMM_WORLD, rank) != MPI_SUCCESS || MPI_Comm_size(MPI_COMM_WORLD, world) != MPI_SUCCESS) {
        fatal("MPI_Comm_rank/MPI_Comm_size failed");
    }
#else
    (void)argc;
    (void)argv;
    *rank = 0;
    *world = 1;
#endif
}

static void processes_finish(void) {
#ifdef USE_MPI
    if (MPI_Finalize() != MPI_SUCCESS) fatal("MPI_Finalize failed");
#endif
}

// Prints "error: <message>" (prefixed with the rank when there are several) and exits with status 1.
static void fail(int rank, int world, const char *message) {
    fflush(stdout);  // what was printed so far comes before the error
    if (world > 1) fatal("[rank %d] %s", rank, message);
    fatal("%s", message);
}

// Creates directory `path` and its missing parents (like mkdir -p).
static int make_dirs(const char *path, char *err, size_t err_size) {
    char partial[4096];
    size_t len = strlen(path);
    if (len >= sizeof(partial)) return set_error(err, err_size, "-o/--output-dir: path of %zu characters is too long", len);
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0') continue;
        memcpy(partial, path, i);
        partial[i] = '\0';
        if (mkdir(partial, 0755) != 0 && errno != EEXIST) {
            return set_error(err, err_size, "-o/--output-dir: cannot create '%s': %s", partial, strerror(errno));
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        return set_error(err, err_size, "-o/--output-dir: '%s' is not a directory", path);
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------------
// Model

// Fills *model and *params (fp32, the caller frees) from -e: a preset initialized from --seed, or a
// model file. Returns 0, or -1 with a message.
static int model_build(const TrainConfig *cfg, GPT2Config *model, float **params, char *err, size_t err_size) {
    char preset_err[256];
    if (gpt2_config_preset(cfg->model, model, preset_err, sizeof(preset_err)) == 0) {
        GPT2ParamLayout layout;
        gpt2_param_layout(model, &layout);
        *params = (float *)malloc_check(layout.num_parameters * sizeof(float));
        gpt2_init_params(model, *params, (uint64_t)cfg->seed);
        return 0;
    }
    int version = 0;
    char file_err[512];
    if (model_file_load(cfg->model, NULL, model, &version, params, file_err, sizeof(file_err)) != 0) {
        return set_error(err, err_size, "-e/--model '%s' is neither a preset (d12, d24, d36, d48) nor a usable model file: %s",
                         cfg->model, file_err);
    }
    return 0;
}

// Checks the flags that depend on the model: sequence lengths and the split over TP and PP ranks.
static int model_check_flags(const TrainConfig *cfg, const GPT2Config *model, char *err, size_t err_size) {
    if (cfg->seq_len > model->max_seq_len) {
        return set_error(err, err_size, "-t/--seq-len %d exceeds the model's maximum sequence length %d", cfg->seq_len, model->max_seq_len);
    }
    if (cfg->sample_every > 0 && cfg->gen_tokens > model->max_seq_len) {
        return set_error(err, err_size, "-g/--gen-tokens %d exceeds the model's maximum sequence length %d", cfg->gen_tokens, model->max_seq_len);
    }
    if (model->num_heads % cfg->tp != 0) {
        return set_error(err, err_size, "--tp %d does not divide the model's %d attention heads", cfg->tp, model->num_heads);
    }
    if (model->num_layers % cfg->pp != 0) {
        return set_error(err, err_size, "--pp %d does not divide the model's %d layers", cfg->pp, model->num_layers);
    }
    return 0;
}

// Prints "error: <flag>: <message>" for an error reported by a loader, and exits with status 1.
static void fail_flag(int rank, int world, const char *flag, const char *message) {
    char full[1200];
    snprintf(full, sizeof(full), "%s: %s", flag, message);
    fail(rank, world, full);
}

// ---------------------------------------------------------------------------------------------------
// Evaluation and samples

// Mean loss over `batches` validation micro-batches from the start of the validation data.
static float validation_loss(GPT2 *model, DataLoader *val, size_t batches, int B, int T, int rank, int world) {
    char err[1024];
    dataloader_reset(val);
    double sum = 0.0;
    for (size_t i = 0; i < batches; i++) {
        if (dataloader_next_batch(val, err, sizeof(err)) != 0) fail_flag(rank, world, "-j/--val-data", err);
        sum += gpt2_forward(model, val->inputs, val->targets, B, T, 1.0f / ((float)B * T));
    }
    return (float)(sum / (double)batches);
}

// Generates gen_tokens tokens after <|endoftext|>, each drawn from the softmax of the model's next-
// token logits with the host RNG (forward-only at the sample length), and prints them (decoded
// when a tokenizer is given, else as ids).
static void print_sample(GPT2 *model, int gen_tokens, Rng *rng, const Tokenizer *tokenizer) {
    const int V = model->config.vocab_size, Vp = model->config.padded_vocab_size;
    int *tokens = (int *)malloc_check((size_t)gen_tokens * sizeof(int));
    bf16 *row = (bf16 *)malloc_check((size_t)Vp * sizeof(bf16));
    float *logits_row = (float *)malloc_check((size_t)V * sizeof(float));
    // Every forward runs the whole sample length (one GEMM shape, so one cuBLASLt plan per linear);
    // the causal mask keeps the not-yet-generated positions (<|endoftext|>) from affecting row t-1.
    for (int t = 0; t < gen_tokens; t++) tokens[t] = GPT2_EOT < V ? GPT2_EOT : V - 1;
    printf("sample: ");
    for (int t = 1; t < gen_tokens; t++) {
        gpt2_forward(model, tokens, NULL, 1, gen_tokens, 0.0f);
        const bf16 *logits = (const bf16 *)model->reg.tensors[model->logits].data + (size_t)(t - 1) * Vp;
        cudaCheck(cudaMemcpy(row, logits, (size_t)Vp * sizeof(bf16), cudaMemcpyDeviceToHost));
        for (int v = 0; v < V; v++) logits_row[v] = __bfloat162float(row[v]);
        const int next = sample_token(logits_row, V, rng_uniform(rng));
        tokens[t] = next;
        if (tokenizer != NULL) tokenizer_print_token(stdout, tokenizer, (uint32_t)next);
        else printf("%d ", next);
    }
    printf("\n");
    fflush(stdout);
    free(tokens);
    free(row);
    free(logits_row);
}

// ---------------------------------------------------------------------------------------------------

int main(int argc, char **argv) {
    char err[1024];
    // flags first, so that -h and flag errors need no MPI
    if (flags_check_table(TRAIN_FLAGS, NUM_TRAIN_FLAGS, err, sizeof(err)) != 0) fatal("%s", err);
    TrainConfig cfg;
    int help = 0;
    if (flags_parse(TRAIN_FLAGS, NUM_TRAIN_FLAGS, &cfg, argc, argv, &help, err, sizeof(err)) != 0) {
        fatal("%s (train_gpt -h lists the flags)", err);
    }
    if (help) {
        flags_print_help(stdout, USAGE, TRAIN_FLAGS, NUM_TRAIN_FLAGS);
        return 0;
    }

    int rank, world;
    processes_init(&argc, &argv, &rank, &world);
    TrainSetup setup;
    if (train_config_setup(&cfg, world, &setup, err, sizeof(err)) != 0) fail(rank, world, err);
    const ParallelLayout *layout = &setup.layout;
    ParallelCoords coords = parallel_layout_coords(layout, rank);
    if (rank == 0) {
        flags_print_config(stdout, TRAIN_FLAGS, NUM_TRAIN_FLAGS, &cfg);
        printf("processes: %d = tp %d x pp %d x dp %d\n", world, layout->tp, layout->pp, layout->dp);
    }
    if (cfg.output_dir[0] != '\0' && make_dirs(cfg.output_dir, err, sizeof(err)) != 0) fail(rank, world, err);

    // model
    GPT2Config model;
    memset(&model, 0, sizeof(model));
    float *params = NULL;
    if (model_build(&cfg, &model, &params, err, sizeof(err)) != 0) fail(rank, world, err);
    if (model_check_flags(&cfg, &model, err, sizeof(err)) != 0) fail(rank, world, err);
    GPT2ParamLayout param_layout;
    gpt2_param_layout(&model, &param_layout);
    if (rank == 0) {
        printf("model: %s: max_seq_len %d, vocab_size %d (padded %d), layers %d, heads %d, channels %d\n",
               cfg.model, model.max_seq_len, model.vocab_size, model.padded_vocab_size, model.num_layers,
               model.num_heads, model.channels);
        printf("parameters: %zu (%.1fM)\n", param_layout.num_parameters, (double)param_layout.num_parameters / 1e6);
    }

    // data: this rank reads the slice of its data-parallel group; TP and PP ranks of one replica read the same
    DataLoader train_loader;
    if (dataloader_init(&train_loader, cfg.train_pattern, cfg.batch_size, cfg.seq_len, coords.dp_rank, layout->dp,
                        model.vocab_size, cfg.shuffle, (uint64_t)cfg.seed, err, sizeof(err)) != 0) {
        fail_flag(rank, world, "-i/--train-data", err);
    }
    size_t train_batches = dataloader_batches_per_epoch(&train_loader);
    size_t steps_per_epoch = train_batches / (size_t)setup.grad_accum_steps;
    if (steps_per_epoch == 0) {
        snprintf(err, sizeof(err), "-i/--train-data '%s': %zu micro-batches per data-parallel rank per epoch, fewer than the %d of one optimizer step (-d %lld)",
                 cfg.train_pattern, train_batches, setup.grad_accum_steps, (long long)setup.total_batch_tokens);
        fail(rank, world, err);
    }
    int64_t num_steps = cfg.max_steps == -1 ? (int64_t)steps_per_epoch : cfg.max_steps;
    size_t val_batches = 0;
    DataLoader val_loader;
    memset(&val_loader, 0, sizeof(val_loader));
    if (cfg.val_pattern[0] != '\0') {
        if (dataloader_init(&val_loader, cfg.val_pattern, cfg.batch_size, cfg.seq_len, coords.dp_rank, layout->dp,
                            model.vocab_size, 0, 0, err, sizeof(err)) != 0) {
            fail_flag(rank, world, "-j/--val-data", err);
        }
        size_t available = dataloader_batches_per_epoch(&val_loader);
        if (available == 0) {
            snprintf(err, sizeof(err), "-j/--val-data '%s': no validation batch for %d data-parallel ranks", cfg.val_pattern, layout->dp);
            fail(rank, world, err);
        }
        val_batches = cfg.val_max_batches == -1 || (size_t)cfg.val_max_batches > available ? available : (size_t)cfg.val_max_batches;
    }
    // samples: decoded with the tokenizer, which must match the model's vocabulary
    Tokenizer tokenizer;
    memset(&tokenizer, 0, sizeof(tokenizer));
    int use_tokenizer = cfg.sample_every > 0 && cfg.tokenizer_path[0] != '\0';
    if (use_tokenizer) {
        if (tokenizer_init(&tokenizer, cfg.tokenizer_path, err, sizeof(err)) != 0) fail_flag(rank, world, "--tokenizer", err);
        if ((int64_t)tokenizer.vocab_size != model.vocab_size) {
            snprintf(err, sizeof(err), "--tokenizer '%s' has %u tokens, the model %d", cfg.tokenizer_path, tokenizer.vocab_size, model.vocab_size);
            fail(rank, world, err);
        }
    }
    if (rank == 0) {
        int64_t tokens_per_micro_batch = (int64_t)cfg.batch_size * cfg.seq_len;
        printf("batch: %lld tokens per step = B %d x T %d x dp %d x %d accumulation steps\n",
               (long long)setup.total_batch_tokens, cfg.batch_size, cfg.seq_len, layout->dp, setup.grad_accum_steps);
        printf("training data: %zu micro-batches per data-parallel rank per epoch (%lld tokens over all ranks), %zu steps per epoch\n",
               train_batches, (long long)(train_batches * (size_t)layout->dp) * tokens_per_micro_batch, steps_per_epoch);
        printf("training run: %lld steps, %lld tokens (%.2f epochs)\n", (long long)num_steps,
               (long long)num_steps * setup.total_batch_tokens, (double)num_steps / (double)steps_per_epoch);
        if (val_batches > 0) {
            printf("validation: %zu micro-batches per pass per data-parallel rank (%lld tokens over all ranks), ", val_batches,
                   (long long)(val_batches * (size_t)layout->dp) * tokens_per_micro_batch);
            if (cfg.val_every > 0) printf("every %d steps\n", cfg.val_every);
            else printf("no passes during training (-v 0)\n");
        } else {
            printf("validation: none\n");
        }
        if (cfg.sample_every == 0) printf("samples: none (-s 0)\n");
        else if (use_tokenizer) printf("samples: %d tokens every %d steps, decoded with %s\n", cfg.gen_tokens, cfg.sample_every, cfg.tokenizer_path);
        else printf("samples: %d tokens every %d steps, printed as token ids (--tokenizer \"\")\n", cfg.gen_tokens, cfg.sample_every);
    }
    if (world > 1) {
        if (rank == 0) printf("the multi-process GPU path (tp x pp x dp) is not built yet: exiting with status %d\n", EXIT_NOT_BUILT);
        processes_finish();
        return EXIT_NOT_BUILT;
    }

    // device model: memory plan first (refused before allocating when it does not fit)
    int devices = 0;
    cudaError_t device_status = cudaGetDeviceCount(&devices);
    if (device_status != cudaSuccess || devices == 0) {
        snprintf(err, sizeof(err), "no CUDA device to train on (%s)", device_status != cudaSuccess ? cudaGetErrorString(device_status) : "0 devices");
        fail(rank, world, err);
    }
    LRSchedule schedule = {cfg.learning_rate, cfg.warmup_steps, (int)num_steps, cfg.final_lr_frac};
    if (lr_schedule_validate(&schedule, err, sizeof(err)) != 0) fail(rank, world, err);
    const int tokens_per_micro_batch = cfg.batch_size * cfg.seq_len;
    const int max_tokens = cfg.sample_every > 0 && cfg.gen_tokens > tokens_per_micro_batch ? cfg.gen_tokens : tokens_per_micro_batch;
    GPT2 gpt;
    if (gpt2_build(&gpt, &model, max_tokens, (Precision)cfg.precision, stdout, err, sizeof(err)) != 0) fail(rank, world, err);
    gpt2_set_params(&gpt, params);
    free(params);
    params = NULL;
    GPT2Optimizer opt = {cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay, cfg.grad_clip};
    Rng sample_rng;
    rng_seed(&sample_rng, (uint64_t)cfg.seed);
    TrainRunConfig run_cfg = {(uint64_t)cfg.batch_size, (uint64_t)cfg.seq_len, (uint64_t)setup.total_batch_tokens,
                              (uint64_t)world, (uint64_t)rank};
    int64_t start_step = 0;
    char model_path[4096], state_path[4096];
    if (cfg.resume) {
        long long latest;
        if (checkpoint_find_latest(cfg.output_dir, &latest, err, sizeof(err)) != 0) fail(rank, world, err);
        if (latest < 0) {
            snprintf(err, sizeof(err), "-y/--resume 1: no checkpoint (model_S.bin with state_S.bin) in '%s'", cfg.output_dir);
            fail(rank, world, err);
        }
        if (checkpoint_paths(cfg.output_dir, latest, model_path, state_path, sizeof(model_path), err, sizeof(err)) != 0) fail(rank, world, err);
        TrainState st;
        memset(&st, 0, sizeof(st));
        if (gpt2_checkpoint_load(&gpt, model_path, state_path, &run_cfg, &st, err, sizeof(err)) != 0) fail_flag(rank, world, "-y/--resume", err);
        if (dataloader_set_position(&train_loader, &st.data, err, sizeof(err)) != 0) fail_flag(rank, world, "-y/--resume", err);
        sample_rng.state = st.rng_state;
        start_step = (int64_t)st.step;
        printf("resumed from %s (step %lld)\n", state_path, (long long)start_step);
    }
    Logger logger;
    if (logger_open(&logger, cfg.output_dir, cfg.resume, err, sizeof(err)) != 0) fail(rank, world, err);

    // training loop
    const double flops_per_token = gpt2_flops_per_token(&gpt, cfg.seq_len);
    const float dloss = 1.0f / ((float)tokens_per_micro_batch * (float)setup.grad_accum_steps);
    for (int64_t step = start_step; step < num_steps; step++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        double loss_sum = 0.0;
        for (int micro = 0; micro < setup.grad_accum_steps; micro++) {
            if (dataloader_next_batch(&train_loader, err, sizeof(err)) != 0) fail_flag(rank, world, "-i/--train-data", err);
            loss_sum += gpt2_forward(&gpt, train_loader.inputs, train_loader.targets, cfg.batch_size, cfg.seq_len, dloss);
            gpt2_backward(&gpt, micro > 0);  // the first micro-step writes the gradients, the others add
        }
        const float loss = (float)(loss_sum / setup.grad_accum_steps);
        if (!isfinite(loss)) {
            snprintf(err, sizeof(err), "step %lld: the training loss is %f: stopping (lower the learning rate -l, or check the data)",
                     (long long)step + 1, loss);
            fail(rank, world, err);
        }
        const float lr = lr_schedule_at(&schedule, (int)step);
        const float norm = gpt2_update(&gpt, &opt, lr, (int)step + 1);
        cudaCheck(cudaStreamSynchronize(gpt.stream));
        clock_gettime(CLOCK_MONOTONIC, &t1);
        const double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
        const StepMetrics sm = step_metrics(ms, (double)setup.total_batch_tokens, flops_per_token);
        if ((step + 1) % cfg.log_every == 0 || step + 1 == num_steps) {
            printf("step %5lld/%lld | loss %.6f | lr %.3e | norm %.4f | %.1f ms | %.0f tok/s | MFU %.1f%%\n", (long long)step + 1,
                   (long long)num_steps, loss, lr, norm, ms, sm.tokens_per_s, 100.0 * sm.mfu);
            fflush(stdout);
        }
        logger_step(&logger, step + 1, loss, lr, norm, ms, sm.tokens_per_s, sm.mfu);
        const int last = step + 1 == num_steps;
        if (val_batches > 0 && cfg.val_every > 0 && ((step + 1) % cfg.val_every == 0 || last)) {
            const float val = validation_loss(&gpt, &val_loader, val_batches, cfg.batch_size, cfg.seq_len, rank, world);
            printf("val loss %.6f (step %lld, %zu batches)\n", val, (long long)step + 1, val_batches);
            logger_val(&logger, step + 1, val);
        }
        if (cfg.sample_every > 0 && ((step + 1) % cfg.sample_every == 0 || last)) {
            print_sample(&gpt, cfg.gen_tokens, &sample_rng, use_tokenizer ? &tokenizer : NULL);
        }
        if (cfg.checkpoint_every > 0 && ((step + 1) % cfg.checkpoint_every == 0 || last)) {
            if (checkpoint_paths(cfg.output_dir, (long long)step + 1, model_path, state_path, sizeof(model_path), err, sizeof(err)) != 0) {
                fail(rank, world, err);
            }
            TrainState st;
            memset(&st, 0, sizeof(st));
            st.step = (uint64_t)step + 1;
            st.rng_state = sample_rng.state;
            dataloader_get_position(&train_loader, &st.data);
            st.run = run_cfg;
            if (gpt2_checkpoint_write(&gpt, model_path, state_path, &st, err, sizeof(err)) != 0) fail(rank, world, err);
            printf("checkpoint: %s, %s\n", model_path, state_path);
        }
    }
    logger_close(&logger);
    gpt2_free(&gpt);
    if (use_tokenizer) tokenizer_free(&tokenizer);
    if (cfg.val_pattern[0] != '\0') dataloader_free(&val_loader);
    dataloader_free(&train_loader);
    processes_finish();
    return 0;
}
