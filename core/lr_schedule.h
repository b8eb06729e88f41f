// Learning-rate schedule shared by the CPU reference and the GPU trainers: linear warmup to the
// peak rate, then a cosine decay to final_lr_frac * peak at max_steps (held there afterwards).
// Steps count from 0; step s is the s-th optimizer update.
//   s <  warmup:              lr * (s + 1) / warmup
//   warmup <= s <= max_steps: min + 0.5 * (1 + cos(pi * (s - warmup) / (max_steps - warmup))) * (lr - min)
//   s >  max_steps:           min,  where min = final_lr_frac * lr
// Plain C, also compiled as C++ by nvcc.
#ifndef CORE_LR_SCHEDULE_H
#define CORE_LR_SCHEDULE_H

#include <math.h>
#include <stddef.h>

#include "core/utils.h"

typedef struct {
    float lr;             // peak learning rate
    int warmup_steps;     // linear warmup length (0 = start at the peak)
    int max_steps;        // the decay reaches final_lr_frac * lr here
    float final_lr_frac;  // in [0, 1]
} LRSchedule;

// Checks the schedule's settings (they come from flags); returns 0, or -1 with a message.
static inline int lr_schedule_validate(const LRSchedule *s, char *err, size_t err_size) {
    if (!(s->lr > 0.0f) || !isfinite(s->lr)) return set_error(err, err_size, "learning rate must be a positive finite number, got %g", (double)s->lr);
    if (s->max_steps <= 0) return set_error(err, err_size, "number of steps must be positive, got %d", s->max_steps);
    if (s->warmup_steps < 0 || s->warmup_steps > s->max_steps)
        return set_error(err, err_size, "warmup steps must be in [0, %d] (the number of steps), got %d", s->max_steps, s->warmup_steps);
    if (!(s->final_lr_frac >= 0.0f && s->final_lr_frac <= 1.0f))
        return set_error(err, err_size, "final learning-rate fraction must be in [0, 1], got %g", (double)s->final_lr_frac);
    return 0;
}

// Learning rate of optimizer step `step` (0-based).
static inline float lr_schedule_at(const LRSchedule *s, int step) {
    if (step < s->warmup_steps) return s->lr * (float)(step + 1) / (float)s->warmup_steps;
    double min_lr = (double)s->final_lr_frac * (double)s->lr;
    if (step >= s->max_steps || s->max_steps == s->warmup_steps) return (float)min_lr;
    double progress = (double)(step - s->warmup_steps) / (double)(s->max_steps - s->warmup_steps);
    double coeff = 0.5 * (1.0 + cos(3.14159265358979323846 * progress));
    return (float)(min_lr + coeff * ((double)s->lr - min_lr));
}

#endif // CORE_LR_SCHEDULE_H
