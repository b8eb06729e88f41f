// Hopper (sm_90a) GEMM on block-scaled low-precision operands, dequantized on the fly:
//   C[M,N] = alpha * A[M,K] . B[N,K]^T, FP32 accumulation, C row-major BF16 or FP32.
// Both operands are K-major ("TN"): packed elements [rows, K] plus one scale byte per block of
// Fmt::kBlock elements along K, scales row-major [rows, K / kBlock], unswizzled.
//
// Hopper has no MX/NVFP4 tensor-core instruction, so this is NUMERICS EMULATION: each CTA loads the
// packed tiles and their scales from device memory into registers, decodes them (element x block
// scale, exact in the 16-bit MMA type, see each format's header) straight into the wgmma shared-
// memory layout, and runs BF16/FP16 wgmma. No dequantized copy of an operand ever goes to device
// memory, so the bytes read per GEMM are those of the packed format (1 byte/element + 1/32 for
// MXFP8, 1/2 + 1/16 for NVFP4, against 2 for BF16), but the math runs at 16-bit tensor-core speed.
// The format policies (Fmt) live in sm90_mxfp8_gemm_block32.cuh and sm90_nvfp4_gemm_block16.cuh.
//
// CTA tile 128 x 256 x 64, 512 threads = four warpgroups, each owning a 64 x 128 quarter of the C
// tile (wgmma m64n128k16). Every thread also decodes 3 chunks of 16 elements per K tile: the decode
// is the bottleneck, and it is bound by instruction latency, so the kernel runs as many warps as
// the register file allows (128 registers per thread). Pipeline per K tile kt: issue the 4 wgmmas
// of tile kt (asynchronous), decode tile kt+1 (held in registers) into the next of 3 shared-memory
// stages, issue the global loads of tile kt+3 into the freed registers, wait until at most the
// wgmmas of tile kt are in flight, barrier. The tensor cores therefore run tile kt while the CUDA
// cores decode tile kt+1.
//
// Measured (H100, power-capped, dev/RESULTS.md): about 0.5x cuBLASLt BF16 on large shapes, short of
// the 0.85x target. The decode is the bottleneck, not the tensor cores (43% busy): ncu shows warps
// stalled mostly on long scoreboard, barrier and wait; the SASS shows fence.proxy.async compiled to
// MEMBAR.ALL.CTA + FENCE.VIEW.ASYNC.S, and the MEMBAR waits for the thread's in-flight global loads
// (issued one K tile earlier). Next steps: feed A to wgmma from registers (no shared-memory round
// trip and no proxy fence for A), and prefetch the raw tiles further ahead than one fence.
//
// Shape rules (asserted by the launchers): M, N >= 1 (any value: rows past M or N read as zero
// and are not stored), K >= 1 and K % kBlock == 0 (K tiles past K read as zero), operand and scale
// pointers aligned to the chunk load width (16 bytes MXFP8, 8 bytes NVFP4), C aligned to 2 elements.
#ifndef KERNELS_SM90_DEQUANT_GEMM_CUH
#define KERNELS_SM90_DEQUANT_GEMM_CUH

#include <stdint.h>
#include <cuda_fp16.h>
#include "kernels/cuda_common.h"
#include "kernels/sm90_wgmma_common.cuh"

#define DQ_BM 128          // rows of A per CTA
#define DQ_BN 256          // rows of B (columns of C) per CTA
#define DQ_BK 64           // K per shared-memory stage: one 128-byte swizzled row of 16-bit values
#define DQ_STAGES 3
#define DQ_THREADS 512     // four warpgroups, each the MMAs of one 64 x 128 quarter of the C tile
#define DQ_WG_N 128        // columns of C per warpgroup (wgmma m64n128k16)
#define DQ_CHUNK 16        // elements decoded per chunk (one 32-byte half row of a stage)
#define DQ_CHUNKS_PER_ROW (DQ_BK / DQ_CHUNK)
#define DQ_CHUNKS_PER_THREAD ((DQ_BM + DQ_BN) * DQ_CHUNKS_PER_ROW / DQ_THREADS)
#define DQ_A_TILE_BYTES (DQ_BM * DQ_BK * 2)
#define DQ_STAGE_BYTES ((DQ_BM + DQ_BN) * DQ_BK * 2)
#define DQ_SMEM_BYTES (DQ_STAGES * DQ_STAGE_BYTES + 1024)  // + alignment slack for the 1024-byte swizzle atom

