// Tests of the flag machinery (core/flags.h) on the real train_gpt table (core/train_config.h's GPT_FLAGS
// with GPT-2's -e filled in by train_flags_for_family):
// defaults, every accepted form of every flag with random values, -h and the config printout built
// from the table, every error class, ranges probed at their bounds with random values, the parallel
// layout arithmetic and the batch checks; then the built ./train_gpt binary from the command line.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/checkpoint.h"
#include "core/rng.h"
#include "gpt2_model.h"
#include "llama_model.h"
#include "core/train_config.h"
#include "test/testing.h"

static Rng rng;
// train_gpt's table: GPT_FLAGS with GPT-2's -e default and help (set up in main)
static FlagSpec GPT_FLAGS[NUM_TRAIN_FLAGS];

// ---------------------------------------------------------------------------------------------------
// helpers

// Parses `args` (without the program name) into *cfg; the strings must outlive the use of *cfg.
static int parse_args(TrainConfig *cfg, int n, const char *const *args, int *help, char *err, size_t err_size) {
    char *argv[64];
    argv[0] = (char *)"train_gpt";
    for (int i = 0; i < n; i++) argv[i + 1] = (char *)args[i];
    return flags_parse(GPT_FLAGS, NUM_TRAIN_FLAGS, cfg, n + 1, argv, help, err, err_size);
}

// Whether the spec's field in *cfg holds the value *v.
static int field_matches(const FlagSpec *spec, const TrainConfig *cfg, const FlagValue *v) {
    const char *field = (const char *)cfg + spec->offset;
    switch (spec->type) {
    case FLAG_INT: case FLAG_BOOL: case FLAG_ENUM: { int x; memcpy(&x, field, sizeof(x)); return x == v->i; }
    case FLAG_INT64: { int64_t x; memcpy(&x, field, sizeof(x)); return x == v->i; }
    case FLAG_FLOAT: { float x; memcpy(&x, field, sizeof(x)); return x == (float)v->f; }
    case FLAG_STRING: { const char *s; memcpy(&s, field, sizeof(s)); return strcmp(s, v->s) == 0; }
    }
    return 0;
}

// Inclusive integer bounds of a numeric spec (unbounded ends limited to the field type).
static void integer_bounds(const FlagSpec *spec, int64_t *lo, int64_t *hi) {
    FlagRange r;
    char err[256];
    int rc = flag_parse_range(spec, &r, err, sizeof(err));
    CHECK(rc == 0, "%s", err);
    int64_t type_lo = spec->type == FLAG_INT ? INT_MIN : INT64_MIN;
    int64_t type_hi = spec->type == FLAG_INT ? INT_MAX : INT64_MAX;
    *lo = r.has_lo ? r.lo.i + (r.lo_open ? 1 : 0) : type_lo;
    *hi = r.has_hi ? r.hi.i - (r.hi_open ? 1 : 0) : type_hi;
}

// A random value in [lo, hi] that favours the ends and small numbers; unbounded spans are sampled
// near the finite end.
static int64_t random_integer_in(int64_t lo, int64_t hi) {
    uint64_t pick = rng_below(&rng, 8);
    if (pick == 0) return lo;
    if (pick == 1) return hi;
    uint64_t span = (uint64_t)hi - (uint64_t)lo;
    uint64_t limit = span < 100000 ? span + 1 : 100000;
    if (pick == 2 && hi - 100000 > lo) return hi - (int64_t)rng_below(&rng, limit);
    return lo + (int64_t)rng_below(&rng, limit);
}

// Writes random valid text for `spec` into buf and the value it must parse to into *expected.
static void random_valid_text(const FlagSpec *spec, char *buf, size_t size, FlagValue *expected) {
    memset(expected, 0, sizeof(*expected));
    switch (spec->type) {
    case FLAG_INT:
    case FLAG_INT64: {
        int64_t lo, hi;
        integer_bounds(spec, &lo, &hi);
        expected->i = random_integer_in(lo, hi);
        snprintf(buf, size, rng_below(&rng, 4) == 0 && expected->i >= 0 ? "+%lld" : "%lld", (long long)expected->i);
        break;
    }
    case FLAG_FLOAT: {
        FlagRange r;
        char err[256];
        CHECK(flag_parse_range(spec, &r, err, sizeof(err)) == 0, "%s", err);
        double lo = r.has_lo ? r.lo.f : -1e6, hi = r.has_hi ? r.hi.f : lo + 1e3;
        float x;
        do {
            x = (float)(lo + (hi - lo) * rng_uniform(&rng));
            if (rng_below(&rng, 6) == 0) x = (float)lo;
        } while ((r.lo_open && x <= lo) || (r.hi_open && x >= hi) || x < lo || x > hi);
        const char *formats[3] = {"%.9g", "%a", "%.12e"};
        snprintf(buf, size, formats[rng_below(&rng, 3)], (double)x);
        expected->f = x;
        break;
    }
    case FLAG_BOOL: {
        const char *texts[4] = {"0", "1", "false", "true"};
        int k = (int)rng_below(&rng, 4);
        snprintf(buf, size, "%s", texts[k]);
        expected->i = k % 2;
        break;
    }
    case FLAG_ENUM: {
        int c;
        do c = (int)rng_below(&rng, (uint64_t)spec->num_choices); while (!((spec->built_choices >> c) & 1u));
        snprintf(buf, size, "%s", spec->choices[c]);
        expected->i = c;
        break;
    }
    case FLAG_STRING: {
        // any text that does not start with '-' (paths, globs, spaces, '=' inside); may be empty
        const char alphabet[] = "abcXYZ019_./*?[] =-";
        size_t n = (size_t)rng_below(&rng, 24);
        for (size_t i = 0; i < n && i + 1 < size; i++) {
            buf[i] = alphabet[rng_below(&rng, sizeof(alphabet) - 1 - (i == 0 ? 2 : 0))];
        }
        buf[n < size ? n : size - 1] = '\0';
        expected->s = buf;
        break;
    }
    }
}

// Captures what `print` writes for the train table into a malloc'ed string.
static char *capture_output(void (*print)(FILE *, const TrainConfig *), const TrainConfig *cfg) {
    FILE *f = tmpfile();
    CHECK(f != NULL, "tmpfile failed");
    if (f == NULL) return NULL;
    print(f, cfg);
    long n = ftell(f);
    rewind(f);
    char *text = (char *)malloc_check((size_t)n + 1);
    size_t got = fread(text, 1, (size_t)n, f);
    text[got] = '\0';
    fclose(f);
    return text;
}

static void print_train_help(FILE *f, const TrainConfig *cfg) {
    (void)cfg;
    flags_print_help(f, "usage: train_gpt [flags]", GPT_FLAGS, NUM_TRAIN_FLAGS);
}

static void print_train_config(FILE *f, const TrainConfig *cfg) {
    flags_print_config(f, GPT_FLAGS, NUM_TRAIN_FLAGS, cfg);
}

// The error message must name the flag (its long name) and contain `problem`.
static void check_error_names_flag(int rc, const char *err, const FlagSpec *spec, const char *problem, const char *value) {
    CHECK(rc != 0, "%s %s was accepted", spec->long_name, value);
    CHECK(strstr(err, spec->long_name) != NULL, "message '%s' does not name %s", err, spec->long_name);
    CHECK(strstr(err, problem) != NULL, "message '%s' for %s '%s' lacks '%s'", err, spec->long_name, value, problem);
}

