// The training program shared by the trainers: train_gpt.cu and train_llama.cu are each a ModelFamily
// (presets, model files, parameter table, device operations) and `return trainer_main(argc, argv, &FAMILY)`.
//
// What a run does, in this order:
//   1. flags (core/train_config.h; -h prints them), the processes (MPI when built with it), the layout;
//   2. every check that needs no GPU: the model (-e: a preset initialised from --seed, or a model file),
//      the model against the flags (sequence lengths, the TP/PP split, the kernels' limits), the data
//      (-i/-j), the schedule (-l/-u/-x), the tokenizer, the output directory (-o: writable, and without
//      -y 1 not holding an earlier run's log or checkpoints; created only in step 4) and, with -y 1, the
//      whole checkpoint it resumes from, read into host memory;
//   3. the GPU: the device model's memory plan (the report is printed; the run is refused before
//      allocating when it does not fit), the parameters and optimizer state uploaded;
//   4. the output directory and log, then training: each step accumulates gradients over d/(B*T*dp)
//      micro-batches, clips the global norm and takes an AdamW step with the learning-rate schedule, and
//      prints step, loss, lr, grad norm, ms, tokens/s and MFU (FLOPs per token from the family, against
//      989 TFLOP/s); validation every -v steps over -m batches; a text sample of -g tokens every -s steps
//      (sampled from the softmax with the host RNG, starting from <|endoftext|>); a checkpoint every -n
//      steps and at the last step.
// Nothing is created on disk before step 4, so a run refused by a check leaves no trace.
//
// Output directory (-o): log.txt (core/logger.h) and checkpoints, two files named by the number of steps
// completed, S (8 digits; core/train_run.h): model_S.bin (the family's model file, fp32 master weights)
// and state_S.bin (the training-state file, core/train_state.h). Both are written atomically, the model
// file first, so a state file implies its model file is complete. -y 1 resumes from the largest S for
// which both exist, bit-exactly (same losses as an uninterrupted run) when the flags are the same.
//
// Exit status: 0 after -h or a finished run, 1 on any error (with a message naming the flag or file),
// 2 when the run needs a path that is not built yet (several processes).
#ifndef CORE_TRAINER_CUH
#define CORE_TRAINER_CUH

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef USE_MPI
#include <mpi.h>
#endif

#include "core/flags.h"
#include "core/logger.h"
#include "core/lr_schedule.h"
#include "core/model.cuh"
#include "core/param_table.h"
#include "core/rng.h"
#include "core/train_config.h"
#include "core/train_run.h"
#include "core/train_state.h"
#include "core/utils.h"
#include "dataloader/dataloader.h"
#include "dataloader/tokenizer.h"

// Exit status when the run needs a path that is not built yet (several processes).
#define EXIT_NOT_BUILT 2
// GPT-2 BPE's <|endoftext|> token (both families use that vocabulary), the start of every sample.
#define TRAINER_EOT 50256
// Token shards hold uint16 ids.
#define TRAINER_MAX_VOCAB 65536

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

// The run's identity for messages.
typedef struct {
    int rank, world;
} Proc;

// Prints "error: <message>" (prefixed with the rank when there are several) and exits with status 1.
static void fail(const Proc *p, const char *message) {
    fflush(stdout);  // what was printed so far comes before the error
    if (p->world > 1) fatal("[rank %d] %s", p->rank, message);
    fatal("%s", message);
}

// Prints "error: <flag>: <message>" and exits with status 1.
static void fail_flag(const Proc *p, const char *flag, const char *message) {
    char full[1400];
    snprintf(full, sizeof(full), "%s: %s", flag, message);
    fail(p, full);
}

// ---------------------------------------------------------------------------------------------------
// The output directory: checked before the GPU, created after it

