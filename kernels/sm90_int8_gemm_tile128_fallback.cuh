// Hopper (sm_90a) INT8 tensor-core GEMM for int8fb operands (kernels/int8_tile128_fallback.h):
//   out[M,N] = A[M,K] . B[N,K]^T on the dequantized operands, FP32 accumulation, BF16 or FP32 output.
// A: ROW_CHUNK scales (activations / gradients), B: PER_TILE scales (weights; Wgrad's second operand).
// Per 128-wide K-tile kt the block runs wgmma s8 x s8 -> s32 over q1a . q1b and converts the exact int32
// partial sums (|sum| <= 128 * 127^2 < 2^22) to FP32 with sa1[row] * sb1; if A's tile (kt) falls back
// it adds a pass q2a . q1b with sa2 = sa1/127, if B's tile falls back a pass q1a . q2b with sb2 = sb1/127
// (the q2a . q2b term, 127^-2 of the product, is dropped). Block tile 128 x 128 = one A tile row and one
// B tile row, so each pass's flag is uniform per block and K-step: with no fallback, the extra passes
// simply never enter the pipeline.
//
// Structure: persistent blocks of 3 warpgroups, one or more 128 x 128 tiles each. Warpgroup 0: one
// thread issues the tensor copies (TMA) of the A and B tiles of each step into a ring of I8G_STAGES
// shared-memory stages (128-byte swizzle) plus a 512-byte bulk copy of the step's 128 A row scales;
// warp 1 writes each tile's step list, fallback flags and B scales one tile ahead. Warpgroups 1 and 2
// each compute 64 rows x 128 columns with wgmma m64n128k32 into two int32 accumulators used in turn:
// while the wgmma of one step run, the previous step's sums are converted (exactly, by an integer and a
// float add instead of the 16-per-clock I2F unit), scaled and added into the FP32 accumulator.
// setmaxnreg moves registers from the producer warpgroup to the consumers. No consumer instruction
// waits on a global load. Tiles are visited in groups of I8G_GROUP_M tile rows for L2 reuse.
// Optionally (template CM x CN), blocks form clusters that share A and B tiles through TMA multicast
// (see int8fb_gemm_kernel).
// Shape rules (checked by the launcher): M >= 1, N >= 1 and N % 16 == 0, K % 16 == 0, K <= 131072;
// partial tiles are zero-filled by the tensor copies and masked at the store.
#ifndef KERNELS_SM90_INT8_GEMM_TILE128_FALLBACK_CUH
#define KERNELS_SM90_INT8_GEMM_TILE128_FALLBACK_CUH

#include "kernels/cuda_common.h"
#include "kernels/sm90_wgmma_common.cuh"
#include "kernels/sm90_tma_common.cuh"
#include "kernels/int8_tile128_fallback.h"

#define I8G_BM 128
#define I8G_BN 128
#define I8G_BK 128
#define I8G_STAGES 6
#define I8G_GROUP_M 8
#define I8G_THREADS 384
#define I8G_TILE_BYTES (I8G_BM * I8G_BK)
// Registers per thread after setmaxnreg: consumers hold two int32 accumulators and the FP32 one (192),
// the producer warps (copies, tile lists) little. 128 * (2 * 224 + 56) <= 65536.
#define I8G_CONSUMER_REGS 224
#define I8G_PRODUCER_REGS 56
#define I8G_MAX_K_TILES 1024  // K <= 131072: the block's fallback flags live in shared memory
// Default cluster shape: lone blocks. Measured on an H100 (dev/RESULTS.md, 8192^3, this persistent
// kernel): 1x1 761-766 TOP/s, 1x2 729-734, 2x1 759-761, 2x2 394 -- multicast halves L2 reads but adds
// cross-block waits, and 2x2 clusters run in lockstep over 4 SMs.
#define I8G_DEFAULT_CM 1
#define I8G_DEFAULT_CN 1
static_assert(I8G_BM == INT8FB_TILE_SIZE && I8G_BN == INT8FB_TILE_SIZE && I8G_BK == INT8FB_TILE_SIZE,
              "one block tile = one quantizer tile of A and of B, so fallback flags are uniform per K-step");
