// CPU tests of the tensor registry (core/registry.h): arena layout (alignment, packed tensors stay
// contiguous), the per-category byte counts of the memory report, and the out-of-memory message.
#include <stdio.h>
#include <string.h>

#include "core/registry.h"
#include "test/testing.h"

// Random tensor shapes; every activation tensor must start on REGISTRY_ALIGN and follow the previous
// one without overlap, packed tensors must be back to back, and the arena sizes must be the sums.
static void test_layout_and_sizes(void) {
    unsigned seed = 12345;
    Registry r;
    registry_init(&r);
    size_t expect_packed = 0;
    for (int i = 0; i < 40; i++) {
        seed = seed * 1103515245u + 12345u;
        size_t d0 = 1 + (seed >> 8) % 300, d1 = 1 + (seed >> 20) % 7;
        size_t shape[2] = {d0, d1};
        int id = registry_add(&r, "packed", -1, MEM_PARAMETERS, DTYPE_BF16, 2, shape, 2);
        CHECK(r.tensors[id].offset == expect_packed, "packed tensor %d at %zu, want %zu", i, r.tensors[id].offset, expect_packed);
        expect_packed += d0 * d1 * 2;
        int a = registry_add(&r, "act", i, MEM_ACTIVATIONS, i % 2 ? DTYPE_FP32 : DTYPE_BF16, 2, shape, 0);
        const RegTensor *t = &r.tensors[a];
        CHECK(t->offset % REGISTRY_ALIGN == 0, "activation %d at offset %zu", i, t->offset);
        CHECK(t->numel == d0 * d1 && t->layer == i, "activation %d fields", i);
        if (a >= 2) {
            const RegTensor *prev = &r.tensors[a - 2];
            CHECK(t->offset >= prev->offset + prev->numel * dtype_size(prev->dtype), "activation %d overlaps the previous one", i);
            CHECK(t->offset < prev->offset + prev->numel * dtype_size(prev->dtype) + REGISTRY_ALIGN, "activation %d: gap too large", i);
        }
    }
    CHECK(r.arena_bytes[MEM_PARAMETERS] == expect_packed, "parameter arena %zu, want %zu", r.arena_bytes[MEM_PARAMETERS], expect_packed);
    const RegTensor *last = &r.tensors[r.count - 1];
    CHECK(r.arena_bytes[MEM_ACTIVATIONS] == last->offset + last->numel * dtype_size(last->dtype), "activation arena size");
    CHECK(strcmp(r.tensors[1].name, "act.0") == 0 && strcmp(r.tensors[0].name, "packed") == 0, "names '%s' '%s'", r.tensors[0].name,
          r.tensors[1].name);
    r.external_bytes[MEM_WORKSPACE] = 1000;
    CHECK(registry_total_bytes(&r) == r.arena_bytes[MEM_PARAMETERS] + r.arena_bytes[MEM_ACTIVATIONS] + 1000, "total bytes");
    registry_free_host(&r);
}

// A plan larger than the free memory is refused with a message naming the sizes and the flags.
static void test_fit_message(void) {
    Registry r;
    registry_init(&r);
    registry_add1(&r, "big", -1, MEM_ACTIVATIONS, DTYPE_FP32, (size_t)3 << 28);  // 3 GiB
    char err[1024] = "";
    CHECK(registry_check_fit(&r, (size_t)4 << 30, err, sizeof(err)) == 0, "4 GiB free should fit 3 GiB");
    CHECK(registry_check_fit(&r, (size_t)2 << 30, err, sizeof(err)) == -1, "2 GiB free should not fit 3 GiB");
    CHECK(strstr(err, "needs 3.00 GiB") != NULL && strstr(err, "activations 3.00") != NULL, "message: %s", err);
    CHECK(strstr(err, "only 2.00 GiB are free") != NULL && strstr(err, "-b/--batch-size") != NULL && strstr(err, "-t/--seq-len") != NULL,
          "message: %s", err);
    registry_free_host(&r);
}

int main(void) {
    RUN_TEST(test_layout_and_sizes);
    RUN_TEST(test_fit_message);
    return testing_finish();
}
