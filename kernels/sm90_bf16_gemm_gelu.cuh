// Hopper (sm_90a) BF16 GEMM with the epilogues of GPT-2's MLP, written for the fc layer's Fprop and the
// fcproj layer's Dgrad, whose element-wise GELU work it keeps off device memory:
//   C[M,N] = A[M,K] . B^T, FP32 accumulation; A row-major [M,K] (K-major); B either [N,K] row-major
//   (K-major, B_KMAJOR: a weight in Fprop) or [K,N] row-major (N-major: a weight in Dgrad); then by EPI:
//   BF16_GEMM_PLAIN:         out = bf16(C + bias[n])   (bias may be NULL; the mainloop's yardstick against
//                            cuBLASLt in dev/cuda/gemm_bf16_gelu.cu: the trainer keeps cuBLASLt for plain
//                            GEMMs, which measured no slower in the d24 step, dev/RESULTS.md)
//   BF16_GEMM_BIAS_GELU:     x = bf16(C + bias[n]); out = bf16(gelu(x)), aux = bf16(gelu'(x))
//   BF16_GEMM_GELU_BACKWARD: out = bf16(bf16(C) * aux), and col_partials[m / 128, n] = the sum over the
//                            128-row tile of out's BF16 values (FP32, a fixed order): the bias gradient of
//                            the layer that produced the pre-activation, in 128-row partials
// out and aux row-major [M,N]. The GELU forms match the rest of the program's numerics: GELU and its
// derivative are taken at the BF16-rounded pre-activation (what the backward saw when it stored that), and
// the Dgrad is rounded to BF16 before its product with gelu' (as the separate GELU pass did). What changes
// against that pass: gelu'(x) is stored in BF16 by the forward instead of x (one more rounding of the
// factor, at most 2^-8 relative), and both come from gelu_tanh_and_grad (ex2/rcp.approx, ~1e-7 relative).
//
// Structure: persistent blocks of 3 warpgroups over 128 x 256 output tiles. Warpgroup 0: one thread issues
// the tensor copies (TMA, 128-byte swizzle) of A's 128 x 64 and B's 256 x 64 tiles of each K-step into a
// ring of BG_STAGES stages. Warpgroups 1 and 2 each compute 64 rows x 256 columns with wgmma m64n256k16
// (128 FP32 accumulators per thread). The epilogue of a tile overlaps the next tile's products: at the end
// of tile t the accumulators are rounded to BF16 pairs (64 registers), then tile t+1's K-loop runs and
// after each K-step's wgmma are issued, one of BG_CHUNKS slices of tile t's epilogue (GELU math, stores,
// column sums) runs on the CUDA cores while the tensor cores work; a quad transpose makes every store a
// 16-byte piece (4-byte stores from the fragment layout left the kernel L2-bound: 500 vs 360 us at d24).
// GELU_BACKWARD's aux (gelu') comes the same way: thread 32 of warpgroup 0 copies each tile's aux in BG_CHUNKS
// chunks of 128 rows x 32 columns (unswizzled) into a ring of BG_AUX_BUFS buffers, ahead of the epilogue chunk
// that reads it; the 8 consumer warps release each buffer (per-thread loads one chunk ahead cost 12-15% more).
// Blocks may form clusters of CM x CN tiles that share A's and B's tiles through TMA multicast.
// Measured (H100, dev/RESULTS.md): the plain mainloop runs at cuBLASLt's speed (753 vs 741 TFLOP/s at the d24
// fc shape), the GELU backward replaces cuBLASLt's Dgrad plus a GELU pass at 0.74x their time (472 vs 638 us
// at d24), but the forward's GELU math hides poorly behind the products (tensor pipe 61% busy): it costs
// about what cuBLASLt's GELU_AUX epilogue does.
// Shape rules (checked by the launcher): M, N >= 1, N % 8 == 0, K % 8 == 0; partial tiles are zero-filled
// by the tensor copies and masked at the stores.
#ifndef KERNELS_SM90_BF16_GEMM_GELU_CUH
#define KERNELS_SM90_BF16_GEMM_GELU_CUH

#include <algorithm>
#include "kernels/cuda_common.h"
#include "kernels/layer_common.cuh"
#include "kernels/gelu.cuh"
#include "kernels/sm90_wgmma_common.cuh"
#include "kernels/sm90_tma_common.cuh"

