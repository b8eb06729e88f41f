// Training configuration of the trainers: the TrainConfig struct, THE flag table that fills it (the
// same flags in every trainer; train_flags_for_family fills in the model family's -e default and help),
// the parallel layout arithmetic, and the checks across flags that need the world size
// (train_config_setup).
//
// Parallel layout: world = tp * pp * dp, dp derived from the world size and --tp/--pp. Ranks are
// numbered with tensor parallelism fastest, then data parallelism, then pipeline stages:
//   rank = tp_rank + tp * (dp_rank + dp * pp_rank)
// so a TP group is a run of consecutive ranks (one node's GPUs under the usual mpirun mapping).
//
// Batch: each data-parallel rank reads B sequences of T tokens per micro-step; one optimizer step
// sees -d total tokens, so gradient accumulation = d / (B * T * dp), which must be a whole number
// (TP and PP ranks of one replica read the same micro-batch, so they do not multiply the tokens).
// Plain C, also compiled as C++ by nvcc.
#ifndef CORE_TRAIN_CONFIG_H
#define CORE_TRAIN_CONFIG_H

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/flags.h"
#include "core/precision.h"
#include "core/utils.h"

typedef struct {
    // data and files
    const char *train_pattern;     // -i: glob of training shards
    const char *val_pattern;       // -j: glob of validation shards ("" = no validation)
    const char *output_dir;        // -o: logs and checkpoints ("" = none)
    const char *model;             // -e: a preset of the trainer's family (fresh model) or a model file path
    const char *tokenizer_path;    // --tokenizer: gpt2_tokenizer.bin for samples ("" = print token ids)
    int resume;                    // -y: continue from the latest checkpoint in output_dir
    // batch
    int batch_size;                // -b: micro-batch sequences per data-parallel rank
    int seq_len;                   // -t: tokens per sequence
    int64_t total_batch_tokens;    // -d: tokens per optimizer step over all ranks (-1 = B*T*dp)
    // optimizer and schedule
    float learning_rate;           // -l: peak learning rate
    int warmup_steps;              // -u: linear warmup steps
    float final_lr_frac;           // -q: final lr as a fraction of the peak (cosine decay)
    float weight_decay;            // -c: AdamW decoupled weight decay
    float beta1, beta2, eps;       // AdamW moments and epsilon
    float grad_clip;               // global-norm gradient clip (0 = off)
    int64_t max_steps;             // -x: optimizer steps (-1 = one epoch of the training data)
    int64_t seed;                  // model init and shuffling
    int shuffle;                   // shuffle shards and windows each epoch
    // evaluation, sampling, logging, checkpoints
    int val_every;                 // -v: steps between validation passes (0 = never)
    int val_max_batches;           // -m: batches per validation pass (-1 = whole validation set)
    int sample_every;              // -s: steps between text samples (0 = never)
    int gen_tokens;                // -g: tokens per sample
    int checkpoint_every;          // -n: steps between checkpoints (0 = none)
    int log_every;                 // steps between training-loss lines
    // precision and parallelism
    int precision;                 // -p: Precision (core/precision.h)
    int tp, pp;                    // tensor and pipeline parallel degrees
    int zero_stage;                // --dp-zero: ZeRO stage of the data-parallel optimizer (0 or 1)
} TrainConfig;

// Precision modes built so far (bit i = Precision i); the flag rejects the others by name.
#define TRAIN_PRECISIONS_BUILT (1u << PRECISION_BF16)

#define TRAIN_FLAG(short_name, long_name, type, field, default_text, range, help) \
    FLAG_ENTRY(short_name, long_name, type, TrainConfig, field, default_text, range, help)