// Parses one flag with one value in the separate-argument form.
static int parse_one(const FlagSpec *spec, const char *value, TrainConfig *cfg, char *err, size_t err_size) {
    const char *args[2] = {spec->long_name, value};
    int help;
    return parse_args(cfg, 2, args, &help, err, err_size);
}

// ---------------------------------------------------------------------------------------------------
// tests

static void test_table_is_valid(void) {
    char err[512] = "";
    CHECK(flags_check_table(GPT_FLAGS, NUM_TRAIN_FLAGS, err, sizeof(err)) == 0, "%s", err);
    // every flag the task lists is in the table
    const char *expected[] = {"-i", "-j", "-o", "-e", "-b", "-t", "-d", "-l", "-u", "-q", "-c", "--beta1", "--beta2",
                              "--eps", "--grad-clip", "-x", "-v", "-m", "-s", "-g", "-n", "-y", "--seed", "--shuffle",
                              "-p", "--precision", "--tokenizer", "--tp", "--pp", "--dp-zero", "--log-every"};
    for (size_t k = 0; k < sizeof(expected) / sizeof(expected[0]); k++) {
        CHECK(flags_find(GPT_FLAGS, NUM_TRAIN_FLAGS, expected[k]) >= 0, "flag %s missing from the table", expected[k]);
    }
}

// The table checker catches each kind of broken entry (so test_table_is_valid can fail).
typedef struct { int a; float f; int64_t big; } ToyConfig;
static void test_table_checker_rejects_broken_tables(void) {
    const FlagSpec good = FLAG_ENTRY("-a", "--alpha", FLAG_INT, ToyConfig, a, "3", "[1, 5]", "alpha");
    const FlagSpec broken[] = {
        FLAG_ENTRY("-a", "--alpha", FLAG_INT, ToyConfig, a, "7", "[1, 5]", "default out of range"),
        FLAG_ENTRY("-a", "--alpha", FLAG_INT, ToyConfig, a, "3", "1..5", "malformed range"),
        FLAG_ENTRY("-a", "--alpha", FLAG_INT, ToyConfig, a, "3", "[1, 1e99]", "bound not an int"),
        FLAG_ENTRY("-a", "--alpha", FLAG_INT64, ToyConfig, a, "3", "[1, 5]", "field too small"),
        FLAG_ENTRY("-a", "--alpha", FLAG_FLOAT, ToyConfig, big, "3", "[1, 5]", "field too big"),
        FLAG_ENTRY("-a", "--alpha", FLAG_INT, ToyConfig, a, "3", NULL, "int without range"),
        FLAG_ENTRY("-a", "--alpha", FLAG_BOOL, ToyConfig, a, "0", "[0, 1]", "bool with range"),
        FLAG_ENTRY("a", "--alpha", FLAG_INT, ToyConfig, a, "3", "[1, 5]", "short name without dash"),
        FLAG_ENTRY("-a", "-alpha", FLAG_INT, ToyConfig, a, "3", "[1, 5]", "long name with one dash"),
        FLAG_ENTRY("-h", "--alpha", FLAG_INT, ToyConfig, a, "3", "[1, 5]", "reserved -h"),
        FLAG_ENUM_ENTRY("-a", "--alpha", ToyConfig, a, "bf16", PRECISION_NAMES, PRECISION_COUNT, 1u << PRECISION_COUNT, "mask out of range"),
        FLAG_ENUM_ENTRY("-a", "--alpha", ToyConfig, a, "fp8cs", PRECISION_NAMES, PRECISION_COUNT, 1u, "default not built"),
    };
    char err[512];
    CHECK(flags_check_table(&good, 1, err, sizeof(err)) == 0, "good table rejected: %s", err);
    for (size_t k = 0; k < sizeof(broken) / sizeof(broken[0]); k++) {
        err[0] = '\0';
        int rc = flags_check_table(&broken[k], 1, err, sizeof(err));
        CHECK(rc != 0 && strstr(err, "flag table") != NULL, "broken entry '%s' accepted (%s)", broken[k].help, err);
    }
    const FlagSpec duplicate[2] = {
        FLAG_ENTRY("-a", "--alpha", FLAG_INT, ToyConfig, a, "3", "[1, 5]", "alpha"),
        FLAG_ENTRY("-a", "--also-alpha", FLAG_FLOAT, ToyConfig, f, "3", "[1, 5]", "same short name"),
    };
    CHECK(flags_check_table(duplicate, 2, err, sizeof(err)) != 0 && strstr(err, "twice") != NULL,
          "duplicate short name accepted (%s)", err);
}

static void test_defaults(void) {
    TrainConfig cfg;
    memset(&cfg, 0xAB, sizeof(cfg));
    char err[512] = "";
    int help = -1;
    CHECK(parse_args(&cfg, 0, NULL, &help, err, sizeof(err)) == 0, "%s", err);
    CHECK(help == 0, "help requested without -h");
    for (int k = 0; k < NUM_TRAIN_FLAGS; k++) {
        FlagValue v;
        CHECK(flag_parse_value(&GPT_FLAGS[k], GPT_FLAGS[k].default_text, &v, err, sizeof(err)) == 0, "%s", err);
        CHECK(field_matches(&GPT_FLAGS[k], &cfg, &v), "%s does not hold its default %s", GPT_FLAGS[k].long_name,
              GPT_FLAGS[k].default_text);
    }
    // the defaults an llm.c user relies on
    CHECK(cfg.batch_size == 4 && cfg.seq_len == 1024 && cfg.total_batch_tokens == -1, "batch defaults");
    CHECK(cfg.precision == PRECISION_BF16 && cfg.tp == 1 && cfg.pp == 1 && cfg.zero_stage == 0, "parallel defaults");
    CHECK(cfg.max_steps == -1 && cfg.resume == 0 && strcmp(cfg.model, "d12") == 0, "run defaults");
    CHECK(cfg.learning_rate == 3e-4f && cfg.beta1 == 0.9f && cfg.beta2 == 0.95f && cfg.eps == 1e-8f, "optimizer defaults");
    CHECK(strcmp(cfg.output_dir, "") == 0, "output dir default");
}

// Every flag in every form (-x v, --long v, --long=v, -x=v) with random valid values, one at a time
// and all together in a random order.
static void test_every_form_every_type(void) {
    char err[512] = "";
    for (int round = 0; round < 40; round++) {
        for (int k = 0; k < NUM_TRAIN_FLAGS; k++) {
            const FlagSpec *spec = &GPT_FLAGS[k];
            for (int form = 0; form < 4; form++) {
                if (spec->short_name == NULL && (form == 0 || form == 3)) continue;
                char text[128], joined[192];
                FlagValue expected;
                random_valid_text(spec, text, sizeof(text), &expected);
                const char *name = (form == 0 || form == 3) ? spec->short_name : spec->long_name;
                const char *args[2] = {name, text};
                int n = 2;
                if (form >= 2) {
                    snprintf(joined, sizeof(joined), "%s=%s", name, text);
                    args[0] = joined;
                    n = 1;
                }
                TrainConfig cfg;
                int help;
                int rc = parse_args(&cfg, n, args, &help, err, sizeof(err));
                CHECK(rc == 0, "form %d of %s with '%s' rejected: %s", form, spec->long_name, text, err);
                if (rc == 0) CHECK(field_matches(spec, &cfg, &expected), "form %d of %s with '%s' stored wrongly", form, spec->long_name, text);
            }
        }
        // all flags at once, shuffled
        int order[64];
        char texts[64][128];
        FlagValue values[64];
        const char *args[128];
        for (int k = 0; k < NUM_TRAIN_FLAGS; k++) order[k] = k;
        for (int k = NUM_TRAIN_FLAGS - 1; k > 0; k--) {
            int j = (int)rng_below(&rng, (uint64_t)k + 1);
            int t = order[k]; order[k] = order[j]; order[j] = t;
        }
        for (int k = 0; k < NUM_TRAIN_FLAGS; k++) {
            const FlagSpec *spec = &GPT_FLAGS[order[k]];
            random_valid_text(spec, texts[k], sizeof(texts[k]), &values[k]);
            args[2 * k] = spec->short_name != NULL && rng_below(&rng, 2) ? spec->short_name : spec->long_name;
            args[2 * k + 1] = texts[k];
        }
        TrainConfig cfg;
        int help;
        int rc = parse_args(&cfg, 2 * NUM_TRAIN_FLAGS, args, &help, err, sizeof(err));
        CHECK(rc == 0, "full command line rejected: %s", err);
        for (int k = 0; k < NUM_TRAIN_FLAGS && rc == 0; k++) {
            CHECK(field_matches(&GPT_FLAGS[order[k]], &cfg, &values[k]), "%s = '%s' lost in the full command line",
                  GPT_FLAGS[order[k]].long_name, texts[k]);
        }
    }
}