#define BG_BM 128
#define BG_BN 256
#define BG_BK 64             // one 128-byte swizzled row of BF16 per tile row
#define BG_STAGES 4
#define BG_GROUP_M 8         // tile rows walking the tile columns together (L2 reuse)
#define BG_THREADS 384
#define BG_CHUNKS 8          // slices of a tile's epilogue, one per K-step of the next tile
#define BG_CONSUMER_REGS 240 // 128 accumulators + 64 packed results of the previous tile + addresses, GELU math
#define BG_PRODUCER_REGS 24  // 2 * 240 + 24 = 3 * 168, the launch allocation (240/24 measured 2-3% faster than 232/40)
#define BG_A_BYTES (BG_BM * BG_BK * 2)
#define BG_B_BYTES (BG_BN * BG_BK * 2)
#define BG_OFF_B (BG_STAGES * BG_A_BYTES)
#define BG_AUX_COLS (BG_BN / BG_CHUNKS)       // GELU_BACKWARD: columns of aux per epilogue chunk
#define BG_AUX_BUFS 2                          // chunks of aux in shared memory (copied ahead of their chunk)
#define BG_AUX_BYTES (BG_BM * BG_AUX_COLS * 2) // one chunk: 128 rows x 64 bytes
#define BG_OFF_COLSUM (BG_OFF_B + BG_STAGES * BG_B_BYTES)  // float [2][8 warps][256]: column sums per warp
#define BG_OFF_AUX (BG_OFF_COLSUM + 2 * 8 * BG_BN * 4)     // bf16 [BG_AUX_BUFS][128][BG_AUX_COLS]
#define BG_OFF_FULL (BG_OFF_AUX + BG_AUX_BUFS * BG_AUX_BYTES) // uint64 [stages]
#define BG_OFF_EMPTY (BG_OFF_FULL + BG_STAGES * 8)         // uint64 [stages]
#define BG_OFF_AUX_FULL (BG_OFF_EMPTY + BG_STAGES * 8)     // uint64 [BG_AUX_BUFS]
#define BG_OFF_AUX_EMPTY (BG_OFF_AUX_FULL + BG_AUX_BUFS * 8) // uint64 [BG_AUX_BUFS]
#define BG_SMEM_BYTES (BG_OFF_AUX_EMPTY + BG_AUX_BUFS * 8 + 1024)
static_assert(BG_SMEM_BYTES <= 227 * 1024, "stages must fit in shared memory");
static_assert(2 * BG_CONSUMER_REGS + BG_PRODUCER_REGS <= 3 * (65536 / BG_THREADS / 8 * 8),
              "setmaxnreg moves registers within the block's launch allocation (64K / 384 threads = 168 each): more waits forever");
static_assert(BG_BM == 2 * 64 && BG_THREADS == 3 * 128, "two consumer warpgroups of m64 rows plus one producer");
static_assert(BG_BN == 256 && BG_BK * 2 == 128, "wgmma m64n256k16 on 128-byte swizzled rows");
static_assert(BG_CHUNKS * 8 == BG_BN / 8 * 2, "a chunk is 8 packed pairs: 4 column groups of 8, both row halves");
static_assert(BG_AUX_COLS == 32 && BG_OFF_AUX % 128 == 0, "a chunk's aux rows are 64 bytes: 4 lanes x 16 bytes");

enum Bf16GemmEpilogue { BF16_GEMM_PLAIN = 0, BF16_GEMM_BIAS_GELU, BF16_GEMM_GELU_BACKWARD };

// d[64 x 256] (+)= a[64 x 16] . b[256 x 16]^T, BF16 operands in shared memory (descriptors), FP32 accumulators
// in the wgmma fragment layout (register i of lane l in warp w: row 16w + l/4 + 8*((i/2)%2), column
// 8*(i/4) + 2*(l%4) + i%2). TRANS_B = 1: B is stored N-major. accumulate = 0 overwrites d.
template <int TRANS_B>
__device__ __forceinline__ void bg_wgmma_m64n256k16(float (&d)[128], uint64_t desc_a, uint64_t desc_b, int accumulate) {
#if SM90_HAS_WGMMA
    asm volatile(
        "{\n"
        ".reg .pred acc;\n"
        "setp.ne.b32 acc, %130, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, %128, %129, acc, 1, 1, 0, %131;\n"
        "}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
        : "l"(desc_a), "l"(desc_b), "r"(accumulate), "n"(TRANS_B));
#endif
}

// Descriptor high word of an N-major B tile stored as BG_BN / 64 boxes of 64 (N) x 64 (K), each a stack of
// 128-byte rows (one K index each, 64 N values), 128-byte swizzled: 8-row groups along K 1024 bytes apart
// (stride byte offset), boxes along N 8192 bytes apart (leading byte offset, in the low word).
#define BG_NMAJOR_DESC_HI ((uint64_t)(1024 >> 4) << 32 | 1ull << 62)
#define BG_NMAJOR_LBO_FIELD ((uint32_t)((64 * BG_BK * 2) >> 4) << 16)