static_assert(I8G_BK == 128, "a K-tile row is 128 bytes: one 128-byte swizzle atom, 4 wgmma k32 steps");
static_assert(I8G_BM == 2 * 64 && I8G_THREADS == 3 * 128, "two consumer warpgroups of m64 rows plus one producer");

// ---- PTX wrappers (sm_90a)

// Shared-memory loads on 32-bit shared addresses (no generic-address path through L1). Volatile, so they
// stay after the barrier wait that makes the data valid.
__device__ __forceinline__ float i8g_lds_f32(uint32_t addr) {
    float v;
    asm volatile("ld.shared.f32 %0, [%1];" : "=f"(v) : "r"(addr) : "memory");
    return v;
}

__device__ __forceinline__ float2 i8g_lds_f32x2(uint32_t addr) {
    float2 v;
    asm volatile("ld.shared.v2.f32 {%0, %1}, [%2];" : "=f"(v.x), "=f"(v.y) : "r"(addr) : "memory");
    return v;
}

// d[64 x 128] (+)= a[64 x 32] . b[128 x 32]^T, s8 operands from shared memory, s32 accumulators in the
// wgmma fragment layout (register i of lane l in warp w: row 16w + l/4 + 8*((i/2)%2), column
// 8*(i/4) + 2*(l%4) + i%2). accumulate = 0 overwrites d.
__device__ __forceinline__ void i8g_wgmma_m64n128k32(int32_t (&d)[64], uint64_t desc_a, uint64_t desc_b, int accumulate) {
    asm volatile(
        "{\n"
        ".reg .pred acc;\n"
        "setp.ne.b32 acc, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, acc;\n"
        "}\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]), "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]), "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]), "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]), "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]), "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]), "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]), "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63])
        : "l"(desc_a), "l"(desc_b), "r"(accumulate));
}

// ---- kernel

// A step is one (K-tile kt, pass) that runs: pass 0 multiplies q1a.q1b, pass 1 q2a.q1b (A's tile falls
// back), pass 2 q1a.q2b (B's tile falls back). A tile's steps are listed in shared memory, packed as
// kt * 4 + pass, in the order (kt, pass) ascending, together with the block's own fallback flags and
// B's tile scales of that tile (an I8gList); two lists alternate, so the next tile's is written while
// the current one is in use.
#define I8G_MAX_STEPS (3 * I8G_MAX_K_TILES)
#define I8G_LIST_BYTES (4 * I8G_MAX_K_TILES + 2 * I8G_MAX_STEPS + 2 * I8G_MAX_K_TILES + 16)

// Shared-memory layout of a block (offsets from the 1024-byte aligned base).
#define I8G_OFF_TILES_B (I8G_STAGES * I8G_TILE_BYTES)
#define I8G_OFF_RING (2 * I8G_STAGES * I8G_TILE_BYTES)             // float [stages][128]: A's row scales of each stage
#define I8G_OFF_INFO (I8G_OFF_RING + I8G_STAGES * I8G_BM * 4)       // float2 [stages]: each stage's step (I8gStep)
#define I8G_OFF_FULL (I8G_OFF_INFO + I8G_STAGES * 8)                // uint64 [stages]
#define I8G_OFF_EMPTY (I8G_OFF_FULL + I8G_STAGES * 8)               // uint64 [stages]
#define I8G_OFF_LIST_FULL (I8G_OFF_EMPTY + I8G_STAGES * 8)          // uint64 [2]: list written
#define I8G_OFF_LIST_EMPTY (I8G_OFF_LIST_FULL + 2 * 8)              // uint64 [2]: list no longer read
#define I8G_OFF_LISTS (I8G_OFF_LIST_EMPTY + 2 * 8)                  // I8gList storage [2]
#define I8G_SMEM_BYTES (I8G_OFF_LISTS + 2 * I8G_LIST_BYTES + 1024)
static_assert(I8G_SMEM_BYTES <= 227 * 1024, "stages must fit in shared memory");
static_assert(I8G_OFF_RING % 16 == 0 && I8G_OFF_INFO % 8 == 0 && I8G_OFF_FULL % 8 == 0 && I8G_LIST_BYTES % 16 == 0, "bulk-copy and barrier alignment");