// Checks that `path` is a writable directory, or can be created (its nearest existing ancestor is a
// writable directory). Creates nothing. Returns 0, or -1 with a message.
static int output_dir_check(const char *path, char *err, size_t err_size) {
    char partial[4096];
    size_t len = strlen(path);
    if (len >= sizeof(partial)) return set_error(err, err_size, "-o/--output-dir: path of %zu characters is too long", len);
    memcpy(partial, path, len + 1);
    struct stat st;
    // walk up to the nearest existing ancestor
    while (stat(partial, &st) != 0) {
        if (errno != ENOENT) return set_error(err, err_size, "-o/--output-dir: cannot create '%s': '%s': %s", path, partial, strerror(errno));
        char *slash = strrchr(partial, '/');
        if (slash == NULL) {
            strcpy(partial, ".");
        } else if (slash == partial) {
            partial[1] = '\0';
        } else {
            *slash = '\0';
        }
    }
    if (!S_ISDIR(st.st_mode)) {
        if (strcmp(partial, path) == 0) return set_error(err, err_size, "-o/--output-dir: '%s' is not a directory", path);
        return set_error(err, err_size, "-o/--output-dir: cannot create '%s': '%s' is not a directory", path, partial);
    }
    if (access(partial, W_OK | X_OK) != 0)
        return set_error(err, err_size, "-o/--output-dir: cannot %s '%s': '%s' is not writable", strcmp(partial, path) == 0 ? "write in" : "create",
                         path, partial);
    return 0;
}

// A fresh run (no -y 1) refuses an output directory that already holds a run (a log or a checkpoint),
// so nothing of it is overwritten. Returns 0, or -1 with a message saying how to go on.
static int output_dir_check_fresh(const char *path, char *err, size_t err_size) {
    struct stat st;
    if (stat(path, &st) != 0) return 0;  // created later
    long long latest = -1;
    if (checkpoint_find_latest(path, &latest, err, err_size) != 0) return -1;
    char log_path[4200];
    snprintf(log_path, sizeof(log_path), "%s/log.txt", path);
    const int has_log = stat(log_path, &st) == 0;
    if (latest < 0 && !has_log) return 0;
    if (latest >= 0)
        return set_error(err, err_size, "-o/--output-dir '%s' already holds a run (checkpoints up to step %lld): resume it with -y 1, or give another "
                         "directory", path, latest);
    return set_error(err, err_size, "-o/--output-dir '%s' already holds a run's log.txt: give another directory, or remove the old run", path);
}

// Creates directory `path` and its missing parents (like mkdir -p).
static int output_dir_create(const char *path, char *err, size_t err_size) {
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
    return 0;
}

// ---------------------------------------------------------------------------------------------------
// The model on the host

typedef struct {
    void *config;        // the family's configuration (config_bytes)
    ParamTable table;
    ModelDims dims;
    float *params;       // fp32, table order: the initial weights (or a model file's)
} HostModel;

// Fills *hm from -e: a preset initialised from seed (not initialised when `resume`: the checkpoint's weights
// replace them; params stays NULL), or a model file. Returns 0, or -1 with a message.
static int host_model_create(const ModelFamily *f, const char *arg, uint64_t seed, bool resume, HostModel *hm, char *err, size_t err_size) {
    memset(hm, 0, sizeof(*hm));
    hm->config = calloc_check(1, f->config_bytes);
    char why[768];
    if (f->preset(arg, hm->config) == 0) {
        if (f->param_table(hm->config, &hm->table, why, sizeof(why)) != 0) return set_error(err, err_size, "-e/--model %s: %s", arg, why);
        if (!resume) {
            hm->params = (float *)malloc_check(hm->table.num_parameters * sizeof(float));
            param_table_init(&hm->table, hm->params, seed);
        }
    } else {
        struct stat st;
        if (stat(arg, &st) != 0)
            return set_error(err, err_size, "-e/--model '%s' is neither a %s preset (%s) nor a file", arg, f->name, f->presets);
        int version = 0;
        if (f->model_file_load(arg, NULL, hm->config, &version, &hm->params, why, sizeof(why)) != 0)
            return set_error(err, err_size, "-e/--model '%s' is not a usable %s model file: %s", arg, f->name, why);
        if (f->param_table(hm->config, &hm->table, why, sizeof(why)) != 0) return set_error(err, err_size, "-e/--model '%s': %s", arg, why);
    }
    hm->dims = f->dims(hm->config);
    return 0;
}

static void host_model_free(HostModel *hm) {
    free(hm->config);
    free(hm->params);
    memset(hm, 0, sizeof(*hm));
}

