// GPT-2 trainer. Run with -h for the flags (core/train_config.h); start several processes with
// mpirun, e.g. `mpirun -np 8 ./train_gpt -e d12 -b 16 -t 1024 -d 524288 --tp 2`.
//
// Built so far: the host path. It parses and checks the flags, prints the configuration, lays the
// ranks out as tp x pp x dp, builds a fresh model (-e d12|d24|d36|d48, initialized from --seed) or
// loads a model file, opens the training and validation shards for this rank's data-parallel slice,
// and prints the parameter count and how many tokens, micro-batches and steps the run has. The GPU
// training path is not built yet: the program then says so and exits with status 2.
// Exit status: 0 after -h, 1 on any error (with a message), 2 when the host path has finished.
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#ifdef USE_MPI
#include <mpi.h>
#endif

#include "core/checkpoint.h"
#include "core/flags.h"
#include "core/gpt2_model.h"
#include "core/train_config.h"
#include "core/utils.h"
#include "dataloader/dataloader.h"
#include "dataloader/tokenizer.h"

// Exit status when the host path has run to its end (the GPU training path is not built yet).
#define EXIT_NOT_BUILT 2

static const char USAGE[] =
    "usage: train_gpt [flags]      (several processes: mpirun -np N ./train_gpt [flags])\n"
    "Trains GPT-2 on llm.c token shards (made by dev/data/prepare.py).";

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
    if (cfg.val_pattern[0] != '\0') {
        DataLoader val_loader;
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
        dataloader_free(&val_loader);
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
        printf("GPU training path not implemented yet%s: the host path ends here (exit status %d)\n",
               cfg.resume ? " (nor resuming from a checkpoint, -y 1)" : "", EXIT_NOT_BUILT);
    }
    if (use_tokenizer) tokenizer_free(&tokenizer);
    dataloader_free(&train_loader);
    free(params);
    processes_finish();
    return EXIT_NOT_BUILT;
}
