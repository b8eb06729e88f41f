// Command-line flags driven by one table. A program describes each flag once (FlagSpec: short and
// long name, type, default, allowed range or choices, help text, where the value lives in its config
// struct); parsing, the -h/--help text and the configuration printout at start all come from that
// table, so they cannot drift apart.
//
// Accepted forms: `-b 8`, `--batch-size 8`, `--batch-size=8` (and `-b=8`). Every flag takes a value.
// Errors (returned as -1 with a message naming the flag and the problem, never ignored):
// unknown flag, missing value, stray argument, flag given twice, malformed value ("12x", "1e99" for an
// integer), value out of range, unknown or not-yet-built enum choice.
//
// Value syntax per type:
//   FLAG_INT, FLAG_INT64  decimal integer (optional sign), stored as int / int64_t; "1e3", "0x10" and
//                         "12x" are not integers
//   FLAG_FLOAT            decimal or hex floating-point number, finite, stored as float; the range is
//                         checked on the value after rounding to float
//   FLAG_BOOL             0, 1, false or true, stored as int 0/1
//   FLAG_STRING           any text (may be empty), stored as a const char * into argv or the table
//   FLAG_ENUM             one of the choice names, stored as the int index of the choice
// Ranges are written like intervals: "[1, 1024]", "(0, 1)", "[-1, inf)"; inclusive with [ ], exclusive
// with ( ), and "inf" (or an empty end) for no bound (an int is still limited to 32 bits).
// Plain C, also compiled as C++ by nvcc.
#ifndef CORE_FLAGS_H
#define CORE_FLAGS_H

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/utils.h"

typedef enum { FLAG_INT, FLAG_INT64, FLAG_FLOAT, FLAG_BOOL, FLAG_STRING, FLAG_ENUM } FlagType;

static const char *const FLAG_TYPE_NAMES[] = {"int", "int64", "float", "bool", "string", "enum"};

typedef struct {
    const char *short_name;       // "-b", or NULL when the flag has only a long name
    const char *long_name;        // "--batch-size"
    FlagType type;
    size_t offset;                // offset of the value's field in the config struct
    size_t field_size;            // sizeof that field, checked against the type by flags_check_table
    const char *default_text;     // default, written as it would be on the command line
    const char *range;            // numbers: interval text (see above); NULL for other types
    const char *const *choices;   // FLAG_ENUM: choice names; the field holds the chosen index
    int num_choices;              // FLAG_ENUM: number of names in `choices` (at most 32)
    unsigned built_choices;       // FLAG_ENUM: bit i set when choice i is built (usable)
    const char *help;             // one line
} FlagSpec;

// Table entries. Struct is the config type, field the member that holds the value.
#define FLAG_ENTRY(short_name, long_name, type, Struct, field, default_text, range, help) \
    { short_name, long_name, type, offsetof(Struct, field), sizeof(((Struct *)0)->field),  \
      default_text, range, NULL, 0, 0u, help }
#define FLAG_ENUM_ENTRY(short_name, long_name, Struct, field, default_text, choices, num_choices, built, help) \
    { short_name, long_name, FLAG_ENUM, offsetof(Struct, field), sizeof(((Struct *)0)->field),             \
      default_text, NULL, choices, num_choices, built, help }

// A parsed value before it is stored: integers, bools and enum indices in i, floats in f, text in s.
typedef struct {
    int64_t i;
    double f;
    const char *s;
} FlagValue;

// A parsed numeric range; bounds are compared on i (integer types) or f (FLAG_FLOAT).
typedef struct {
    int has_lo, has_hi;
    int lo_open, hi_open;
    FlagValue lo, hi;
} FlagRange;

static inline int flag_is_integer_type(FlagType t) { return t == FLAG_INT || t == FLAG_INT64; }
static inline int flag_is_numeric_type(FlagType t) { return flag_is_integer_type(t) || t == FLAG_FLOAT; }

