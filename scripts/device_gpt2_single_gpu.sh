#!/usr/bin/env bash
# One-GPU check of the GPT-2 trainer, as run on the lent H100 (results in dev/RESULTS.md):
#   1. build/gpu/test_model_gpu (GPU vs CPU reference, determinism, save/resume)
#   2. train_gpt on tinyshakespeare, d12 B=4 T=256: 20 steps straight vs 10 steps + resume (-y 1) to 20;
#      the step losses in the two log files must be identical
#   3. timing: d12 B=64 T=1024 (30 steps) and d24 B=32 T=1024 (15 steps) of each binary in $TIMING_BINS
#   4. with PEER=1, the PyTorch torch.compile peer (dev/bench/torch_gpt2.py) at the same two shapes, so the
#      ratio comes from one call
#   5. with BASELINE=path/to/an/earlier/train_gpt: d12 B=16 T=1024, 20 steps with validation, samples and a
#      checkpoint, by both binaries from the same seed; the step losses, learning rates, norms, validation
#      losses, samples and the checkpoint's master weights (model_00000020.bin) must be identical
#   6. with PROFILE=1 (the default) and nsys on the machine, a kernel profile of 4 d12 B=64 steps
# Needs the binaries built (make train_gpt build/gpu/test_model_gpu) and build/data/tinyshakespeare.
# Logs go to $OUT (default /tmp/gpt2_single_gpu).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpt2_single_gpu}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,power.limit,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 240 build/gpu/test_model_gpu 2>&1 | tee "$OUT/test_model_gpu.log"
common=(-e d12 -b 4 -t 256 -v 10 -m 4 -s 10 -g 32 -n 10 -l 6e-4)
timeout 60 ./train_gpt "${common[@]}" -x 20 -o "$OUT/straight" > "$OUT/straight.log" 2>&1; echo "straight rc=$?"
timeout 60 ./train_gpt "${common[@]}" -x 10 -o "$OUT/resumed" > "$OUT/resumed_a.log" 2>&1; echo "first half rc=$?"
timeout 60 ./train_gpt "${common[@]}" -x 20 -o "$OUT/resumed" -y 1 > "$OUT/resumed_b.log" 2>&1; echo "resume rc=$?"
tail -8 "$OUT/straight.log"
grep -v '^#' "$OUT/straight/log.txt" | awk '$1 != "val" {print $1, $2}' > "$OUT/straight_losses.txt"
grep -v '^#' "$OUT/resumed/log.txt" | awk '$1 != "val" {print $1, $2}' > "$OUT/resumed_losses.txt"
if cmp -s "$OUT/straight_losses.txt" "$OUT/resumed_losses.txt"; then echo "RESUME: step losses identical"; else echo "RESUME: DIFFERENT"; diff "$OUT/straight_losses.txt" "$OUT/resumed_losses.txt" | head; fi
# mean ms/step, tokens/s and MFU of steps 3..N of a train_gpt log ("... | 171.8 ms | 190778 tok/s | MFU 44.0%")
mean_step() {
    grep -E '^step +[0-9]+/' "$1" | awk -F'|' 'NR >= 3 { split($5, a, " "); split($6, b, " "); split($7, c, " ");
        ms += a[1]; tok += b[1]; mfu += c[2]; n++ }
        END { if (n) printf "  mean of steps 3..%d: %.1f ms/step, %.0f tok/s, MFU %.1f%%\n", n + 2, ms / n, tok / n, mfu / n }'
}
# timing of each binary in $TIMING_BINS (default ./train_gpt; others are earlier builds to compare)
for bin in ${TIMING_BINS:-./train_gpt}; do
    name=$(basename "$bin")
    timeout 90 "$bin" -e d12 -b 64 -t 1024 -x 30 -v 0 -s 0 -j "" -l 6e-4 > "$OUT/d12_b64_$name.log" 2>&1; echo "$name d12 B=64 rc=$?"
    grep -E "step +(1|2|10|20|30)/|error" "$OUT/d12_b64_$name.log"
    mean_step "$OUT/d12_b64_$name.log"
    timeout 60 "$bin" -e d24 -b 32 -t 1024 -x 15 -v 0 -s 0 -j "" -l 3e-4 > "$OUT/d24_b32_$name.log" 2>&1; echo "$name d24 B=32 rc=$?"
    grep -E "step +(1|2|10|15)/|error" "$OUT/d24_b32_$name.log"
    mean_step "$OUT/d24_b32_$name.log"
