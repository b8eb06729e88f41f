#!/usr/bin/env bash
# GPT-2 124M (d12) pretraining with the GPT-2 recipe of llm.c: 0.5M-token batches, peak lr 6e-4
# with 700 warmup steps and cosine decay to 0, weight decay 0.1, one pass over the training shards.
#   scripts/run_gpt2_d12.sh [extra train_gpt flags...]
# Settings from the environment (defaults in brackets):
#   NUM_GPUS   GPUs [1]: 1 runs ./train_gpt directly; more start that many processes with mpirun
#              (the multi-process path is not built yet: train_gpt then exits with status 2)
#   TRAIN, VAL shard globs [build/data/fineweb10B/fineweb_{train,val}_*.bin]
#   OUT        output directory for the log and checkpoints [log_gpt2_d12]
#   PRECISION  -p mode [bf16]
#   TP, PP     tensor / pipeline parallel degrees [1, 1]; the data-parallel degree is the rest
#   B          micro-batch per data-parallel rank [64]; lower it (e.g. 32, 16) if memory runs out:
#              gradient accumulation keeps the 524288-token batch
# Extra arguments are passed to train_gpt after these flags (a flag may be given only once, so
# change the settings above through the environment rather than repeating their flags).
set -euo pipefail
cd "$(dirname "$0")/.."

NUM_GPUS=${NUM_GPUS:-1}
TRAIN=${TRAIN:-"build/data/fineweb10B/fineweb_train_*.bin"}
VAL=${VAL:-"build/data/fineweb10B/fineweb_val_*.bin"}
OUT=${OUT:-log_gpt2_d12}
PRECISION=${PRECISION:-bf16}
TP=${TP:-1}
PP=${PP:-1}
B=${B:-64}

LAUNCH=()
ZERO=0
if [ "$NUM_GPUS" -gt 1 ]; then
    LAUNCH=(mpirun -np "$NUM_GPUS")
    ZERO=1
fi

make train_gpt
"${LAUNCH[@]}" ./train_gpt \
    -i "$TRAIN" -j "$VAL" -o "$OUT" -e d12 -p "$PRECISION" --tp "$TP" --pp "$PP" -z "$ZERO" \
    -b "$B" -t 1024 -d 524288 \
    -l 0.0006 -u 700 -q 0.0 -c 0.1 --beta1 0.9 --beta2 0.95 --grad-clip 1.0 \
    -v 250 -m 20 -s 20000 -g 144 -n 5000 \
    "$@"
