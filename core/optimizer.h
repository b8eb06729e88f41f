// The optimizer's settings of a run: AdamW with decoupled weight decay and global-norm gradient
// clipping. One struct for the device model (core/model.cuh's model_update, filled by the trainer from
// the flags of core/train_config.h) and the CPU reference (test/reference/layers_cpu.h's
// cpu_adamw_step_table). Plain C, also compiled as C++ by nvcc.
#ifndef CORE_OPTIMIZER_H
#define CORE_OPTIMIZER_H

typedef struct {
    float beta1;         // first-moment decay
    float beta2;         // second-moment decay
    float eps;
    float weight_decay;  // decoupled, applied to the tensors whose ParamSpec.decay is set (the 2-D weights)
    float grad_clip;     // clip the global gradient norm to this value; <= 0 disables
} AdamWConfig;

#endif // CORE_OPTIMIZER_H