// The consumer's state of the previous tile's epilogue: its results rounded to BF16 pairs (packed[p] =
// fragment registers 2p, 2p+1: column group p / 2, row half p % 2), and where the tile lies.
struct BgPending {
    uint32_t packed[64];
    size_t offset;     // element offset in out / aux of this thread's first row, at column 8 * (lane % 4) of the tile
    uint32_t rows_ok;  // bit h: row half h lies inside the matrix
    uint32_t cols_ok;  // bit g: column group g (8 columns) lies inside the matrix
    int mt, col0;      // tile row and first column (for the column partials)
    bool inside;       // the tile lies inside the matrix (not cluster padding)
};

// Where a chunk's stores go. In chunk CH, after bg_quad_transpose, lane q of a quad holds the 8 columns of
// group 4 CH + q for each of its two row halves: one 16-byte piece each. The chunk takes its copy of the
// tile's offset and masks through an empty asm, so the compiler forms addresses and flags per chunk instead
// of hoisting all of them out of the K-loop into registers.
struct BgPlace {
    size_t offset;
    uint32_t rows_ok, cols_ok;
    __device__ __forceinline__ explicit BgPlace(const BgPending &p) : offset(p.offset), rows_ok(p.rows_ok), cols_ok(p.cols_ok) {
        asm volatile("" : "+l"(offset), "+r"(rows_ok), "+r"(cols_ok));
    }
    __device__ __forceinline__ size_t at(int ch, int h, int N) const { return offset + (size_t)h * 8 * N + 32 * ch; }
    __device__ __forceinline__ bool inside(int ch, int h) const {
        return (rows_ok >> h) & (cols_ok >> (4 * ch + threadIdx.x % 4)) & 1u;
    }
};

// 4 x 4 transpose of 32-bit values across the 4 lanes of a quad: on entry lane q holds x[g] = columns
// 8 g + 2 q, +1 of a row (4 column groups); on exit it holds x[e] = columns 8 q + 2 e, +1 (its own group's
// 8 columns in order). Two exchange rounds, lanes q ^ 1 then q ^ 2.
__device__ __forceinline__ void bg_quad_transpose(uint32_t (&x)[4]) {
    const bool b0 = threadIdx.x & 1, b1 = threadIdx.x & 2;
#pragma unroll
    for (int i = 0; i < 4; i += 2) {  // pairs (0,1), (2,3)
        const uint32_t got = __shfl_xor_sync(0xffffffffu, b0 ? x[i] : x[i + 1], 1);
        if (b0) x[i] = got;
        else x[i + 1] = got;
    }
#pragma unroll
    for (int i = 0; i < 2; i++) {  // pairs (0,2), (1,3)
        const uint32_t got = __shfl_xor_sync(0xffffffffu, b1 ? x[i] : x[i + 2], 2);
        if (b1) x[i] = got;
        else x[i + 2] = got;
    }
}

// A consumer thread's end of the aux ring (GELU_BACKWARD): the aux copy thread puts chunk c of the pending
// tiles (in the consumers' order) into buffer c % BG_AUX_BUFS, 128 rows x BG_AUX_COLS columns, rows 64 bytes
// apart, zero outside the matrix; the 8 consumer warps release each buffer once they have read it.
struct BgAuxRing {
    uint32_t piece;        // shared address in buffer 0 of this thread's first piece: its row, bytes 16 (lane % 4) + 0..15
    uint32_t full, empty;  // shared addresses of buffer 0's barriers
    Sm90RingPos<BG_AUX_BUFS> pos;
};

// Waits for the ring's current chunk and reads this thread's two pieces (its row and the row 8 below: the
// 8 columns that bg_quad_transpose gives the lane).
__device__ __forceinline__ void bg_aux_read(const BgAuxRing &r, uint4 (&a)[2]) {
    sm90_mbar_wait(r.full + 8 * r.pos.stage, r.pos.parity);
#pragma unroll
    for (int h = 0; h < 2; h++)
        asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];"
                     : "=r"(a[h].x), "=r"(a[h].y), "=r"(a[h].z), "=r"(a[h].w)
                     : "r"(r.piece + r.pos.stage * BG_AUX_BYTES + h * 8 * BG_AUX_COLS * 2) : "memory");
}

// The warp is done with the ring's current chunk (its values are in registers and used): lane 0 releases the
// buffer for this warp, and the ring moves on.
__device__ __forceinline__ void bg_aux_release(BgAuxRing &r) {
    __syncwarp();
    if (threadIdx.x % 32 == 0) sm90_mbar_arrive(r.empty + 8 * r.pos.stage);
    r.pos.advance();
}

__device__ __forceinline__ float bg_lo(uint32_t v) { return __uint_as_float(v << 16); }
__device__ __forceinline__ float bg_hi(uint32_t v) { return __uint_as_float(v & 0xffff0000u); }