static const FlagSpec TRAIN_FLAGS[] = {
    TRAIN_FLAG("-i", "--train-data", FLAG_STRING, train_pattern, "build/data/tinyshakespeare/tiny_shakespeare_train.bin", NULL,
               "glob of training token shards"),
    TRAIN_FLAG("-j", "--val-data", FLAG_STRING, val_pattern, "build/data/tinyshakespeare/tiny_shakespeare_val.bin", NULL,
               "glob of validation token shards (\"\" = no validation)"),
    TRAIN_FLAG("-o", "--output-dir", FLAG_STRING, output_dir, "", NULL,
               "directory for the log and checkpoints (\"\" = none)"),
    TRAIN_FLAG("-e", "--model", FLAG_STRING, model, "", NULL,
               "a preset of the trainer's model family for a fresh model, or a model file to start from"),
    TRAIN_FLAG(NULL, "--tokenizer", FLAG_STRING, tokenizer_path, "build/data/tinyshakespeare/gpt2_tokenizer.bin", NULL,
               "gpt2_tokenizer.bin for decoding samples (\"\" = print token ids)"),
    TRAIN_FLAG("-y", "--resume", FLAG_BOOL, resume, "0", NULL,
               "resume from the latest checkpoint in the output directory"),
    TRAIN_FLAG("-b", "--batch-size", FLAG_INT, batch_size, "4", "[1, 65536]",
               "micro-batch size: sequences per data-parallel rank per micro-step"),
    TRAIN_FLAG("-t", "--seq-len", FLAG_INT, seq_len, "1024", "[1, 1048576]",
               "sequence length in tokens (at most the model's maximum)"),
    TRAIN_FLAG("-d", "--total-batch", FLAG_INT64, total_batch_tokens, "-1", "[-1, inf)",
               "tokens per optimizer step over all ranks, a multiple of B*T*dp (-1 = B*T*dp)"),
    TRAIN_FLAG("-l", "--lr", FLAG_FLOAT, learning_rate, "3e-4", "[0, inf)",
               "peak learning rate"),
    TRAIN_FLAG("-u", "--warmup", FLAG_INT, warmup_steps, "0", "[0, inf)",
               "learning-rate warmup steps (linear from 0)"),
    TRAIN_FLAG("-q", "--final-lr-frac", FLAG_FLOAT, final_lr_frac, "1", "[0, 1]",
               "final learning rate as a fraction of the peak, reached by cosine decay at the last step"),
    TRAIN_FLAG("-c", "--weight-decay", FLAG_FLOAT, weight_decay, "0", "[0, inf)",
               "AdamW weight decay (decoupled, 2-D weights only)"),
    TRAIN_FLAG(NULL, "--beta1", FLAG_FLOAT, beta1, "0.9", "[0, 1)", "AdamW first-moment decay"),
    TRAIN_FLAG(NULL, "--beta2", FLAG_FLOAT, beta2, "0.95", "[0, 1)", "AdamW second-moment decay"),
    TRAIN_FLAG(NULL, "--eps", FLAG_FLOAT, eps, "1e-8", "(0, inf)", "AdamW epsilon"),
    TRAIN_FLAG(NULL, "--grad-clip", FLAG_FLOAT, grad_clip, "1", "[0, inf)",
               "clip the global gradient norm to this value (0 = no clipping)"),
    TRAIN_FLAG("-x", "--max-steps", FLAG_INT64, max_steps, "-1", "[-1, 2147483647]",
               "optimizer steps to run (-1 = one epoch of the training data; 0 is rejected)"),
    TRAIN_FLAG(NULL, "--seed", FLAG_INT64, seed, "1337", "[0, inf)", "seed of the model init and the data shuffling"),
    TRAIN_FLAG(NULL, "--shuffle", FLAG_BOOL, shuffle, "1", NULL, "shuffle shards and windows every epoch"),
    TRAIN_FLAG("-v", "--val-every", FLAG_INT, val_every, "20", "[0, inf)",
               "steps between validation passes (0 = never)"),
    TRAIN_FLAG("-m", "--val-batches", FLAG_INT, val_max_batches, "20", "[-1, inf)",
               "batches per validation pass (-1 = the whole validation set; 0 is rejected)"),
    TRAIN_FLAG("-s", "--sample-every", FLAG_INT, sample_every, "20", "[0, inf)",
               "steps between text samples (0 = never)"),
    TRAIN_FLAG("-g", "--gen-tokens", FLAG_INT, gen_tokens, "64", "[1, inf)",
               "tokens generated per sample (at most the model's maximum sequence length)"),
    TRAIN_FLAG("-n", "--checkpoint-every", FLAG_INT, checkpoint_every, "0", "[0, inf)",
               "steps between checkpoints in the output directory (0 = none)"),
    TRAIN_FLAG(NULL, "--log-every", FLAG_INT, log_every, "1", "[1, inf)", "steps between training-loss lines"),
    FLAG_ENUM_ENTRY("-p", "--precision", TrainConfig, precision, "bf16", PRECISION_NAMES, PRECISION_COUNT,
                    TRAIN_PRECISIONS_BUILT, "precision mode of the linear layers"),
    TRAIN_FLAG(NULL, "--tp", FLAG_INT, tp, "1", "[1, 1024]", "tensor-parallel degree (consecutive ranks)"),
    TRAIN_FLAG(NULL, "--pp", FLAG_INT, pp, "1", "[1, 1024]", "pipeline-parallel degree (stages)"),
    TRAIN_FLAG("-z", "--dp-zero", FLAG_INT, zero_stage, "0", "[0, 1]",
               "ZeRO stage over the data-parallel ranks (0 = replicated optimizer, 1 = sharded optimizer state)"),
};
#define NUM_TRAIN_FLAGS ((int)(sizeof(TRAIN_FLAGS) / sizeof(TRAIN_FLAGS[0])))