static_assert(DQ_CHUNKS_PER_THREAD * DQ_THREADS == (DQ_BM + DQ_BN) * DQ_CHUNKS_PER_ROW, "chunks must split evenly");
static_assert(DQ_THREADS / DQ_CHUNKS_PER_ROW == DQ_BM && DQ_BN == 2 * DQ_BM && DQ_CHUNKS_PER_THREAD == 3,
              "the chunk map assumes one A row and two B rows (128 apart) per thread");
static_assert(DQ_THREADS / 128 == (DQ_BM / 64) * (DQ_BN / DQ_WG_N), "one warpgroup per 64 x 128 quarter of C");

// ----------------------------------------------------------------------------
// Device helpers (sm_90a only)

// wgmma shared-memory descriptor of a K-major tile with the 128-byte swizzle: rows of 128 bytes,
// 8-row (1024-byte) swizzle atoms stacked along M/N (stride byte offset 1024). `addr`: the tile's
// shared-memory address (state space offset), 1024-aligned.
__device__ __forceinline__ uint64_t dq_smem_desc(uint32_t addr) {
    uint64_t desc = (uint64_t)((addr & 0x3FFFF) >> 4);
    desc |= (uint64_t)1 << 16;              // leading byte offset (unused with swizzled K-major)
    desc |= (uint64_t)(1024 >> 4) << 32;    // stride byte offset between 8-row atoms
    desc |= (uint64_t)1 << 62;              // 128-byte swizzle
    return desc;
}

#define DQ_ACC_REGS (64 * DQ_WG_N / 128)  // FP32 accumulators per thread of a warpgroup

#define DQ_ACC8(i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), \
                   "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), "+f"(d[i + 7])
#define DQ_WGMMA_M64N128K16(TYPE)                                                                         \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"                                               \
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE "." TYPE " {"                       \
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "                \
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "      \
                 "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "      \
                 "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "    \
                 "%64, %65, p, 1, 1, 0, 0;\n}\n"                                                         \
                 : DQ_ACC8(0), DQ_ACC8(8), DQ_ACC8(16), DQ_ACC8(24), DQ_ACC8(32), DQ_ACC8(40),            \
                   DQ_ACC8(48), DQ_ACC8(56)                                                               \
                 : "l"(desc_a), "l"(desc_b))

// d += A(64x16, K-major smem) . B(128x16, K-major smem)^T for one warpgroup; kHalf selects the
// 16-bit operand type (FP16 when true, else BF16). Asynchronous: completes at wgmma_wait.
template <bool kHalf>
__device__ __forceinline__ void dq_wgmma_m64n128k16(float (&d)[DQ_ACC_REGS], uint64_t desc_a, uint64_t desc_b) {
#if SM90_HAS_WGMMA
    if (kHalf) DQ_WGMMA_M64N128K16("f16");
    else DQ_WGMMA_M64N128K16("bf16");
#endif
}

// 16-byte store to a shared-memory address (state space offset).
__device__ __forceinline__ void dq_st_shared_v4(uint32_t addr, uint4 v) {
    asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w));
}

// ----------------------------------------------------------------------------
// Kernel

// The registers of one K tile of this thread's chunks: packed elements and their scale bytes.
template <class Fmt>
struct DqChunkRegs {
    typename Fmt::Raw raw[DQ_CHUNKS_PER_THREAD];
    uint32_t scale[DQ_CHUNKS_PER_THREAD];
};

// Where this thread's chunks come from and go to (fixed for the whole K loop). Thread t owns tile
// row r = t/4 and its 16-element quarter q = t%4 of the K tile, in A's tile (chunk 0) and in both
// 128-row halves of B's tile (chunks 1 and 2: rows r and 128 + r). Chunk i is stored 16 KB * i after
// chunk 0 (128 rows of 128 bytes; B's tile follows A's) with the same swizzle.
struct DqChunkMap {
    const uint8_t *a_data, *b_data;      // rows m0 + r of A and n0 + r of B, at the chunk's K offset
    const uint8_t *a_scales, *b_scales;  // their scale rows, at the chunk's K offset
    uint32_t row_stride_128, scale_stride_128;  // bytes between rows 128 apart
    int a_rows_left, b_rows_left;        // rows from r to the end of A / B
    int k_in_tile;                       // first element of the chunk inside the K tile
    uint32_t smem_lo;                    // byte offset in a stage of chunk 0's first 16-byte piece (the
                                         // second piece is at smem_lo ^ 16)
};