// Chunk CH of the pending tile's epilogue: column groups 4 CH .. 4 CH + 3, both row halves, one 16-byte
// store per row half and output after the quad transpose. GELU_BACKWARD reads the chunk's aux from the ring,
// and also sums the lane's 8 columns over its two rows, then over the 8 lanes holding the same columns
// (reduce-scatter: each lane ends with one column), into colsum[warp][column].
template <int EPI, int CH>
__device__ __forceinline__ void bg_epilogue_chunk(BgPending &p, bf16 *out, bf16 *aux, BgAuxRing &ring, float *colsum, int N) {
    uint4 aux_in[2];
    if constexpr (EPI == BF16_GEMM_GELU_BACKWARD) bg_aux_read(ring, aux_in);
    const BgPlace place(p);
    float sums[8];
#pragma unroll
    for (int h = 0; h < 2; h++) {
        uint32_t x[4];
#pragma unroll
        for (int g = 0; g < 4; g++) x[g] = p.packed[8 * CH + 2 * g + h];
        bg_quad_transpose(x);
        const bool stored = place.inside(CH, h);
        const size_t at = place.at(CH, h, N);
        if constexpr (EPI == BF16_GEMM_PLAIN) {
            if (stored) *reinterpret_cast<uint4 *>(out + at) = make_uint4(x[0], x[1], x[2], x[3]);
        } else if constexpr (EPI == BF16_GEMM_BIAS_GELU) {
            uint32_t g[4], d[4];
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float g0, g1, d0, d1;
                gelu_tanh_and_grad(bg_lo(x[e]), g0, d0);
                gelu_tanh_and_grad(bg_hi(x[e]), g1, d1);
                g[e] = bf16x2_pack(g0, g1);
                d[e] = bf16x2_pack(d0, d1);
            }
            if (stored) {
                *reinterpret_cast<uint4 *>(out + at) = make_uint4(g[0], g[1], g[2], g[3]);
                *reinterpret_cast<uint4 *>(aux + at) = make_uint4(d[0], d[1], d[2], d[3]);
            }
        } else {
            const uint4 a4 = aux_in[h];
            const uint32_t a[4] = {a4.x, a4.y, a4.z, a4.w};
            uint32_t g[4];
#pragma unroll
            for (int e = 0; e < 4; e++) {
                g[e] = bf16x2_pack(bg_lo(x[e]) * bg_lo(a[e]), bg_hi(x[e]) * bg_hi(a[e]));
                sums[2 * e] = h == 0 ? bg_lo(g[e]) : sums[2 * e] + bg_lo(g[e]);
                sums[2 * e + 1] = h == 0 ? bg_hi(g[e]) : sums[2 * e + 1] + bg_hi(g[e]);
            }
            if (stored) *reinterpret_cast<uint4 *>(out + at) = make_uint4(g[0], g[1], g[2], g[3]);
        }
    }
    if constexpr (EPI == BF16_GEMM_GELU_BACKWARD) {
        bg_aux_release(ring);
        // lanes l ^ 16, l ^ 8, l ^ 4 hold the same columns (other rows); keep half, pass half, each step
        const int lane = threadIdx.x % 32;
        const bool b4 = lane & 16, b3 = lane & 8, b2 = lane & 4;
        float half[4], quarter[2];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const float give = b4 ? sums[i] : sums[4 + i];
            half[i] = (b4 ? sums[4 + i] : sums[i]) + __shfl_xor_sync(0xffffffffu, give, 16);
        }
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const float give = b3 ? half[i] : half[2 + i];
            quarter[i] = (b3 ? half[2 + i] : half[i]) + __shfl_xor_sync(0xffffffffu, give, 8);
        }
        const float give = b2 ? quarter[0] : quarter[1];
        const float total = (b2 ? quarter[1] : quarter[0]) + __shfl_xor_sync(0xffffffffu, give, 4);
        // this lane's column of its group: v = 4 b4 + 2 b3 + b2
        const int warp = (threadIdx.x - 128) / 32;  // 0..7 over both consumer warpgroups
        colsum[warp * BG_BN + 32 * CH + 8 * (lane % 4) + 4 * b4 + 2 * b3 + b2] = total;
    }
}

template <int EPI>
__device__ __forceinline__ void bg_epilogue_chunk_at(int ch, BgPending &p, bf16 *out, bf16 *aux, BgAuxRing &ring, float *colsum, int N) {
    switch (ch) {
    case 0: bg_epilogue_chunk<EPI, 0>(p, out, aux, ring, colsum, N); break;
    case 1: bg_epilogue_chunk<EPI, 1>(p, out, aux, ring, colsum, N); break;
    case 2: bg_epilogue_chunk<EPI, 2>(p, out, aux, ring, colsum, N); break;
    case 3: bg_epilogue_chunk<EPI, 3>(p, out, aux, ring, colsum, N); break;
    case 4: bg_epilogue_chunk<EPI, 4>(p, out, aux, ring, colsum, N); break;
    case 5: bg_epilogue_chunk<EPI, 5>(p, out, aux, ring, colsum, N); break;
    case 6: bg_epilogue_chunk<EPI, 6>(p, out, aux, ring, colsum, N); break;
    case 7: bg_epilogue_chunk<EPI, 7>(p, out, aux, ring, colsum, N); break;
    default: break;
    }
}
static_assert(BG_CHUNKS == 8, "bg_epilogue_chunk_at lists the chunks");

