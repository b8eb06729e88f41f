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
// Structure: 3 warpgroups. Warpgroup 0 is the producer (one thread issues the tensor copies (TMA) of
// the A and B tiles of each step into a ring of I8G_STAGES shared-memory stages, 128-byte swizzle);
// warpgroups 1 and 2 each compute 64 rows x 128 columns with wgmma m64n128k32 into two int32
// accumulators used in turn: while the wgmma of one step run, the previous step's sums are converted
// (exactly, by integer and float adds instead of the 4x slower I2F unit), scaled and added into the
// FP32 accumulator. setmaxnreg moves registers from the producer to the consumers (232 each). Scales
// are loaded one step ahead, the block's flags once into shared memory, so no step waits on a global
// load. // Tiles are visited in groups of I8G_GROUP_M tile rows for L2 reuse. Optionally (template CM x CN),
// blocks form clusters that share A and B tiles through TMA multicast (see int8fb_gemm_kernel).
// Shape rules (checked by the launcher): M >= 1, N >= 1 and N % 16 == 0, K % 16 == 0, K <= 131072;
// partial tiles are zero-filled by the tensor copies and masked at the store.
#ifndef KERNELS_SM90_INT8_GEMM_TILE128_FALLBACK_CUH
#define KERNELS_SM90_INT8_GEMM_TILE128_FALLBACK_CUH

#include <cuda.h>
#include <cudaTypedefs.h>
#include "kernels/cuda_common.h"
#include "kernels/int8_tile128_fallback.h"

#define I8G_BM 128
#define I8G_BN 128
#define I8G_BK 128
#define I8G_STAGES 6
#define I8G_GROUP_M 8
#define I8G_THREADS 384
#define I8G_TILE_BYTES (I8G_BM * I8G_BK)
// Registers per thread after setmaxnreg: consumers hold two int32 accumulators and the FP32 one (192),
// the producer thread only loop state. 128 * (2 * 232 + 40) <= 65536.
#define I8G_CONSUMER_REGS 232
#define I8G_PRODUCER_REGS 40
#define I8G_MAX_K_TILES 1024  // K <= 131072: the block's fallback flags live in shared memory
#define I8G_SMEM_BYTES (2 * I8G_STAGES * I8G_TILE_BYTES + 2 * I8G_STAGES * 8 + 4 * I8G_MAX_K_TILES + 1024)
// Default cluster shape: lone blocks. Measured on an H100 (dev/RESULTS.md, 8192^3): 1x1 600 TOP/s,
// 1x2 285, 2x1 308, 2x2 174 -- the multicast clusters are correct but slower, most likely because every
// stage waits for release-ordered remote arrivals from all consumers of the cluster.
#define I8G_DEFAULT_CM 1
#define I8G_DEFAULT_CN 1
static_assert(I8G_BM == INT8FB_TILE_SIZE && I8G_BN == INT8FB_TILE_SIZE && I8G_BK == INT8FB_TILE_SIZE,
              "one block tile = one quantizer tile of A and of B, so fallback flags are uniform per K-step");
static_assert(I8G_BK == 128, "a K-tile row is 128 bytes: one 128-byte swizzle atom, 4 wgmma k32 steps");
static_assert(I8G_BM == 2 * 64 && I8G_THREADS == 3 * 128, "two consumer warpgroups of m64 rows plus one producer");
static_assert(I8G_SMEM_BYTES <= 227 * 1024, "stages must fit in shared memory");

// ---- PTX wrappers (sm_90a)

__device__ __forceinline__ uint32_t i8g_smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void i8g_mbar_init(uint64_t *bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(i8g_smem_addr(bar)), "r"(count));
}

__device__ __forceinline__ void i8g_mbar_arrive_expect_tx(uint64_t *bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(i8g_smem_addr(bar)), "r"(bytes) : "memory");
}

__device__ __forceinline__ void i8g_mbar_arrive(uint64_t *bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(i8g_smem_addr(bar)) : "memory");
}

