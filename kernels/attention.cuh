// Causal multi-head flash attention, forward and backward, BF16 in/out with FP32 softmax statistics.
// Hand-written for tensor cores: mma.sync.m16n8k16 (bf16 x bf16 -> fp32) fed by ldmatrix from swizzled
// shared memory tiles that cp.async fills, two or more stages deep; in sm_90a builds the HS = 64 forward
// and backward run their products as warpgroup wgmma (m64n64k16) on the same tiles.
//
// Layouts (row-major, bf16 unless noted), NH heads of HS = 64 or 128 channels, scale = 1/sqrt(HS):
//   qkv   [B, T, 3, NH, HS]  per token the Q of all heads, then K, then V (the qkv GEMM's output)
//   out   [B, T, NH, HS]     attention output
//   lse   [B, NH, T] fp32    natural-log sum-exp of the scaled, masked scores of each query row
//   dout  [B, T, NH, HS]     gradient of out
//   dqkv  [B, T, 3, NH, HS]  gradient of qkv, overwritten (not accumulated)
//   delta [B, NH, T] fp32    scratch for backward: rowsum(dout * out)
//   dbias [3, NH, HS] fp32   optional: += the column sums of dqkv over all B*T rows (the qkv linear's bias gradient)
//   bias_partials [B * ceil(T / 64), 3, NH, HS] fp32   scratch for dbias: row b*ceil(T/64) + k holds the column
//                            sums of dqkv over rows [64k, 64k + 64) of sequence b
// The heads are read in place through the strided layout, so no permute kernels are needed.
//
// Forward (FlashAttention-2 style): one block per (query block, batch*head); each warp owns 16*MT query rows,
// walks the key/value tiles left of the diagonal with an online softmax, never materializing T x T (with
// wgmma, FlashAttention-3's overlap of one tile's P V with the next tile's softmax). Blocks of all kernels
// run in head groups sized to keep the shared K/V (or Q/dout) in L2 (attn_block_head).
// Backward is bit-deterministic (no atomics), in two kernels:
//   1. dQ: one block per query block; each warp owns 16*MT queries and walks the key tiles, recomputing
//      P and dS in registers (a separate pass instead of fp32 atomics, so every result is summed in a
//      fixed order). Each block first computes delta = rowsum(dout * out) of its queries (it holds their
//      dout anyway) and leaves it for kernel 2.
//   2. dK, dV: one block per key block; each warp owns 16*MT keys and walks the query tiles right of the
//      diagonal, recomputing P^T and dS^T in registers.
// With dbias, both kernels also sum the columns of the dQ, dK, dV values they store (as rounded to bf16)
// over each 64-row chunk of their rows into bias_partials (one writer per element), and a third kernel adds
// the partials to dbias in chunk order: the same bits on every run, and no second pass over dqkv.
// Sequence tails are masked: any T >= 1 works; rows past T are zero-filled on load and never stored.
#ifndef KERNELS_ATTENTION_CUH
#define KERNELS_ATTENTION_CUH

#include <math.h>
#include <stdint.h>
#include "kernels/cuda_common.h"
#include "kernels/layer_common.cuh"  // cp.async, BF16 packing, column partials
#include "kernels/sm90_wgmma_common.cuh"

#define ATTN_LOG2E 1.4426950408889634f
#define ATTN_BIAS_ROWS 64             // rows of a sequence per bias_partials row (a multiple of every backward warp's rows)

// ----------------------------------------------------------------------------------------------------
// PTX wrappers