done
grep -h -A7 "device memory plan" "$OUT"/d12_b64_*.log | head -8
if [ "${PEER:-0}" = 1 ]; then
    export PYTHONUNBUFFERED=1 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
    timeout 150 python3 dev/bench/torch_gpt2.py --model d12 -b 64 -t 1024 --steps 30 > "$OUT/peer_d12.log" 2>&1; echo "peer d12 rc=$?"
    grep summary "$OUT/peer_d12.log"
    timeout 150 python3 dev/bench/torch_gpt2.py --model d24 -b 32 -t 1024 --steps 30 > "$OUT/peer_d24.log" 2>&1; echo "peer d24 rc=$?"
    grep summary "$OUT/peer_d24.log"
fi
# bit-identity against an earlier build: same flags and seed, everything but the timings must match
if [ -n "${BASELINE:-}" ]; then
    proof=(-e d12 -b 16 -t 1024 -x 20 -l 6e-4 -u 5 -q 0.1 -v 10 -m 2 -s 10 -g 32 -n 20 --seed 1337)
    timeout 120 "$BASELINE" "${proof[@]}" -o "$OUT/proof_base" > "$OUT/proof_base.log" 2>&1; echo "baseline d12 20 steps rc=$?"
    timeout 120 ./train_gpt "${proof[@]}" -o "$OUT/proof_head" > "$OUT/proof_head.log" 2>&1; echo "head d12 20 steps rc=$?"
    for run in base head; do
        grep -v '^#' "$OUT/proof_$run/log.txt" | awk '$1 == "val" {print; next} {print $1, $2, $3, $4}' > "$OUT/proof_${run}_values.txt"
        grep '^sample: ' "$OUT/proof_$run.log" > "$OUT/proof_${run}_samples.txt"
    done
    tail -3 "$OUT/proof_head_values.txt"
    cmp -s "$OUT/proof_base_values.txt" "$OUT/proof_head_values.txt" && echo "PROOF: losses, lr, norms, val losses identical" || { echo "PROOF: values DIFFER"; diff "$OUT/proof_base_values.txt" "$OUT/proof_head_values.txt" | head; }
    cmp -s "$OUT/proof_base_samples.txt" "$OUT/proof_head_samples.txt" && echo "PROOF: samples identical" || echo "PROOF: samples DIFFER"
    cmp -s "$OUT/proof_base/model_00000020.bin" "$OUT/proof_head/model_00000020.bin" && echo "PROOF: master weights (model_00000020.bin) identical" || echo "PROOF: master weights DIFFER"
fi
# where the time goes: kernel summary of 4 d12 B=64 steps under nsys, when the device has it
if [ "${PROFILE:-1}" != 1 ]; then
    echo "no kernel profile (PROFILE=${PROFILE})"
elif command -v nsys > /dev/null; then
    timeout 120 nsys profile -o "$OUT/d12_profile" --force-overwrite true ./train_gpt -e d12 -b 64 -t 1024 -x 4 -v 0 -s 0 -j "" > /dev/null 2>&1
    timeout 60 nsys stats --report cuda_gpu_kern_sum --format csv "$OUT/d12_profile.nsys-rep" > "$OUT/d12_kernels.csv" 2>/dev/null
    python3 - "$OUT/d12_kernels.csv" <<'PY'
import csv, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 8]
head, body = rows[0], rows[1:]
ti, ni, ci = head.index("Total Time (ns)"), head.index("Name"), head.index("Instances")
total = sum(float(r[ti]) for r in body)
print("kernel time over 4 steps: %.1f ms" % (total / 1e6))
for r in sorted(body, key=lambda r: -float(r[ti]))[:22]:
    print("%6.1f%% %8.2f ms %5s  %s" % (100 * float(r[ti]) / total, float(r[ti]) / 1e6, r[ci], r[ni][:110]))
PY
else
    echo "nsys not found: no kernel profile"
fi