// After all chunks of the pending tile: the 256 consumer threads meet, then thread t adds the 8 warps'
// sums of column t (warp order) into the tile's row of col_partials.
__device__ __forceinline__ void bg_finish_colsums(const BgPending &p, const float *colsum, float *col_partials, int N) {
    asm volatile("bar.sync 1, 256;" ::: "memory");
    const int t = threadIdx.x - 128;
    float total = 0.0f;
#pragma unroll
    for (int w = 0; w < 8; w++) total += colsum[w * BG_BN + t];
    if (p.inside && p.col0 + t < N) col_partials[(size_t)p.mt * N + p.col0 + t] = total;
}

// Waits until the stage at ring position pos has landed, then issues its 4 K16 products into acc (first:
// the tile's first K-step, which overwrites acc). desc_a / desc_b: low descriptor words of stage 0.
template <bool B_KMAJOR>
__device__ __forceinline__ void bg_issue_stage(float (&acc)[128], uint32_t full_addr, const Sm90RingPos<BG_STAGES> &pos, uint32_t desc_a,
                                               uint32_t desc_b, bool first) {
    const uint32_t s = pos.stage;
    // per K16 step: 32 bytes along a K-major row; 2 groups of 8 rows (2048 bytes) in an N-major box
    constexpr uint32_t b_k16 = B_KMAJOR ? 2 : 2048 / 16;
    constexpr uint64_t b_hi = B_KMAJOR ? SM90_SW128_DESC_HI : BG_NMAJOR_DESC_HI;
    sm90_mbar_wait(full_addr + 8 * s, pos.parity);
    wgmma_fence();
#pragma unroll
    for (int k = 0; k < BG_BK / 16; k++)
        bg_wgmma_m64n256k16<B_KMAJOR ? 0 : 1>(acc, SM90_SW128_DESC_HI | (desc_a + s * (BG_A_BYTES / 16) + 2 * k),
                                             b_hi | (desc_b + s * (BG_B_BYTES / 16) + b_k16 * k), !first || k > 0);
    wgmma_commit();
}

