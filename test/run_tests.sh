#!/usr/bin/env bash
# Test runner used by `make test` (CPU) and `make test-gpu` (device).
#   test/run_tests.sh [-c make-target]... [-t test-command]...
# -c: a build that counts as one test (e.g. compiling a CUDA target with nvcc); a target that succeeds
#     but prints a line "skip TARGET: reason" (e.g. test-data without ../shared/data) counts as skipped;
# -t: a test program that ends with "RESULT passed=P failed=F skipped=S" (test/testing.h,
#     test/testing.py); a program that exits non-zero without failures, or prints no RESULT
#     line, counts as one failure.
# The last line is "N passed, N failed, N skipped"; the exit status is 1 when anything failed.
set -u
passed=0; failed=0; skipped=0; failures=()
logdir=build/test-logs
mkdir -p "$logdir"

run_build() {
    local target=$1 log="$logdir/build_$(echo "$1" | tr '/ ' '__').log"
    local t0=$SECONDS
    if make --no-print-directory "$target" >"$log" 2>&1; then
        local skip; skip=$(awk -v p="skip $target: " 'index($0, p) == 1 { print; exit }' "$log")
        if [ -n "$skip" ]; then
            skipped=$((skipped + 1)); echo "skip build $target (${skip#"skip $target: "})"
        else
            passed=$((passed + 1)); echo "ok   build $target ($((SECONDS - t0)) s)"
        fi
    else
        failed=$((failed + 1)); failures+=("build $target"); echo "FAIL build $target (log: $log)"; tail -n 30 "$log"
    fi
}

run_program() {
    local cmd=$1 log="$logdir/$(echo "$1" | tr -c 'A-Za-z0-9_.-' '_').log"
    local t0=$SECONDS
    echo "== $cmd"
    bash -c "$cmd" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    local line; line=$(grep -E '^RESULT passed=[0-9]+ failed=[0-9]+' "$log" | tail -n 1)
    if [ -z "$line" ]; then
        failed=$((failed + 1)); failures+=("$cmd (no RESULT line, exit $rc)")
        echo "FAIL $cmd printed no RESULT line (exit $rc)"
        return
    fi
    local p f s
    p=$(echo "$line" | sed -E 's/.*passed=([0-9]+).*/\1/')
    f=$(echo "$line" | sed -E 's/.*failed=([0-9]+).*/\1/')
    s=$(echo "$line" | sed -nE 's/.*skipped=([0-9]+).*/\1/p'); s=${s:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    [ "$f" -gt 0 ] && failures+=("$cmd ($f failed)")
    echo "   ($((SECONDS - t0)) s)"
}

while [ $# -gt 0 ]; do
    case "$1" in
        -c) run_build "$2"; shift 2 ;;
        -t) run_program "$2"; shift 2 ;;
        *) echo "run_tests.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done

if [ ${#failures[@]} -gt 0 ]; then
    echo "failures:"; for f in "${failures[@]}"; do echo "  $f"; done
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