template <class Fmt>
__device__ __forceinline__ DqChunkMap dq_chunk_map(const uint8_t *A, const uint8_t *a_scales, const uint8_t *B,
                                                   const uint8_t *b_scales, int M, int N, int K, int m0, int n0) {
    const int r = threadIdx.x / DQ_CHUNKS_PER_ROW, q = threadIdx.x % DQ_CHUNKS_PER_ROW;
    const size_t row_bytes = (size_t)K / Fmt::kElemsPerByte, scale_cols = (size_t)K / Fmt::kBlock;
    DqChunkMap map;
    map.k_in_tile = q * DQ_CHUNK;
    map.a_rows_left = M - (m0 + r);
    map.b_rows_left = N - (n0 + r);
    map.a_data = A + (size_t)(m0 + r) * row_bytes + map.k_in_tile / Fmt::kElemsPerByte;
    map.b_data = B + (size_t)(n0 + r) * row_bytes + map.k_in_tile / Fmt::kElemsPerByte;
    map.a_scales = a_scales + (size_t)(m0 + r) * scale_cols + map.k_in_tile / Fmt::kBlock;
    map.b_scales = b_scales + (size_t)(n0 + r) * scale_cols + map.k_in_tile / Fmt::kBlock;
    map.row_stride_128 = (uint32_t)(128 * row_bytes);
    map.scale_stride_128 = (uint32_t)(128 * scale_cols);
    // Row r of a tile is 128 bytes = 8 pieces of 16 bytes; piece p is stored at p ^ (r % 8), so
    // pieces 2q and 2q + 1 land 16 bytes apart in one order or the other.
    map.smem_lo = (uint32_t)r * 128u + ((uint32_t)((2 * q) ^ (r & 7)) << 4);
    return map;
}

// Loads K tile kt of this thread's chunks (zeros outside the matrix).
template <class Fmt>
__device__ __forceinline__ void dq_load_tile(DqChunkRegs<Fmt> &regs, const DqChunkMap &map, int kt, int K) {
    const bool k_in_range = kt * DQ_BK + map.k_in_tile < K;
    const size_t data_off = (size_t)kt * (DQ_BK / Fmt::kElemsPerByte), scale_off = (size_t)kt * (DQ_BK / Fmt::kBlock);
#pragma unroll
    for (int i = 0; i < DQ_CHUNKS_PER_THREAD; i++) {
        const bool is_a = i == 0;
        const int half = i == 2 ? 1 : 0;  // which 128-row half of B's tile
        const int rows_left = is_a ? map.a_rows_left : map.b_rows_left;
        if (k_in_range && rows_left > 128 * half) {
            regs.raw[i] = Fmt::load((is_a ? map.a_data : map.b_data) + half * map.row_stride_128 + data_off);
            regs.scale[i] = __ldg((is_a ? map.a_scales : map.b_scales) + half * map.scale_stride_128 + scale_off);
        } else {
            regs.raw[i] = Fmt::zero();
            regs.scale[i] = Fmt::kUnitScale;
        }
    }
}

// Decodes the chunks held in regs into the shared-memory stage at address `stage` (16-bit values,
// swizzled).
template <class Fmt>
__device__ __forceinline__ void dq_store_tile(const DqChunkRegs<Fmt> &regs, const DqChunkMap &map, uint32_t stage) {
#pragma unroll
    for (int i = 0; i < DQ_CHUNKS_PER_THREAD; i++) {
        uint4 lo, hi;
        Fmt::decode(regs.raw[i], regs.scale[i], lo, hi);
        const uint32_t addr = stage + i * DQ_BM * 128 + map.smem_lo;
        dq_st_shared_v4(addr, lo);
        dq_st_shared_v4(addr ^ 16u, hi);
    }
}