// One tile's schedule in shared memory (see I8G_MAX_STEPS).
struct I8gList {
    float *sb;         // [K-tiles] B's tile scale (0 for a tile past the matrix)
    uint16_t *steps;   // [steps]
    uint8_t *own_a;    // [K-tiles] this block's A tile falls back
    uint8_t *own_b;    // [K-tiles] this block's B tile falls back
    int *n_steps;
};

__device__ __forceinline__ I8gList i8g_list(uint8_t *smem, int buffer) {
    uint8_t *base = smem + I8G_OFF_LISTS + buffer * I8G_LIST_BYTES;
    I8gList list;
    list.sb = (float *)base;
    list.steps = (uint16_t *)(base + 4 * I8G_MAX_K_TILES);
    list.own_a = base + 4 * I8G_MAX_K_TILES + 2 * I8G_MAX_STEPS;
    list.own_b = list.own_a + I8G_MAX_K_TILES;
    list.n_steps = (int *)(list.own_b + I8G_MAX_K_TILES);
    return list;
}

// One warp lists a tile's steps (see I8G_MAX_STEPS): pass 1 of K-tile kt runs when any A tile of the
// cluster's tile rows [first_mt, first_mt + rows_a) falls back at kt, pass 2 when any B tile of its tile
// columns does. 32 K-tiles at a time, placed by a prefix sum over the lanes. Returns the number of steps
// (in every lane).
__device__ __forceinline__ int i8g_list_steps(uint16_t *steps, const uint8_t *flags_a, const uint8_t *flags_b, int first_mt,
                                              int rows_a, int first_nt, int rows_b, int k_tiles) {
    const int lane = threadIdx.x % 32;
    int base = 0;
    for (int kt0 = 0; kt0 < k_tiles; kt0 += 32) {
        const int kt = kt0 + lane;
        int runs_a = 0, runs_b = 0, count = 0;
        if (kt < k_tiles) {
            for (int i = 0; i < rows_a; i++) runs_a |= flags_a[(size_t)(first_mt + i) * k_tiles + kt];
            for (int j = 0; j < rows_b; j++) runs_b |= flags_b[(size_t)(first_nt + j) * k_tiles + kt];
            count = 1 + (runs_a != 0) + (runs_b != 0);
        }
        int inclusive = count;
#pragma unroll
        for (int d = 1; d < 32; d *= 2) {
            const int v = __shfl_up_sync(0xFFFFFFFFu, inclusive, d);
            if (lane >= d) inclusive += v;
        }
        int at = base + inclusive - count;
        if (kt < k_tiles) {
            steps[at++] = (uint16_t)(kt * 4);
            if (runs_a) steps[at++] = (uint16_t)(kt * 4 + 1);
            if (runs_b) steps[at] = (uint16_t)(kt * 4 + 2);
        }
        base += __shfl_sync(0xFFFFFFFFu, inclusive, 31);
    }
    return base;
}

// Where a consumer thread finds its state in shared memory, as 32-bit shared addresses of stage 0 (a
// stage's barrier, ring row and step description lie 8, 512 and 8 bytes per stage further on), and the
// low descriptor words of its stage-0 A rows and B tile (I8G_TILE_BYTES / 16 per stage further on).
struct I8gConsumerSmem {
    uint32_t full, ring_row, info;
    uint32_t desc_a, desc_b;
};

// The ring position of a consumer or of the copy thread.
typedef Sm90RingPos<I8G_STAGES> I8gRingPos;

// A consumer's view of one step: its ring stage and the scales of its two rows (A's row scale times B's
// effective scale of the step). The copy thread writes each stage's step description into shared memory
// (float2 at I8G_OFF_INFO + 8 * stage): x = B's tile scale, or its residual s1/127 in pass 2, or 0 when
// the block does not count the pass (a fallback pass that only another block of the cluster needs, or
// a block whose tile lies past the matrix); y = 1 in pass 1, where A's row scales become their residuals.
struct I8gStep {
    int stage;
    float s_lo, s_hi;
};

