// The training log: a plain text file "<output dir>/log.txt", appended to when a run resumes.
// Lines starting with '#' are comments (the column legend, written when the file is created).
// One line per optimizer step, seven space-separated columns:
//   step loss lr norm ms tok/s mfu
//   step: optimizer steps completed (1 for the first update); loss: mean training loss of the step;
//   lr: learning rate used; norm: global gradient norm before clipping; ms: wall time of the step;
//   tok/s: tokens per second over all ranks; mfu: model FLOPs utilization (0..1).
// One line per validation pass:
//   val step loss
// Every line is flushed when written, so the file can be followed during a run.
// A resumed run (-y 1) appends: steps after its checkpoint that an interrupted run had already
// logged appear twice (the later lines are the resumed run's).
// Plain C, also compiled as C++ by nvcc.
#ifndef CORE_LOGGER_H
#define CORE_LOGGER_H

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/utils.h"

typedef struct {
    FILE *file;  // NULL: logging off (no output directory)
} Logger;

// Opens "<dir>/log.txt" (appending when `append`, else truncating it). dir "" turns logging off.
// Returns 0, or -1 with a message naming the file.
static inline int logger_open(Logger *log, const char *dir, int append, char *err, size_t err_size) {
    log->file = NULL;
    if (dir[0] == '\0') return 0;
    char path[4096];
    if ((size_t)snprintf(path, sizeof(path), "%s/log.txt", dir) >= sizeof(path))
        return set_error(err, err_size, "-o/--output-dir: path '%s' is too long", dir);
    log->file = fopen(path, append ? "a" : "w");
    if (log->file == NULL) return set_error(err, err_size, "cannot open the log file '%s': %s", path, strerror(errno));
    if (!append) fprintf(log->file, "# step loss lr norm ms tok/s mfu  |  val step loss\n");
    fflush(log->file);
    return 0;
}

static inline void logger_step(Logger *log, long long step, float loss, float lr, float norm, double ms, double tokens_per_s, double mfu) {
    if (log->file == NULL) return;
    fprintf(log->file, "%lld %.6f %.6e %.6f %.3f %.1f %.4f\n", step, loss, lr, norm, ms, tokens_per_s, mfu);
    fflush(log->file);
}

static inline void logger_val(Logger *log, long long step, float loss) {
    if (log->file == NULL) return;
    fprintf(log->file, "val %lld %.6f\n", step, loss);
    fflush(log->file);
}

static inline void logger_close(Logger *log) {
    if (log->file != NULL) fclose(log->file);
    log->file = NULL;
}

#endif // CORE_LOGGER_H