// Four 8x8 b16 matrices from shared memory; lane i gives the (shared-space) address of row i%8 of matrix i/8.
__device__ __forceinline__ void attn_ldmatrix_x4(uint32_t r[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
// Same, each matrix transposed.
__device__ __forceinline__ void attn_ldmatrix_x4_trans(uint32_t r[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}

// c[16x8] += a[16x16] * b[16x8], bf16 operands, fp32 accumulators (standard m16n8k16 fragments).
__device__ __forceinline__ void attn_mma_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
                 "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// 2^x by the SFU (ex2.approx, relative error ~2^-22; flushes denormal results to zero, 2^-inf = 0).
__device__ __forceinline__ float attn_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// The causal mask of a warp's fragment tile (rows row0 + 16mt + 8i + g, i = e >> 1; columns col0 + 8j + 2t +
// (e & 1)) as one limit per fragment row: column - row = 8j + (e & 1) - limit[2mt + i], so the score lies right
// of the diagonal when 8j + (e & 1) > limit[2mt + i] and left of it when < (one compare with a constant).
template <int MT>
__device__ __forceinline__ void attn_diagonal_limits(int (&limit)[2 * MT], int row0, int col0) {
    const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
#pragma unroll
    for (int r = 0; r < 2 * MT; r++) limit[r] = row0 + 8 * r + g - col0 - 2 * t;
}

// ----------------------------------------------------------------------------------------------------
// Shared-memory tiles: ROWS x HS bf16, row-major, the 16-byte chunks of each row XOR-swizzled by (row % 8)
// so that ldmatrix (8 rows, one chunk each) and the fragment stores hit distinct banks.

template <int HS>
__device__ __forceinline__ int attn_swizzle(int row, int col) {
    return row * HS + ((((col >> 3) ^ row) & 7) | ((col >> 3) & ~7)) * 8 + (col & 7);
}

// Block-cooperative async copy of rows [row0, row0 + ROWS) of a strided [nrows, HS] bf16 matrix (row
// stride `stride` elements) into a swizzled tile; rows >= nrows are zero-filled.
template <int HS, int ROWS, int NTHREADS>
__device__ __forceinline__ void attn_load_tile(bf16 *tile, const bf16 *src, long stride, int row0, int nrows) {
    constexpr int CHUNKS = HS / 8;
    static_assert((ROWS * CHUNKS) % NTHREADS == 0, "tile chunks must divide evenly among the threads");
#pragma unroll
    for (int i = 0; i < ROWS * CHUNKS / NTHREADS; i++) {
        int c = threadIdx.x + i * NTHREADS;
        int r = c / CHUNKS, col = (c % CHUNKS) * 8;
        bool valid = row0 + r < nrows;
        const bf16 *g = valid ? src + (long)(row0 + r) * stride + col : src;
        cp_async16(tile + attn_swizzle<HS>(r, col), g, valid);
    }
}

// Block-cooperative async copy of src[row0, row0 + N) (fp32) to dst[0, N); rows >= nrows are zero-filled.
template <int N, int NTHREADS>
__device__ __forceinline__ void attn_load_floats(float *dst, const float *src, int row0, int nrows) {
    for (int i = threadIdx.x; i < N; i += NTHREADS) {
        bool valid = row0 + i < nrows;
        cp_async4(dst + i, valid ? src + row0 + i : src, valid);
    }
}

// Byte offset in a swizzled tile of the 16-byte chunk `chunk` (0 or 1) of row `row`, where row % 8 is the
// lane's ldmatrix row (lane % 8) in every caller. Because the swizzle only XORs the low 3 chunk bits with
// row % 8, the chunk pair of 16-column step s of the same row is at (offset ^ (s * 32)), and rows 16 further
// down are 16 * HS * 2 bytes further: the inner loops need one XOR per step and immediate offsets.
template <int HS>
__device__ __forceinline__ uint32_t attn_lane_offset(int row, int chunk) {
    return (uint32_t)(row * HS + ((chunk ^ (row & 7)) << 3)) * (uint32_t)sizeof(bf16);
}

// Shared-space address of the block's dynamic shared memory (`smem`, the first tile). The XOR steps of
// attn_lane_offset act on tile addresses, so every tile must start on a multiple of 2*HS <= 256 bytes, and
// wgmma's 128-byte swizzle (attn_wg_desc) needs 1024-byte boundaries: tiles sit at multiples of 16 rows
// (>= 2048 bytes) from the base, and the base is declared 1024-byte aligned; a base that is not traps here
// rather than letting the kernels read the wrong chunks.
__device__ __forceinline__ uint32_t attn_smem_address(const bf16 *smem) {
    uint32_t addr = (uint32_t)__cvta_generic_to_shared(smem);
    if (addr % 1024 != 0) __trap();
    return addr;
}

// One 16-wide step kk of acc[16*MT x N] += A * B^T: the A fragments af (MT m-tiles, columns 16kk..16kk+15)
// times rows [0, N) of B, read from a swizzled tile by this lane's ldmatrix offset b_off (see attn_warp_mma_abt).
template <int HS, int MT, int N>
__device__ __forceinline__ void attn_warp_mma_abt_step(float acc[MT][N / 8][4], const uint32_t af[MT][4], uint32_t b_off, int kk) {
#pragma unroll
    for (int n = 0; n < N / 16; n++) {
        uint32_t bfr[4];
        attn_ldmatrix_x4(bfr, (b_off ^ (kk * 32)) + n * 16 * HS * 2);
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            attn_mma_bf16(acc[mt][2 * n], af[mt], bfr[0], bfr[1]);
            attn_mma_bf16(acc[mt][2 * n + 1], af[mt], bfr[2], bfr[3]);
        }
    }
}

// This lane's ldmatrix offset into a swizzled B tile read by attn_warp_mma_abt_step, from the tile address b.
template <int HS>
__device__ __forceinline__ uint32_t attn_abt_b_offset(uint32_t b) {
    const int lane = threadIdx.x % 32;
    return b + attn_lane_offset<HS>((lane & 7) + (lane >> 4) * 8, (lane >> 3) & 1);
}

// Loads the A fragments of rows [a_row0, a_row0 + 16*MT) of a swizzled tile at shared address `a`, all
// HS columns: af[mt][kk] is m-tile mt, columns 16kk..16kk+15 (for operands reused over a whole loop).
template <int HS, int MT>
__device__ __forceinline__ void attn_warp_load_a(uint32_t af[MT][HS / 16][4], uint32_t a, int a_row0) {
    const int lane = threadIdx.x % 32;
    const uint32_t a_off = a + attn_lane_offset<HS>(a_row0 + (lane & 15), lane >> 4);
#pragma unroll
    for (int kk = 0; kk < HS / 16; kk++) {
#pragma unroll
        for (int mt = 0; mt < MT; mt++) attn_ldmatrix_x4(af[mt][kk], (a_off ^ (kk * 32)) + mt * 16 * HS * 2);
    }
}

// Warp-level acc[16*MT x N] += A[16*MT x HS] * B[N x HS]^T, both read from swizzled tiles at shared
// addresses `a` and `b`: A is rows [a_row0, a_row0 + 16*MT) (MT m-tiles of 16 rows that share each B
// fragment), B rows [0, N). acc[mt][j] is the C fragment of m-tile mt, columns 8j..8j+7.
template <int HS, int MT, int N>
__device__ __forceinline__ void attn_warp_mma_abt(float acc[MT][N / 8][4], uint32_t a, int a_row0, uint32_t b) {
    const int lane = threadIdx.x % 32;
    const uint32_t a_off = a + attn_lane_offset<HS>(a_row0 + (lane & 15), lane >> 4);
    const uint32_t b_off = attn_abt_b_offset<HS>(b);
#pragma unroll
    for (int kk = 0; kk < HS / 16; kk++) {
        uint32_t af[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) attn_ldmatrix_x4(af[mt], (a_off ^ (kk * 32)) + mt * 16 * HS * 2);
        attn_warp_mma_abt_step<HS, MT, N>(acc, af, b_off, kk);
    }
}

// Same product with A given as register fragments (attn_warp_load_a's layout).
template <int HS, int MT, int N>
__device__ __forceinline__ void attn_warp_mma_abt_regs(float acc[MT][N / 8][4], const uint32_t af[MT][HS / 16][4], uint32_t b) {
    const uint32_t b_off = attn_abt_b_offset<HS>(b);
#pragma unroll
    for (int kk = 0; kk < HS / 16; kk++) {
        uint32_t a_step[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
#pragma unroll
            for (int i = 0; i < 4; i++) a_step[mt][i] = af[mt][kk][i];
        }
        attn_warp_mma_abt_step<HS, MT, N>(acc, a_step, b_off, kk);
    }
}

// The A fragment of k step kk (columns 16kk..16kk+15) of 16 rows of P held in the C-fragment layout
// (p[j] = columns 8j..8j+7), rounded to bf16.
__device__ __forceinline__ void attn_pack_a(uint32_t af[4], const float p[][4], int kk) {
    af[0] = bf16x2_pack(p[2 * kk][0], p[2 * kk][1]);
    af[1] = bf16x2_pack(p[2 * kk][2], p[2 * kk][3]);
    af[2] = bf16x2_pack(p[2 * kk + 1][0], p[2 * kk + 1][1]);
    af[3] = bf16x2_pack(p[2 * kk + 1][2], p[2 * kk + 1][3]);
}

// Warp-level acc[16*MT x HS] += P[16*MT x K] * B[K x HS]: P is held in registers in the C-fragment layout
// that attn_warp_mma_abt produces (p[mt][j] = m-tile mt, columns 8j..8j+7) and is rounded to bf16 here;
// B is rows [0, K) of a swizzled tile at shared address `b`, read transposed by ldmatrix.
template <int HS, int MT, int K>
__device__ __forceinline__ void attn_warp_mma_pb(float acc[MT][HS / 8][4], const float p[MT][K / 8][4], uint32_t b) {
    const int lane = threadIdx.x % 32;
    const uint32_t b_off = b + attn_lane_offset<HS>((lane & 7) + ((lane >> 3) & 1) * 8, lane >> 4);
#pragma unroll
    for (int kk = 0; kk < K / 16; kk++) {
        uint32_t af[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) attn_pack_a(af[mt], p[mt], kk);
#pragma unroll
        for (int n = 0; n < HS / 16; n++) {
            uint32_t bfr[4];
            attn_ldmatrix_x4_trans(bfr, (b_off ^ (n * 32)) + kk * 16 * HS * 2);
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                attn_mma_bf16(acc[mt][2 * n], af[mt], bfr[0], bfr[1]);
                attn_mma_bf16(acc[mt][2 * n + 1], af[mt], bfr[2], bfr[3]);
            }
        }
    }
}

// Writes a warp's fp32 accumulator acc[16*MT x HS] (times `mul`) as bf16 to rows [row0, row0 + 16*MT) of
// `dst` (row stride `stride` elements) for rows < nrows, staged through rows [tile_row0, tile_row0 + 16*MT)
// of a swizzled tile that only this warp uses, so that the global stores are 16 bytes wide.
// With sum_columns, also sums each column of the stored bf16 values over those rows (< nrows) and leaves
// the HS fp32 sums at the start of the warp's staging rows (float[HS] at tile + tile_row0 * HS): each lane
// always stores the same 8 columns, so it sums them in its row order, and the lanes of a column are then
// added by shuffles.
template <int HS, int MT>
__device__ __forceinline__ void attn_warp_store_rows(bf16 *dst, long stride, int row0, int nrows, const float acc[MT][HS / 8][4],
                                                     float mul, bf16 *tile, int tile_row0, bool sum_columns) {
    const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    __syncwarp();
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        const int r = tile_row0 + mt * 16 + g;
#pragma unroll
        for (int j = 0; j < HS / 8; j++) {
            *reinterpret_cast<uint32_t *>(tile + attn_swizzle<HS>(r, j * 8 + 2 * t)) = bf16x2_pack(acc[mt][j][0] * mul, acc[mt][j][1] * mul);
            *reinterpret_cast<uint32_t *>(tile + attn_swizzle<HS>(r + 8, j * 8 + 2 * t)) = bf16x2_pack(acc[mt][j][2] * mul, acc[mt][j][3] * mul);
        }
    }
    __syncwarp();
    constexpr int CHUNKS = HS / 8;
    static_assert(32 % CHUNKS == 0, "a lane stores the same 8 columns of every row it stores");
    float sums[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};   // columns (lane % CHUNKS) * 8 .. + 7
#pragma unroll
    for (int i = 0; i < 16 * MT * CHUNKS / 32; i++) {
        int c = lane + i * 32;
        int r = c / CHUNKS, col = (c % CHUNKS) * 8;
        if (row0 + r < nrows) {
            const uint4 v = *reinterpret_cast<const uint4 *>(tile + attn_swizzle<HS>(tile_row0 + r, col));
            *reinterpret_cast<uint4 *>(dst + (long)(row0 + r) * stride + col) = v;
            if (sum_columns) {
                const __nv_bfloat162 *v2 = reinterpret_cast<const __nv_bfloat162 *>(&v);
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    const float2 f = __bfloat1622float2(v2[k]);
                    sums[2 * k] += f.x;
                    sums[2 * k + 1] += f.y;
                }
            }
        }
    }
    if (sum_columns) {
#pragma unroll
        for (int off = CHUNKS; off < 32; off *= 2) {
#pragma unroll
            for (int k = 0; k < 8; k++) sums[k] += __shfl_xor_sync(0xffffffffu, sums[k], off);
        }
        __syncwarp();   // every lane has read its staged rows
        if (lane < CHUNKS) {
            float4 *out = reinterpret_cast<float4 *>(tile + tile_row0 * HS) + 2 * lane;
            out[0] = make_float4(sums[0], sums[1], sums[2], sums[3]);
            out[1] = make_float4(sums[4], sums[5], sums[6], sums[7]);
        }
    }
}