// One K tile of the main loop: this warpgroup's MMAs on tile kt, decode tile kt+1 (in `next`) into
// its stage, refill `next` with tile kt+3, then retire the MMAs of tile kt-1 and synchronize the CTA.
// The warpgroup's quarter of C: rows 64 * (warpgroup / 2), columns 128 * (warpgroup % 2) of the tile.
template <class Fmt>
__device__ __forceinline__ void dq_mainloop_step(float (&acc)[DQ_ACC_REGS], DqChunkRegs<Fmt> &next,
                                                 const DqChunkMap &map, uint32_t smem, int kt, int num_k_tiles, int K,
                                                 int warpgroup) {
    uint32_t stage = smem + (kt % DQ_STAGES) * DQ_STAGE_BYTES;
    uint64_t desc_a = dq_smem_desc(stage + (warpgroup / 2) * 64 * DQ_BK * 2);
    uint64_t desc_b = dq_smem_desc(stage + DQ_A_TILE_BYTES + (warpgroup % 2) * DQ_WG_N * DQ_BK * 2);
    wgmma_pin(acc);
    wgmma_fence();
#pragma unroll
    for (int k16 = 0; k16 < DQ_BK / 16; k16++) {
        // 16 elements of 2 bytes = 32 bytes further along the swizzled row: +2 in the address field.
        dq_wgmma_m64n128k16<Fmt::kHalf>(acc, desc_a + 2 * k16, desc_b + 2 * k16);
    }
    wgmma_commit();
    wgmma_pin(acc);
    if (kt + 1 < num_k_tiles) {
        dq_store_tile<Fmt>(next, map, smem + ((kt + 1) % DQ_STAGES) * DQ_STAGE_BYTES);
        wgmma_fence_proxy_async();
    }
    if (kt + 3 < num_k_tiles) dq_load_tile<Fmt>(next, map, kt + 3, K);
    wgmma_wait<1>();
    wgmma_pin(acc);
    __syncthreads();
}

// C[M,N] = alpha_eff * A . B^T with alpha_eff = alpha * Fmt::kAlphaCorrection * (*alpha_a) * (*alpha_b)
// (alpha_a / alpha_b: device pointers to per-tensor factors, or NULL for 1). A: packed [M,K],
// a_scales [M, K/kBlock]; B: packed [N,K], b_scales [N, K/kBlock]; C row-major [M,N].
// Grid (ceil(N/256), ceil(M/128)), 512 threads, DQ_SMEM_BYTES of dynamic shared memory.
template <class Fmt, class OutT>
__global__ void __launch_bounds__(DQ_THREADS, 1)
    sm90_dequant_gemm_kernel(OutT *C, const uint8_t *A, const uint8_t *a_scales, const uint8_t *B,
                             const uint8_t *b_scales, int M, int N, int K, float alpha, const float *alpha_a,
                             const float *alpha_b) {
#if SM90_HAS_WGMMA
    extern __shared__ uint8_t dq_smem_raw[];
    // Shared-memory address of the stages, rounded up to the 1024-byte swizzle atom.
    const uint32_t smem = ((uint32_t)__cvta_generic_to_shared(dq_smem_raw) + 1023u) & ~1023u;
    const int tid = threadIdx.x, warpgroup = tid / 128;
    const int m0 = blockIdx.y * DQ_BM, n0 = blockIdx.x * DQ_BN;
    const int num_k_tiles = ceil_div(K, DQ_BK);
    const DqChunkMap map = dq_chunk_map<Fmt>(A, a_scales, B, b_scales, M, N, K, m0, n0);

    float acc[DQ_ACC_REGS];
#pragma unroll
    for (int i = 0; i < DQ_ACC_REGS; i++) acc[i] = 0.0f;

    // Prologue: tile 0 decoded into stage 0; tile 1 in regs_odd, tile 2 in regs_even. Then tile kt+1
    // lives in regs_odd when kt is even and in regs_even when kt is odd.
    DqChunkRegs<Fmt> regs_even, regs_odd;
    dq_load_tile<Fmt>(regs_even, map, 0, K);
    if (num_k_tiles > 1) dq_load_tile<Fmt>(regs_odd, map, 1, K);
    dq_store_tile<Fmt>(regs_even, map, smem);
    wgmma_fence_proxy_async();
    if (num_k_tiles > 2) dq_load_tile<Fmt>(regs_even, map, 2, K);
    __syncthreads();
    for (int kt = 0; kt < num_k_tiles; kt += 2) {
        dq_mainloop_step<Fmt>(acc, regs_odd, map, smem, kt, num_k_tiles, K, warpgroup);
        if (kt + 1 < num_k_tiles) dq_mainloop_step<Fmt>(acc, regs_even, map, smem, kt + 1, num_k_tiles, K, warpgroup);
    }
    wgmma_wait<0>();
    wgmma_pin(acc);

    float scale = alpha * Fmt::kAlphaCorrection;
    if (alpha_a != NULL) scale *= *alpha_a;
    if (alpha_b != NULL) scale *= *alpha_b;

    // Accumulator layout of m64n128: thread (warp w, lane l) of the warpgroup holds rows
    // 16w + l/4 (+8) and, for j = 0..15, columns 8j + 2(l%4) + {0,1}: acc[4j + {0,1}] for the
    // first row, acc[4j + {2,3}] for the row 8 below.
    const int lane = tid % 32, warp_in_group = (tid % 128) / 32;
    const int row0 = m0 + (warpgroup / 2) * 64 + warp_in_group * 16 + lane / 4;
    const int col0 = n0 + (warpgroup % 2) * DQ_WG_N;
    const bool pairs = (N % 2) == 0;
#pragma unroll
    for (int half = 0; half < 2; half++) {
        int row = row0 + half * 8;
        if (row >= M) continue;
        OutT *c_row = C + (size_t)row * N;
#pragma unroll
        for (int j = 0; j < DQ_WG_N / 8; j++) {
            int col = col0 + j * 8 + (lane % 4) * 2;
            float v0 = acc[4 * j + 2 * half] * scale, v1 = acc[4 * j + 2 * half + 1] * scale;
            if (pairs && col + 1 < N) {
                if (sizeof(OutT) == 4) *reinterpret_cast<float2 *>(c_row + col) = make_float2(v0, v1);
                else *reinterpret_cast<__nv_bfloat162 *>(c_row + col) = __floats2bfloat162_rn(v0, v1);
            } else {
                if (col < N) c_row[col] = (OutT)v0;
                if (col + 1 < N) c_row[col + 1] = (OutT)v1;
            }
        }
    }
#else
    __trap();  // built for another architecture: the launcher refuses to launch it there
#endif
}