// A value printed by flags_format_value parses back to the same value (the config printout is exact).
static void test_format_round_trip(void) {
    char err[512] = "";
    for (int round = 0; round < 200; round++) {
        for (int k = 0; k < NUM_TRAIN_FLAGS; k++) {
            const FlagSpec *spec = &GPT_FLAGS[k];
            char text[128], printed[256];
            FlagValue expected, back;
            random_valid_text(spec, text, sizeof(text), &expected);
            TrainConfig cfg;
            CHECK(flags_set_defaults(GPT_FLAGS, NUM_TRAIN_FLAGS, &cfg, err, sizeof(err)) == 0, "%s", err);
            flag_store(spec, &expected, &cfg);
            flags_format_value(spec, &cfg, printed, sizeof(printed));
            int rc = flag_parse_value(spec, printed, &back, err, sizeof(err));
            CHECK(rc == 0, "%s: printed '%s' does not parse: %s", spec->long_name, printed, err);
            if (rc == 0) CHECK(field_matches(spec, &cfg, &back), "%s: '%s' printed as '%s' reads back differently",
                               spec->long_name, text, printed);
        }
    }
}

// The -h text comes from the table: every flag, its names, accepted values and default, in aligned columns.
static void test_help_lists_every_flag(void) {
    TrainConfig cfg;
    char err[512] = "";
    const char *forms[][3] = {{"-h", NULL, NULL}, {"--help", NULL, NULL}, {"-b", "8", "--help"}, {"--lr=1e-3", "-h", "--bogus"}};
    const int counts[] = {1, 1, 3, 3};
    for (int f = 0; f < 4; f++) {
        int help = 0;
        CHECK(parse_args(&cfg, counts[f], forms[f], &help, err, sizeof(err)) == 0 && help == 1, "form %d: help not requested (%s)", f, err);
    }
    char *text = capture_output(print_train_help, &cfg);
    if (text == NULL) return;
    int description_column = -1;
    for (int k = 0; k < NUM_TRAIN_FLAGS; k++) {
        const FlagSpec *spec = &GPT_FLAGS[k];
        char names[128], allowed[256];
        flag_format_names(spec, names, sizeof(names));
        flag_format_allowed(spec, allowed, sizeof(allowed));
        const char *row = strstr(text, names);
        CHECK(row != NULL, "help lacks '%s'", names);
        if (row == NULL) continue;
        const char *row_end = strchr(row, '\n');
        CHECK(row_end != NULL && strstr(row, allowed) != NULL && strstr(row, allowed) < row_end, "row of %s lacks '%s'", spec->long_name, allowed);
        const char *def = strstr(row, spec->default_text);
        CHECK(def != NULL && def < row_end, "row of %s lacks its default '%s'", spec->long_name, spec->default_text);
        const char *help_at = strstr(row, spec->help);
        CHECK(help_at != NULL, "help of %s missing", spec->long_name);
        if (help_at == NULL) continue;
        // the description starts in the same column on every row (a long default pushes it to the next line)
        const char *line_start = help_at;
        while (line_start > text && line_start[-1] != '\n') line_start--;
        int column = (int)(help_at - line_start);
        if (description_column < 0) description_column = column;
        CHECK(column == description_column, "description of %s at column %d, others at %d", spec->long_name, column, description_column);
    }
    CHECK(strstr(text, "not built yet: fp8cs, mus, mxfp8, nvfp4, int8fb") != NULL, "help does not say which precisions are not built");
    CHECK(strstr(text, "-h, --help") != NULL, "help does not list -h");
    free(text);
}

// The configuration box: one row per flag with its value; every line of the box equally wide.
static void test_config_printout(void) {
    TrainConfig cfg;
    char err[512] = "";
    int help;
    const char *args[] = {"-b", "16", "--lr=0.0006", "-o", "", "-e", "model/dir/gpt2_124M.bin", "--shuffle", "false"};
    CHECK(parse_args(&cfg, 9, args, &help, err, sizeof(err)) == 0, "%s", err);
    char *text = capture_output(print_train_config, &cfg);
    if (text == NULL) return;
    size_t width = strcspn(text, "\n");
    int rows = 0;
    for (const char *line = text; *line != '\0'; line = strchr(line, '\n') + 1) {
        CHECK(strcspn(line, "\n") == width, "box line of width %zu, first line %zu: %.*s", strcspn(line, "\n"), width,
              (int)strcspn(line, "\n"), line);
        rows++;
    }
    CHECK(rows == NUM_TRAIN_FLAGS + 4, "%d lines for %d flags", rows, NUM_TRAIN_FLAGS);
    const char *expected_rows[] = {"| -b, --batch-size ", "| 16 ", "| 0.0006 ", "| (none) ", "| model/dir/gpt2_124M.bin ", "| bf16 "};
    for (size_t k = 0; k < sizeof(expected_rows) / sizeof(expected_rows[0]); k++) {
        CHECK(strstr(text, expected_rows[k]) != NULL, "config box lacks '%s'", expected_rows[k]);
    }
    for (int k = 0; k < NUM_TRAIN_FLAGS; k++) {
        CHECK(strstr(text, GPT_FLAGS[k].long_name) != NULL, "config box lacks %s", GPT_FLAGS[k].long_name);
    }
    free(text);
}