// Spins until the barrier's phase with parity `parity` has completed.
__device__ __forceinline__ void i8g_mbar_wait(uint64_t *bar, uint32_t parity) {
    asm volatile(
        "{\n"
        ".reg .pred done;\n"
        "I8G_WAIT_%=:\n"
        "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
        "@!done bra I8G_WAIT_%=;\n"
        "}\n" ::"r"(i8g_smem_addr(bar)), "r"(parity) : "memory");
}

// Arrives on the barrier at the same shared-memory offset in block `rank` of the cluster. CTA-scope
// (default) semantics suffice: the arrival only says that this block's wgmma finished reading the stage
// (wgmma.wait_group came first), so nothing the arriving thread wrote must become visible to the peer.
__device__ __forceinline__ void i8g_mbar_arrive_cluster(uint64_t *bar, uint32_t rank) {
    uint32_t remote;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(i8g_smem_addr(bar)), "r"(rank));
    asm volatile("mbarrier.arrive.shared::cluster.b64 _, [%0];" ::"r"(remote) : "memory");
}

__device__ __forceinline__ uint32_t i8g_cluster_rank() {
    uint32_t rank;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(rank));
    return rank;
}

// All threads of all blocks of the cluster meet here (release/acquire at cluster scope).
__device__ __forceinline__ void i8g_cluster_sync() {
    asm volatile("barrier.cluster.arrive.release;\nbarrier.cluster.wait.acquire;" ::: "memory");
}

// 2D tensor copy of the box at (c0, c1) into shared memory at the same offset in every block of
// `mask` (cluster ranks), completing on the barrier at the same offset in each.
__device__ __forceinline__ void i8g_tma_load_2d_multicast(void *dst, const CUtensorMap *map, uint64_t *bar, int c0, int c1,
                                                          uint16_t mask) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.multicast::cluster"
        " [%0], [%1, {%3, %4}], [%2], %5;"
        ::"r"(i8g_smem_addr(dst)), "l"((uint64_t)map), "r"(i8g_smem_addr(bar)), "r"(c0), "r"(c1), "h"(mask) : "memory");
}

// 2D tensor copy of the box at (c0 = column, c1 = row) into shared memory, completing on `bar`.
__device__ __forceinline__ void i8g_tma_load_2d(void *dst, const CUtensorMap *map, uint64_t *bar, int c0, int c1) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];"
        ::"r"(i8g_smem_addr(dst)), "l"((uint64_t)map), "r"(i8g_smem_addr(bar)), "r"(c0), "r"(c1) : "memory");
}

// wgmma descriptor of a K-major tile in shared memory written with 128-byte swizzle: rows of 128 bytes,
// 8-row groups 1024 bytes apart (stride byte offset), tile base 1024-byte aligned.
__device__ __forceinline__ uint64_t i8g_smem_desc(const void *tile) {
    uint64_t addr = i8g_smem_addr(tile);
    return ((addr & 0x3FFFFull) >> 4) | (1ull << 16) | ((uint64_t)(1024 >> 4) << 32) | (1ull << 62);
}

__device__ __forceinline__ void i8g_wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void i8g_wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
// Waits until at most N committed wgmma groups of this warpgroup are still running.
template <int N>
__device__ __forceinline__ void i8g_wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory"); }

