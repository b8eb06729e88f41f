#!/usr/bin/env bash
# The GPU check of the shared trainer core (issue 18, part 1), in one device call:
#   1. scripts/device_gpt2_single_gpu.sh with BASELINE: train_gpt against the pre-refactor binary (d12, 20 steps:
#      losses, norms, validation, samples and master weights bit-identical), resume, step times of both binaries
#      alternated (d12 B=64, d24 B=32), test_model_gpu;
#   2. every other GPU test (test_layers has the RMSNorm tests), test_flags (the CLI on a GPU), the float64
#      PyTorch check of the CPU reference;
#   3. the Hugging Face checks: transformers' logits of exported models against the CPU reference, and of a
#      head-size-64 GPT-2 against the trainer's own forward (build/dev/model_logits).
# Prepare on the CPU machine (binaries travel; the device needs no build):
#   git worktree add /tmp/base 231133d && make -C /tmp/base train_gpt && mkdir -p .carry/old && cp /tmp/base/train_gpt .carry/old/
#   make all build/test/test_flags build/dev/model_logits $(ls test/gpu/*.cu | sed 's|test/gpu/\(.*\).cu|build/gpu/\1|')
# then run `bash scripts/device_core_check.sh` there, carrying build/gpu, build/data/tinyshakespeare, train_gpt,
# train_llama, .carry, build/test/test_flags and build/dev/model_logits. Logs under /tmp/logs, packed into
# $OUT/logs.tgz after every stage; the summary lines are printed.
set -uo pipefail
OUT=${OUT:-/tmp/core_check_out}; mkdir -p "$OUT"
LOG=/tmp/logs; mkdir -p $LOG
pack() { tar czf $OUT/logs.tgz -C /tmp logs; }
nvidia-smi --query-gpu=name,serial,power.limit,clocks.max.sm --format=csv,noheader | tee $LOG/gpu.txt
B=.carry/old/train_gpt
BASELINE=$B TIMING_BINS="$B ./train_gpt $B ./train_gpt" PROFILE=0 OUT=$LOG/single timeout 420 bash scripts/device_gpt2_single_gpu.sh > $LOG/single.log 2>&1
grep -E "PROOF|RESUME|rc=|mean of|RESULT" $LOG/single.log; pack
for n in test_layers test_attention test_gemm_fp8_int8 test_gemm_mx_nvfp4 test_quantizers; do
    timeout 150 build/gpu/$n > $LOG/$n.log 2>&1; echo "$n rc=$? $(grep -h RESULT $LOG/$n.log | tail -1)"; pack
done
grep -h "worst gradient\|steps: gpu loss\|bit-identical\|wte: relative\|both orders" $LOG/single/test_model_gpu.log
timeout 100 build/test/test_flags > $LOG/test_flags.log 2>&1; echo "test_flags rc=$? $(grep RESULT $LOG/test_flags.log)"; pack
PYTHONUNBUFFERED=1 timeout 120 python3 dev/torch_reference_check.py > $LOG/torch_ref.log 2>&1; echo "torch_reference_check rc=$? $(grep RESULT $LOG/torch_ref.log)"; pack
PYTHONUNBUFFERED=1 timeout 150 python3 dev/check_hf_logits.py > $LOG/hf.log 2>&1; echo "check_hf_logits rc=$? $(grep RESULT $LOG/hf.log)"; pack
build/check_hf_logits/model_tool init --weight-scale 3 gpt2 64 211 256 2 2 128 /tmp/gpt2_hs64.bin > /dev/null && \
PYTHONUNBUFFERED=1 timeout 120 python3 dev/check_hf_logits.py --model /tmp/gpt2_hs64.bin --trainer-logits 'build/dev/model_logits {model} {tokens} {B} {T} {out}' > $LOG/hf_trainer.log 2>&1; echo "check_hf_logits trainer rc=$? $(grep -h 'trainer vs\|RESULT' $LOG/hf_trainer.log)"; pack
