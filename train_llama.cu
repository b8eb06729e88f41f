// Llama trainer: the Llama model family (llama_model.h on the host, llama.cuh on the GPU) run by the shared
// training program (core/trainer.cuh, which describes a run, its output and its exit status). One GPU:
//   ./train_llama -e l125m -b 64 -t 1024 -o out
// Several processes (mpirun) are laid out as tp x pp x dp by the flags, but only the one-process path
// (one GPU, BF16) is built so far; with more processes the program says so and exits 2.
// MFU counts FLOPs per token = 6 * parameters + 6 * L * T * C (llama_flops_per_token in llama.cuh).
#include "core/trainer.cuh"
#include "llama.cuh"

int main(int argc, char **argv) { return trainer_main(argc, argv, &LLAMA_FAMILY); }