// Pins the accumulator registers at this point, so no read of them moves above the preceding wait.
__device__ __forceinline__ void i8g_fence_registers(int32_t (&d)[64]) {
#pragma unroll
    for (int i = 0; i < 64; i++) asm volatile("" : "+r"(d[i])::"memory");
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

// Which operand parts a pipeline step multiplies: pass 0 q1a.q1b, pass 1 q2a.q1b (A's tile falls back),
// pass 2 q1a.q2b (B's tile falls back). A step is one (K-tile, pass) that runs.
#define I8G_PASSES 3

// Advances (kt, pass) to the next step that runs, given per-K-tile flags saying whether pass 1 / pass 2
// runs (shared memory). Returns false past the last K-tile.
__device__ __forceinline__ bool i8g_next_step(int &kt, int &pass, const uint8_t *runs_a, const uint8_t *runs_b, int k_tiles) {
    while (true) {
        if (++pass == I8G_PASSES) { pass = 0; kt++; }
        if (kt >= k_tiles) return false;
        if (pass == 0 || (pass == 1 && runs_a[kt]) || (pass == 2 && runs_b[kt])) return true;
    }
}

// A consumer's view of one step: its place in the schedule and the ring (stage, parity of the stage's
// full barrier) and the raw scales of its two rows and of B.
struct I8gStep {
    int kt, pass, stage;
    uint32_t phase;
    float sa_lo, sa_hi, sb;
};

// Moves st to the next step that runs (see i8g_next_step), with its ring stage and barrier parity, and
// issues the loads of its scales for rows row_lo and row_lo + 8; they are first used a step later (in
// i8g_promote), so no step waits on them. A block whose tile lies past the matrix (cluster padding) uses
// 0, and so does a fallback pass that only another block of the cluster needs (computed, keeping the
// wgmma path free of branches, but weighted 0). Returns false past the last step.
__device__ __forceinline__ bool i8g_advance(I8gStep &st, const uint8_t *runs_a, const uint8_t *runs_b, const uint8_t *own_a,
                                            const uint8_t *own_b, const float *scale_a, const float *scale_b, size_t rows_pad,
                                            int row_lo, int nt, int k_tiles, bool tile_inside) {
    if (!i8g_next_step(st.kt, st.pass, runs_a, runs_b, k_tiles)) return false;
    if (++st.stage == I8G_STAGES) { st.stage = 0; st.phase ^= 1; }
    const bool counted = tile_inside && !(st.pass == 1 && !own_a[st.kt]) && !(st.pass == 2 && !own_b[st.kt]);
    st.sa_lo = tile_inside ? scale_a[(size_t)st.kt * rows_pad + row_lo] : 0.0f;
    st.sa_hi = tile_inside ? scale_a[(size_t)st.kt * rows_pad + row_lo + 8] : 0.0f;
    st.sb = counted ? scale_b[(size_t)nt * k_tiles + st.kt] : 0.0f;
    return true;
}

// Issues the 4 wgmma (K = 128) of one stage into d: 64 rows of A at a_tile, 128 rows of B at b_tile.
__device__ __forceinline__ void i8g_issue_stage(int32_t (&d)[64], const uint8_t *a_tile, const uint8_t *b_tile) {
    const uint64_t desc_a = i8g_smem_desc(a_tile), desc_b = i8g_smem_desc(b_tile);
    i8g_wgmma_fence();
#pragma unroll
    for (int k = 0; k < I8G_BK / 32; k++) {
        // +32 bytes along the swizzled row = +2 in the descriptor's 16-byte address units.
        i8g_wgmma_m64n128k32(d, desc_a + 2 * k, desc_b + 2 * k, k > 0);
    }
    i8g_wgmma_commit();
}

// int32 -> float without the conversion unit (I2F/I2FP run at 16 per clock per SM, a quarter of what
// this loop needs): for |d| < 2^22 the float whose bits are d + bits(1.5 * 2^23) is exactly
// 1.5 * 2^23 + d, and one exact FADD recovers d (an integer add at 64 and a float add at 128 per clock).
#define I8G_MAGIC_BITS 0x4B400000
#define I8G_MAGIC 12582912.0f
static_assert(I8G_BK * 127 * 127 < (1 << 22), "the int32 partial sums of a K-tile stay under 2^22 in magnitude");

// acc += d * scale of the step (pass 1: A's residual scale s1/127, pass 2: B's), per row; d converted
// exactly, so the result equals fmaf((float)d, scale, acc).
__device__ __forceinline__ void i8g_promote(float (&acc)[64], const int32_t (&d)[64], const I8gStep &st) {
    float sa_lo = st.sa_lo, sa_hi = st.sa_hi, sb = st.sb;
    if (st.pass == 1) { sa_lo = int8fb_residual_scale(sa_lo); sa_hi = int8fb_residual_scale(sa_hi); }
    if (st.pass == 2) sb = int8fb_residual_scale(sb);
    const float s_lo = sa_lo * sb, s_hi = sa_hi * sb;
#pragma unroll
    for (int i = 0; i < 64; i++) {
        const float exact = __int_as_float(d[i] + I8G_MAGIC_BITS) - I8G_MAGIC;
        acc[i] = fmaf(exact, (i / 2) % 2 ? s_hi : s_lo, acc[i]);
    }
}

// After the wgmma of step st into d completed: releases st's stage to the producer(s) (one arrival per
// consumer warpgroup on every block of the cluster) and adds d's scaled sums to acc.
template <int CS>
__device__ __forceinline__ void i8g_retire(float (&acc)[64], int32_t (&d)[64], const I8gStep &st, uint64_t *empty) {
    i8g_fence_registers(d);
    if (threadIdx.x % 128 == 0) {
        if constexpr (CS > 1) {
            for (int r = 0; r < CS; r++) i8g_mbar_arrive_cluster(&empty[st.stage], (uint32_t)r);
        } else {
            i8g_mbar_arrive(&empty[st.stage]);
        }
    }
    i8g_promote(acc, d, st);
}

// One block per 128 x 128 output tile; see the header comment. Blocks form clusters of CM x CN tiles
// (CM tile rows x CN tile columns): each block loads 1/CN of its A tile and 1/CM of its B tile and
// multicasts them to the blocks of the cluster that share the tile, so L2 -> SM traffic per block is
// (1/CN + 1/CM) / 2 of a lone block's. The blocks of a cluster share one step sequence (a fallback pass
// runs when any of the cluster's tiles needs it; a block whose own tile does not weights it 0), and a
// stage is refilled only after every consumer of the cluster released it.
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
    uint8_t *tiles_b = smem + I8G_STAGES * I8G_TILE_BYTES;
    uint64_t *full = (uint64_t *)(smem + 2 * I8G_STAGES * I8G_TILE_BYTES);
    uint64_t *empty = full + I8G_STAGES;
    uint8_t *runs_a = (uint8_t *)(empty + I8G_STAGES);  // pass 1 runs (any A tile of the cluster falls back)
    uint8_t *runs_b = runs_a + I8G_MAX_K_TILES;         // pass 2 runs
    uint8_t *own_a = runs_b + I8G_MAX_K_TILES;          // this block's A tile falls back
    uint8_t *own_b = own_a + I8G_MAX_K_TILES;

    const int m_tiles = int8fb_row_tiles(M), n_tiles = int8fb_row_tiles(N), k_tiles = int8fb_k_tiles(K);
    const int rank = CS == 1 ? 0 : (int)i8g_cluster_rank();
    const int dm = rank / CN, dn = rank % CN;
    // Grouped raster over cluster tiles: I8G_GROUP_M tile rows walk the tile columns together.
    const int cm_tiles = (m_tiles + CM - 1) / CM, cn_tiles = (n_tiles + CN - 1) / CN;
    const int group_m = I8G_GROUP_M / CM;
    const int cluster = blockIdx.x / CS;
    const int tiles_per_group = group_m * cn_tiles;
    const int group = cluster / tiles_per_group, in_group = cluster % tiles_per_group;
    const int first_cm = group * group_m;
    const int group_rows = min(cm_tiles - first_cm, group_m);
    const int cmt = first_cm + in_group % group_rows, cnt = in_group / group_rows;
    const int mt = cmt * CM + dm, nt = cnt * CN + dn;
    const bool tile_inside = mt < m_tiles && nt < n_tiles;

    // Flags to shared memory once, so no step waits on a global load for them.
    for (int kt = threadIdx.x; kt < k_tiles; kt += I8G_THREADS) {
        uint8_t any_a = 0, any_b = 0;
        for (int i = 0; i < CM; i++)
            if (cmt * CM + i < m_tiles) any_a |= flags_a[(size_t)(cmt * CM + i) * k_tiles + kt];
        for (int j = 0; j < CN; j++)
            if (cnt * CN + j < n_tiles) any_b |= flags_b[(size_t)(cnt * CN + j) * k_tiles + kt];
        runs_a[kt] = any_a;
        runs_b[kt] = any_b;
        own_a[kt] = mt < m_tiles ? flags_a[(size_t)mt * k_tiles + kt] : 0;
        own_b[kt] = nt < n_tiles ? flags_b[(size_t)nt * k_tiles + kt] : 0;
    }
    if (threadIdx.x == 0) {
        for (int s = 0; s < I8G_STAGES; s++) {
            i8g_mbar_init(&full[s], 1);
            i8g_mbar_init(&empty[s], 2 * CS);
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    if constexpr (CS > 1) i8g_cluster_sync();  // every block's barriers exist before any copy lands

    const int warpgroup = threadIdx.x / 128;
    if (warpgroup == 0) {
        // Producer: one thread issues the tensor copies of this block's share of each stage.
        asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(I8G_PRODUCER_REGS));
        if (threadIdx.x == 0) {
            constexpr int a_rows = I8G_BM / CN, b_rows = I8G_BN / CM;
            uint16_t mask_a = (uint16_t)(((1 << CN) - 1) << (dm * CN));  // blocks sharing this A tile
            uint16_t mask_b = 0;                                          // blocks sharing this B tile
            for (int i = 0; i < CM; i++) mask_b |= (uint16_t)(1 << (i * CN + dn));
            int stage = 0;
            uint32_t phase = 0;
            int kt = 0, pass = 0;
            do {
                i8g_mbar_wait(&empty[stage], phase ^ 1);
                i8g_mbar_arrive_expect_tx(&full[stage], 2 * I8G_TILE_BYTES);
                uint8_t *dst_a = tiles_a + stage * I8G_TILE_BYTES + dn * a_rows * I8G_BK;
                uint8_t *dst_b = tiles_b + stage * I8G_TILE_BYTES + dm * b_rows * I8G_BK;
                const CUtensorMap *src_a = pass == 1 ? &map_a2 : &map_a1, *src_b = pass == 2 ? &map_b2 : &map_b1;
                if constexpr (CN > 1) i8g_tma_load_2d_multicast(dst_a, src_a, &full[stage], kt * I8G_BK, mt * I8G_BM + dn * a_rows, mask_a);
                else i8g_tma_load_2d(dst_a, src_a, &full[stage], kt * I8G_BK, mt * I8G_BM);
                if constexpr (CM > 1) i8g_tma_load_2d_multicast(dst_b, src_b, &full[stage], kt * I8G_BK, nt * I8G_BN + dm * b_rows, mask_b);
                else i8g_tma_load_2d(dst_b, src_b, &full[stage], kt * I8G_BK, nt * I8G_BN);
                if (++stage == I8G_STAGES) { stage = 0; phase ^= 1; }
            } while (i8g_next_step(kt, pass, runs_a, runs_b, k_tiles));
        }
    } else {
        // Consumers: warpgroup 1 -> rows [0, 64) of the block tile, warpgroup 2 -> rows [64, 128). Two
        // int32 accumulators take turns: the wgmma of step i+1 run while step i's sums are converted,
        // scaled and added (wgmma.wait_group 1), so the tensor cores are never idle behind a conversion.
        // The loop is unrolled by two so that each accumulator is a fixed set of registers.
        asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(I8G_CONSUMER_REGS));
        const int consumer = warpgroup - 1;
        const int lane = threadIdx.x % 32, warp_in_group = (threadIdx.x % 128) / 32;
        const int row_lo = mt * I8G_BM + consumer * 64 + warp_in_group * 16 + lane / 4;  // and row_lo + 8
        const size_t rows_pad = (size_t)m_tiles * I8G_BM;
        const uint8_t *a_rows = tiles_a + consumer * 64 * I8G_BK;
        float acc[64];
#pragma unroll
        for (int i = 0; i < 64; i++) acc[i] = 0.0f;
        int32_t part0[64], part1[64];
        // The step before the first: advancing it gives (kt 0, pass 0) in stage 0 with parity 0.
        I8gStep st0, st1;
        st0.kt = 0; st0.pass = -1; st0.stage = -1; st0.phase = 0;
        i8g_advance(st0, runs_a, runs_b, own_a, own_b, scale_a, scale_b, rows_pad, row_lo, nt, k_tiles, tile_inside);
        i8g_mbar_wait(&full[st0.stage], st0.phase);
        i8g_issue_stage(part0, a_rows + st0.stage * I8G_TILE_BYTES, tiles_b + st0.stage * I8G_TILE_BYTES);
        while (true) {
            st1 = st0;
            if (!i8g_advance(st1, runs_a, runs_b, own_a, own_b, scale_a, scale_b, rows_pad, row_lo, nt, k_tiles, tile_inside)) {
                i8g_wgmma_wait<0>();
                i8g_retire<CS>(acc, part0, st0, empty);
                break;
            }
            i8g_mbar_wait(&full[st1.stage], st1.phase);
            i8g_issue_stage(part1, a_rows + st1.stage * I8G_TILE_BYTES, tiles_b + st1.stage * I8G_TILE_BYTES);
            i8g_wgmma_wait<1>();
            i8g_retire<CS>(acc, part0, st0, empty);
            st0 = st1;
            if (!i8g_advance(st0, runs_a, runs_b, own_a, own_b, scale_a, scale_b, rows_pad, row_lo, nt, k_tiles, tile_inside)) {
                i8g_wgmma_wait<0>();
                i8g_retire<CS>(acc, part1, st1, empty);
                break;
            }
            i8g_mbar_wait(&full[st0.stage], st0.phase);
            i8g_issue_stage(part0, a_rows + st0.stage * I8G_TILE_BYTES, tiles_b + st0.stage * I8G_TILE_BYTES);
            i8g_wgmma_wait<1>();
            i8g_retire<CS>(acc, part1, st1, empty);
        }

        // Store: register pair (i, i+1) holds columns (c, c+1) of one row.
        const int col0 = nt * I8G_BN + 2 * (lane % 4);
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
    }
    // No block leaves while a peer may still copy into its shared memory or arrive on its barriers.
    if constexpr (CS > 1) i8g_cluster_sync();
}