// "-b/--batch-size" or "--beta1": how messages name a flag.
static inline const char *flag_display_name(const FlagSpec *spec, char *buf, size_t size) {
    if (spec->short_name != NULL) snprintf(buf, size, "%s/%s", spec->short_name, spec->long_name);
    else snprintf(buf, size, "%s", spec->long_name);
    return buf;
}

// Parses a whole decimal integer into *out. Returns 0 ok, 1 not an integer, 2 outside int64.
static inline int flag_parse_int64_text(const char *text, int64_t *out) {
    if (text[0] == '\0' || isspace((unsigned char)text[0])) return 1;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (*end != '\0') return 1;
    if (errno == ERANGE) return 2;
    *out = (int64_t)v;
    return 0;
}

// Parses a whole floating-point number into *out. Returns 0 ok, 1 not a number, 2 not finite or
// outside the double range.
static inline int flag_parse_double_text(const char *text, double *out) {
    if (text[0] == '\0' || isspace((unsigned char)text[0])) return 1;
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (*end != '\0') return 1;
    if (errno == ERANGE || !isfinite(v)) return 2;
    *out = v;
    return 0;
}

// Copies text[begin, end) into buf without surrounding spaces.
static inline void flag_trim_copy(const char *begin, const char *end, char *buf, size_t size) {
    while (begin < end && isspace((unsigned char)*begin)) begin++;
    while (end > begin && isspace((unsigned char)end[-1])) end--;
    size_t n = (size_t)(end - begin);
    if (n >= size) n = size - 1;
    memcpy(buf, begin, n);
    buf[n] = '\0';
}

// Parses one end of an interval; "" and "inf"/"-inf" mean unbounded.
static inline int flag_parse_bound(FlagType type, const char *text, int *has, FlagValue *v) {
    memset(v, 0, sizeof(*v));
    if (text[0] == '\0' || strcmp(text, "inf") == 0 || strcmp(text, "-inf") == 0 || strcmp(text, "+inf") == 0) {
        *has = 0;
        return 0;
    }
    *has = 1;
    if (type == FLAG_FLOAT) return flag_parse_double_text(text, &v->f) == 0 ? 0 : -1;
    return flag_parse_int64_text(text, &v->i) == 0 ? 0 : -1;
}

// Parses a numeric flag's interval text ("[1, 1024]", "(0, 1)", "[-1, inf)") into *r.
static inline int flag_parse_range(const FlagSpec *spec, FlagRange *r, char *err, size_t err_size) {
    char name[96];
    flag_display_name(spec, name, sizeof(name));
    memset(r, 0, sizeof(*r));
    const char *text = spec->range;
    size_t len = text != NULL ? strlen(text) : 0;
    const char *comma = text != NULL ? strchr(text, ',') : NULL;
    if (len < 3 || (text[0] != '[' && text[0] != '(') || (text[len - 1] != ']' && text[len - 1] != ')') ||
        comma == NULL) {
        return set_error(err, err_size, "flag table: %s: range '%s' is not an interval like '[1, 64]'",
                         name, text != NULL ? text : "(null)");
    }
    char lo[64], hi[64];
    flag_trim_copy(text + 1, comma, lo, sizeof(lo));
    flag_trim_copy(comma + 1, text + len - 1, hi, sizeof(hi));
    r->lo_open = text[0] == '(';
    r->hi_open = text[len - 1] == ')';
    if (flag_parse_bound(spec->type, lo, &r->has_lo, &r->lo) != 0 ||
        flag_parse_bound(spec->type, hi, &r->has_hi, &r->hi) != 0) {
        return set_error(err, err_size, "flag table: %s: range '%s' has a bound that is not a %s",
                         name, text, FLAG_TYPE_NAMES[spec->type]);
    }
    return 0;
}

