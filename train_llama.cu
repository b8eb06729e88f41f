// Llama trainer: the Llama model family (llama_model.h on the host, llama.cuh) run by the shared training
// program (core/trainer.cuh, which describes a run, its output and its exit status). The family's GPU
// kernels are not built yet: the program runs every check that needs no GPU (flags, model, data,
// schedule, output directory, checkpoint), then says so and exits 2.
//   ./train_llama -e l125m -b 16 -t 1024 -x 100
#include "core/trainer.cuh"
#include "llama.cuh"

int main(int argc, char **argv) { return trainer_main(argc, argv, &LLAMA_FAMILY); }