// Persistent blocks over 128 x 256 tiles (sm90_tile raster); see the header comment. Clusters of CM x CN
// tiles (1 or 2 each): the CM blocks of a tile column share B's tiles, the CN blocks of a tile row share A's
// (each loads its share and multicasts it). map_a: A [M,K] in boxes of 128 / CN x 64; map_b: B [N,K] in
// boxes of 256 / CM x 64 (B_KMAJOR) or [K,N] in boxes of 64 x 64; map_aux (GELU_BACKWARD only): aux [M,N]
// in unswizzled boxes of 128 x BG_AUX_COLS, one per epilogue chunk, each block copying its own tile's.
template <int EPI, bool B_KMAJOR, int CM, int CN>
__global__ void __launch_bounds__(BG_THREADS, 1)
bf16_gemm_kernel(const __grid_constant__ CUtensorMap map_a, const __grid_constant__ CUtensorMap map_b,
                 const __grid_constant__ CUtensorMap map_aux, bf16 *out, bf16 *aux, const bf16 *bias, float *col_partials, int M, int N,
                 int K) {
#if SM90_HAS_WGMMA
    static_assert((CM == 1 || CM == 2) && (CN == 1 || CN == 2), "clusters of 1 or 2 tiles per dimension");
    constexpr int CS = CM * CN;
    extern __shared__ uint8_t smem_raw[];
    uint8_t *smem = (uint8_t *)(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    uint8_t *tiles_a = smem;
    uint8_t *tiles_b = smem + BG_OFF_B;
    float *colsum_buf = (float *)(smem + BG_OFF_COLSUM);
    uint8_t *aux_tiles = smem + BG_OFF_AUX;
    uint64_t *full = (uint64_t *)(smem + BG_OFF_FULL);
    uint64_t *empty = (uint64_t *)(smem + BG_OFF_EMPTY);
    uint64_t *aux_full = (uint64_t *)(smem + BG_OFF_AUX_FULL);
    uint64_t *aux_empty = (uint64_t *)(smem + BG_OFF_AUX_EMPTY);

    const int m_tiles = ceil_div(M, BG_BM), n_tiles = ceil_div(N, BG_BN), k_tiles = ceil_div(K, BG_BK);
    const int rank = CS == 1 ? 0 : (int)sm90_cluster_rank();
    const int dm = rank / CN, dn = rank % CN;

    if (threadIdx.x == 0) {
        sm90_ring_barriers_init(full, empty, BG_STAGES, 2 * CS);
        if constexpr (EPI == BF16_GEMM_GELU_BACKWARD) sm90_ring_barriers_init(aux_full, aux_empty, BG_AUX_BUFS, 8);
        sm90_fence_barrier_init();
    }
    sm90_barriers_ready<CS>();

    const int warpgroup = threadIdx.x / 128;
    Sm90Tile tile;
    if (warpgroup == 0) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(BG_PRODUCER_REGS));
        constexpr int a_rows = BG_BM / CN;  // rows of A this block copies
        constexpr int b_rows = BG_BN / CM;  // rows (K-major) or columns (N-major) of B this block copies
        uint16_t mask_a, mask_b;
        sm90_multicast_masks<CM, CN>(dm, dn, mask_a, mask_b);
        Sm90RingPos<BG_STAGES> pos;
        for (int j = 0; threadIdx.x == 0 && sm90_tile<CM, CN, BG_GROUP_M>(tile, j, m_tiles, n_tiles, dm, dn); j++) {
            for (int kt = 0; kt < k_tiles; kt++, pos.advance()) {
                const uint32_t stage = pos.stage;
                sm90_mbar_wait(sm90_smem_addr(&empty[stage]), pos.parity ^ 1);
                sm90_mbar_arrive_expect_tx(&full[stage], BG_A_BYTES + BG_B_BYTES);
                uint8_t *dst_a = tiles_a + stage * BG_A_BYTES + dn * a_rows * BG_BK * 2;
                if constexpr (CN > 1) sm90_tma_load_2d_multicast(dst_a, &map_a, &full[stage], kt * BG_BK, tile.mt * BG_BM + dn * a_rows, mask_a);
                else sm90_tma_load_2d(dst_a, &map_a, &full[stage], kt * BG_BK, tile.mt * BG_BM);
                uint8_t *dst_b = tiles_b + stage * BG_B_BYTES + dm * b_rows * BG_BK * 2;
                if constexpr (B_KMAJOR) {
                    if constexpr (CM > 1) sm90_tma_load_2d_multicast(dst_b, &map_b, &full[stage], kt * BG_BK, tile.nt * BG_BN + dm * b_rows, mask_b);
                    else sm90_tma_load_2d(dst_b, &map_b, &full[stage], kt * BG_BK, tile.nt * BG_BN);
                } else {
#pragma unroll
                    for (int box = 0; box < b_rows / 64; box++) {
                        const int n0 = tile.nt * BG_BN + dm * b_rows + 64 * box;
                        if constexpr (CM > 1) sm90_tma_load_2d_multicast(dst_b + box * 64 * BG_BK * 2, &map_b, &full[stage], n0, kt * BG_BK, mask_b);
                        else sm90_tma_load_2d(dst_b + box * 64 * BG_BK * 2, &map_b, &full[stage], n0, kt * BG_BK);
                    }
                }
            }
        }
        if constexpr (EPI == BF16_GEMM_GELU_BACKWARD) {
            // thread 32 copies the aux chunks of the same tiles, in the order the consumers' epilogues take them
            Sm90RingPos<BG_AUX_BUFS> apos;
            for (int j = 0; threadIdx.x == 32 && sm90_tile<CM, CN, BG_GROUP_M>(tile, j, m_tiles, n_tiles, dm, dn); j++) {
                for (int ch = 0; ch < BG_CHUNKS; ch++, apos.advance()) {
                    sm90_mbar_wait(sm90_smem_addr(&aux_empty[apos.stage]), apos.parity ^ 1);
                    sm90_mbar_arrive_expect_tx(&aux_full[apos.stage], BG_AUX_BYTES);
                    sm90_tma_load_2d(aux_tiles + apos.stage * BG_AUX_BYTES, &map_aux, &aux_full[apos.stage], tile.nt * BG_BN + ch * BG_AUX_COLS,
                                     tile.mt * BG_BM);
                }
            }
        }
    } else {
        asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(BG_CONSUMER_REGS));
        const int consumer = warpgroup - 1;
        const int lane = threadIdx.x % 32, warp_in_group = (threadIdx.x % 128) / 32;
        const int local_row = consumer * 64 + warp_in_group * 16 + lane / 4;  // and local_row + 8
        const uint32_t desc_a = sm90_sw128_desc_lo(tiles_a + consumer * 64 * BG_BK * 2);
        const uint32_t desc_b = B_KMAJOR ? sm90_sw128_desc_lo(tiles_b) : ((sm90_smem_addr(tiles_b) & 0x3FFFFu) >> 4) | BG_NMAJOR_LBO_FIELD;
        const uint32_t full_addr = sm90_smem_addr(full);
        BgAuxRing ring;
        ring.piece = sm90_smem_addr(aux_tiles) + local_row * BG_AUX_COLS * 2 + 16 * (lane % 4);
        ring.full = sm90_smem_addr(aux_full);
        ring.empty = sm90_smem_addr(aux_empty);

        float acc[128];
        BgPending pend;  // the previous tile, whose epilogue runs during this tile's K-loop
        bool pending = false;
        Sm90RingPos<BG_STAGES> pos;
        int j = 0;
        for (; sm90_tile<CM, CN, BG_GROUP_M>(tile, j, m_tiles, n_tiles, dm, dn); j++) {
            float *colsum = colsum_buf + ((j + 1) % 2) * 8 * BG_BN;  // the pending tile's (j - 1) buffer
            uint32_t prev_stage = 0;
            for (int kt = 0; kt < k_tiles; kt++) {
                bg_issue_stage<B_KMAJOR>(acc, full_addr, pos, desc_a, desc_b, kt == 0);
                if (kt > 0) {
                    wgmma_wait<1>();
                    sm90_release_stage<CS>(empty, prev_stage);
                }
                prev_stage = pos.stage;
                pos.advance();
                // a slice of the previous tile's epilogue while this K-step's products run
                if (pending && kt < BG_CHUNKS && kt + 1 < k_tiles) bg_epilogue_chunk_at<EPI>(kt, pend, out, aux, ring, colsum, N);
            }
            if (pending) {  // the chunks the K-loop had no room for (K < (BG_CHUNKS + 1) * BG_BK), then the sums
                for (int ch = k_tiles - 1; ch < BG_CHUNKS; ch++) bg_epilogue_chunk_at<EPI>(ch, pend, out, aux, ring, colsum, N);
                if constexpr (EPI == BF16_GEMM_GELU_BACKWARD) bg_finish_colsums(pend, colsum, col_partials, N);
            }
            // this tile's bias pairs, loaded while its last K-step's products run
            const int col = tile.nt * BG_BN + 2 * (lane % 4);
            uint32_t bias2[32];
#pragma unroll
            for (int g = 0; g < 32; g++)
                bias2[g] = EPI != BF16_GEMM_GELU_BACKWARD && bias != NULL && col + 8 * g < N
                               ? *reinterpret_cast<const uint32_t *>(bias + col + 8 * g) : 0u;
            wgmma_wait<0>();
            wgmma_pin(acc);
            sm90_release_stage<CS>(empty, prev_stage);
#pragma unroll
            for (int pk = 0; pk < 64; pk++)
                pend.packed[pk] = bf16x2_pack(acc[2 * pk] + bg_lo(bias2[pk / 2]), acc[2 * pk + 1] + bg_hi(bias2[pk / 2]));
            const int row = tile.mt * BG_BM + local_row;
            pend.offset = (size_t)row * N + tile.nt * BG_BN + 8 * (lane % 4);
            pend.rows_ok = (row < M ? 1u : 0u) | (row + 8 < M ? 2u : 0u);
            pend.cols_ok = 0;
            for (int g = 0; g < 32; g++) pend.cols_ok |= col + 8 * g < N ? 1u << g : 0u;
            pend.mt = tile.mt;
            pend.col0 = tile.nt * BG_BN;
            pend.inside = tile.inside;
            pending = true;
        }
        if (pending) {  // the last tile's epilogue
            float *colsum = colsum_buf + ((j + 1) % 2) * 8 * BG_BN;
            for (int ch = 0; ch < BG_CHUNKS; ch++) bg_epilogue_chunk_at<EPI>(ch, pend, out, aux, ring, colsum, N);
            if constexpr (EPI == BF16_GEMM_GELU_BACKWARD) bg_finish_colsums(pend, colsum, col_partials, N);
        }
    }
    // No block leaves while a peer may still copy into its shared memory or arrive on its barriers.
    if constexpr (CS > 1) sm90_cluster_sync();