// Whether v lies in r (compared as integers or as floats by the flag's type).
static inline int flag_in_range(FlagType type, const FlagRange *r, const FlagValue *v) {
    if (type == FLAG_FLOAT) {
        if (r->has_lo && (r->lo_open ? !(v->f > r->lo.f) : !(v->f >= r->lo.f))) return 0;
        if (r->has_hi && (r->hi_open ? !(v->f < r->hi.f) : !(v->f <= r->hi.f))) return 0;
    } else {
        if (r->has_lo && (r->lo_open ? !(v->i > r->lo.i) : !(v->i >= r->lo.i))) return 0;
        if (r->has_hi && (r->hi_open ? !(v->i < r->hi.i) : !(v->i <= r->hi.i))) return 0;
    }
    return 1;
}

// Writes "bf16, fp8cs" (built == 1: built choices only; built == 0: the others) into buf.
static inline void flag_list_choices(const FlagSpec *spec, int built, const char *sep, char *buf, size_t size) {
    size_t used = 0;
    buf[0] = '\0';
    for (int c = 0; c < spec->num_choices; c++) {
        int is_built = (spec->built_choices >> c) & 1u;
        if (is_built != built) continue;
        int n = snprintf(buf + used, size - used, "%s%s", used > 0 ? sep : "", spec->choices[c]);
        if (n < 0 || (size_t)n >= size - used) break;
        used += (size_t)n;
    }
}

// Parses `text` as a value of `spec` (syntax, range, enum choice) into *out.
static inline int flag_parse_value(const FlagSpec *spec, const char *text, FlagValue *out, char *err, size_t err_size) {
    char name[96];
    flag_display_name(spec, name, sizeof(name));
    memset(out, 0, sizeof(*out));
    switch (spec->type) {
    case FLAG_INT:
    case FLAG_INT64:
    case FLAG_FLOAT: {
        FlagRange range;
        if (flag_parse_range(spec, &range, err, err_size) != 0) return -1;
        if (spec->type == FLAG_FLOAT) {
            int rc = flag_parse_double_text(text, &out->f);
            if (rc == 1) return set_error(err, err_size, "flag %s: '%s' is not a number", name, text);
            if (rc == 2 || fabs(out->f) > FLT_MAX) {
                return set_error(err, err_size, "flag %s: '%s' is not a finite 32-bit float (allowed %s)", name, text, spec->range);
            }
            if (out->f != 0.0 && (float)out->f == 0.0f) {
                return set_error(err, err_size, "flag %s: '%s' is not a 32-bit float (it underflows to 0)", name, text);
            }
            out->f = (double)(float)out->f;   // the value as stored, so the range check sees what is used
        } else {
            int rc = flag_parse_int64_text(text, &out->i);
            if (rc == 1) return set_error(err, err_size, "flag %s: '%s' is not an integer", name, text);
            if (rc == 2) return set_error(err, err_size, "flag %s: %s is out of range %s", name, text, spec->range);
        }
        if (!flag_in_range(spec->type, &range, out)) {
            return set_error(err, err_size, "flag %s: %s is out of range %s", name, text, spec->range);
        }
        if (spec->type == FLAG_INT && (out->i < INT_MIN || out->i > INT_MAX)) {
            return set_error(err, err_size, "flag %s: %s is out of range %s (a 32-bit int)", name, text, spec->range);
        }
        return 0;
    }
    case FLAG_BOOL:
        if (strcmp(text, "1") == 0 || strcmp(text, "true") == 0) out->i = 1;
        else if (strcmp(text, "0") == 0 || strcmp(text, "false") == 0) out->i = 0;
        else return set_error(err, err_size, "flag %s: '%s' is not a boolean (use 0 or 1)", name, text);
        return 0;
    case FLAG_STRING:
        out->s = text;
        return 0;
    case FLAG_ENUM: {
        char listed[256];
        for (int c = 0; c < spec->num_choices; c++) {
            if (strcmp(text, spec->choices[c]) != 0) continue;
            if (!((spec->built_choices >> c) & 1u)) {
                flag_list_choices(spec, 1, ", ", listed, sizeof(listed));
                return set_error(err, err_size, "flag %s: '%s' is not built yet; available: %s", name, text, listed);
            }
            out->i = c;
            return 0;
        }
        char unbuilt[256];
        flag_list_choices(spec, 1, ", ", listed, sizeof(listed));
        flag_list_choices(spec, 0, ", ", unbuilt, sizeof(unbuilt));
        return set_error(err, err_size, "flag %s: unknown choice '%s'; available: %s%s%s%s", name, text, listed,
                         unbuilt[0] != '\0' ? " (not built yet: " : "", unbuilt, unbuilt[0] != '\0' ? ")" : "");
    }
    }
    return set_error(err, err_size, "flag %s: unknown flag type %d", name, (int)spec->type);
}