// ---- host side

// Tensor map of an int8 [rows, cols] row-major matrix, read in boxes of box_rows x 128 columns with
// 128-byte swizzle; boxes past the edges are zero-filled.
static inline CUtensorMap int8fb_tensor_map(const int8_t *data, int rows, int cols, int box_rows) {
    static PFN_cuTensorMapEncodeTiled_v12000 encode = NULL;
    if (encode == NULL) {
        cudaDriverEntryPointQueryResult found;
        cudaCheck(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", (void **)&encode, 12000, cudaEnableDefault, &found));
        if (found != cudaDriverEntryPointSuccess || encode == NULL) {
            fprintf(stderr, "error: the CUDA driver has no cuTensorMapEncodeTiled\n");
            exit(1);
        }
    }
    CUtensorMap map;
    cuuint64_t dims[2] = {(cuuint64_t)cols, (cuuint64_t)rows};
    cuuint64_t strides[1] = {(cuuint64_t)cols};
    cuuint32_t box[2] = {I8G_BK, (cuuint32_t)box_rows};
    cuuint32_t elem_strides[2] = {1, 1};
    CUresult res = encode(&map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, (void *)data, dims, strides, box, elem_strides,
                          CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                          CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (res != CUDA_SUCCESS) {
        fprintf(stderr, "error: cuTensorMapEncodeTiled failed (%d) for a %d x %d int8 matrix\n", (int)res, rows, cols);
        exit(1);
    }
    return map;
}

// out[M,N] (device, row-major, float or bf16) = dequant(a)[M,K] . dequant(b)[N,K]^T, where a (ROW_CHUNK)
// and b (PER_TILE) are quantized operands on the device with M = a->rows, N = b->rows, K = a->cols =
// b->cols, run with clusters of CM x CN tiles (int8fb_gemm picks the measured best). An operand whose q2
// is NULL must have no fallback tile (weights). Rules: N % 16 == 0, K % 16 == 0, K <= 131072, 16-byte
// aligned q1/q2 and out.
template <typename OutT, int CM, int CN>
static inline void int8fb_gemm_clustered(const Int8fbOperand *a, const Int8fbOperand *b, OutT *out, cudaStream_t stream) {
    static_assert(sizeof(OutT) == 4 || sizeof(OutT) == 2, "output is float or bf16");
    const int M = a->rows, N = b->rows, K = a->cols;
    shapeCheck(a->granularity == INT8FB_ROW_CHUNK && b->granularity == INT8FB_PER_TILE,
               "A must have row-chunk scales and B tile scales (got %d, %d)", (int)a->granularity, (int)b->granularity);
    shapeCheck(b->cols == K, "K mismatch: A has %d columns, B %d", K, b->cols);
    shapeCheck(M >= 1 && N >= 1 && N % 16 == 0 && K % 16 == 0, "M=%d N=%d K=%d: need N %% 16 == 0 and K %% 16 == 0", M, N, K);
    shapeCheck(int8fb_k_tiles(K) <= I8G_MAX_K_TILES, "K=%d: at most %d K-tiles", K, I8G_MAX_K_TILES);
    shapeCheck(((uintptr_t)a->q1 | (uintptr_t)b->q1 | (uintptr_t)a->q2 | (uintptr_t)b->q2 | (uintptr_t)out) % 16 == 0,
               "q1, q2 and out must be 16-byte aligned");
    CUtensorMap map_a1 = int8fb_tensor_map(a->q1, M, K, I8G_BM / CN), map_b1 = int8fb_tensor_map(b->q1, N, K, I8G_BN / CM);
    // A NULL q2 is never read (no tile of that operand falls back): its map points at q1.
    CUtensorMap map_a2 = a->q2 != NULL ? int8fb_tensor_map(a->q2, M, K, I8G_BM / CN) : map_a1;
    CUtensorMap map_b2 = b->q2 != NULL ? int8fb_tensor_map(b->q2, N, K, I8G_BN / CM) : map_b1;
    static bool smem_set = false;
    if (!smem_set) {
        cudaCheck(cudaFuncSetAttribute(int8fb_gemm_kernel<OutT, CM, CN>, cudaFuncAttributeMaxDynamicSharedMemorySize, I8G_SMEM_BYTES));
        smem_set = true;
    }
    const int clusters = ceil_div(int8fb_row_tiles(M), CM) * ceil_div(int8fb_row_tiles(N), CN);
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3(clusters * CM * CN);
    config.blockDim = dim3(I8G_THREADS);
    config.dynamicSmemBytes = I8G_SMEM_BYTES;
    config.stream = stream;
    cudaLaunchAttribute attr = {};
    attr.id = cudaLaunchAttributeClusterDimension;
    attr.val.clusterDim.x = CM * CN;
    attr.val.clusterDim.y = 1;
    attr.val.clusterDim.z = 1;
    config.attrs = &attr;
    config.numAttrs = CM * CN > 1 ? 1 : 0;
    cudaCheck(cudaLaunchKernelEx(&config, int8fb_gemm_kernel<OutT, CM, CN>, map_a1, map_a2, map_b1, map_b2, (const float *)a->scale,
                                 (const uint8_t *)a->fallback, (const float *)b->scale, (const uint8_t *)b->fallback, out, M, N, K));
}

// out = dequant(a) . dequant(b)^T with the default cluster shape (see int8fb_gemm_clustered).
template <typename OutT>
static inline void int8fb_gemm(const Int8fbOperand *a, const Int8fbOperand *b, OutT *out, cudaStream_t stream) {
    int8fb_gemm_clustered<OutT, I8G_DEFAULT_CM, I8G_DEFAULT_CN>(a, b, out, stream);
}

#endif // KERNELS_SM90_INT8_GEMM_TILE128_FALLBACK_CUH