// Each class of command-line error: non-zero return and a message naming the flag and the problem.
static void test_error_classes(void) {
    TrainConfig cfg;
    char err[512];
    int help;
    // per type, malformed values
    const char *bad_int[] = {"12x", "1e99", "1e3", "0x10", "", " 5", "5 ", "1.0", "abc", "--"};
    const char *bad_float[] = {"abc", "1.2.3", "", " 1", "1 ", "nan", "inf", "-inf", "1e39", "-1e39", "1e999", "1e-60", "0.5x"};
    const char *bad_bool[] = {"2", "yes", "", "01", "-1", "TRUE"};
    const char *bad_enum[] = {"BF16", "", "fp16", "bf16 "};
    for (int k = 0; k < NUM_TRAIN_FLAGS; k++) {
        const FlagSpec *spec = &GPT_FLAGS[k];
        const char *const *bad = NULL;
        size_t n = 0;
        const char *problem = "";
        switch (spec->type) {
        case FLAG_INT: case FLAG_INT64: bad = bad_int; n = sizeof(bad_int) / sizeof(bad_int[0]); problem = "is not an integer"; break;
        case FLAG_FLOAT: bad = bad_float; n = sizeof(bad_float) / sizeof(bad_float[0]); problem = "' is not a"; break;
        case FLAG_BOOL: bad = bad_bool; n = sizeof(bad_bool) / sizeof(bad_bool[0]); problem = "is not a boolean"; break;
        case FLAG_ENUM: bad = bad_enum; n = sizeof(bad_enum) / sizeof(bad_enum[0]); problem = "unknown choice"; break;
        case FLAG_STRING: break;
        }
        for (size_t b = 0; b < n; b++) {
            err[0] = '\0';
            int rc = parse_one(spec, bad[b], &cfg, err, sizeof(err));
            check_error_names_flag(rc, err, spec, problem, bad[b]);
        }
        // missing value: at the end, or followed by another flag (also for strings)
        const char *at_end[1] = {spec->long_name};
        err[0] = '\0';
        check_error_names_flag(parse_args(&cfg, 1, at_end, &help, err, sizeof(err)), err, spec, "missing value", "(none)");
        const char *before_flag[3] = {spec->long_name, k == 0 ? "--seed" : "-i", "x"};
        err[0] = '\0';
        check_error_names_flag(parse_args(&cfg, 3, before_flag, &help, err, sizeof(err)), err, spec, "missing value", before_flag[1]);
        // given twice
        char value[128];
        FlagValue v;
        random_valid_text(spec, value, sizeof(value), &v);
        const char *twice[4] = {spec->long_name, value, spec->short_name != NULL ? spec->short_name : spec->long_name, value};
        err[0] = '\0';
        check_error_names_flag(parse_args(&cfg, 4, twice, &help, err, sizeof(err)), err, spec, "more than once", value);
    }
    // unknown flags and stray arguments name what was wrong
    const char *unknown[][2] = {{"--batchsize", "8"}, {"-B", "8"}, {"--bogus=1", NULL}, {"-", NULL}, {"8", NULL}, {"--", NULL}};
    const char *expected[] = {"unknown flag '--batchsize'", "unknown flag '-B'", "unknown flag '--bogus'",
                              "unexpected argument '-'", "unexpected argument '8'", "unknown flag '--'"};
    for (int u = 0; u < 6; u++) {
        err[0] = '\0';
        int rc = parse_args(&cfg, unknown[u][1] != NULL ? 2 : 1, unknown[u], &help, err, sizeof(err));
        CHECK(rc != 0 && strstr(err, expected[u]) != NULL, "'%s': rc %d message '%s'", unknown[u][0], rc, err);
    }
    // an error after valid flags is still reported
    const char *late[] = {"-b", "8", "--lr", "1e-3", "-t", "64y"};
    err[0] = '\0';
    CHECK(parse_args(&cfg, 6, late, &help, err, sizeof(err)) != 0 && strstr(err, "--seq-len") != NULL, "late error: %s", err);
}

// Only bf16 is built: every other precision name is rejected by name, never replaced.
static void test_precision_not_built(void) {
    const FlagSpec *spec = &GPT_FLAGS[flags_find(GPT_FLAGS, NUM_TRAIN_FLAGS, "-p")];
    TrainConfig cfg;
    char err[512], expected[128];
    for (int p = 0; p < PRECISION_COUNT; p++) {
        err[0] = '\0';
        int rc = parse_one(spec, PRECISION_NAMES[p], &cfg, err, sizeof(err));
        if (p == PRECISION_BF16) {
            CHECK(rc == 0 && cfg.precision == PRECISION_BF16, "bf16 rejected: %s", err);
        } else {
            snprintf(expected, sizeof(expected), "'%s' is not built yet; available: bf16", PRECISION_NAMES[p]);
            CHECK(rc != 0 && strstr(err, expected) != NULL && strstr(err, "--precision") != NULL, "%s: '%s'", PRECISION_NAMES[p], err);
        }
    }
}

// Out-of-range values: random values just outside each bound are rejected with the range in the
// message; the bound itself is accepted when closed and rejected when open.
static void test_out_of_range(void) {
    TrainConfig cfg;
    char err[512], text[128];
    for (int k = 0; k < NUM_TRAIN_FLAGS; k++) {
        const FlagSpec *spec = &GPT_FLAGS[k];
        if (!flag_is_numeric_type(spec->type)) continue;
        FlagRange r;
        CHECK(flag_parse_range(spec, &r, err, sizeof(err)) == 0, "%s", err);
        for (int trial = 0; trial < 50; trial++) {
            if (spec->type == FLAG_FLOAT) {
                for (int side = 0; side < 2; side++) {
                    int has = side == 0 ? r.has_lo : r.has_hi;
                    if (!has) continue;
                    float bound = (float)(side == 0 ? r.lo.f : r.hi.f);
                    int open = side == 0 ? r.lo_open : r.hi_open;
                    float outward = side == 0 ? -INFINITY : INFINITY;
                    // outside: the next float beyond the bound, or a random distance beyond it
                    float outside = trial == 0 ? nextafterf(bound, outward)
                                               : bound + (side == 0 ? -1.0f : 1.0f) * (1e-3f + 1e3f * rng_uniform(&rng));
                    snprintf(text, sizeof(text), "%.9g", (double)outside);
                    err[0] = '\0';
                    check_error_names_flag(parse_one(spec, text, &cfg, err, sizeof(err)), err, spec, "out of range", text);
                    CHECK(strstr(err, spec->range) != NULL, "message '%s' lacks the range", err);
                    snprintf(text, sizeof(text), "%.9g", (double)bound);
                    int rc = parse_one(spec, text, &cfg, err, sizeof(err));
                    CHECK(open ? rc != 0 : rc == 0, "%s bound %s: rc %d (%s)", spec->long_name, text, rc, open ? "open" : "closed");
                    float inside = nextafterf(bound, -outward);
                    snprintf(text, sizeof(text), "%.9g", (double)inside);
                    CHECK(parse_one(spec, text, &cfg, err, sizeof(err)) == 0, "%s just inside at %s rejected: %s", spec->long_name, text, err);
                }
            } else {
                int64_t lo, hi;
                integer_bounds(spec, &lo, &hi);
                int64_t type_lo = spec->type == FLAG_INT ? INT_MIN : INT64_MIN;
                int64_t type_hi = spec->type == FLAG_INT ? INT_MAX : INT64_MAX;
                int64_t distance = trial == 0 ? 1 : 1 + (int64_t)rng_below(&rng, 1000000);
                if (lo > type_lo) {
                    snprintf(text, sizeof(text), "%lld", (long long)(lo - distance));
                    err[0] = '\0';
                    check_error_names_flag(parse_one(spec, text, &cfg, err, sizeof(err)), err, spec, "out of range", text);
                }
                if (hi < type_hi) {
                    snprintf(text, sizeof(text), "%lld", (long long)(hi + distance));
                    err[0] = '\0';
                    check_error_names_flag(parse_one(spec, text, &cfg, err, sizeof(err)), err, spec, "out of range", text);
                } else {
                    // unbounded above: the field type is the limit
                    if (spec->type == FLAG_INT) snprintf(text, sizeof(text), "%lld", (long long)type_hi + distance);
                    else snprintf(text, sizeof(text), "%lld%d", (long long)type_hi, (int)(distance % 10));
                    err[0] = '\0';
                    check_error_names_flag(parse_one(spec, text, &cfg, err, sizeof(err)), err, spec, "out of range", text);
                }
                snprintf(text, sizeof(text), "%lld", (long long)lo);
                CHECK(parse_one(spec, text, &cfg, err, sizeof(err)) == 0, "%s lower bound %s rejected: %s", spec->long_name, text, err);
                snprintf(text, sizeof(text), "%lld", (long long)hi);
                CHECK(parse_one(spec, text, &cfg, err, sizeof(err)) == 0, "%s upper bound %s rejected: %s", spec->long_name, text, err);
            }
        }
    }
}