// The bias partials of a backward block, once each of its NW warps (WR rows each) has left its column sums
// in its staging rows of `tile` (attn_warp_store_rows with sum_columns) and the block has synchronized: the
// block owns rows [row0, row0 + WR*NW) of sequence b (row0 a multiple of ATTN_BIAS_ROWS) and columns
// [col0, col0 + HS) of bias_partials [B * ceil(T / ATTN_BIAS_ROWS), ld] (layout at the top), so it writes
// partials rows b * ceil(T / ATTN_BIAS_ROWS) + row0 / ATTN_BIAS_ROWS + j for the chunks j that start
// before T, each the sum of its warps' sums in warp order.
template <int HS, int WR, int NW>
__device__ __forceinline__ void attn_block_bias_partials(float *partials, long ld, long col0, const bf16 *tile, int b, int row0, int T) {
    constexpr int CHUNK_WARPS = ATTN_BIAS_ROWS / WR, BLOCK_CHUNKS = WR * NW / ATTN_BIAS_ROWS;
    static_assert(ATTN_BIAS_ROWS % WR == 0 && (WR * NW) % ATTN_BIAS_ROWS == 0, "a block's rows are whole bias chunks of whole warps");
    const long chunk0 = (long)b * ceil_div(T, ATTN_BIAS_ROWS) + row0 / ATTN_BIAS_ROWS;
    for (int i = threadIdx.x; i < BLOCK_CHUNKS * HS; i += NW * 32) {
        const int j = i / HS, c = i % HS;
        if (row0 + j * ATTN_BIAS_ROWS >= T) break;   // this chunk and the later ones lie past the sequence
        float sum = 0.f;
#pragma unroll
        for (int w = 0; w < CHUNK_WARPS; w++) sum += reinterpret_cast<const float *>(tile + (j * CHUNK_WARPS + w) * WR * HS)[c];
        partials[(chunk0 + j) * ld + col0 + c] = sum;
    }
}

// Sets every element of a [M][N][4] fragment array to zero.
template <int M, int N>
__device__ __forceinline__ void attn_zero(float x[M][N][4]) {
#pragma unroll
    for (int i = 0; i < M; i++) {
#pragma unroll
        for (int j = 0; j < N; j++) x[i][j][0] = x[i][j][1] = x[i][j][2] = x[i][j][3] = 0.f;
    }
}

// ----------------------------------------------------------------------------------------------------
// Warpgroup products (wgmma, sm_90a builds only) for the HS = 64 backward: the 4 warps of a warpgroup
// compute a 64-row product together, so a B tile is read from shared memory once per warpgroup instead of
// once per warp by ldmatrix. A comes from registers in exactly the mma.sync A-fragment layout (warp w of the
// group holds rows 16w..16w+15), and the f32 accumulator of m64n64k16 has per warp exactly the C-fragment
// layout of eight m16n8 tiles (acc[j] = columns 8j..8j+7), so the softmax code between products is shared
// with the mma.sync path. B tiles are the swizzled 64-column tiles above: 128-byte rows whose 16-byte chunks
// are XORed with row % 8, which is wgmma's 128-byte swizzle when the tile starts on a 1024-byte boundary.

// Shared-memory descriptor of a 64-column swizzled tile at shared address `addr` (1024-byte aligned, or
// advanced from such an address by whole k steps): 128-byte swizzle, 8-row groups 1024 bytes apart. K-major
// operands (rows = N, columns = K) ignore the leading offset; the transposed (MN-major) reads step over
// 8-row groups along K and have one 64-column group along N, so both offsets are 1024 bytes.
__device__ __forceinline__ uint64_t attn_wg_desc(uint32_t addr) {
    return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)(1024 >> 4) << 16) | ((uint64_t)(1024 >> 4) << 32) | ((uint64_t)1 << 62);
}

// d[64 x 64] = (accumulate ? d : 0) + A[64 x 16] * B[16 x 64] for the calling warpgroup, asynchronous (done at
// wgmma_wait). a: this warp's A fragment (rows 16*(warp%4)..+15); desc_b: B as 64 rows x 16 columns of a
// K-major tile (TRANS_B = 0), or 16 rows x 64 columns of a tile read transposed (TRANS_B = 1).
template <int TRANS_B>
__device__ __forceinline__ void attn_wgmma_m64n64k16(float (&d)[8][4], const uint32_t a[4], uint64_t desc_b, int accumulate) {
#if SM90_HAS_WGMMA
    asm volatile("{\n.reg .pred acc;\nsetp.ne.b32 acc, %38, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
                 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
                 "{%32, %33, %34, %35}, %36, acc, 1, 1, %37;\n}\n"
                 : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]),
                   "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]),
                   "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),
                   "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "n"(TRANS_B), "r"(accumulate));
#else
    __trap();
#endif
}

// Warpgroup acc[64 x 64] = A[64 x 64] * B[64 x 64]^T (issued, not waited for): A in registers (this warp's
// 16 rows, attn_warp_load_a's layout with MT = 1), B rows [0, 64) of a swizzled tile at shared address b.
__device__ __forceinline__ void attn_wg_mma_abt(float (&acc)[8][4], const uint32_t af[4][4], uint32_t b) {
    const uint64_t desc = attn_wg_desc(b);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 4; kk++) attn_wgmma_m64n64k16<0>(acc, af[kk], desc + kk * (32 >> 4), kk > 0);
}

// Warpgroup acc[64 x 64] = (accumulate ? acc : 0) + A[64 x 64] * B[64 x 64] (issued, not waited for): A as
// bf16 A fragments in registers (this warp's 16 rows, af[kk] = columns 16kk..16kk+15); B rows [0, 64) of a
// swizzled tile at shared address b, read transposed. accumulate = 0 starts a sum without zeroing acc first:
// ptxas serializes the wgmma pipeline if other instructions define the accumulator of a product that is
// still in flight across a loop's back edge, which a zeroed accumulator entering the loop counts as.
__device__ __forceinline__ void attn_wg_mma_ab(float (&acc)[8][4], const uint32_t af[4][4], uint32_t b, int accumulate = 1) {
    const uint64_t desc = attn_wg_desc(b);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 4; kk++) attn_wgmma_m64n64k16<1>(acc, af[kk], desc + kk * ((16 * 64 * 2) >> 4), kk > 0 || accumulate);
}

// The same product with A = P held in the accumulator layout (this warp's 16 rows), rounded to bf16 here.
__device__ __forceinline__ void attn_wg_mma_pb(float (&acc)[8][4], const float p[8][4], uint32_t b, int accumulate = 1) {
    uint32_t af[4][4];
#pragma unroll
    for (int kk = 0; kk < 4; kk++) attn_pack_a(af[kk], p, kk);
    attn_wg_mma_ab(acc, af, b, accumulate);
}

// ----------------------------------------------------------------------------------------------------
// Kernels

// Block order shared by the kernels (grid B*NH*nblocks): the heads are taken in groups of `group_heads` (the
// last group may be smaller) and the blocks of a group run in a row, block i of a group of G heads serving
// its head i % G with rank i / G, so that blocks of the same rank sit side by side across the group's heads.
// Returns the block's head (b*NH + h) and sets *rank, its place among the head's nblocks blocks (0 first).
// group_heads = B*NH orders by rank across all heads; a smaller group keeps the inputs that its running
// blocks share (one head's K and V, or Q and dout) few enough to stay in L2.
__device__ __forceinline__ int attn_block_head(int nblocks, int group_heads, int *rank) {
    const int nbh = (int)(gridDim.x / nblocks);
    const unsigned per_group = (unsigned)group_heads * (unsigned)nblocks;
    const int group = (int)(blockIdx.x / per_group), in_group = (int)(blockIdx.x % per_group);
    const int heads = min(group_heads, nbh - group * group_heads);
    *rank = in_group / heads;
    return group * group_heads + in_group % heads;
}