// Writes a parsed value into the spec's field of `config`.
static inline void flag_store(const FlagSpec *spec, const FlagValue *v, void *config) {
    char *field = (char *)config + spec->offset;
    switch (spec->type) {
    case FLAG_INT:
    case FLAG_BOOL:
    case FLAG_ENUM: { int x = (int)v->i; memcpy(field, &x, sizeof(x)); break; }
    case FLAG_INT64: { int64_t x = v->i; memcpy(field, &x, sizeof(x)); break; }
    case FLAG_FLOAT: { float x = (float)v->f; memcpy(field, &x, sizeof(x)); break; }
    case FLAG_STRING: memcpy(field, &v->s, sizeof(v->s)); break;
    }
}

// Size in bytes of the config field that a flag of `type` writes.
static inline size_t flag_field_size(FlagType type) {
    switch (type) {
    case FLAG_INT64: return sizeof(int64_t);
    case FLAG_FLOAT: return sizeof(float);
    case FLAG_STRING: return sizeof(const char *);
    default: return sizeof(int);
    }
}

// Index of the spec named `name` (short or long form), or -1.
static inline int flags_find(const FlagSpec *specs, int num_specs, const char *name) {
    for (int k = 0; k < num_specs; k++) {
        if (strcmp(name, specs[k].long_name) == 0) return k;
        if (specs[k].short_name != NULL && strcmp(name, specs[k].short_name) == 0) return k;
    }
    return -1;
}

static inline int flag_is_help(const char *arg) { return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0; }