// Checks the flags that depend on the model: sequence lengths, the vocabulary against uint16 shards, the
// split over TP and PP ranks, and the kernels' limits.
static int model_check_flags(const ModelFamily *f, const TrainConfig *cfg, const HostModel *hm, char *err, size_t err_size) {
    const ModelDims *d = &hm->dims;
    char why[512];
    if (d->vocab_size > TRAINER_MAX_VOCAB)
        return set_error(err, err_size, "-e/--model '%s': vocabulary of %d tokens; token shards hold uint16 ids, so at most %d", cfg->model,
                         d->vocab_size, TRAINER_MAX_VOCAB);
    if (f->check_kernels(hm->config, why, sizeof(why)) != 0) return set_error(err, err_size, "-e/--model '%s': %s", cfg->model, why);
    if (cfg->seq_len > d->max_seq_len)
        return set_error(err, err_size, "-t/--seq-len %d exceeds the model's maximum sequence length %d", cfg->seq_len, d->max_seq_len);
    if (cfg->sample_every > 0 && cfg->gen_tokens > d->max_seq_len)
        return set_error(err, err_size, "-g/--gen-tokens %d exceeds the model's maximum sequence length %d", cfg->gen_tokens, d->max_seq_len);
    if (param_table_check_tp(&hm->table, cfg->tp, err, err_size) != 0) return -1;
    if (d->num_layers % cfg->pp != 0)
        return set_error(err, err_size, "--pp %d does not divide the model's %d layers", cfg->pp, d->num_layers);
    return 0;
}

// ---------------------------------------------------------------------------------------------------
// The checkpoint to resume from