// Forward. Grid B*NH*ceil(T / (16*MT*NW)), NW warps, in head groups (attn_block_head): the block of rank
// r serves query block r counted from the last, so within a group the heaviest blocks start first. Each warp owns
// 16*MT query rows and keeps O (fp32), the running row max m (in raw score units) and the per-thread
// partial row sums l; keys come in tiles of BC through cp.async, STAGES deep.
// WGMMA (HS = 64, MT = 1, BC = 64): in sm_90a builds each warpgroup (64 queries, Q in registers) runs
// S = Q K^T and O += P V as wgmma, software-pipelined across key tiles: the P V product of tile i is issued
// right after S of tile i+1 and runs while tile i+1's softmax is computed; O is rescaled once it is done.
// Its V stage is therefore still being read during tile i+1, so tiles are prefetched STAGES - 2 ahead
// (STAGES - 1 without wgmma). Other builds run the same tiles with mma.sync. MIN_BLOCKS: blocks per SM
// whose registers the compiler must fit (a register cap of 64K / (MIN_BLOCKS * NW * 32) per thread).
template <int HS, int MT, int NW, int BC, int STAGES, bool WGMMA, int MIN_BLOCKS>
__global__ void __launch_bounds__(NW * 32, MIN_BLOCKS) attention_forward_kernel(bf16 *out, float *lse, const bf16 *qkv, int T, int NH,
                                                                                  int group_heads) {
    constexpr int WR = 16 * MT, BR = WR * NW, NTHREADS = NW * 32;
    constexpr bool WG = WGMMA && SM90_HAS_WGMMA;
    static_assert(!WGMMA || (HS == 64 && MT == 1 && NW % 4 == 0 && BC == 64),
                  "the wgmma forward is m64n64k16 with Q in registers: HS 64, MT 1, warpgroups, BC 64");
    static_assert(STAGES >= (WGMMA ? 3 : 2), "key tiles are prefetched STAGES - 2 (wgmma) or STAGES - 1 ahead");
    constexpr int AHEAD = WG ? STAGES - 2 : STAGES - 1;
    extern __shared__ __align__(1024) bf16 attn_smem[];
    bf16 *sQ = attn_smem;                // [BR, HS]
    bf16 *sK = sQ + BR * HS;             // [STAGES][BC, HS]
    bf16 *sV = sK + STAGES * BC * HS;    // [STAGES][BC, HS]

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int nqb = ceil_div(T, BR);
    int rank;
    const int bh = attn_block_head(nqb, group_heads, &rank), b = bh / NH, h = bh % NH;
    const int q0 = (nqb - 1 - rank) * BR;
    const uint32_t aQ = attn_smem_address(sQ), aK = aQ + BR * HS * 2, aV = aK + STAGES * BC * HS * 2;
    const long row_stride = 3L * NH * HS;
    const bf16 *gQ = qkv + (long)b * T * row_stride + (long)h * HS;
    const bf16 *gK = gQ + (long)NH * HS;
    const bf16 *gV = gQ + 2L * NH * HS;
    const float scale_log2 = ATTN_LOG2E / sqrtf((float)HS);

    // Key tile kt (K, V) into stage st, asynchronously.
    const int ntiles = ceil_div(min(T, q0 + BR), BC);
    auto load_key_tile = [&](int st, int kt) {
        attn_load_tile<HS, BC, NTHREADS>(sK + st * BC * HS, gK, row_stride, kt * BC, T);
        attn_load_tile<HS, BC, NTHREADS>(sV + st * BC * HS, gV, row_stride, kt * BC, T);
    };
    // one cp.async group per key tile (Q joins the first), the first AHEAD tiles ahead
    attn_load_tile<HS, BR, NTHREADS>(sQ, gQ, row_stride, q0, T);
#pragma unroll
    for (int st = 0; st < AHEAD; st++) {
        if (st < ntiles) load_key_tile(st, st);
        cp_async_commit();
    }

    // this warp's first query row; thread row r = 2*mt + i is query wq0 + 16*mt + 8*i + g
    const int wq0 = q0 + warp * WR;
    // last query of the rows that skip key tiles together: the warpgroup's with wgmma (a collective), else the warp's
    const int skip_q_last = WG ? q0 + __shfl_sync(0xffffffffu, warp / 4, 0) * 64 + 63 : wq0 + WR - 1;
    float o[MT][HS / 8][4];
    attn_zero<MT, HS / 8>(o);
    float m[2 * MT], l[2 * MT];
#pragma unroll
    for (int r = 0; r < 2 * MT; r++) { m[r] = -INFINITY; l[r] = 0.f; }
    uint32_t qf[MT][HS / 16][4];   // wgmma: this warp's Q fragments, the A operand of every S
    uint32_t pf[BC / 16][4];       // wgmma: P of the previous tile as bf16 A fragments, its P V not yet issued
    uint32_t pending_v = 0;        // wgmma: shared address of that tile's V
    if constexpr (WG) {
        cp_async_wait<AHEAD - 1>();
        __syncthreads();
        attn_warp_load_a<HS, MT>(qf, aQ, warp * WR);
    }

    for (int tile = 0; tile < ntiles; tile++) {
        cp_async_wait<AHEAD - 1>();   // this tile's group is complete
        if constexpr (WG) wgmma_fence_proxy_async();
        __syncthreads();   // tile visible to all; everyone is done with the stage refilled next
        if (tile + AHEAD < ntiles) load_key_tile((tile + AHEAD) % STAGES, tile + AHEAD);
        cp_async_commit();   // empty past the end, so that every tile keeps one group
        const int k0 = tile * BC;
        if (k0 > skip_q_last) continue;   // every key of this tile is right of the diagonal for these rows
        const uint32_t cK = aK + (tile % STAGES) * BC * HS * 2, cV = aV + (tile % STAGES) * BC * HS * 2;

        float s[MT][BC / 8][4];
        if constexpr (WG) {
            attn_wg_mma_abt(s[0], qf[0], cK);
            wgmma_commit();
            if (tile > 0) {   // the previous tile's P V, behind S in the tensor pipe
                attn_wg_mma_ab(o[0], pf, pending_v);
                wgmma_commit();
                wgmma_wait<1>();
            } else {
                wgmma_wait<0>();
            }
            wgmma_pin(s[0]);
        } else {
            attn_zero<MT, BC / 8>(s);
            attn_warp_mma_abt<HS, MT, BC>(s, aQ, warp * WR, cK);
        }

        // causal mask, on the tiles that reach right of the warp's first row (rows: queries, columns: keys). Keys
        // past T are right of every query < T; rows past T are not stored.
        if (k0 + BC - 1 > wq0) {
            int last_key[2 * MT];
            attn_diagonal_limits<MT>(last_key, wq0, k0);
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
#pragma unroll
                for (int j = 0; j < BC / 8; j++) {
#pragma unroll
                    for (int e = 0; e < 4; e++) s[mt][j][e] = j * 8 + (e & 1) > last_key[2 * mt + (e >> 1)] ? -INFINITY : s[mt][j][e];
                }
            }
        }
        float corr[2 * MT];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            float mx[2] = {m[2 * mt], m[2 * mt + 1]};
#pragma unroll
            for (int j = 0; j < BC / 8; j++) {
                mx[0] = fmaxf(mx[0], fmaxf(s[mt][j][0], s[mt][j][1]));
                mx[1] = fmaxf(mx[1], fmaxf(s[mt][j][2], s[mt][j][3]));
            }
            float moff[2];
#pragma unroll
            for (int i = 0; i < 2; i++) {
                const int r = 2 * mt + i;
                mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
                mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
                moff[i] = mx[i] == -INFINITY ? 0.f : mx[i] * scale_log2;   // a row with no key yet stays at zero
                corr[r] = attn_exp2(m[r] * scale_log2 - moff[i]);
                m[r] = mx[i];
                l[r] *= corr[r];
                if constexpr (!WG) {
#pragma unroll
                    for (int j = 0; j < HS / 8; j++) { o[mt][j][2 * i] *= corr[r]; o[mt][j][2 * i + 1] *= corr[r]; }
                }
            }
#pragma unroll
            for (int j = 0; j < BC / 8; j++) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    s[mt][j][e] = attn_exp2(s[mt][j][e] * scale_log2 - moff[e >> 1]);
                    l[2 * mt + (e >> 1)] += s[mt][j][e];
                }
            }
        }
        if constexpr (WG) {   // the previous tile's P V is in O: rescale it now
            wgmma_wait<0>();
            wgmma_pin(o[0]);
#pragma unroll
            for (int e = 0; e < 4; e++) {
#pragma unroll
                for (int j = 0; j < HS / 8; j++) o[0][j][e] *= corr[e >> 1];
            }
#pragma unroll
            for (int kk = 0; kk < BC / 16; kk++) attn_pack_a(pf[kk], s[0], kk);
            pending_v = cV;
            if (tile + 1 == ntiles || k0 + BC > skip_q_last) {   // the last tile of these rows: finish now
                attn_wg_mma_ab(o[0], pf, cV);
                wgmma_commit();
                wgmma_wait<0>();
                wgmma_pin(o[0]);
            }
        } else {
            attn_warp_mma_pb<HS, MT, BC>(o, s, cV);
        }
    }

#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const int r = 2 * mt + i, q = wq0 + mt * 16 + g + 8 * i;
            l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
            l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
            if (t == 0 && q < T) lse[(long)bh * T + q] = (m[r] * scale_log2 + log2f(l[r])) / ATTN_LOG2E;
            const float inv = 1.f / l[r];
#pragma unroll
            for (int j = 0; j < HS / 8; j++) { o[mt][j][2 * i] *= inv; o[mt][j][2 * i + 1] *= inv; }
        }
    }
    attn_warp_store_rows<HS, MT>(out + (long)b * T * NH * HS + (long)h * HS, (long)NH * HS, wq0, T, o, 1.f, sQ, warp * WR, false);
}