#endif
}

// ---- host side

// Cluster shape of bf16_gemm_epilogue (CM tile rows sharing B's tiles x CN tile columns sharing A's):
// measured in dev/cuda/gemm_bf16_gelu.cu.
#define BG_DEFAULT_CM 1
#define BG_DEFAULT_CN 1

// Layout of B in bf16_gemm_epilogue: [N,K] row-major (a weight in Fprop, K-major) or [K,N] row-major.
enum Bf16GemmBLayout { BF16_GEMM_B_NK = 0, BF16_GEMM_B_KN };

// See the header comment: out [M,N] (and aux [M,N]) from A [M,K] and B; bias [N] or NULL (PLAIN, BIAS_GELU);
// col_partials [ceil(M / 128), N] FP32 (GELU_BACKWARD). Clusters of CM x CN tiles.
template <int EPI, bool B_KMAJOR, int CM, int CN>
static inline void bf16_gemm_epilogue_clustered(bf16 *out, bf16 *aux, const bf16 *a, const bf16 *b, const bf16 *bias, float *col_partials,
                                                int M, int N, int K, cudaStream_t stream) {
    sm90_require_wgmma("the Hopper BF16 GEMM with GELU epilogues");
    shapeCheck(M >= 1 && N >= 1 && K >= 1 && N % 8 == 0 && K % 8 == 0, "M=%d N=%d K=%d: need N %% 8 == 0 and K %% 8 == 0", M, N, K);
    shapeCheck(((uintptr_t)out | (uintptr_t)aux | (uintptr_t)a | (uintptr_t)b | (uintptr_t)bias) % 16 == 0,
               "operands must be 16-byte aligned");
    shapeCheck(EPI == BF16_GEMM_PLAIN || aux != NULL, "the GELU epilogues need aux");
    shapeCheck(EPI != BF16_GEMM_GELU_BACKWARD || col_partials != NULL, "GELU's backward needs col_partials");
    const CUtensorMap map_a = sm90_tensor_map_sw128(a, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, M, K, BG_BM / CN);
    const CUtensorMap map_b = B_KMAJOR ? sm90_tensor_map_sw128(b, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, N, K, BG_BN / CM)
                                       : sm90_tensor_map_sw128(b, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, K, N, BG_BK);
    // GELU_BACKWARD reads aux [M,N] in chunks of 128 rows x BG_AUX_COLS columns (unswizzled); unused otherwise
    const CUtensorMap map_aux = EPI == BF16_GEMM_GELU_BACKWARD
                                    ? sm90_tensor_map_2d(aux, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, M, N, BG_BM, BG_AUX_COLS, CU_TENSOR_MAP_SWIZZLE_NONE)
                                    : map_a;
    static bool smem_set = false;
    if (!smem_set) {
        cudaCheck(cudaFuncSetAttribute(bf16_gemm_kernel<EPI, B_KMAJOR, CM, CN>, cudaFuncAttributeMaxDynamicSharedMemorySize, BG_SMEM_BYTES));
        smem_set = true;
    }
    // Persistent: at most one cluster per CM * CN multiprocessors, each taking cluster tiles in turn.
    constexpr int CS = CM * CN;
    const int cluster_tiles = ceil_div(ceil_div(M, BG_BM), CM) * ceil_div(ceil_div(N, BG_BN), CN);
    const int clusters = std::min(cluster_tiles, sm90_sm_count() / CS);
    sm90_launch_clusters(bf16_gemm_kernel<EPI, B_KMAJOR, CM, CN>, clusters * CS, CS, BG_THREADS, BG_SMEM_BYTES, stream, map_a, map_b, map_aux, out, aux,
                         bias, col_partials, M, N, K);
}