// Checks a flag table for programming errors: name syntax, duplicate names, field sizes, ranges,
// choices, and that every default parses and lies in its range. Programs and tests call it once.
static inline int flags_check_table(const FlagSpec *specs, int num_specs, char *err, size_t err_size) {
    for (int k = 0; k < num_specs; k++) {
        const FlagSpec *s = &specs[k];
        char name[96];
        if (s->long_name == NULL || strncmp(s->long_name, "--", 2) != 0 || strlen(s->long_name) < 3 ||
            strchr(s->long_name, '=') != NULL) {
            return set_error(err, err_size, "flag table: entry %d: long name '%s' is not like --name", k,
                             s->long_name != NULL ? s->long_name : "(null)");
        }
        flag_display_name(s, name, sizeof(name));
        if (s->short_name != NULL && (s->short_name[0] != '-' || s->short_name[1] == '\0' ||
                                      s->short_name[1] == '-' || s->short_name[2] != '\0')) {
            return set_error(err, err_size, "flag table: %s: short name is not like -x", name);
        }
        if (flag_is_help(s->long_name) || (s->short_name != NULL && flag_is_help(s->short_name))) {
            return set_error(err, err_size, "flag table: %s: -h/--help is reserved", name);
        }
        for (int j = 0; j < k; j++) {
            if (flags_find(&specs[j], 1, s->long_name) == 0 ||
                (s->short_name != NULL && flags_find(&specs[j], 1, s->short_name) == 0)) {
                return set_error(err, err_size, "flag table: %s: name used twice", name);
            }
        }
        if ((int)s->type < (int)FLAG_INT || (int)s->type > (int)FLAG_ENUM) {
            return set_error(err, err_size, "flag table: %s: unknown type %d", name, (int)s->type);
        }
        if (s->field_size != flag_field_size(s->type)) {
            return set_error(err, err_size, "flag table: %s: field of %zu bytes does not hold a %s", name,
                             s->field_size, FLAG_TYPE_NAMES[s->type]);
        }
        if (s->help == NULL || s->help[0] == '\0' || s->default_text == NULL) {
            return set_error(err, err_size, "flag table: %s: missing help text or default", name);
        }
        if (flag_is_numeric_type(s->type)) {
            FlagRange r;
            if (flag_parse_range(s, &r, err, err_size) != 0) return -1;
            if (s->type == FLAG_INT && ((r.has_lo && r.lo.i < INT_MIN) || (r.has_hi && r.hi.i > INT_MAX))) {
                return set_error(err, err_size, "flag table: %s: range '%s' exceeds a 32-bit int", name, s->range);
            }
        } else if (s->range != NULL) {
            return set_error(err, err_size, "flag table: %s: only numeric flags have a range", name);
        }
        if (s->type == FLAG_ENUM) {
            if (s->choices == NULL || s->num_choices < 1 || s->num_choices > 32) {
                return set_error(err, err_size, "flag table: %s: an enum needs 1 to 32 choices", name);
            }
            unsigned valid = s->num_choices == 32 ? 0xFFFFFFFFu : ((1u << s->num_choices) - 1u);
            if (s->built_choices == 0u || (s->built_choices & ~valid) != 0u) {
                return set_error(err, err_size, "flag table: %s: built-choice mask 0x%x does not fit %d choices",
                                 name, s->built_choices, s->num_choices);
            }
        } else if (s->choices != NULL || s->num_choices != 0 || s->built_choices != 0u) {
            return set_error(err, err_size, "flag table: %s: only enums have choices", name);
        }
        FlagValue v;
        char why[256];
        if (flag_parse_value(s, s->default_text, &v, why, sizeof(why)) != 0) {
            return set_error(err, err_size, "flag table: default '%s' rejected: %s", s->default_text, why);
        }
    }
    return 0;
}

// Sets every field of `config` named in the table to its default.
static inline int flags_set_defaults(const FlagSpec *specs, int num_specs, void *config, char *err, size_t err_size) {
    for (int k = 0; k < num_specs; k++) {
        FlagValue v;
        if (flag_parse_value(&specs[k], specs[k].default_text, &v, err, err_size) != 0) return -1;
        flag_store(&specs[k], &v, config);
    }
    return 0;
}

// Copies the flag name of `arg` ("--name" of "--name=value") into name; returns the '=' or NULL.
// A name that does not fit leaves name empty.
static inline const char *flag_split_name(const char *arg, char *name, size_t size) {
    const char *eq = strchr(arg, '=');
    size_t len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
    if (len >= size) len = 0;
    memcpy(name, arg, len);
    name[len] = '\0';
    return eq;
}