// Backward dK, dV. Grid B*NH*ceil(T / (16*MT*NW)), NW warps, in head groups (attn_block_head): the block
// of rank y serves key block y (the first key blocks hold the most work, so they start first). It owns
// keys [16*MT*NW*y, +16*MT*NW) and walks the query tiles (BQ rows of Q and dout, with their lse and delta,
// all through cp.async) from the diagonal to T, STAGES deep. Each warp owns 16*MT keys: S^T = K Q^T,
// P^T = exp(S^T*scale - lse), dP^T = V dout^T, dS^T = P^T (dP^T - delta), then dV += P^T dout and
// dK += dS^T Q, all in registers; dK is scaled at the end.
// The warp's K and V fragments (the A operands of S^T and dP^T) are fixed for the whole walk: the first
// REG_AS of them (0: none, 1: K, 2: K and V) are loaded into registers once instead of from shared memory at
// every query tile, which saves shared-memory bandwidth where the registers allow (same products in the
// same order, so the same bits). WGMMA (HS = 64, MT = 1, K and V in registers): in sm_90a builds the four
// products run as warpgroup wgmma (each group of 4 warps, 64 keys, reads each Q and dout tile from shared
// memory once instead of once per warp); other builds run the same tiles with mma.sync. The wgmma path is
// pipelined across query tiles: tile i's dV and dK products are not waited for (accumulating wgmma into the
// same registers keep their order), so they run through the block barrier and tile i+1's S^T and dP^T issue;
// the wait for S^T of tile i+1 covers them. Their Q / dout stage is therefore still read during tile i+1, so
// tiles are prefetched STAGES - 2 ahead (STAGES - 1 without wgmma), as in the forward.
// BIAS: the block's dK and dV column sums go to bias_partials, for the qkv bias gradient (layout at the top).
template <int HS, int MT, int NW, int BQ, int STAGES, int REG_AS, bool WGMMA, bool BIAS>
__global__ void __launch_bounds__(NW * 32) attention_backward_dkdv_kernel(bf16 *dqkv, float *bias_partials, const bf16 *qkv, const bf16 *dout,
                                                                          const float *lse, const float *delta, int T, int NH, int group_heads) {
    constexpr int WR = 16 * MT, BKV = WR * NW, NTHREADS = NW * 32;
    constexpr bool WG = WGMMA && SM90_HAS_WGMMA;
    static_assert(STAGES >= (WGMMA ? 3 : 2), "query tiles are prefetched STAGES - 2 (wgmma) or STAGES - 1 ahead");
    constexpr int AHEAD = WG ? STAGES - 2 : STAGES - 1;
    extern __shared__ __align__(1024) bf16 attn_smem[];
    bf16 *sK = attn_smem;               // [BKV, HS]
    bf16 *sV = sK + BKV * HS;           // [BKV, HS]
    bf16 *sQ = sV + BKV * HS;           // [STAGES][BQ, HS]
    bf16 *sdO = sQ + STAGES * BQ * HS;  // [STAGES][BQ, HS]
    float *sL = reinterpret_cast<float *>(sdO + STAGES * BQ * HS);   // [STAGES][BQ] lse
    float *sD = sL + STAGES * BQ;                                    // [STAGES][BQ]

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, t = lane % 4;
    int rank;
    const int bh = attn_block_head(ceil_div(T, BKV), group_heads, &rank), b = bh / NH, h = bh % NH;
    const int k0 = rank * BKV;
    const uint32_t aK = attn_smem_address(sK), aV = aK + BKV * HS * 2, aQ = aV + BKV * HS * 2, adO = aQ + STAGES * BQ * HS * 2;
    const long row_stride = 3L * NH * HS, out_stride = (long)NH * HS;
    const long qkv_base = (long)b * T * row_stride + (long)h * HS;
    const bf16 *gQ = qkv + qkv_base, *gK = gQ + (long)NH * HS, *gV = gQ + 2L * NH * HS;
    const bf16 *gdO = dout + (long)b * T * out_stride + (long)h * HS;
    const float *gL = lse + (long)bh * T, *gD = delta + (long)bh * T;
    const float scale = 1.f / sqrtf((float)HS), scale_log2 = scale * ATTN_LOG2E;

    // Query tile qt (Q, dout, lse, delta) into stage st, asynchronously.
    const int qt_first = k0 / BQ, qt_end = ceil_div(T, BQ);
    auto load_query_tile = [&](int st, int qt) {
        attn_load_tile<HS, BQ, NTHREADS>(sQ + st * BQ * HS, gQ, row_stride, qt * BQ, T);
        attn_load_tile<HS, BQ, NTHREADS>(sdO + st * BQ * HS, gdO, out_stride, qt * BQ, T);
        attn_load_floats<BQ, NTHREADS>(sL + st * BQ, gL, qt * BQ, T);
        attn_load_floats<BQ, NTHREADS>(sD + st * BQ, gD, qt * BQ, T);
    };
    // one cp.async group per query tile (K and V join the first), the first AHEAD tiles ahead
    attn_load_tile<HS, BKV, NTHREADS>(sK, gK, row_stride, k0, T);
    attn_load_tile<HS, BKV, NTHREADS>(sV, gV, row_stride, k0, T);
#pragma unroll
    for (int st = 0; st < AHEAD; st++) {
        if (qt_first + st < qt_end) load_query_tile(st, qt_first + st);
        cp_async_commit();
    }

    const int wk0 = k0 + warp * WR;   // this warp's first key; thread row 2*mt + i is key wk0 + 16*mt + 8*i + g
    static_assert(!WGMMA || (HS == 64 && MT == 1 && NW % 4 == 0 && BQ == 64 && REG_AS == 2),
                  "the wgmma dK/dV path is m64n64k16 with K and V in registers: HS 64, MT 1, warpgroups, BQ 64");
    // first key of the rows that skip query tiles together: the warpgroup's with wgmma (a collective), else the warp's
    const int skip_k0 = WG ? k0 + __shfl_sync(0xffffffffu, warp / 4, 0) * 64 : wk0;
    float dk[MT][HS / 8][4], dv[MT][HS / 8][4];   // with wgmma, the first tile's products start them
    if constexpr (!WG) {
        attn_zero<MT, HS / 8>(dk);
        attn_zero<MT, HS / 8>(dv);
    }
    int accumulate = 0;   // wgmma: whether dk and dv hold a first tile's products
    static_assert(REG_AS >= 0 && REG_AS <= 2, "REG_AS counts the A operands K, V held in registers");
    uint32_t kf[MT][HS / 16][4], vf[MT][HS / 16][4];
    if constexpr (REG_AS > 0) {
        cp_async_wait<AHEAD - 1>();
        __syncthreads();
        attn_warp_load_a<HS, MT>(kf, aK, warp * WR);
        if constexpr (REG_AS > 1) attn_warp_load_a<HS, MT>(vf, aV, warp * WR);
    }

    for (int qt = qt_first; qt < qt_end; qt++) {
        const int stage = (qt - qt_first) % STAGES;
        cp_async_wait<AHEAD - 1>();   // this tile's group is complete
        if constexpr (WG) wgmma_fence_proxy_async();
        __syncthreads();   // tile visible to all; everyone is done with the stage refilled next
        if (qt + AHEAD < qt_end) load_query_tile((qt - qt_first + AHEAD) % STAGES, qt + AHEAD);
        cp_async_commit();   // empty past the end, so that every tile keeps one group
        const int qs = qt * BQ;
        if (qs + BQ - 1 < skip_k0) continue;   // every query of this tile is left of these keys
        const uint32_t cQ = aQ + stage * BQ * HS * 2, cdO = adO + stage * BQ * HS * 2;
        const float *cL = sL + stage * BQ, *cD = sD + stage * BQ;
        // causal mask (rows: keys, columns: queries; a query left of its key is masked). Queries past T need no
        // mask: their Q, dout, lse and delta rows are zero-filled, so P^T = 1 and dS^T = 0 there and both
        // products add zeros.
        int first_q[2 * MT];
        attn_diagonal_limits<MT>(first_q, wk0, qs);

        // P^T = exp(S^T * scale - lse) in s, masked; with wgmma it runs while dP^T is still being computed
        float s[MT][BQ / 8][4], dp[MT][BQ / 8][4];
        if constexpr (WG) {
            attn_wg_mma_abt(s[0], kf[0], cQ);
            wgmma_commit();
            attn_wg_mma_abt(dp[0], vf[0], cdO);
            wgmma_commit();
            wgmma_wait<1>();   // S^T, and the previous tile's dV and dK
            wgmma_pin(s[0]);
        } else {
            attn_zero<MT, BQ / 8>(s);
            attn_zero<MT, BQ / 8>(dp);
            if constexpr (REG_AS > 0) attn_warp_mma_abt_regs<HS, MT, BQ>(s, kf, cQ);
            else attn_warp_mma_abt<HS, MT, BQ>(s, aK, warp * WR, cQ);
            if constexpr (REG_AS > 1) attn_warp_mma_abt_regs<HS, MT, BQ>(dp, vf, cdO);
            else attn_warp_mma_abt<HS, MT, BQ>(dp, aV, warp * WR, cdO);
        }
#pragma unroll
        for (int j = 0; j < BQ / 8; j++) {
            const float2 lq = *reinterpret_cast<const float2 *>(cL + j * 8 + 2 * t);
            const float lq2[2] = {lq.x * ATTN_LOG2E, lq.y * ATTN_LOG2E};
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const float p = attn_exp2(s[mt][j][e] * scale_log2 - lq2[e & 1]);
                    s[mt][j][e] = j * 8 + (e & 1) < first_q[2 * mt + (e >> 1)] ? 0.f : p;
                }
            }
        }
        // dV += P^T dout (with wgmma: issued now, runs while dS^T is computed)
        if constexpr (WG) {
            attn_wg_mma_pb(dv[0], s[0], cdO, accumulate);
            wgmma_commit();
            wgmma_wait<1>();   // dP^T
            wgmma_pin(dp[0]);
        } else {
            attn_warp_mma_pb<HS, MT, BQ>(dv, s, cdO);
        }
        // dS^T = P^T (dP^T - delta) in dp