// The same with the default cluster shape, epilogue and B's layout chosen at run time.
static inline void bf16_gemm_epilogue(Bf16GemmEpilogue epi, Bf16GemmBLayout b_layout, bf16 *out, bf16 *aux, const bf16 *a, const bf16 *b,
                                      const bf16 *bias, float *col_partials, int M, int N, int K, cudaStream_t stream) {
    constexpr int CM = BG_DEFAULT_CM, CN = BG_DEFAULT_CN;
    const bool nk = b_layout == BF16_GEMM_B_NK;
    switch (epi) {
    case BF16_GEMM_PLAIN:
        if (nk) bf16_gemm_epilogue_clustered<BF16_GEMM_PLAIN, true, CM, CN>(out, aux, a, b, bias, col_partials, M, N, K, stream);
        else bf16_gemm_epilogue_clustered<BF16_GEMM_PLAIN, false, CM, CN>(out, aux, a, b, bias, col_partials, M, N, K, stream);
        break;
    case BF16_GEMM_BIAS_GELU:
        if (nk) bf16_gemm_epilogue_clustered<BF16_GEMM_BIAS_GELU, true, CM, CN>(out, aux, a, b, bias, col_partials, M, N, K, stream);
        else bf16_gemm_epilogue_clustered<BF16_GEMM_BIAS_GELU, false, CM, CN>(out, aux, a, b, bias, col_partials, M, N, K, stream);
        break;
    case BF16_GEMM_GELU_BACKWARD:
        if (nk) bf16_gemm_epilogue_clustered<BF16_GEMM_GELU_BACKWARD, true, CM, CN>(out, aux, a, b, bias, col_partials, M, N, K, stream);
        else bf16_gemm_epilogue_clustered<BF16_GEMM_GELU_BACKWARD, false, CM, CN>(out, aux, a, b, bias, col_partials, M, N, K, stream);
        break;
    }
}

#endif // KERNELS_SM90_BF16_GEMM_GELU_CUH