// The consumer's next step at ring position pos: waits until the stage is full (tiles, A's row scales
// and the step description landed), then forms the scales of rows local_row and local_row + 8 from the
// ring (pass 1 rounds each A row scale to its residual first, so s = fl(fl(sa / 127) * sb) exactly as
// before). They are formed here, before the stage can be released, so no read of the ring is
// outstanding once it is. A block past the matrix reads whatever the ring holds and weights it 0; its
// output is never stored.
__device__ __forceinline__ void i8g_begin_step(I8gStep &st, const I8gRingPos &pos, const I8gConsumerSmem &sm) {
    st.stage = (int)pos.stage;
    sm90_mbar_wait(sm.full + 8 * pos.stage, pos.parity);
    const float2 info = i8g_lds_f32x2(sm.info + 8 * pos.stage);
    float sa_lo = i8g_lds_f32(sm.ring_row + pos.stage * I8G_BM * 4);
    float sa_hi = i8g_lds_f32(sm.ring_row + pos.stage * I8G_BM * 4 + 8 * 4);
    if (info.y != 0.0f) {
        sa_lo = int8fb_residual_scale(sa_lo);
        sa_hi = int8fb_residual_scale(sa_hi);
    }
    st.s_lo = sa_lo * info.x;
    st.s_hi = sa_hi * info.x;
}

// Issues the 4 wgmma (K = 128) of one stage into d: 64 rows of A and 128 rows of B whose descriptors'
// low words are a_lo and b_lo (sm90_sw128_desc_lo). The descriptors advance in their low word only (the
// 14-bit address field cannot carry out).
__device__ __forceinline__ void i8g_issue_stage(int32_t (&d)[64], uint32_t a_lo, uint32_t b_lo) {
    wgmma_fence();
#pragma unroll
    for (int k = 0; k < I8G_BK / 32; k++) {
        // +32 bytes along the swizzled row = +2 in the descriptor's 16-byte address units.
        i8g_wgmma_m64n128k32(d, SM90_SW128_DESC_HI | (a_lo + 2 * k), SM90_SW128_DESC_HI | (b_lo + 2 * k), k > 0);
    }
    wgmma_commit();
}

// int32 -> float without the conversion unit: for |d| < 2^22 the float whose bits are
// d + bits(1.5 * 2^23) is exactly 1.5 * 2^23 + d, and one exact FADD recovers d (an integer add and a
// float add, both on the wide pipes; I2F/I2FP go through the 16-per-clock conversion unit).
#define I8G_MAGIC_BITS 0x4B400000
#define I8G_MAGIC 12582912.0f
static_assert(I8G_BK * 127 * 127 < (1 << 22), "the int32 partial sums of a K-tile stay under 2^22 in magnitude");

// acc += d * the step's scale of the row; d converted exactly, so the result equals
// fmaf((float)d, scale, acc).
__device__ __forceinline__ void i8g_promote(float (&acc)[64], const int32_t (&d)[64], const I8gStep &st) {
#pragma unroll
    for (int i = 0; i < 64; i++) {
        const float exact = __int_as_float(d[i] + I8G_MAGIC_BITS) - I8G_MAGIC;
        acc[i] = fmaf(exact, (i / 2) % 2 ? st.s_hi : st.s_lo, acc[i]);
    }
}

// After the wgmma of step st into d completed: releases st's stage to the producer(s) (one arrival per
// consumer warpgroup on every block of the cluster) and adds d's scaled sums to acc.
template <int CS>
__device__ __forceinline__ void i8g_retire(float (&acc)[64], int32_t (&d)[64], const I8gStep &st, uint64_t *empty) {
    wgmma_pin(d);
    sm90_release_stage<CS>(empty, (uint32_t)st.stage);
    i8g_promote(acc, d, st);
}