#pragma unroll
        for (int j = 0; j < BQ / 8; j++) {
            const float2 dq = *reinterpret_cast<const float2 *>(cD + j * 8 + 2 * t);
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
#pragma unroll
                for (int e = 0; e < 4; e++) dp[mt][j][e] = s[mt][j][e] * (dp[mt][j][e] - ((e & 1) ? dq.y : dq.x));
            }
        }
        // dK += dS^T Q (with wgmma: issued, and waited for at the next tile's S^T or after the loop)
        if constexpr (WG) {
            attn_wg_mma_pb(dk[0], dp[0], cQ, accumulate);
            wgmma_commit();
            accumulate = 1;
        } else {
            attn_warp_mma_pb<HS, MT, BQ>(dk, dp, cQ);
        }
    }
    if constexpr (WG) {
        wgmma_wait<0>();
        wgmma_pin(dv[0]);
        wgmma_pin(dk[0]);
    }

    attn_warp_store_rows<HS, MT>(dqkv + qkv_base + (long)NH * HS, row_stride, wk0, T, dk, scale, sK, warp * WR, BIAS);
    attn_warp_store_rows<HS, MT>(dqkv + qkv_base + 2L * NH * HS, row_stride, wk0, T, dv, 1.f, sV, warp * WR, BIAS);
    if constexpr (BIAS) {
        __syncthreads();   // every warp's column sums
        attn_block_bias_partials<HS, WR, NW>(bias_partials, row_stride, (long)NH * HS + (long)h * HS, sK, b, k0, T);
        attn_block_bias_partials<HS, WR, NW>(bias_partials, row_stride, 2L * NH * HS + (long)h * HS, sV, b, k0, T);
    }
}

// Backward dQ. Grid B*NH*ceil(T / (16*MT*NW)), NW warps, ordered like the forward (head groups, query
// blocks last-first). A block owns 16*MT*NW queries (their Q and dout tiles stay in shared memory) and walks
// the key tiles (BK rows of K and V, STAGES deep) up to the diagonal. Before the walk each warp computes
// delta = rowsum(dout * out) of its queries in fp32 from its dout A fragments and out read at the same
// places (per thread, then over the 4 lanes of a row: a fixed order), keeps it in registers and writes it
// to delta [B, NH, T] for the dK/dV kernel. Each warp owns 16*MT queries: S = Q K^T, P = exp(S*scale - lse),
// dP = dout V^T, dS = P (dP - delta), dQ += dS K in registers; dQ is scaled at the end. The first REG_AS of
// the warp's fixed A operands Q, dout are held in registers for the whole walk, as in the dK/dV kernel.
// WGMMA: as in the dK/dV kernel, warpgroups of 64 queries run the three products with wgmma in sm_90a builds,
// pipelined across key tiles the same way (tile i's dQ product runs into tile i+1, which is why key tiles
// are then prefetched STAGES - 2 ahead).
// BIAS: the block's dQ column sums go to bias_partials, for the qkv bias gradient (layout at the top).
template <int HS, int MT, int NW, int BK, int STAGES, int REG_AS, bool WGMMA, bool BIAS>
__global__ void __launch_bounds__(NW * 32) attention_backward_dq_kernel(bf16 *dqkv, float *bias_partials, float *delta, const bf16 *qkv,
                                                                        const bf16 *dout, const bf16 *out, const float *lse, int T, int NH,
                                                                        int group_heads) {
    constexpr int WR = 16 * MT, BR = WR * NW, NTHREADS = NW * 32;
    constexpr bool WG = WGMMA && SM90_HAS_WGMMA;
    static_assert(STAGES >= (WGMMA ? 3 : 2), "key tiles are prefetched STAGES - 2 (wgmma) or STAGES - 1 ahead");
    constexpr int AHEAD = WG ? STAGES - 2 : STAGES - 1;
    extern __shared__ __align__(1024) bf16 attn_smem[];
    bf16 *sQ = attn_smem;                // [BR, HS]
    bf16 *sdO = sQ + BR * HS;            // [BR, HS]
    bf16 *sK = sdO + BR * HS;            // [STAGES][BK, HS]
    bf16 *sV = sK + STAGES * BK * HS;    // [STAGES][BK, HS]

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int nqb = ceil_div(T, BR);
    int rank;
    const int bh = attn_block_head(nqb, group_heads, &rank), b = bh / NH, h = bh % NH;
    const int q0 = (nqb - 1 - rank) * BR;
    const uint32_t aQ = attn_smem_address(sQ), adO = aQ + BR * HS * 2, aK = adO + BR * HS * 2, aV = aK + STAGES * BK * HS * 2;
    const long row_stride = 3L * NH * HS, out_stride = (long)NH * HS;
    const long qkv_base = (long)b * T * row_stride + (long)h * HS;
    const bf16 *gQ = qkv + qkv_base, *gK = gQ + (long)NH * HS, *gV = gQ + 2L * NH * HS;
    const bf16 *gdO = dout + (long)b * T * out_stride + (long)h * HS;
    const float scale = 1.f / sqrtf((float)HS), scale_log2 = scale * ATTN_LOG2E;

    // Key tile kt (K, V) into stage st, asynchronously.
    const int ntiles = ceil_div(min(T, q0 + BR), BK);
    auto load_key_tile = [&](int st, int kt) {
        attn_load_tile<HS, BK, NTHREADS>(sK + st * BK * HS, gK, row_stride, kt * BK, T);
        attn_load_tile<HS, BK, NTHREADS>(sV + st * BK * HS, gV, row_stride, kt * BK, T);
    };
    // one cp.async group per key tile (Q and dout join the first), the first AHEAD tiles ahead
    attn_load_tile<HS, BR, NTHREADS>(sQ, gQ, row_stride, q0, T);
    attn_load_tile<HS, BR, NTHREADS>(sdO, gdO, out_stride, q0, T);
#pragma unroll
    for (int st = 0; st < AHEAD; st++) {
        if (st < ntiles) load_key_tile(st, st);
        cp_async_commit();
    }

    // out at this thread's places in the warp's dout A fragments (attn_warp_load_a's layout: rows g, g + 8 of
    // each m-tile, columns 16 kk + 2 t, +1 and 16 kk + 8 + 2 t, +1), read now so that they arrive with the tiles
    const int wq0 = q0 + warp * WR;   // thread row r = 2*mt + i is query wq0 + 16*mt + 8*i + g
    const bf16 *gO = out + (long)b * T * out_stride + (long)h * HS;
    uint32_t out_frag[MT][HS / 16][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int kk = 0; kk < HS / 16; kk++) {
#pragma unroll
            for (int x = 0; x < 4; x++) {
                const int q = wq0 + 16 * mt + g + 8 * (x & 1), col = 16 * kk + 8 * (x >> 1) + 2 * t;
                out_frag[mt][kk][x] = q < T ? *reinterpret_cast<const uint32_t *>(gO + (long)q * out_stride + col) : 0u;
            }
        }
    }
    float lq[2 * MT], dq_row[2 * MT];