// Sets the defaults, then applies argv[1..argc-1]. On -h/--help sets *help_requested = 1 and returns
// 0 without looking further. Returns -1 with a message on any error.
static inline int flags_parse(const FlagSpec *specs, int num_specs, void *config, int argc, char **argv,
                              int *help_requested, char *err, size_t err_size) {
    *help_requested = 0;
    if (flags_set_defaults(specs, num_specs, config, err, err_size) != 0) return -1;
    unsigned char *seen = (unsigned char *)calloc_check((size_t)num_specs + 1, 1);
    int rc = 0;
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (arg[0] != '-' || arg[1] == '\0') {
            rc = set_error(err, err_size, "unexpected argument '%s' (flags look like -b 8 or --batch-size 8)", arg);
            break;
        }
        char name[128];
        const char *eq = flag_split_name(arg, name, sizeof(name));
        if (flag_is_help(name)) { *help_requested = 1; break; }
        if (name[0] == '\0') {
            rc = set_error(err, err_size, "unknown flag '%.40s...'", arg);
            break;
        }
        int k = flags_find(specs, num_specs, name);
        if (k < 0) {
            rc = set_error(err, err_size, "unknown flag '%s'", name);
            break;
        }
        char shown[96];
        flag_display_name(&specs[k], shown, sizeof(shown));
        if (seen[k]) {
            rc = set_error(err, err_size, "flag %s: given more than once", shown);
            break;
        }
        seen[k] = 1;
        const char *value = NULL;
        if (eq != NULL) {
            value = eq + 1;
        } else if (a + 1 >= argc) {
            rc = set_error(err, err_size, "flag %s: missing value", shown);
            break;
        } else {
            value = argv[a + 1];
            // a following flag is never taken as a value: `-o -b 8` lacks the value of -o
            char next_name[128];
            flag_split_name(value, next_name, sizeof(next_name));
            if (flags_find(specs, num_specs, next_name) >= 0 || flag_is_help(next_name)) {
                rc = set_error(err, err_size, "flag %s: missing value (next argument '%s' is a flag)", shown, value);
                break;
            }
            a++;
        }
        FlagValue v;
        if (flag_parse_value(&specs[k], value, &v, err, err_size) != 0) { rc = -1; break; }
        flag_store(&specs[k], &v, config);
    }
    free(seen);
    return rc;
}

// Writes the current value of a flag's field as command-line text (parses back to the same value).
static inline void flags_format_value(const FlagSpec *spec, const void *config, char *buf, size_t size) {
    const char *field = (const char *)config + spec->offset;
    switch (spec->type) {
    case FLAG_INT:
    case FLAG_BOOL: { int x; memcpy(&x, field, sizeof(x)); snprintf(buf, size, "%d", x); break; }
    case FLAG_ENUM: {
        int x;
        memcpy(&x, field, sizeof(x));
        snprintf(buf, size, "%s", x >= 0 && x < spec->num_choices ? spec->choices[x] : "(invalid)");
        break;
    }
    case FLAG_INT64: { int64_t x; memcpy(&x, field, sizeof(x)); snprintf(buf, size, "%lld", (long long)x); break; }
    case FLAG_FLOAT: {
        float x;
        memcpy(&x, field, sizeof(x));
        // shortest %g form that reads back as the same float
        for (int digits = 6; digits <= 9; digits++) {
            snprintf(buf, size, "%.*g", digits, (double)x);
            if (strtof(buf, NULL) == x) break;
        }
        break;
    }
    case FLAG_STRING: {
        const char *s;
        memcpy(&s, field, sizeof(s));
        snprintf(buf, size, "%s", s != NULL ? s : "");
        break;
    }
    }
}

// Writes what a flag accepts: "int [1, 1024]", "0|1", "string", "bf16|fp8cs".
static inline void flag_format_allowed(const FlagSpec *spec, char *buf, size_t size) {
    if (flag_is_numeric_type(spec->type)) snprintf(buf, size, "%s %s", FLAG_TYPE_NAMES[spec->type], spec->range);
    else if (spec->type == FLAG_BOOL) snprintf(buf, size, "0|1");
    else if (spec->type == FLAG_STRING) snprintf(buf, size, "string");
    else flag_list_choices(spec, 1, "|", buf, size);
}

static inline void flag_format_names(const FlagSpec *spec, char *buf, size_t size) {
    snprintf(buf, size, "%s%s%s", spec->short_name != NULL ? spec->short_name : "",
             spec->short_name != NULL ? ", " : "    ", spec->long_name);
}

// Widest default shown inline in the help; longer ones (paths) push their description to the next line.
#define FLAG_HELP_DEFAULT_WIDTH 12