// world = tp * pp * dp; rank -> coordinates -> rank round trip; TP groups are consecutive ranks.
static void test_parallel_layout(void) {
    char err[512];
    int *owner = (int *)malloc_check(4096 * sizeof(int));
    for (int trial = 0; trial < 400; trial++) {
        int world = 1 + (int)rng_below(&rng, 4096);
        int tp = 1 + (int)rng_below(&rng, 16), pp = 1 + (int)rng_below(&rng, 16);
        if (trial % 2 == 0) {   // half the trials: a world that fits
            int dp = 1 + (int)rng_below(&rng, 16);
            world = tp * pp * dp;
        }
        ParallelLayout layout = {0, 0, 0, 0};
        err[0] = '\0';
        int rc = parallel_layout_init(&layout, world, tp, pp, err, sizeof(err));
        if (world % (tp * pp) != 0) {
            CHECK(rc != 0 && strstr(err, "--tp") != NULL && strstr(err, "world size") != NULL,
                  "world %d tp %d pp %d accepted (%s)", world, tp, pp, err);
            continue;
        }
        CHECK(rc == 0, "world %d tp %d pp %d rejected: %s", world, tp, pp, err);
        if (rc != 0) continue;
        CHECK(layout.tp * layout.pp * layout.dp == world && layout.world == world, "dp %d for world %d", layout.dp, world);
        for (int r = 0; r < world; r++) owner[r] = -1;
        for (int r = 0; r < world; r++) {
            ParallelCoords c = parallel_layout_coords(&layout, r);
            CHECK(c.tp_rank >= 0 && c.tp_rank < tp && c.pp_rank >= 0 && c.pp_rank < pp && c.dp_rank >= 0 && c.dp_rank < layout.dp,
                  "rank %d -> (%d,%d,%d) outside %dx%dx%d", r, c.tp_rank, c.pp_rank, c.dp_rank, tp, pp, layout.dp);
            int back = parallel_layout_rank(&layout, c);
            CHECK(back == r, "rank %d -> coords -> %d", r, back);
            if (back >= 0 && back < world) {
                CHECK(owner[back] == -1, "ranks %d and %d share coordinates", owner[back], r);
                owner[back] = r;
            }
            // a TP group is tp consecutive ranks with equal dp and pp coordinates
            ParallelCoords first = parallel_layout_coords(&layout, r - c.tp_rank);
            CHECK(first.tp_rank == 0 && first.dp_rank == c.dp_rank && first.pp_rank == c.pp_rank, "TP group of rank %d not consecutive", r);
        }
        // a random coordinate maps to a valid rank and back
        ParallelCoords c;
        c.tp_rank = (int)rng_below(&rng, (uint64_t)tp);
        c.pp_rank = (int)rng_below(&rng, (uint64_t)pp);
        c.dp_rank = (int)rng_below(&rng, (uint64_t)layout.dp);
        ParallelCoords again = parallel_layout_coords(&layout, parallel_layout_rank(&layout, c));
        CHECK(again.tp_rank == c.tp_rank && again.pp_rank == c.pp_rank && again.dp_rank == c.dp_rank, "coords round trip");
    }
    free(owner);
    ParallelLayout layout;
    CHECK(parallel_layout_init(&layout, 0, 1, 1, err, sizeof(err)) != 0, "world 0 accepted");
}

// Gradient accumulation = d / (B*T*dp), which must divide; -1 means exactly one micro-step.
static void test_grad_accum(void) {
    char err[512];
    TrainConfig cfg;
    CHECK(flags_set_defaults(GPT_FLAGS, NUM_TRAIN_FLAGS, &cfg, err, sizeof(err)) == 0, "%s", err);
    for (int trial = 0; trial < 500; trial++) {
        cfg.batch_size = 1 + (int)rng_below(&rng, 64);
        cfg.seq_len = 1 + (int)rng_below(&rng, 4096);
        int dp = 1 + (int)rng_below(&rng, 64);
        int64_t per_step = (int64_t)cfg.batch_size * cfg.seq_len * dp;
        int accum = 1 + (int)rng_below(&rng, 64);
        int64_t total = 0;
        int steps = 0;
        cfg.total_batch_tokens = per_step * accum;
        CHECK(train_grad_accum(&cfg, dp, &total, &steps, err, sizeof(err)) == 0 && steps == accum && total == per_step * accum,
              "B %d T %d dp %d d %lld: %d steps (%s)", cfg.batch_size, cfg.seq_len, dp, (long long)cfg.total_batch_tokens, steps, err);
        cfg.total_batch_tokens = -1;
        CHECK(train_grad_accum(&cfg, dp, &total, &steps, err, sizeof(err)) == 0 && steps == 1 && total == per_step, "-d -1");
        int64_t off = 1 + (int64_t)rng_below(&rng, (uint64_t)per_step);
        cfg.total_batch_tokens = per_step * accum + (off % per_step == 0 ? 1 : off);
        if (cfg.total_batch_tokens % per_step == 0) continue;   // per_step == 1
        err[0] = '\0';
        CHECK(train_grad_accum(&cfg, dp, &total, &steps, err, sizeof(err)) != 0 && strstr(err, "-d/--total-batch") != NULL &&
              strstr(err, "not a multiple of B*T*dp") != NULL, "d %lld per step %lld accepted (%s)", (long long)cfg.total_batch_tokens,
              (long long)per_step, err);
    }
    cfg.total_batch_tokens = 0;
    int64_t total = 0;
    int steps = 0;
    CHECK(train_grad_accum(&cfg, 1, &total, &steps, err, sizeof(err)) != 0 && strstr(err, "-d/--total-batch") != NULL, "d 0 accepted");
}

// train_config_setup: the layout and batch checks with a world size, and the checks across flags.
static void test_config_setup(void) {
    char err[512];
    int help;
    TrainConfig cfg;
    TrainSetup setup;
    const char *ok[] = {"-b", "8", "-t", "256", "-d", "65536", "--tp", "2", "--pp", "2"};
    CHECK(parse_args(&cfg, 10, ok, &help, err, sizeof(err)) == 0, "%s", err);
    CHECK(train_config_setup(&cfg, 16, &setup, err, sizeof(err)) == 0, "%s", err);
    CHECK(setup.layout.dp == 4 && setup.grad_accum_steps == 8 && setup.total_batch_tokens == 65536, "dp %d accum %d",
          setup.layout.dp, setup.grad_accum_steps);
    CHECK(train_config_setup(&cfg, 10, &setup, err, sizeof(err)) != 0 && strstr(err, "world size 10") != NULL, "world 10: %s", err);
    CHECK(train_config_setup(&cfg, 32, &setup, err, sizeof(err)) == 0 && setup.grad_accum_steps == 4, "world 32: %s", err);
    CHECK(train_config_setup(&cfg, 4 * 9, &setup, err, sizeof(err)) != 0 && strstr(err, "--total-batch") != NULL, "dp 9: %s", err);
    struct { const char *args[4]; int n; const char *message; } bad[] = {
        {{"-x", "0"}, 2, "-x/--max-steps 0"},
        {{"-m", "0"}, 2, "-m/--val-batches 0"},
        {{"-j", "", "-v", "5"}, 4, "-v/--val-every 5 needs validation data"},
        {{"-y", "1"}, 2, "-y/--resume 1 needs the output directory"},
        {{"-n", "100"}, 2, "-n/--checkpoint-every 100 needs an output directory"},
        {{"-i", ""}, 2, "-i/--train-data"},
        {{"-e", ""}, 2, "-e/--model"},
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        CHECK(parse_args(&cfg, bad[k].n, bad[k].args, &help, err, sizeof(err)) == 0, "%s", err);
        err[0] = '\0';
        CHECK(train_config_setup(&cfg, 1, &setup, err, sizeof(err)) != 0 && strstr(err, bad[k].message) != NULL,
              "%s %s: '%s'", bad[k].args[0], bad[k].args[1], err);
    }
    const char *fine[] = {"-j", "", "-v", "0", "-y", "1", "-o", "out", "-n", "10", "-m", "-1", "-x", "5"};
    CHECK(parse_args(&cfg, 14, fine, &help, err, sizeof(err)) == 0 && train_config_setup(&cfg, 1, &setup, err, sizeof(err)) == 0,
          "valid combination rejected: %s", err);
}