#pragma unroll
    for (int r = 0; r < 2 * MT; r++) {
        int q = wq0 + (r / 2) * 16 + (r % 2) * 8 + g;
        lq[r] = q < T ? lse[(long)bh * T + q] * ATTN_LOG2E : 0.f;
    }
    static_assert(!WGMMA || (HS == 64 && MT == 1 && NW % 4 == 0 && BK == 64 && REG_AS == 2),
                  "the wgmma dQ path is m64n64k16 with Q and dout in registers: HS 64, MT 1, warpgroups, BK 64");
    // last query of the rows that skip key tiles together: the warpgroup's with wgmma (a collective), else the warp's
    const int skip_q_last = WG ? q0 + __shfl_sync(0xffffffffu, warp / 4, 0) * 64 + 63 : wq0 + WR - 1;
    float dq[MT][HS / 8][4];   // with wgmma, the first tile's product starts it
    if constexpr (!WG) attn_zero<MT, HS / 8>(dq);
    int accumulate = 0;   // wgmma: whether dq holds a first tile's product
    static_assert(REG_AS >= 0 && REG_AS <= 2, "REG_AS counts the A operands Q, dout held in registers");
    uint32_t qf[MT][HS / 16][4], dof[MT][HS / 16][4];
    cp_async_wait<AHEAD - 1>();   // Q, dout and the first key tile
    __syncthreads();
    if constexpr (REG_AS > 0) attn_warp_load_a<HS, MT>(qf, aQ, warp * WR);
    attn_warp_load_a<HS, MT>(dof, adO, warp * WR);   // kept for the walk with REG_AS > 1, else for delta only
    // delta of the thread's rows: its products, then over the 4 lanes of each row (a fixed order); zero past T
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int i = 0; i < 2; i++) {
            float acc = 0.f;
#pragma unroll
            for (int kk = 0; kk < HS / 16; kk++) {
#pragma unroll
                for (int x = i; x < 4; x += 2) {
                    const float2 fa = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&dof[mt][kk][x]));
                    const float2 fc = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&out_frag[mt][kk][x]));
                    acc += fa.x * fc.x + fa.y * fc.y;
                }
            }
            acc += __shfl_xor_sync(0xffffffffu, acc, 1);
            acc += __shfl_xor_sync(0xffffffffu, acc, 2);
            dq_row[2 * mt + i] = acc;
            const int q = wq0 + 16 * mt + 8 * i + g;
            if (t == 0 && q < T) delta[(long)bh * T + q] = acc;
        }
    }

    for (int tile = 0; tile < ntiles; tile++) {
        const int stage = tile % STAGES;
        cp_async_wait<AHEAD - 1>();   // this tile's group is complete
        if constexpr (WG) wgmma_fence_proxy_async();
        __syncthreads();   // tile visible to all; everyone is done with the stage refilled next
        if (tile + AHEAD < ntiles) load_key_tile((tile + AHEAD) % STAGES, tile + AHEAD);
        cp_async_commit();   // empty past the end, so that every tile keeps one group
        const int k0 = tile * BK;
        if (k0 > skip_q_last) {   // so are all later tiles; the last dQ product must end before its stage is refilled
            if constexpr (WG) wgmma_wait<0>();
            continue;
        }
        const uint32_t cK = aK + stage * BK * HS * 2, cV = aV + stage * BK * HS * 2;
        // causal mask (rows: queries, columns: keys). Keys past T are right of every query < T; the rows past T
        // are not stored.
        int last_key[2 * MT];
        attn_diagonal_limits<MT>(last_key, wq0, k0);

        // P = exp(S * scale - lse) in s, masked; with wgmma it runs while dP is still being computed
        float s[MT][BK / 8][4], dp[MT][BK / 8][4];
        if constexpr (WG) {
            attn_wg_mma_abt(s[0], qf[0], cK);
            wgmma_commit();
            attn_wg_mma_abt(dp[0], dof[0], cV);
            wgmma_commit();
            wgmma_wait<1>();   // S, and the previous tile's dQ
            wgmma_pin(s[0]);
        } else {
            attn_zero<MT, BK / 8>(s);
            attn_zero<MT, BK / 8>(dp);
            if constexpr (REG_AS > 0) attn_warp_mma_abt_regs<HS, MT, BK>(s, qf, cK);
            else attn_warp_mma_abt<HS, MT, BK>(s, aQ, warp * WR, cK);
            if constexpr (REG_AS > 1) attn_warp_mma_abt_regs<HS, MT, BK>(dp, dof, cV);
            else attn_warp_mma_abt<HS, MT, BK>(dp, adO, warp * WR, cV);
        }
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
#pragma unroll
            for (int j = 0; j < BK / 8; j++) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const float p = attn_exp2(s[mt][j][e] * scale_log2 - lq[2 * mt + (e >> 1)]);
                    s[mt][j][e] = j * 8 + (e & 1) > last_key[2 * mt + (e >> 1)] ? 0.f : p;
                }
            }
        }
        if constexpr (WG) {
            wgmma_wait<0>();   // dP
            wgmma_pin(dp[0]);
        }
        // dS = P (dP - delta) in dp, then dQ += dS K
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
#pragma unroll
            for (int j = 0; j < BK / 8; j++) {
#pragma unroll
                for (int e = 0; e < 4; e++) dp[mt][j][e] = s[mt][j][e] * (dp[mt][j][e] - dq_row[2 * mt + (e >> 1)]);
            }
        }
        if constexpr (WG) {   // issued, and waited for at the next tile's S or after the loop
            attn_wg_mma_pb(dq[0], dp[0], cK, accumulate);
            wgmma_commit();
            accumulate = 1;
        } else {
            attn_warp_mma_pb<HS, MT, BK>(dq, dp, cK);
        }
    }
    if constexpr (WG) {
        wgmma_wait<0>();
        wgmma_pin(dq[0]);
    }
    attn_warp_store_rows<HS, MT>(dqkv + qkv_base, row_stride, wq0, T, dq, scale, sQ, warp * WR, BIAS);
    if constexpr (BIAS) {
        __syncthreads();   // every warp's column sums
        attn_block_bias_partials<HS, WR, NW>(bias_partials, row_stride, (long)h * HS, sQ, b, q0, T);
    }
}

// ----------------------------------------------------------------------------------------------------
// Launchers

// Tile configuration per head size, per kernel: MT m-tiles of 16 rows per warp, NW warps per block,
// and the length of the streamed tiles (keys for forward and dQ, queries for dK/dV). Chosen from the
// variants timed by dev/cuda/attention.cu on an H100 (dev/RESULTS.md); dK/dV keeps MT = 1 because its
// two HS-wide accumulators fill the registers (MT = 2 spills). REG_AS: how many of the backward kernels'
// fixed A operands stay in registers, as many as fit without spilling (ptxas -v). STAGES: cp.async depth of
// the streamed tiles. WGMMA: warpgroup products (HS = 64 only; sm_90a builds, other builds run the same
// tiles with mma.sync). FWD_MIN_BLOCKS: forward blocks per SM that the register allocation must allow.
// GROUP_MB: each kernel's head groups (attention_group_heads; 0: all heads at once).
template <int HS> struct AttentionConfig;
template <> struct AttentionConfig<64> {
    static constexpr int FWD_MT = 1, FWD_WARPS = 8, FWD_BC = 64, FWD_STAGES = 5, FWD_MIN_BLOCKS = 2, FWD_GROUP_MB = 16;
    static constexpr bool FWD_WGMMA = true;
    static constexpr int DKDV_MT = 1, DKDV_WARPS = 8, DKDV_BQ = 64, DKDV_STAGES = 4, DKDV_REG_AS = 2;  // pipelined wgmma: d24 dK/dV 0.519 -> 0.406 ms
    static constexpr bool DKDV_WGMMA = true;
    static constexpr int DKDV_GROUP_MB = 8;  // 8 MB groups: d24 backward 0.926 -> 0.891 ms (dev/RESULTS.md)
    static constexpr int DQ_MT = 1, DQ_WARPS = 8, DQ_BK = 64, DQ_STAGES = 4, DQ_REG_AS = 2;
    static constexpr bool DQ_WGMMA = true;
    static constexpr int DQ_GROUP_MB = 8;
};
template <> struct AttentionConfig<128> {
    static constexpr int FWD_MT = 2, FWD_WARPS = 4, FWD_BC = 32, FWD_STAGES = 2, FWD_MIN_BLOCKS = 1, FWD_GROUP_MB = 16;
    static constexpr bool FWD_WGMMA = false;
    static constexpr int DKDV_MT = 1, DKDV_WARPS = 8, DKDV_BQ = 32, DKDV_STAGES = 2, DKDV_REG_AS = 1;
    static constexpr bool DKDV_WGMMA = false;
    static constexpr int DKDV_GROUP_MB = 0;
    static constexpr int DQ_MT = 2, DQ_WARPS = 4, DQ_BK = 32, DQ_STAGES = 2, DQ_REG_AS = 0;
    static constexpr bool DQ_WGMMA = false;
    static constexpr int DQ_GROUP_MB = 0;
};

// Checks the shapes shared by forward and backward.
static inline void attention_check_shapes(int B, int T, int NH, int HS) {
    shapeCheck(HS == 64 || HS == 128, "attention supports head sizes 64 and 128, got HS=%d", HS);
    shapeCheck(B >= 1 && T >= 1 && NH >= 1, "B=%d T=%d NH=%d must all be >= 1", B, T, NH);
}