// The flag table of one trainer: TRAIN_FLAGS with -e's default (the family's first preset) and help
// (its presets) filled in. out holds NUM_TRAIN_FLAGS entries.
static inline void train_flags_for_family(FlagSpec out[NUM_TRAIN_FLAGS], const char *default_model, const char *model_help) {
    for (int k = 0; k < NUM_TRAIN_FLAGS; k++) {
        out[k] = TRAIN_FLAGS[k];
        if (strcmp(out[k].long_name, "--model") == 0) {
            out[k].default_text = default_model;
            out[k].help = model_help;
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Parallel layout

typedef struct {
    int world, tp, pp, dp;
} ParallelLayout;

typedef struct {
    int tp_rank, pp_rank, dp_rank;
} ParallelCoords;

// Fills *layout for `world` ranks split into --tp x --pp x dp; dp = world / (tp * pp) must be whole.
static inline int parallel_layout_init(ParallelLayout *layout, int world, int tp, int pp, char *err, size_t err_size) {
    if (world < 1) return set_error(err, err_size, "world size %d: must be at least 1", world);
    if (tp < 1 || pp < 1) return set_error(err, err_size, "--tp %d / --pp %d: degrees must be at least 1", tp, pp);
    if ((int64_t)tp * pp > world || world % (tp * pp) != 0) {
        return set_error(err, err_size, "--tp %d x --pp %d = %lld does not divide the world size %d (tp*pp*dp must equal the number of ranks)",
                         tp, pp, (long long)tp * pp, world);
    }
    layout->world = world;
    layout->tp = tp;
    layout->pp = pp;
    layout->dp = world / (tp * pp);
    return 0;
}

// Coordinates of `rank` (0 <= rank < world) in the layout: TP fastest, then DP, then PP.
static inline ParallelCoords parallel_layout_coords(const ParallelLayout *layout, int rank) {
    ParallelCoords c;
    c.tp_rank = rank % layout->tp;
    c.dp_rank = (rank / layout->tp) % layout->dp;
    c.pp_rank = rank / (layout->tp * layout->dp);
    return c;
}

// The rank at coordinates `c`; inverse of parallel_layout_coords.
static inline int parallel_layout_rank(const ParallelLayout *layout, ParallelCoords c) {
    return c.tp_rank + layout->tp * (c.dp_rank + layout->dp * c.pp_rank);
}

// ---------------------------------------------------------------------------------------------------
// Checks across flags

// What follows from the flags and the world size.
typedef struct {
    ParallelLayout layout;
    int64_t total_batch_tokens;   // -d with -1 resolved to B*T*dp
    int grad_accum_steps;         // micro-steps per optimizer step: total / (B*T*dp)
} TrainSetup;

// Resolves -d and the gradient accumulation for `dp` data-parallel ranks: d must be a positive
// multiple of B*T*dp (or -1, meaning exactly B*T*dp).
static inline int train_grad_accum(const TrainConfig *cfg, int dp, int64_t *total_tokens, int *accum_steps,
                                   char *err, size_t err_size) {
    int64_t per_micro_step = (int64_t)cfg->batch_size * cfg->seq_len * dp;
    int64_t total = cfg->total_batch_tokens == -1 ? per_micro_step : cfg->total_batch_tokens;
    if (total <= 0) {
        return set_error(err, err_size, "-d/--total-batch %lld: must be -1 (= B*T*dp) or a positive number of tokens",
                         (long long)cfg->total_batch_tokens);
    }
    if (total % per_micro_step != 0) {
        return set_error(err, err_size, "-d/--total-batch %lld is not a multiple of B*T*dp = %d*%d*%d = %lld tokens per micro-step",
                         (long long)total, cfg->batch_size, cfg->seq_len, dp, (long long)per_micro_step);
    }
    int64_t steps = total / per_micro_step;
    if (steps > INT_MAX) {
        return set_error(err, err_size, "-d/--total-batch %lld: %lld gradient-accumulation steps is too many",
                         (long long)total, (long long)steps);
    }
    *total_tokens = total;
    *accum_steps = (int)steps;
    return 0;
}

// Checks the flags against each other and the world size, and fills *setup. Model-dependent checks
// (T and -g at most the model's maximum sequence length, layers divisible by pp) come later, once the
// model is known.
static inline int train_config_setup(const TrainConfig *cfg, int world, TrainSetup *setup, char *err, size_t err_size) {
    memset(setup, 0, sizeof(*setup));
    if (parallel_layout_init(&setup->layout, world, cfg->tp, cfg->pp, err, err_size) != 0) return -1;
    if (train_grad_accum(cfg, setup->layout.dp, &setup->total_batch_tokens, &setup->grad_accum_steps, err, err_size) != 0) {
        return -1;
    }
    if (cfg->train_pattern[0] == '\0') return set_error(err, err_size, "-i/--train-data: no training data pattern given");
    if (cfg->model[0] == '\0') return set_error(err, err_size, "-e/--model: no model given (a preset or a model file; -h lists the presets)");
    if (cfg->max_steps == 0) {
        return set_error(err, err_size, "-x/--max-steps 0: use -1 for one epoch or a positive number of steps");
    }
    if (cfg->val_max_batches == 0) {
        return set_error(err, err_size, "-m/--val-batches 0: use -1 for the whole validation set or a positive number");
    }
    if (cfg->val_every > 0 && cfg->val_pattern[0] == '\0') {
        return set_error(err, err_size, "-v/--val-every %d needs validation data (-j), or pass -v 0", cfg->val_every);
    }
    if (cfg->resume && cfg->output_dir[0] == '\0') {
        return set_error(err, err_size, "-y/--resume 1 needs the output directory (-o) that holds the checkpoint");
    }
    if (cfg->checkpoint_every > 0 && cfg->output_dir[0] == '\0') {
        return set_error(err, err_size, "-n/--checkpoint-every %d needs an output directory (-o)", cfg->checkpoint_every);
    }
    return 0;
}

#endif // CORE_TRAIN_CONFIG_H