// Persistent blocks, each computing 128 x 128 output tiles in turn (see sm90_tile and the header
// comment). Warp 0 issues the copies, warp 1 writes each tile's list (I8gList) one tile ahead, the two
// consumer warpgroups compute; the ring of stages runs on across tiles, so the next tile's copies
// overlap this tile's last steps and its stores. Blocks form clusters of CM x CN tiles (CM tile rows x
// CN tile columns): each block loads 1/CN of its A tile and 1/CM of its B tile and multicasts them to
// the blocks of the cluster that share the tile, so L2 -> SM traffic per block is (1/CN + 1/CM) / 2 of
// a lone block's. The blocks of a cluster share one step list per tile (a fallback pass runs when any
// of the cluster's tiles needs it; a block whose own tile does not weights it 0), and a stage is
// refilled only after every consumer of the cluster released it. Each block copies its own A row scales
// (512 bytes per step) into a ring beside the tile stages, on the stage's full barrier, so no consumer
// waits on a global load.
// scale_a: [K_tiles][M_pad] (ROW_CHUNK), scale_b: [N_tiles][K_tiles] (PER_TILE), flags
// [tile rows][K_tiles]; out row-major [M, N].
template <typename OutT, int CM, int CN>
__global__ void __launch_bounds__(I8G_THREADS, 1)
int8fb_gemm_kernel(const __grid_constant__ CUtensorMap map_a1, const __grid_constant__ CUtensorMap map_a2,
                   const __grid_constant__ CUtensorMap map_b1, const __grid_constant__ CUtensorMap map_b2,
                   const float *scale_a, const uint8_t *flags_a, const float *scale_b, const uint8_t *flags_b,
                   OutT *out, int M, int N, int K) {
    constexpr int CS = CM * CN;
    static_assert((CM == 1 || CM == 2) && (CN == 1 || CN == 2), "clusters of 1 or 2 tiles per dimension");
    extern __shared__ uint8_t smem_raw[];
    uint8_t *smem = (uint8_t *)(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    uint8_t *tiles_a = smem;
    uint8_t *tiles_b = smem + I8G_OFF_TILES_B;
    float *ring = (float *)(smem + I8G_OFF_RING);
    uint64_t *full = (uint64_t *)(smem + I8G_OFF_FULL);
    uint64_t *empty = (uint64_t *)(smem + I8G_OFF_EMPTY);
    uint64_t *list_full = (uint64_t *)(smem + I8G_OFF_LIST_FULL);
    uint64_t *list_empty = (uint64_t *)(smem + I8G_OFF_LIST_EMPTY);

    const int m_tiles = int8fb_row_tiles(M), n_tiles = int8fb_row_tiles(N), k_tiles = int8fb_k_tiles(K);
    const int rank = CS == 1 ? 0 : (int)sm90_cluster_rank();
    const int dm = rank / CN, dn = rank % CN;
    const size_t rows_pad = (size_t)m_tiles * I8G_BM;

    if (threadIdx.x == 0) {
        sm90_ring_barriers_init(full, empty, I8G_STAGES, 2 * CS);
        for (int b = 0; b < 2; b++) {
            sm90_mbar_init(&list_full[b], 32);   // every lane of the list warp
            sm90_mbar_init(&list_empty[b], 3);   // the copy thread and one thread per consumer warpgroup
        }
        sm90_fence_barrier_init();
    }
    sm90_barriers_ready<CS>();

    const int warpgroup = threadIdx.x / 128;
    Sm90Tile tile;
    if (warpgroup == 0) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(I8G_PRODUCER_REGS));
        if (threadIdx.x / 32 == 1) {
            // List warp: the step list, this block's fallback flags and B's tile scales of each tile.
            const int lane = threadIdx.x % 32;
            for (int j = 0; sm90_tile<CM, CN, I8G_GROUP_M>(tile, j, m_tiles, n_tiles, dm, dn); j++) {
                const I8gList list = i8g_list(smem, j % 2);
                sm90_mbar_wait(sm90_smem_addr(&list_empty[j % 2]), ((uint32_t)(j / 2) & 1) ^ 1);
                const int n = i8g_list_steps(list.steps, flags_a, flags_b, tile.cmt * CM, min(CM, m_tiles - tile.cmt * CM),
                                             tile.cnt * CN, min(CN, n_tiles - tile.cnt * CN), k_tiles);
                for (int kt = lane; kt < k_tiles; kt += 32) {
                    list.own_a[kt] = tile.mt < m_tiles ? flags_a[(size_t)tile.mt * k_tiles + kt] : 0;
                    list.own_b[kt] = tile.nt < n_tiles ? flags_b[(size_t)tile.nt * k_tiles + kt] : 0;
                    list.sb[kt] = tile.nt < n_tiles ? scale_b[(size_t)tile.nt * k_tiles + kt] : 0.0f;
                }
                if (lane == 0) *list.n_steps = n;
                sm90_mbar_arrive(&list_full[j % 2]);  // release: this lane's writes are visible to the waiters
            }
        } else if (threadIdx.x == 0) {
            // Copy thread: this block's share of each stage's tiles, its own 128 A row scales and the
            // step's description (I8gStep).
            float2 *info = (float2 *)(smem + I8G_OFF_INFO);
            constexpr int a_rows = I8G_BM / CN, b_rows = I8G_BN / CM;
            uint16_t mask_a, mask_b;
            sm90_multicast_masks<CM, CN>(dm, dn, mask_a, mask_b);
            I8gRingPos pos;  // runs on over all the block's tiles
            for (int j = 0; sm90_tile<CM, CN, I8G_GROUP_M>(tile, j, m_tiles, n_tiles, dm, dn); j++) {
                const I8gList list = i8g_list(smem, j % 2);
                sm90_mbar_wait(sm90_smem_addr(&list_full[j % 2]), (uint32_t)(j / 2) & 1);
                const int n = *list.n_steps;
                const uint32_t stage_bytes = 2 * I8G_TILE_BYTES + (tile.inside ? I8G_BM * 4 : 0);
                for (int i = 0; i < n; i++, pos.advance()) {
                    const int kt = list.steps[i] >> 2, pass = list.steps[i] & 3, stage = (int)pos.stage;
                    sm90_mbar_wait(sm90_smem_addr(&empty[stage]), pos.parity ^ 1);
                    const bool counted = tile.inside && !(pass == 1 && !list.own_a[kt]) && !(pass == 2 && !list.own_b[kt]);
                    const float sb = counted ? list.sb[kt] : 0.0f;
                    // Written before the arrival, whose release makes it visible with the stage's copies.
                    info[stage] = make_float2(pass == 2 ? int8fb_residual_scale(sb) : sb, pass == 1 ? 1.0f : 0.0f);
                    sm90_mbar_arrive_expect_tx(&full[stage], stage_bytes);
                    uint8_t *dst_a = tiles_a + stage * I8G_TILE_BYTES + dn * a_rows * I8G_BK;
                    uint8_t *dst_b = tiles_b + stage * I8G_TILE_BYTES + dm * b_rows * I8G_BK;
                    const CUtensorMap *src_a = pass == 1 ? &map_a2 : &map_a1, *src_b = pass == 2 ? &map_b2 : &map_b1;
                    if constexpr (CN > 1) sm90_tma_load_2d_multicast(dst_a, src_a, &full[stage], kt * I8G_BK, tile.mt * I8G_BM + dn * a_rows, mask_a);
                    else sm90_tma_load_2d(dst_a, src_a, &full[stage], kt * I8G_BK, tile.mt * I8G_BM);
                    if constexpr (CM > 1) sm90_tma_load_2d_multicast(dst_b, src_b, &full[stage], kt * I8G_BK, tile.nt * I8G_BN + dm * b_rows, mask_b);
                    else sm90_tma_load_2d(dst_b, src_b, &full[stage], kt * I8G_BK, tile.nt * I8G_BN);
                    if (tile.inside)
                        sm90_bulk_load(ring + stage * I8G_BM, scale_a + (size_t)kt * rows_pad + (size_t)tile.mt * I8G_BM, I8G_BM * 4, &full[stage]);
                }
                sm90_mbar_arrive(&list_empty[j % 2]);
            }
        }
    } else {
        // Consumers: warpgroup 1 -> rows [0, 64) of the block tile, warpgroup 2 -> rows [64, 128). Two
        // int32 accumulators take turns: the wgmma of step i+1 run while step i's sums are converted,
        // scaled and added (wgmma.wait_group 1), so the tensor cores are never idle behind a conversion.
        // The loop is unrolled by two so that each accumulator is a fixed set of registers.
        asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(I8G_CONSUMER_REGS));
        const int consumer = warpgroup - 1;
        const int lane = threadIdx.x % 32, warp_in_group = (threadIdx.x % 128) / 32;
        const int local_row = consumer * 64 + warp_in_group * 16 + lane / 4;  // and local_row + 8
        I8gConsumerSmem sm;
        sm.full = sm90_smem_addr(full);
        sm.ring_row = sm90_smem_addr(ring + local_row);
        sm.info = sm90_smem_addr(smem + I8G_OFF_INFO);
        sm.desc_a = sm90_sw128_desc_lo(tiles_a + consumer * 64 * I8G_BK);
        sm.desc_b = sm90_sw128_desc_lo(tiles_b);
        constexpr uint32_t desc_stride = I8G_TILE_BYTES / 16;
        I8gRingPos pos;  // runs on over all the block's tiles
        for (int j = 0; sm90_tile<CM, CN, I8G_GROUP_M>(tile, j, m_tiles, n_tiles, dm, dn); j++) {
            const I8gList list = i8g_list(smem, j % 2);
            sm90_mbar_wait(sm90_smem_addr(&list_full[j % 2]), (uint32_t)(j / 2) & 1);
            const int n = *list.n_steps;
            float acc[64];
#pragma unroll
            for (int i = 0; i < 64; i++) acc[i] = 0.0f;
            // Two int32 partial products alternate: step k+1's wgmma runs while step k's is scaled into acc.
            // The loop body is the pair of half-steps written out because register arrays must be named at
            // compile time (an indexed part[2][64] would go to local memory).
            int32_t part0[64], part1[64];
            I8gStep st0, st1;
            i8g_begin_step(st0, pos, sm);
            i8g_issue_stage(part0, sm.desc_a + pos.stage * desc_stride, sm.desc_b + pos.stage * desc_stride);
            pos.advance();
            int i = 1;
            while (true) {
                if (i == n) {
                    wgmma_wait<0>();
                    i8g_retire<CS>(acc, part0, st0, empty);
                    break;
                }
                i++;
                i8g_begin_step(st1, pos, sm);
                i8g_issue_stage(part1, sm.desc_a + pos.stage * desc_stride, sm.desc_b + pos.stage * desc_stride);
                pos.advance();
                wgmma_wait<1>();
                i8g_retire<CS>(acc, part0, st0, empty);
                if (i == n) {
                    wgmma_wait<0>();
                    i8g_retire<CS>(acc, part1, st1, empty);
                    break;
                }
                i++;
                i8g_begin_step(st0, pos, sm);
                i8g_issue_stage(part0, sm.desc_a + pos.stage * desc_stride, sm.desc_b + pos.stage * desc_stride);
                pos.advance();
                wgmma_wait<1>();
                i8g_retire<CS>(acc, part1, st1, empty);
            }

            // Store: register pair (i, i+1) holds columns (c, c+1) of one row.
            const int row_lo = tile.mt * I8G_BM + local_row;
            const int col0 = tile.nt * I8G_BN + 2 * (lane % 4);
#pragma unroll
            for (int i = 0; i < 64; i += 2) {
                const int row = row_lo + 8 * ((i / 2) % 2), col = col0 + 8 * (i / 4);
                if (row >= M || col >= N) continue;
                OutT *dst = out + (size_t)row * N + col;
                if constexpr (sizeof(OutT) == 4) {
                    *reinterpret_cast<float2 *>(dst) = make_float2(acc[i], acc[i + 1]);
                } else {
                    *reinterpret_cast<__nv_bfloat162 *>(dst) = __floats2bfloat162_rn(acc[i], acc[i + 1]);
                }
            }
            // Every thread of the warpgroup is done with the list before one of them releases it.
            asm volatile("bar.sync %0, 128;" ::"r"(1 + consumer) : "memory");
            if (threadIdx.x % 128 == 0) sm90_mbar_arrive(&list_empty[j % 2]);
        }
    }
    // No block leaves while a peer may still copy into its shared memory or arrive on its barriers.
    if constexpr (CS > 1) sm90_cluster_sync();
}