// Heads per block group (attn_block_head) for a kernel whose blocks of one head share that head's K and V
// (or Q and dout), 2*T*HS bf16: all B*NH heads at once, unless those inputs of all heads exceed two groups of
// group_mb MB (never for group_mb = 0); then as many heads as have group_mb MB of them.
static inline int attention_group_heads(int B, int T, int NH, int HS, int group_mb) {
    const long bytes_per_head = 2L * T * HS * (long)sizeof(bf16), nbh = (long)B * NH, group_bytes = (long)group_mb << 20;
    if (group_bytes == 0 || nbh * bytes_per_head <= 2 * group_bytes) return (int)nbh;
    return group_bytes / bytes_per_head < 1 ? 1 : (int)(group_bytes / bytes_per_head);
}

// Sets the dynamic shared-memory limit of `kernel` and returns the byte count to launch with.
template <class Kernel>
static inline size_t attention_smem(Kernel kernel, size_t bytes) {
    cudaCheck(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    return bytes;
}

// Forward for one head size and tile configuration C (AttentionConfig<HS> unless a harness tries others).
template <int HS, class C = AttentionConfig<HS>>
static inline void attention_forward_hs(bf16 *out, float *lse, const bf16 *qkv, int B, int T, int NH, cudaStream_t stream) {
    constexpr int BR = 16 * C::FWD_MT * C::FWD_WARPS;
    auto kernel = attention_forward_kernel<HS, C::FWD_MT, C::FWD_WARPS, C::FWD_BC, C::FWD_STAGES, C::FWD_WGMMA, C::FWD_MIN_BLOCKS>;
    size_t smem = attention_smem(kernel, (size_t)(BR + 2 * C::FWD_STAGES * C::FWD_BC) * HS * sizeof(bf16));
    const long blocks = (long)B * NH * ceil_div(T, BR);
    shapeCheck(blocks <= 2147483647L, "B*NH*ceil(T/%d)=%ld blocks, over the grid limit", BR, blocks);
    const int group_heads = attention_group_heads(B, T, NH, HS, C::FWD_GROUP_MB);
    kernel<<<(unsigned)blocks, 32 * C::FWD_WARPS, smem, stream>>>(out, lse, qkv, T, NH, group_heads);
    cudaCheckLaunch();
}

// Causal attention forward: out[B,T,NH,HS] and lse[B,NH,T] from qkv[B,T,3,NH,HS] (layouts at the top).
static inline void attention_forward(bf16 *out, float *lse, const bf16 *qkv, int B, int T, int NH, int HS, cudaStream_t stream) {
    attention_check_shapes(B, T, NH, HS);
    if (HS == 64) attention_forward_hs<64>(out, lse, qkv, B, T, NH, stream);
    else attention_forward_hs<128>(out, lse, qkv, B, T, NH, stream);
}

// Rows of the bias partials (layout at the top) of a backward over B sequences of T tokens.
static inline long attention_bias_partial_rows(int B, int T) { return (long)B * ceil_div(T, ATTN_BIAS_ROWS); }

// Floats of the bias_partials scratch that attention_backward needs (with a dbias) for these shapes:
// B * ceil(T / 64) * 3 * NH * HS.
static inline size_t attention_backward_bias_scratch_floats(int B, int T, int NH, int HS) {
    return (size_t)attention_bias_partial_rows(B, T) * 3 * NH * HS;
}

// Backward step 1 for one head size and tile configuration C: the Q slot of dqkv and delta [B, NH, T], and
// with bias_partials (else NULL) the Q slot's column sums (layout at the top).
template <int HS, class C = AttentionConfig<HS>>
static inline void attention_backward_dq_hs(bf16 *dqkv, float *bias_partials, float *delta, const bf16 *dout, const bf16 *qkv,
                                            const bf16 *out, const float *lse, int B, int T, int NH, cudaStream_t stream) {
    constexpr int BR = 16 * C::DQ_MT * C::DQ_WARPS;
    auto kernel = bias_partials != NULL ? attention_backward_dq_kernel<HS, C::DQ_MT, C::DQ_WARPS, C::DQ_BK, C::DQ_STAGES, C::DQ_REG_AS, C::DQ_WGMMA, true>
                                        : attention_backward_dq_kernel<HS, C::DQ_MT, C::DQ_WARPS, C::DQ_BK, C::DQ_STAGES, C::DQ_REG_AS, C::DQ_WGMMA, false>;
    size_t smem = attention_smem(kernel, (size_t)(2 * BR + 2 * C::DQ_STAGES * C::DQ_BK) * HS * sizeof(bf16));
    const long blocks = (long)B * NH * ceil_div(T, BR);
    shapeCheck(blocks <= 2147483647L, "B*NH*ceil(T/%d)=%ld blocks, over the grid limit", BR, blocks);
    const int group_heads = attention_group_heads(B, T, NH, HS, C::DQ_GROUP_MB);
    kernel<<<(unsigned)blocks, 32 * C::DQ_WARPS, smem, stream>>>(dqkv, bias_partials, delta, qkv, dout, out, lse, T, NH, group_heads);
    cudaCheckLaunch();
}

// Backward step 2 for one head size and tile configuration C: the K and V slots of dqkv (with step 1's
// delta), and with bias_partials (else NULL) their column sums (layout at the top).
template <int HS, class C = AttentionConfig<HS>>
static inline void attention_backward_dkdv_hs(bf16 *dqkv, float *bias_partials, const float *delta, const bf16 *dout, const bf16 *qkv,
                                              const float *lse, int B, int T, int NH, cudaStream_t stream) {
    constexpr int BKV = 16 * C::DKDV_MT * C::DKDV_WARPS;
    auto kernel = bias_partials != NULL ? attention_backward_dkdv_kernel<HS, C::DKDV_MT, C::DKDV_WARPS, C::DKDV_BQ, C::DKDV_STAGES, C::DKDV_REG_AS, C::DKDV_WGMMA, true>
                                        : attention_backward_dkdv_kernel<HS, C::DKDV_MT, C::DKDV_WARPS, C::DKDV_BQ, C::DKDV_STAGES, C::DKDV_REG_AS, C::DKDV_WGMMA, false>;
    size_t smem = attention_smem(kernel, (size_t)(2 * BKV + 2 * C::DKDV_STAGES * C::DKDV_BQ) * HS * sizeof(bf16) +
                                             2 * C::DKDV_STAGES * C::DKDV_BQ * sizeof(float));
    const long blocks = (long)B * NH * ceil_div(T, BKV);
    shapeCheck(blocks <= 2147483647L, "B*NH*ceil(T/%d)=%ld blocks, over the grid limit", BKV, blocks);
    const int group_heads = attention_group_heads(B, T, NH, HS, C::DKDV_GROUP_MB);
    kernel<<<(unsigned)blocks, 32 * C::DKDV_WARPS, smem, stream>>>(dqkv, bias_partials, qkv, dout, lse, delta, T, NH, group_heads);
    cudaCheckLaunch();
}

// Causal attention backward: dqkv[B,T,3,NH,HS] (overwritten) from dout, the forward's qkv, out and lse;
// delta[B,NH,T] fp32 is scratch. With dbias (fp32 [3*NH*HS], else NULL), also dbias += the column sums of
// dqkv over all B*T rows (the qkv bias gradient, accumulated), through bias_partials, scratch of
// attention_backward_bias_scratch_floats(B, T, NH, HS) floats (unused without dbias). accumulate: 1 adds to
// dbias, 0 writes it (the first micro-step of an optimizer step). Deterministic: the same inputs give
// bit-identical dqkv and dbias.
static inline void attention_backward(bf16 *dqkv, float *dbias, float *delta, float *bias_partials, const bf16 *dout, const bf16 *qkv,
                                      const bf16 *out, const float *lse, int B, int T, int NH, int HS, bool accumulate,
                                      cudaStream_t stream) {
    attention_check_shapes(B, T, NH, HS);
    shapeCheck(dbias == NULL || bias_partials != NULL, "the qkv bias gradient needs the bias_partials scratch");
    float *partials = dbias != NULL ? bias_partials : NULL;
    if (HS == 64) {
        attention_backward_dq_hs<64>(dqkv, partials, delta, dout, qkv, out, lse, B, T, NH, stream);
        attention_backward_dkdv_hs<64>(dqkv, partials, delta, dout, qkv, lse, B, T, NH, stream);
    } else {
        attention_backward_dq_hs<128>(dqkv, partials, delta, dout, qkv, out, lse, B, T, NH, stream);
        attention_backward_dkdv_hs<128>(dqkv, partials, delta, dout, qkv, lse, B, T, NH, stream);
    }
    if (dbias != NULL) column_partials_add(dbias, bias_partials, attention_bias_partial_rows(B, T), 3 * NH * HS, accumulate, stream);  // step 3
}

#endif // KERNELS_ATTENTION_CUH