// ---------------------------------------------------------------------------------------------------
// the built binary

#define CLI_DIR "build/test/flags_cli"

// Writes an llm.c token shard of n random GPT-2 tokens.
static void write_shard(const char *path, size_t n) {
    int32_t header[256];
    memset(header, 0, sizeof(header));
    header[0] = 20240520;
    header[1] = 1;
    header[2] = (int32_t)n;
    uint16_t *tokens = (uint16_t *)malloc_check(n * sizeof(uint16_t));
    for (size_t i = 0; i < n; i++) tokens[i] = (uint16_t)rng_below(&rng, 50257);
    FILE *f = fopen_check(path, "wb");
    fwrite_check(header, sizeof(int32_t), 256, f);
    fwrite_check(tokens, sizeof(uint16_t), n, f);
    fclose(f);
    free(tokens);
}

// Runs ./<program> with `args` (shell words), stdout+stderr into out; returns the exit status.
static int run_program(const char *program, const char *args, char *out, size_t size) {
    char command[1024];
    snprintf(command, sizeof(command), "./%s %s 2>&1", program, args);
    FILE *p = popen(command, "r");
    CHECK(p != NULL, "popen failed");
    if (p == NULL) return -1;
    size_t used = 0, got;
    char chunk[4096];
    while ((got = fread(chunk, 1, sizeof(chunk), p)) > 0) {
        size_t keep = got < size - 1 - used ? got : size - 1 - used;
        memcpy(out + used, chunk, keep);
        used += keep;
    }
    out[used] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
static int run_train_gpt(const char *args, char *out, size_t size) { return run_program("train_gpt", args, out, size); }

static void test_cli_train_gpt(void) {
    size_t size = 1 << 20;
    char *out = (char *)malloc_check(size);
    int rc = run_train_gpt("-h", out, size);
    CHECK(rc == 0, "-h exit %d: %s", rc, out);
    for (int k = 0; k < NUM_TRAIN_FLAGS; k++) CHECK(strstr(out, GPT_FLAGS[k].long_name) != NULL, "-h lacks %s", GPT_FLAGS[k].long_name);
    rc = run_train_gpt("--help", out, size);
    CHECK(rc == 0 && strstr(out, "--batch-size") != NULL, "--help exit %d", rc);
    struct { const char *args; const char *message; } bad[] = {
        {"--batch-size 12x", "flag -b/--batch-size: '12x' is not an integer"},
        {"-x 1e99", "flag -x/--max-steps: '1e99' is not an integer"},
        {"-p fp8cs", "'fp8cs' is not built yet; available: bf16"},
        {"--bogus 1", "unknown flag '--bogus'"},
        {"-b", "flag -b/--batch-size: missing value"},
        {"--beta2=1", "flag --beta2: 1 is out of range [0, 1)"},
        {"-b 4 -t 64 -d 1000", "-d/--total-batch 1000 is not a multiple of B*T*dp = 4*64*1 = 256"},
        {"--tp 2", "--tp 2 x --pp 1 = 2 does not divide the world size 1"},
        {"-y 1", "-y/--resume 1 needs the output directory"},
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        rc = run_train_gpt(bad[k].args, out, size);
        CHECK(rc == 1, "'%s': exit %d (want 1): %s", bad[k].args, rc, out);
        CHECK(strstr(out, bad[k].message) != NULL, "'%s': output lacks '%s':\n%s", bad[k].args, bad[k].message, out);
    }
    free(out);
}

// The host path on a small model file (head size 64, as the attention kernel needs) and synthetic
// shards: model, data and layout reach the printout; then the run trains on a GPU (exit 0) or, on a
// machine without one (CI), stops with "no CUDA device" (exit 1). Errors from the model file, the
// data and the model-dependent checks exit 1.
// Writes a GPT-2 model file of configuration *model, initialised from a fixed seed (version 3 fp32 or 5 bf16).
static void write_model_file(const char *path, const GPT2Config *model, int version) {
    char err[512];
    ParamTable table;
    CHECK(gpt2_param_table(model, &table, err, sizeof(err)) == 0, "%s", err);
    float *params = (float *)malloc_check(table.num_parameters * sizeof(float));
    param_table_init(&table, params, 7);
    CHECK(gpt2_model_file_write(path, model, params, version, err, sizeof(err)) == 0, "%s", err);
    free(params);
}

// Writes `bytes` bytes of 0x5A to path.
static void write_junk(const char *path, size_t bytes) {
    FILE *f = fopen_check(path, "wb");
    for (size_t i = 0; i < bytes; i++) fputc(0x5A, f);
    fclose(f);
}

static void test_cli_train_gpt_host_path(void) {
    char err[512];
    mkdir("build", 0755);
    mkdir("build/test", 0755);
    CHECK(system("rm -rf " CLI_DIR) == 0, "cannot clear " CLI_DIR);
    mkdir(CLI_DIR, 0755);
    mkdir(CLI_DIR "/empty_dir", 0755);
    mkdir(CLI_DIR "/old_log", 0755);
    write_junk(CLI_DIR "/old_log/log.txt", 10);
    // a checkpoint whose model file is junk, and one whose model file is good but state file junk
    mkdir(CLI_DIR "/corrupt_dir", 0755);
    write_junk(CLI_DIR "/corrupt_dir/model_00000003.bin", 4096);
    write_junk(CLI_DIR "/corrupt_dir/state_00000003.bin", 100);
    mkdir(CLI_DIR "/corrupt_state_dir", 0755);
    const GPT2Config hs32 = gpt2_config_make(64, 50257, 50304, 1, 4, 128), vocab70k = gpt2_config_make(64, 70000, 70000, 1, 2, 128);
    write_model_file(CLI_DIR "/hs32.bin", &hs32, MODEL_FILE_VERSION_BF16);
    write_model_file(CLI_DIR "/vocab70k.bin", &vocab70k, MODEL_FILE_VERSION_BF16);
    GPT2Config model = gpt2_config_make(64, 50257, 50304, 2, 2, 128);
    ParamTable layout;
    CHECK(gpt2_param_table(&model, &layout, err, sizeof(err)) == 0, "%s", err);
    write_model_file(CLI_DIR "/tiny.bin", &model, MODEL_FILE_VERSION_BF16);
    // a good checkpoint model file (fp32) beside a junk state file
    write_model_file(CLI_DIR "/corrupt_state_dir/model_00000003.bin", &model, MODEL_FILE_VERSION_FP32);
    write_junk(CLI_DIR "/corrupt_state_dir/state_00000003.bin", 100);
    int rc;
    // train: 10 windows of B*T = 4*32 tokens; val: 3 windows
    write_shard(CLI_DIR "/synthetic_train.bin", 10 * 4 * 32 + 1);
    write_shard(CLI_DIR "/synthetic_val.bin", 3 * 4 * 32 + 1);
    // -e, -i and -t are given per case (a flag may appear only once)
    const char *model_file = "-e " CLI_DIR "/tiny.bin", *train = "-i " CLI_DIR "/synthetic_train.bin", *seq = "-t 32";
    const char *val = "-j " CLI_DIR "/synthetic_val.bin -b 4";
    size_t size = 1 << 20;
    char *out = (char *)malloc_check(size), args[1024], expected[256];

    snprintf(args, sizeof(args), "%s %s %s %s -d 256 -x 12 -m 5", model_file, train, seq, val);
    rc = run_train_gpt(args, out, size);
    if (strstr(out, "no CUDA GPU on this machine") != NULL) CHECK(rc == 1, "no-device exit %d (want 1):\n%s", rc, out);
    else CHECK(rc == 0, "training on the GPU: exit %d (want 0):\n%s", rc, out);
    snprintf(expected, sizeof(expected), "parameters: %zu", layout.num_parameters);
    const char *lines[] = {expected, "layers 2, heads 2, channels 128", "256 tokens per step = B 4 x T 32 x dp 1 x 2 accumulation steps",
                           "10 micro-batches per data-parallel rank per epoch", "5 steps per epoch", "training run: 12 steps, 3072 tokens (2.40 epochs)",
                           "validation: 3 micro-batches per pass", "| -t, --seq-len"};
    for (size_t k = 0; k < sizeof(lines) / sizeof(lines[0]); k++) {
        CHECK(strstr(out, lines[k]) != NULL, "host path output lacks '%s':\n%s", lines[k], out);
    }

    struct { const char *model, *train, *seq, *extra, *message; } bad[] = {
        {model_file, train, "-t 128", "", "-t/--seq-len 128 exceeds the model's maximum sequence length 64"},
        {model_file, train, seq, "-g 65", "-g/--gen-tokens 65 exceeds the model's maximum sequence length 64"},
        {model_file, train, seq, "-d 2048", "10 micro-batches per data-parallel rank per epoch, fewer than the 16 of one optimizer step"},
        {model_file, "-i " CLI_DIR "/no_such_*.bin", seq, "", "-i/--train-data: dataloader: no file matches the pattern '" CLI_DIR "/no_such_*.bin'"},
        {"-e " CLI_DIR "/synthetic_val.bin", train, seq, "", "is not a usable GPT-2 model file: '" CLI_DIR "/synthetic_val.bin' is not a GPT-2 model file"},
        {"-e d13", train, seq, "", "-e/--model 'd13' is neither a GPT-2 preset (d12, d24, d36, d48) nor a file"},
        {"-e " CLI_DIR "/hs32.bin", train, seq, "", "-e/--model '" CLI_DIR "/hs32.bin': head size 32 (channels 128 / heads 4): the attention kernel takes 64 or 128"},
        {"-e " CLI_DIR "/vocab70k.bin", train, seq, "", "-e/--model '" CLI_DIR "/vocab70k.bin': vocabulary of 70000 tokens; token shards hold uint16 ids"},
        {model_file, train, seq, "-l 0", "-l/--lr 0: the peak learning rate must be positive"},
        {model_file, train, seq, "-u 13", "-u/--warmup 13 is longer than the run's 12 steps"},
        {model_file, train, seq, "-u 11 -x -1", "-u/--warmup 11 is longer than the run's 10 steps (-x/--max-steps -1: one epoch)"},
        {model_file, train, seq, "-y 1 -o " CLI_DIR "/no_such_dir", "-y/--resume 1: the output directory '" CLI_DIR "/no_such_dir' does not exist"},
        {model_file, train, seq, "-y 1 -o " CLI_DIR "/empty_dir", "-y/--resume 1: no checkpoint (model_S.bin with state_S.bin) in '" CLI_DIR "/empty_dir'"},
        {model_file, train, seq, "-y 1 -o " CLI_DIR "/corrupt_dir", "-y/--resume: '" CLI_DIR "/corrupt_dir/model_00000003.bin' is not a GPT-2 model file"},
        {model_file, train, seq, "-y 1 -o " CLI_DIR "/corrupt_state_dir", "-y/--resume: '" CLI_DIR "/corrupt_state_dir/state_00000003.bin'"},
        {model_file, train, seq, "-x 3000000000", "flag -x/--max-steps: 3000000000 is out of range [-1, 2147483647]"},
        {model_file, train, seq, "-o " CLI_DIR "/old_log", "-o/--output-dir '" CLI_DIR "/old_log' already holds a run's log.txt"},
        {model_file, train, seq, "-o " CLI_DIR "/corrupt_state_dir", "-o/--output-dir '" CLI_DIR "/corrupt_state_dir' already holds a run (checkpoints up to step 3): resume it with -y 1"},
        {model_file, train, seq, "-o " CLI_DIR "/tiny.bin/sub", "-o/--output-dir: cannot create"},
        {model_file, train, seq, "--tokenizer " CLI_DIR "/synthetic_val.bin", "--tokenizer: "},
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        // -x 12 unless the case gives its own -x
        snprintf(args, sizeof(args), "%s %s %s %s %s %s", bad[k].model, bad[k].train, bad[k].seq, val, bad[k].extra,
                 strstr(bad[k].extra, "-x ") != NULL ? "" : "-x 12");
        rc = run_train_gpt(args, out, size);
        CHECK(rc == 1, "'%s': exit %d (want 1):\n%s", args, rc, out);
        CHECK(strstr(out, bad[k].message) != NULL, "'%s': output lacks '%s':\n%s", args, bad[k].message, out);
    }
    // nothing is created before the run can start: a refused run leaves no output directory
    struct stat st;
    CHECK(stat(CLI_DIR "/no_such_dir", &st) != 0, "-y 1 with a missing directory created it");
    snprintf(args, sizeof(args), "%s %s %s %s -x 12 -l 0 -o " CLI_DIR "/refused/out", model_file, train, seq, val);
    rc = run_train_gpt(args, out, size);
    CHECK(rc == 1 && stat(CLI_DIR "/refused", &st) != 0, "a run refused by -l 0 created its output directory (exit %d)", rc);
    // --seed 0 is a valid seed (shuffling included): the run gets past every host check; without a GPU it
    // stops there, before its output directory is made
    snprintf(args, sizeof(args), "%s %s %s %s -d 256 -x 2 --seed 0 -s 0 -o " CLI_DIR "/seed0", model_file, train, seq, val);
    rc = run_train_gpt(args, out, size);
    const int no_gpu = strstr(out, "no CUDA GPU on this machine") != NULL;
    CHECK(strstr(out, "training run: 2 steps") != NULL && (rc == 0 || (rc == 1 && no_gpu)), "--seed 0: exit %d:\n%s", rc, out);
    CHECK((stat(CLI_DIR "/seed0", &st) == 0) == !no_gpu, "the output directory exists %s", no_gpu ? "without a GPU" : "not after the run");
    free(out);
}

// train_flags_for_family changes -e's default and help and nothing else.
static void test_family_table(void) {
    int changed = 0;
    for (int k = 0; k < NUM_TRAIN_FLAGS; k++) {
        const FlagSpec *a = &TRAIN_FLAGS[k], *b = &GPT_FLAGS[k];
        const int is_model = strcmp(a->long_name, "--model") == 0;
        changed += is_model;
        CHECK(a->short_name == b->short_name && a->long_name == b->long_name && a->type == b->type && a->offset == b->offset &&
                  a->range == b->range && (is_model || (a->default_text == b->default_text && a->help == b->help)),
              "%s changed by train_flags_for_family", a->long_name);
    }
    CHECK(changed == 1, "%d --model entries", changed);
    const int e = flags_find(GPT_FLAGS, NUM_TRAIN_FLAGS, "-e");
    CHECK(e >= 0 && strcmp(GPT_FLAGS[e].default_text, "d12") == 0 && strstr(GPT_FLAGS[e].help, "d24") != NULL, "-e of train_gpt");
}

// train_llama: the same program on the Llama family. Its host checks fail by name on bad input; a run that
// passes them trains on a GPU (exit 0) or, without one (CI), stops there (exit 1) before making its output
// directory. Each family refuses the other's model files by name. Needs the files of test_cli_train_gpt_host_path.
static void test_cli_train_llama(void) {
    char err[512];
    // a small Llama (head size 64) as a bf16 model file, and the same header with 3 KV heads of 4 query heads
    const LlamaConfig tiny = llama_config_make(64, 50257, 50304, 1, 2, 1, 128, 256, 500000.0f, 1e-5f);
    ParamTable table;
    CHECK(llama_param_table(&tiny, &table, err, sizeof(err)) == 0, "%s", err);
    float *params = (float *)malloc_check(table.num_parameters * sizeof(float));
    param_table_init(&table, params, 5);
    CHECK(llama_model_file_write(CLI_DIR "/llama_tiny.bin", &tiny, params, MODEL_FILE_VERSION_BF16, err, sizeof(err)) == 0, "%s", err);
    const LlamaConfig hs32 = llama_config_make(64, 50257, 50304, 1, 4, 2, 128, 256, 500000.0f, 1e-5f);
    CHECK(llama_param_table(&hs32, &table, err, sizeof(err)) == 0, "%s", err);
    CHECK(llama_model_file_write(CLI_DIR "/llama_hs32.bin", &hs32, params, MODEL_FILE_VERSION_BF16, err, sizeof(err)) == 0, "%s", err);
    free(params);
    int32_t header[MODEL_FILE_HEADER_INTS];
    FILE *f = fopen_check(CLI_DIR "/llama_tiny.bin", "rb");
    fread_check(header, sizeof(int32_t), MODEL_FILE_HEADER_INTS, f);
    fclose(f);
    header[5] = 4;  // heads
    header[8] = 3;  // KV heads, not a divisor of 4
    f = fopen_check(CLI_DIR "/llama_kv3.bin", "wb");
    fwrite_check(header, sizeof(int32_t), MODEL_FILE_HEADER_INTS, f);
    fclose(f);

    const char *train = "-i " CLI_DIR "/synthetic_train.bin -j " CLI_DIR "/synthetic_val.bin -b 4 -t 32 -x 12";
    size_t size = 1 << 20;
    char *out = (char *)malloc_check(size), args[1024];
    snprintf(args, sizeof(args), "-e " CLI_DIR "/llama_tiny.bin %s -o " CLI_DIR "/llama_out", train);
    int rc = run_program("train_llama", args, out, size);
    const int no_gpu = strstr(out, "no CUDA GPU on this machine (train_llama needs") != NULL;
    CHECK((rc == 1 && no_gpu) || rc == 0, "train_llama on a valid setup: exit %d:\n%s", rc, out);
    CHECK(strstr(out, "model: Llama " CLI_DIR "/llama_tiny.bin: max_seq_len 64, vocab_size 50257 (padded 50304), layers 1, heads 2 (1 KV heads)") != NULL,
          "model line missing:\n%s", out);
    struct stat st;
    CHECK((stat(CLI_DIR "/llama_out", &st) == 0) == !no_gpu, "train_llama's output directory exists %s", no_gpu ? "without a GPU" : "not after the run");
    struct { const char *program, *model, *extra, *message; } bad[] = {
        {"train_llama", "-e " CLI_DIR "/tiny.bin", "", "is a GPT-2 model file (magic 20240326), not a Llama one (magic 20261208); use train_gpt"},
        {"train_gpt", "-e " CLI_DIR "/llama_tiny.bin", "", "this is a Llama model file (magic 20261208), not a GPT-2 one; use train_llama"},
        {"train_llama", "-e " CLI_DIR "/llama_kv3.bin", "", "bad Llama model header: num_heads 4 must be a multiple of num_kv_heads 3"},
        {"train_llama", "-e " CLI_DIR "/llama_hs32.bin", "", "-e/--model '" CLI_DIR "/llama_hs32.bin': head size 32 (channels 128 / heads 4): the attention kernel takes 64 or 128"},
        {"train_llama", "-e " CLI_DIR "/llama_tiny.bin", "-t 128", "-t/--seq-len 128 exceeds the model's maximum sequence length 64"},
        {"train_llama", "-e d12", "", "-e/--model 'd12' is neither a Llama preset (l125m, l350m, l1b) nor a file"},
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        // -t 32 unless the case gives its own
        snprintf(args, sizeof(args), "%s -i " CLI_DIR "/synthetic_train.bin -j " CLI_DIR "/synthetic_val.bin -b 4 -x 12 %s %s", bad[k].model,
                 bad[k].extra, strstr(bad[k].extra, "-t ") != NULL ? "" : "-t 32");
        rc = run_program(bad[k].program, args, out, size);
        CHECK(rc == 1, "%s '%s': exit %d (want 1):\n%s", bad[k].program, args, rc, out);
        CHECK(strstr(out, bad[k].message) != NULL, "%s '%s': output lacks '%s':\n%s", bad[k].program, args, bad[k].message, out);
    }
    rc = run_program("train_llama", "-h", out, size);
    CHECK(rc == 0 && strstr(out, "l125m|l350m|l1b") != NULL && strstr(out, "usage: train_llama") != NULL, "train_llama -h: exit %d", rc);
    free(out);
}

int main(void) {
    rng_seed(&rng, 20261122);
    train_flags_for_family(GPT_FLAGS, "d12", "d12|d24|d36|d48 for a fresh GPT-2, or a GPT-2 model file");
    RUN_TEST(test_family_table);
    RUN_TEST(test_table_is_valid);
    RUN_TEST(test_table_checker_rejects_broken_tables);
    RUN_TEST(test_defaults);
    RUN_TEST(test_every_form_every_type);
    RUN_TEST(test_format_round_trip);
    RUN_TEST(test_help_lists_every_flag);
    RUN_TEST(test_config_printout);
    RUN_TEST(test_error_classes);
    RUN_TEST(test_precision_not_built);
    RUN_TEST(test_out_of_range);
    RUN_TEST(test_parallel_layout);
    RUN_TEST(test_grad_accum);
    RUN_TEST(test_config_setup);
    if (access("./train_gpt", X_OK) == 0) {
        RUN_TEST(test_cli_train_gpt);
        RUN_TEST(test_cli_train_gpt_host_path);
    } else {
        SKIP_TEST(test_cli_train_gpt, "./train_gpt not built (make train_gpt); run from the repository root");
        SKIP_TEST(test_cli_train_gpt_host_path, "./train_gpt not built (make train_gpt); run from the repository root");
    }
    if (access("./train_gpt", X_OK) == 0 && access("./train_llama", X_OK) == 0) RUN_TEST(test_cli_train_llama);
    else SKIP_TEST(test_cli_train_llama, "./train_gpt or ./train_llama not built (make all); run from the repository root");
    return testing_finish();
}