// ---- host side

// out[M,N] (device, row-major, float or bf16) = dequant(a)[M,K] . dequant(b)[N,K]^T, where a (ROW_CHUNK)
// and b (PER_TILE) are quantized operands on the device with M = a->rows, N = b->rows, K = a->cols =
// b->cols, run with clusters of CM x CN tiles (int8fb_gemm picks the measured best). An operand whose q2
// is NULL must have no fallback tile (weights). Rules: N % 16 == 0, K % 16 == 0, K <= 131072, 16-byte
// aligned q1/q2, A's scales and out.
template <typename OutT, int CM, int CN>
static inline void int8fb_gemm_clustered(const Int8fbOperand *a, const Int8fbOperand *b, OutT *out, cudaStream_t stream) {
    static_assert(sizeof(OutT) == 4 || sizeof(OutT) == 2, "output is float or bf16");
    sm90_require_wgmma("the Hopper INT8 GEMM with 16-bit fallback");
    const int M = a->rows, N = b->rows, K = a->cols;
    shapeCheck(a->granularity == INT8FB_ROW_CHUNK && b->granularity == INT8FB_PER_TILE,
               "A must have row-chunk scales and B tile scales (got %d, %d)", (int)a->granularity, (int)b->granularity);
    shapeCheck(b->cols == K, "K mismatch: A has %d columns, B %d", K, b->cols);
    shapeCheck(M >= 1 && N >= 1 && N % 16 == 0 && K % 16 == 0, "M=%d N=%d K=%d: need N %% 16 == 0 and K %% 16 == 0", M, N, K);
    shapeCheck(int8fb_k_tiles(K) <= I8G_MAX_K_TILES, "K=%d: at most %d K-tiles", K, I8G_MAX_K_TILES);
    shapeCheck(((uintptr_t)a->q1 | (uintptr_t)b->q1 | (uintptr_t)a->q2 | (uintptr_t)b->q2 | (uintptr_t)a->scale | (uintptr_t)out) % 16 == 0,
               "q1, q2, A's scales and out must be 16-byte aligned");
    CUtensorMap map_a1 = sm90_tensor_map_sw128(a->q1, CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, M, K, I8G_BM / CN), map_b1 = sm90_tensor_map_sw128(b->q1, CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, N, K, I8G_BN / CM);
    // A NULL q2 is never read (no tile of that operand falls back): its map points at q1.
    CUtensorMap map_a2 = a->q2 != NULL ? sm90_tensor_map_sw128(a->q2, CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, M, K, I8G_BM / CN) : map_a1;
    CUtensorMap map_b2 = b->q2 != NULL ? sm90_tensor_map_sw128(b->q2, CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, N, K, I8G_BN / CM) : map_b1;
    static bool smem_set = false;
    if (!smem_set) {
        cudaCheck(cudaFuncSetAttribute(int8fb_gemm_kernel<OutT, CM, CN>, cudaFuncAttributeMaxDynamicSharedMemorySize, I8G_SMEM_BYTES));
        smem_set = true;
    }
    // Persistent: at most one cluster per CS multiprocessors, each taking cluster tiles in turn.
    const int sms = sm90_sm_count();
    const int cluster_tiles = ceil_div(int8fb_row_tiles(M), CM) * ceil_div(int8fb_row_tiles(N), CN);
    const int clusters = cluster_tiles < sms / (CM * CN) ? cluster_tiles : sms / (CM * CN);
    sm90_launch_clusters(int8fb_gemm_kernel<OutT, CM, CN>, clusters * CM * CN, CM * CN, I8G_THREADS, I8G_SMEM_BYTES, stream, map_a1, map_a2,
                         map_b1, map_b2, (const float *)a->scale, (const uint8_t *)a->fallback, (const float *)b->scale,
                         (const uint8_t *)b->fallback, out, M, N, K);
}

// out = dequant(a) . dequant(b)^T with the default cluster shape (see int8fb_gemm_clustered).
template <typename OutT>
static inline void int8fb_gemm(const Int8fbOperand *a, const Int8fbOperand *b, OutT *out, cudaStream_t stream) {
    int8fb_gemm_clustered<OutT, I8G_DEFAULT_CM, I8G_DEFAULT_CN>(a, b, out, stream);
}

#endif // KERNELS_SM90_INT8_GEMM_TILE128_FALLBACK_CUH