// Prints the help text: one aligned row per flag with names, allowed values, default and description.
static inline void flags_print_help(FILE *out, const char *usage, const FlagSpec *specs, int num_specs) {
    int w_names = (int)strlen("flag"), w_allowed = (int)strlen("accepts"), w_default = (int)strlen("default");
    char names[128], allowed[256], shown_default[512], unbuilt[256];
    for (int k = 0; k < num_specs; k++) {
        flag_format_names(&specs[k], names, sizeof(names));
        flag_format_allowed(&specs[k], allowed, sizeof(allowed));
        int n = (int)strlen(names), a = (int)strlen(allowed), d = (int)strlen(specs[k].default_text) + 2;
        if (n > w_names) w_names = n;
        if (a > w_allowed) w_allowed = a;
        if (d > w_default && d <= FLAG_HELP_DEFAULT_WIDTH) w_default = d;
    }
    int description_column = 2 + w_names + 2 + w_allowed + 2 + w_default + 2;
    fprintf(out, "%s\n\n", usage);
    fprintf(out, "  %-*s  %-*s  %-*s  %s\n", w_names, "flag", w_allowed, "accepts", w_default, "default", "description");
    for (int k = 0; k < num_specs; k++) {
        const FlagSpec *s = &specs[k];
        flag_format_names(s, names, sizeof(names));
        flag_format_allowed(s, allowed, sizeof(allowed));
        snprintf(shown_default, sizeof(shown_default), s->type == FLAG_STRING ? "\"%s\"" : "%s", s->default_text);
        if ((int)strlen(shown_default) > w_default) {
            fprintf(out, "  %-*s  %-*s  %s\n%*s", w_names, names, w_allowed, allowed, shown_default, description_column, "");
        } else {
            fprintf(out, "  %-*s  %-*s  %-*s  ", w_names, names, w_allowed, allowed, w_default, shown_default);
        }
        fprintf(out, "%s", s->help);
        if (s->type == FLAG_ENUM) {
            flag_list_choices(s, 0, ", ", unbuilt, sizeof(unbuilt));
            if (unbuilt[0] != '\0') fprintf(out, " (not built yet: %s)", unbuilt);
        }
        fprintf(out, "\n");
    }
    fprintf(out, "  %-*s  %-*s  %-*s  %s\n", w_names, "-h, --help", w_allowed, "", w_default, "", "print this help and exit");
    fprintf(out, "Forms: -b 8, --batch-size 8, --batch-size=8. Every flag takes a value.\n");
}

// Prints a "+------+-------+" rule of a two-column box whose cells are w1 and w2 characters wide.
static inline void flag_print_rule(FILE *out, int w1, int w2) {
    fputc('+', out);
    for (int i = 0; i < w1 + 2; i++) fputc('-', out);
    fputc('+', out);
    for (int i = 0; i < w2 + 2; i++) fputc('-', out);
    fputs("+\n", out);
}

// Prints the configuration as an llm.c-style box table: one row per flag with its current value.
static inline void flags_print_config(FILE *out, const FlagSpec *specs, int num_specs, const void *config) {
    int w_name = (int)strlen("flag"), w_value = (int)strlen("value");
    char names[128], value[1024];
    for (int k = 0; k < num_specs; k++) {
        flag_format_names(&specs[k], names, sizeof(names));
        flags_format_value(&specs[k], config, value, sizeof(value));
        int n = (int)strlen(names), v = value[0] != '\0' ? (int)strlen(value) : (int)strlen("(none)");
        if (n > w_name) w_name = n;
        if (v > w_value) w_value = v;
    }
    flag_print_rule(out, w_name, w_value);
    fprintf(out, "| %-*s | %-*s |\n", w_name, "flag", w_value, "value");
    flag_print_rule(out, w_name, w_value);
    for (int k = 0; k < num_specs; k++) {
        flag_format_names(&specs[k], names, sizeof(names));
        flags_format_value(&specs[k], config, value, sizeof(value));
        fprintf(out, "| %-*s | %-*s |\n", w_name, names, w_value, value[0] != '\0' ? value : "(none)");
    }
    flag_print_rule(out, w_name, w_value);
}

#endif // CORE_FLAGS_H