// ----------------------------------------------------------------------------
// Launcher

// Launches the kernel above after checking the shape rules (see the top of this file).
template <class Fmt, class OutT>
static inline void sm90_dequant_gemm(OutT *C, const uint8_t *A, const uint8_t *a_scales, const uint8_t *B,
                                     const uint8_t *b_scales, int M, int N, int K, float alpha, const float *alpha_a,
                                     const float *alpha_b, cudaStream_t stream) {
    shapeCheck(M > 0 && N > 0 && K > 0, "M=%d N=%d K=%d must be positive", M, N, K);
    shapeCheck(K % Fmt::kBlock == 0, "%s needs K %% %d == 0, got K=%d", Fmt::kName, Fmt::kBlock, K);
    shapeCheck((uintptr_t)A % Fmt::kLoadBytes == 0 && (uintptr_t)B % Fmt::kLoadBytes == 0,
               "%s operands must be %d-byte aligned", Fmt::kName, Fmt::kLoadBytes);
    shapeCheck((size_t)K * 128 < ((size_t)1 << 32), "K=%d too large (128-row strides are 32-bit)", K);
    shapeCheck((uintptr_t)C % (2 * sizeof(OutT)) == 0, "C must be aligned to 2 elements (%d bytes)", (int)(2 * sizeof(OutT)));
    shapeCheck(A != NULL && B != NULL && a_scales != NULL && b_scales != NULL && C != NULL, "NULL pointer");
    sm90_require_wgmma(Fmt::kName);  // the sm_100a build carries an empty body
    static bool smem_attribute_set = false;  // one per template instance
    if (!smem_attribute_set) {
        cudaCheck(cudaFuncSetAttribute(sm90_dequant_gemm_kernel<Fmt, OutT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       DQ_SMEM_BYTES));
        smem_attribute_set = true;
    }
    dim3 grid(ceil_div(N, DQ_BN), ceil_div(M, DQ_BM));
    sm90_dequant_gemm_kernel<Fmt, OutT><<<grid, DQ_THREADS, DQ_SMEM_BYTES, stream>>>(C, A, a_scales, B, b_scales, M, N, K,
                                                                                      alpha, alpha_a, alpha_b);
    cudaCheckLaunch();
}

#endif // KERNELS_SM90_DEQUANT_GEMM_CUH
