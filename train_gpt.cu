// GPT-2 trainer: the GPT-2 model family (gpt2_model.h on the host, gpt2.cuh on the GPU) run by the shared
// training program (core/trainer.cuh, which describes a run, its output and its exit status). One GPU:
//   ./train_gpt -e d12 -b 64 -t 1024 -d 524288 -o out
// Several processes (mpirun) are laid out as tp x pp x dp by the flags, but only the one-process path
// (one GPU, BF16) is built so far; with more processes the program says so and exits 2.
// MFU counts FLOPs per token = 6 * parameters + 6 * L * T * C (gpt2_flops_per_token in gpt2.cuh).
#include "core/trainer.cuh"
#include "gpt2.cuh"

int main(int argc, char **argv) { return trainer_main(argc, argv, &GPT2_FAMILY); }
