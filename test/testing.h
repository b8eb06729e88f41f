// Minimal test framework for the CPU and GPU test programs.
// Each program runs its checks and ends with one line that test/run_tests.sh reads:
//   RESULT passed=P failed=F skipped=S
// A program that crashes or prints no RESULT line is counted as one failure by the runner.
#ifndef TEST_TESTING_H
#define TEST_TESTING_H

#include <stdio.h>
#include <stdlib.h>

static int testing_passed_ = 0, testing_failed_ = 0, testing_skipped_ = 0;
static int testing_case_failed_ = 0;

// CHECK(cond, printf-style message): a failed check marks the current test case failed and
// prints where and why; the case goes on so that every broken check is reported.
#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            testing_case_failed_ = 1;                                           \
            fprintf(stdout, "  check failed at %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stdout, __VA_ARGS__);                                       \
            fprintf(stdout, "\n");                                              \
        }                                                                       \
    } while (0)

// Runs one test case: a function of no arguments returning void.
#define RUN_TEST(fn)                                                            \
    do {                                                                        \
        testing_case_failed_ = 0;                                               \
        fn();                                                                   \
        if (testing_case_failed_) { testing_failed_++; printf("FAIL %s\n", #fn); } \
        else { testing_passed_++; printf("ok   %s\n", #fn); }                   \
        fflush(stdout);                                                         \
    } while (0)

// Counts a case as skipped, with the reason printed (e.g. data folder absent).
#define SKIP_TEST(fn, reason)                                                   \
    do { testing_skipped_++; printf("skip %s: %s\n", #fn, reason); fflush(stdout); } while (0)

static inline int testing_finish(void) {
    printf("RESULT passed=%d failed=%d skipped=%d\n", testing_passed_, testing_failed_, testing_skipped_);
    fflush(stdout);
    return testing_failed_ > 0 ? 1 : 0;
}

#endif // TEST_TESTING_H