// Finds the latest checkpoint in cfg->output_dir and reads it whole (model_checkpoint_read). -1 with a message.
static int resume_checkpoint_read(const ModelFamily *f, const TrainConfig *cfg, const HostModel *hm, const TrainRunConfig *run,
                                  HostCheckpoint *ck, char *model_path, char *state_path, size_t path_size, char *err, size_t err_size) {
    struct stat st;
    if (stat(cfg->output_dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return set_error(err, err_size, "-y/--resume 1: the output directory '%s' does not exist (nothing to resume; drop -y 1 to start a run)",
                         cfg->output_dir);
    long long latest;
    if (checkpoint_find_latest(cfg->output_dir, &latest, err, err_size) != 0) return -1;
    if (latest < 0) return set_error(err, err_size, "-y/--resume 1: no checkpoint (model_S.bin with state_S.bin) in '%s'", cfg->output_dir);
    if (checkpoint_paths(cfg->output_dir, latest, model_path, state_path, path_size, err, err_size) != 0) return -1;
    char why[1024];
    if (model_checkpoint_read(f, hm->config, hm->table.num_parameters, model_path, state_path, run, ck, why, sizeof(why)) != 0)
        return set_error(err, err_size, "-y/--resume: %s", why);
    return 0;
}

// ---------------------------------------------------------------------------------------------------
// Evaluation and samples

// Mean loss over `batches` validation micro-batches from the start of the validation data.
static float validation_loss(Model *m, DataLoader *val, size_t batches, int B, int T, const Proc *p) {
    char err[1024];
    dataloader_reset(val);
    double sum = 0.0;
    for (size_t i = 0; i < batches; i++) {
        if (dataloader_next_batch(val, err, sizeof(err)) != 0) fail_flag(p, "-j/--val-data", err);
        model_forward(m, 0, val->inputs, val->targets, B, T, 1.0f / ((float)B * T));
        sum += model_take_loss(m);
    }
    return (float)(sum / (double)batches);
}

// Generates gen_tokens tokens after <|endoftext|>, each drawn from the softmax of the model's next-
// token logits with the host RNG (forward-only at the sample length), and prints them (decoded
// when a tokenizer is given, else as ids).
static void print_sample(Model *m, int gen_tokens, Rng *rng, const Tokenizer *tokenizer) {
    const int V = m->dims.vocab_size, Vp = m->dims.padded_vocab_size;
    int *tokens = (int *)malloc_check((size_t)gen_tokens * sizeof(int));
    bf16 *row = (bf16 *)malloc_check((size_t)Vp * sizeof(bf16));
    float *logits_row = (float *)malloc_check((size_t)V * sizeof(float));
    // Every forward runs the whole sample length (one GEMM shape, so one cuBLASLt plan per linear);
    // the causal mask keeps the not-yet-generated positions (<|endoftext|>) from affecting row t-1.
    for (int t = 0; t < gen_tokens; t++) tokens[t] = TRAINER_EOT < V ? TRAINER_EOT : V - 1;
    printf("sample: ");
    for (int t = 1; t < gen_tokens; t++) {
        model_forward(m, 0, tokens, NULL, 1, gen_tokens, 0.0f);
        const bf16 *logits = model_logits(m, 0) + (size_t)(t - 1) * Vp;
        cudaCheck(cudaMemcpyAsync(row, logits, (size_t)Vp * sizeof(bf16), cudaMemcpyDeviceToHost, m->stream));
        cudaCheck(cudaStreamSynchronize(m->stream));
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

// Says plainly when there is no GPU (CUDA's own text for a machine without the driver speaks of an
// insufficient driver version). Returns 0, or -1 with a message.
static int gpu_check(const ModelFamily *f, char *err, size_t err_size) {
    int devices = 0;
    const cudaError_t status = cudaGetDeviceCount(&devices);
    if (status == cudaErrorNoDevice || status == cudaErrorInsufficientDriver || (status == cudaSuccess && devices == 0))
        return set_error(err, err_size, "no CUDA GPU on this machine (%s needs an NVIDIA GPU and its driver); every check before the GPU passed",
                         f->program);
    if (status != cudaSuccess) return set_error(err, err_size, "the CUDA runtime cannot list the GPUs: %s", cudaGetErrorString(status));
    return 0;
}

// ---------------------------------------------------------------------------------------------------

static int trainer_main(int argc, char **argv, const ModelFamily *f) {
    char err[1536];
    FlagSpec flags[NUM_TRAIN_FLAGS];
    train_flags_for_family(flags, f->default_model, f->model_help);
    // flags first, so that -h and flag errors need no MPI
    if (flags_check_table(flags, NUM_TRAIN_FLAGS, err, sizeof(err)) != 0) fatal("%s", err);
    TrainConfig cfg;
    int help = 0;
    if (flags_parse(flags, NUM_TRAIN_FLAGS, &cfg, argc, argv, &help, err, sizeof(err)) != 0) fatal("%s (%s -h lists the flags)", err, f->program);
    if (help) {
        flags_print_help(stdout, f->usage, flags, NUM_TRAIN_FLAGS);
        return 0;
    }

    Proc proc;
    processes_init(&argc, &argv, &proc.rank, &proc.world);
    const Proc *p = &proc;
    TrainSetup setup;
    if (train_config_setup(&cfg, proc.world, &setup, err, sizeof(err)) != 0) fail(p, err);
    const ParallelLayout *layout = &setup.layout;
    ParallelCoords coords = parallel_layout_coords(layout, proc.rank);
    if (proc.rank == 0) {
        flags_print_config(stdout, flags, NUM_TRAIN_FLAGS, &cfg);
        printf("processes: %d = tp %d x pp %d x dp %d\n", proc.world, layout->tp, layout->pp, layout->dp);
    }

    // model (host)
    HostModel hm;
    if (host_model_create(f, cfg.model, (uint64_t)cfg.seed, cfg.resume, &hm, err, sizeof(err)) != 0) fail(p, err);
    if (model_check_flags(f, &cfg, &hm, err, sizeof(err)) != 0) fail(p, err);
    if (proc.rank == 0) {
        char shape[512];
        f->describe(hm.config, shape, sizeof(shape));
        printf("model: %s %s: %s\n", f->name, cfg.model, shape);
        printf("parameters: %zu (%.1fM)\n", hm.table.num_parameters, (double)hm.table.num_parameters / 1e6);
    }

    // data: this rank reads the slice of its data-parallel group; TP and PP ranks of one replica read the same
    DataLoader train_loader;
    if (dataloader_init(&train_loader, cfg.train_pattern, cfg.batch_size, cfg.seq_len, coords.dp_rank, layout->dp, hm.dims.vocab_size,
                        cfg.shuffle, (uint64_t)cfg.seed, err, sizeof(err)) != 0) {
        fail_flag(p, "-i/--train-data", err);
    }
    size_t train_batches = dataloader_batches_per_epoch(&train_loader);
    size_t steps_per_epoch = train_batches / (size_t)setup.grad_accum_steps;
    if (steps_per_epoch == 0) {
        snprintf(err, sizeof(err), "-i/--train-data '%s': %zu micro-batches per data-parallel rank per epoch, fewer than the %d of one optimizer step (-d %lld)",
                 cfg.train_pattern, train_batches, setup.grad_accum_steps, (long long)setup.total_batch_tokens);
        fail(p, err);
    }
    if (cfg.max_steps == -1 && steps_per_epoch > INT32_MAX) {
        snprintf(err, sizeof(err), "-x/--max-steps -1: one epoch is %zu steps, more than %d; give -x", steps_per_epoch, INT32_MAX);
        fail(p, err);
    }
    const int64_t num_steps = cfg.max_steps == -1 ? (int64_t)steps_per_epoch : cfg.max_steps;
    size_t val_batches = 0;
    DataLoader val_loader;
    memset(&val_loader, 0, sizeof(val_loader));
    if (cfg.val_pattern[0] != '\0') {
        if (dataloader_init(&val_loader, cfg.val_pattern, cfg.batch_size, cfg.seq_len, coords.dp_rank, layout->dp, hm.dims.vocab_size, 0, 0,
                            err, sizeof(err)) != 0) {
            fail_flag(p, "-j/--val-data", err);
        }
        size_t available = dataloader_batches_per_epoch(&val_loader);
        if (available == 0) {
            snprintf(err, sizeof(err), "-j/--val-data '%s': no validation batch of B*T = %d*%d tokens for %d data-parallel ranks (use a larger validation set, a smaller -b/-t, or -j \"\" -v 0)",
                     cfg.val_pattern, cfg.batch_size, cfg.seq_len, layout->dp);
            fail(p, err);
        }
        val_batches = cfg.val_max_batches == -1 || (size_t)cfg.val_max_batches > available ? available : (size_t)cfg.val_max_batches;
    }
    // schedule
    if (!(cfg.learning_rate > 0.0f)) {
        snprintf(err, sizeof(err), "-l/--lr %g: the peak learning rate must be positive", (double)cfg.learning_rate);
        fail(p, err);
    }
    if (cfg.warmup_steps > num_steps) {
        snprintf(err, sizeof(err), "-u/--warmup %d is longer than the run's %lld steps (-x/--max-steps%s)", cfg.warmup_steps, (long long)num_steps,
                 cfg.max_steps == -1 ? " -1: one epoch" : "");
        fail(p, err);
    }
    LRSchedule schedule = {cfg.learning_rate, cfg.warmup_steps, (int)num_steps, cfg.final_lr_frac};
    if (lr_schedule_validate(&schedule, err, sizeof(err)) != 0) fail(p, err);
    // samples: decoded with the tokenizer, which must match the model's vocabulary
    Tokenizer tokenizer;
    memset(&tokenizer, 0, sizeof(tokenizer));
    int use_tokenizer = cfg.sample_every > 0 && cfg.tokenizer_path[0] != '\0';
    if (use_tokenizer) {
        if (tokenizer_init(&tokenizer, cfg.tokenizer_path, err, sizeof(err)) != 0) fail_flag(p, "--tokenizer", err);
        if ((int64_t)tokenizer.vocab_size != hm.dims.vocab_size) {
            snprintf(err, sizeof(err), "--tokenizer '%s' has %u tokens, the model %d", cfg.tokenizer_path, tokenizer.vocab_size, hm.dims.vocab_size);
            fail(p, err);
        }
    }
    // output directory and the checkpoint to resume from
    if (cfg.output_dir[0] != '\0' && output_dir_check(cfg.output_dir, err, sizeof(err)) != 0) fail(p, err);
    if (cfg.output_dir[0] != '\0' && !cfg.resume && output_dir_check_fresh(cfg.output_dir, err, sizeof(err)) != 0) fail(p, err);
    TrainRunConfig run_cfg = {(uint64_t)cfg.batch_size, (uint64_t)cfg.seq_len, (uint64_t)setup.total_batch_tokens, (uint64_t)proc.world,
                              (uint64_t)proc.rank};
    HostCheckpoint resume_from;
    memset(&resume_from, 0, sizeof(resume_from));
    char model_path[4096], state_path[4096];
    if (cfg.resume && resume_checkpoint_read(f, &cfg, &hm, &run_cfg, &resume_from, model_path, state_path, sizeof(model_path), err,
                                             sizeof(err)) != 0)
        fail(p, err);
    if (cfg.resume) {
        if (dataloader_set_position(&train_loader, &resume_from.state.data, err, sizeof(err)) != 0) fail_flag(p, "-y/--resume", err);
    }

    if (proc.rank == 0) {
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
    if (proc.world > 1) {
        if (proc.rank == 0) printf("the multi-process GPU path (tp x pp x dp) is not built yet: exiting with status %d\n", EXIT_NOT_BUILT);
        processes_finish();
        return EXIT_NOT_BUILT;
    }

    // device model: memory plan first (refused before allocating when it does not fit)
    if (gpu_check(f, err, sizeof(err)) != 0) fail(p, err);
    const int tokens_per_micro_batch = cfg.batch_size * cfg.seq_len;
    const int max_tokens = cfg.sample_every > 0 && cfg.gen_tokens > tokens_per_micro_batch ? cfg.gen_tokens : tokens_per_micro_batch;
    Model model;
    if (model_build(&model, f, hm.config, max_tokens, 1, (Precision)cfg.precision, stdout, err, sizeof(err)) != 0)
        fail(p, err);
    Rng sample_rng;
    rng_seed(&sample_rng, (uint64_t)cfg.seed);
    int64_t start_step = 0;
    if (cfg.resume) {
        model_checkpoint_restore(&model, &resume_from);
        sample_rng.state = resume_from.state.rng_state;
        start_step = (int64_t)resume_from.state.step;
        printf("resumed from %s (step %lld)\n", state_path, (long long)start_step);
        model_checkpoint_free(&resume_from);
    } else {
        model_set_params(&model, hm.params);
    }
    free(hm.params);
    hm.params = NULL;
    const AdamWConfig opt = {cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay, cfg.grad_clip};

    // output directory and log
    if (cfg.output_dir[0] != '\0' && output_dir_create(cfg.output_dir, err, sizeof(err)) != 0) fail(p, err);
    Logger logger;
    if (logger_open(&logger, cfg.output_dir, cfg.resume, err, sizeof(err)) != 0) fail(p, err);

    // training loop
    const double flops_per_token = f->ops->flops_per_token(&model, cfg.seq_len);
    const float dloss = 1.0f / ((float)tokens_per_micro_batch * (float)setup.grad_accum_steps);
    for (int64_t step = start_step; step < num_steps; step++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int micro = 0; micro < setup.grad_accum_steps; micro++) {
            if (dataloader_next_batch(&train_loader, err, sizeof(err)) != 0) fail_flag(p, "-i/--train-data", err);
            model_forward(&model, 0, train_loader.inputs, train_loader.targets, cfg.batch_size, cfg.seq_len, dloss);
            model_backward(&model, 0, micro > 0);  // the first micro-step writes the gradients, the others add
        }
        const float lr = lr_schedule_at(&schedule, (int)step);
        const float norm = model_update(&model, &opt, lr, (int)step + 1);
        const float loss = model_take_loss(&model);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (!isfinite(loss)) {
            snprintf(err, sizeof(err), "step %lld: the training loss is %f: stopping (lower the learning rate -l, or check the data)",
                     (long long)step + 1, loss);
            fail(p, err);
        }
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
            const float val = validation_loss(&model, &val_loader, val_batches, cfg.batch_size, cfg.seq_len, p);
            printf("val loss %.6f (step %lld, %zu batches)\n", val, (long long)step + 1, val_batches);
            logger_val(&logger, step + 1, val);
        }
        if (cfg.sample_every > 0 && ((step + 1) % cfg.sample_every == 0 || last)) {
            print_sample(&model, cfg.gen_tokens, &sample_rng, use_tokenizer ? &tokenizer : NULL);
        }
        if (cfg.checkpoint_every > 0 && ((step + 1) % cfg.checkpoint_every == 0 || last)) {
            TrainState st;
            memset(&st, 0, sizeof(st));
            st.step = (uint64_t)step + 1;
            st.rng_state = sample_rng.state;
            dataloader_get_position(&train_loader, &st.data);
            st.run = run_cfg;
            if (checkpoint_paths(cfg.output_dir, (long long)step + 1, model_path, state_path, sizeof(model_path), err, sizeof(err)) != 0 ||
                model_checkpoint_write(f, &model, model_path, state_path, &st, err, sizeof(err)) != 0)
                fail(p, err);
            printf("checkpoint: %s, %s\n", model_path, state_path);
        }
    }
    logger_close(&logger);
    model_free(&model);
    host_model_free(&hm);
    if (use_tokenizer) tokenizer_free(&tokenizer);
    if (cfg.val_pattern[0] != '\0') dataloader_free(&val_loader);
    dataloader_free(&train_loader);
    processes_finish();
    return 0;
}

#endif // CORE_TRAINER_CUH
