// LayerNorm (GPT-2) and RMSNorm (Llama) over the channel axis, optionally fused with the residual add that
// precedes it: one set of kernels, the norm a template argument (RMS).
// Layouts: activations row-major [N, C] BF16 (N = B*T rows), weight/bias [C] BF16, mean/rstd [N]
// FP32, parameter gradients [C] in FP32 or BF16 (GradT).
// Forward:  x = inp1 (+ inp2, rounded to BF16 and stored as the new residual stream),
//           LayerNorm: mean = sum(x)/C, rstd = 1/sqrt(sum((x-mean)^2)/C + eps), out = (x-mean)*rstd*weight + bias;
//           RMSNorm:   rstd = 1/sqrt(sum(x^2)/C + eps), out = x*rstd*weight (no mean, no bias).
// Backward: with xhat = (x-mean)*rstd (RMSNorm: x*rstd) and g = dout*weight,
//           dinp += rstd * (g - mean(g) - xhat*mean(g*xhat)) (RMSNorm: without the mean(g) term),
//           dweight += sum_rows dout*xhat, dbias += sum_rows dout (LayerNorm only), and optionally
//           dinp_colsum += sum_rows (updated dinp).
//           Each += may be a write instead (dinp: accumulate_dinp = 0, the parameter gradients and
//           dinp_colsum: accumulate = 0), with the bits of adding to zeros; what is written over is not read.
// The forward uses one warp per row with the row held in registers (each lane owns the 8-column
// groups lane, lane+32, ...), so a row is read once; the rows reach each warp through a small
// shared-memory ring filled by cp.async (see layernorm_forward_kernel); CHUNKS = ceil(C/256) groups
// per lane is a template argument so that the register arrays are indexed by constants, and so is
// C % 8 == 0 (whole 16-byte pieces, no per-element bounds checks). Forward and backward divide by C as a
// multiplication by the FP32 reciprocal 1/C (within one rounding of the division). The backward uses a group
// of ceil(C/256) warps per row, each thread owning 8 columns, so that its column sums stay in
// registers; see layernorm_backward_kernel. C <= LAYERNORM_MAX_C.
//
// Determinism: row statistics use fixed butterfly reductions (and, in backward, a sum over the
// row group's warps in warp order). The backward's column sums never use atomics: each thread
// accumulates its columns over its rows in row order, each block adds its row groups in group
// order into one partial row of `scratch`, and a second kernel sums the partials in a fixed order
// (contiguous slices in order, then the slice sums in order). The backward's row -> block assignment
// depends only on N and C; the forward's grid depends on the device, but each of its rows is computed
// by one warp on its own, the same way whichever warp takes it.
#ifndef KERNELS_LAYERNORM_CUH
#define KERNELS_LAYERNORM_CUH

#include "kernels/layer_common.cuh"

#define LAYERNORM_EPS 1e-5f                     // GPT-2's; RMSNorm takes the model's eps
#define LAYERNORM_FWD_WARPS 4                   // forward: warps (one row at a time each) per block
#define LAYERNORM_FWD_STAGES 2                  // forward: rows in each warp's shared-memory ring (all in flight)
#define LAYERNORM_MAX_CHUNKS 12                 // 8-column groups per lane at most
#define LAYERNORM_MAX_C (LAYERNORM_MAX_CHUNKS * WARP_SIZE * 8)
#define LAYERNORM_BWD_MAX_BLOCKS 256            // partial rows of dweight/dbias/dinp_colsum at most
#define LAYERNORM_BWD_THREADS 256               // backward block size aimed at (whole row groups)
#define LAYERNORM_BWD_ROWS 2                    // rows per row group and batch
#define LAYERNORM_BWD_STAGES 3                  // batches in the shared-memory ring (STAGES-1 ahead)
#define LAYERNORM_BWD_MAX_REGS 128              // so that two blocks of 256 threads fit on an SM

// ----------------------------------------------------------------------------------------------
// kernels

// Backward thread layout: a "row group" of layernorm_bwd_group_threads(C) threads (whole warps) covers
// one row, thread t owning the 8 columns [8t, 8t+8) of every row it visits, so its shares of dbias,
// dweight and dinp_colsum stay in registers for the whole kernel. A block holds `groups` row groups
// (about LAYERNORM_BWD_THREADS threads) and walks its contiguous row range in batches of groups*ROWS
// rows: group g takes rows batch + g*ROWS + r, r < ROWS.
// The rows come through a ring of STAGES batches in shared memory that cp.async fills STAGES-1 batches
// ahead of the one being worked on (keeping loads in flight without holding registers). Each thread
// copies its own 16-byte pieces of dout, x and dinp and later reads only those, so its own
// cp.async.wait_group orders them; lanes 0 .. 2*ROWS-1 of each warp copy the rows' mean and rstd for
// the warp, which __syncwarp then makes visible to all its lanes.
__host__ __device__ inline int layernorm_bwd_group_threads(int C) { return ceil_div(C, WARP_SIZE * 8) * WARP_SIZE; }

// A warp's sums of g and g*xhat over its columns of each row of a batch ([2r] and [2r+1]), moved as
// one 16-byte (ROWS = 2) or 8-byte (ROWS = 1) shared-memory access.
template <int ROWS>
struct alignas(8 * ROWS) LayerNormBwdRowSums {
    static_assert(ROWS == 1 || ROWS == 2, "row sums are moved as one 8- or 16-byte access");
    float v[2 * ROWS];
};

// Bytes of shared memory of a backward block of `groups` row groups:
//   ring     [STAGES][ROWS][3 tensors][block threads] 16-byte pieces (later reused for the groups'
//            column sums [groups-1][3][group_threads*8] floats)
//   row_sums [2 parities][groups][group_warps] LayerNormBwdRowSums<ROWS> (2*ROWS floats each)
//   stats    [STAGES][block warps][mean x ROWS, rstd x ROWS] floats
__host__ __device__ inline int layernorm_bwd_ring_pieces(int groups, int group_threads, int rows, int stages) {
    return stages * rows * 3 * groups * group_threads;
}
__host__ __device__ inline int layernorm_bwd_row_sums_floats(int groups, int group_threads, int rows) {
    return 2 * groups * 2 * rows * (group_threads / WARP_SIZE);
}
__host__ __device__ inline size_t layernorm_bwd_smem_bytes(int groups, int group_threads, int rows, int stages) {
    const int block_warps = groups * group_threads / WARP_SIZE;
    return (size_t)layernorm_bwd_ring_pieces(groups, group_threads, rows, stages) * 16 +
           (size_t)(layernorm_bwd_row_sums_floats(groups, group_threads, rows) + stages * block_warps * 2 * rows) * sizeof(float);
}

// Forward thread layout: one warp per row, lane l owning the 8-column pieces l, l+32, ...,
// l+32*(CHUNKS-1) of it. Each warp walks the rows warp, warp + total_warps, ... (a grid sized to the
// device: every row's result is computed the same way whichever warp takes it), and the rows reach it
// through its own ring of STAGES rows in shared memory: as soon as a row has been read out of its
// slot into registers, cp.async starts filling that slot with the row STAGES further on, so STAGES
// rows are in flight while one is computed, without holding registers. Each lane copies and later
// reads only its own pieces, so its own cp.async.wait_group orders them and no barrier is needed.
// Ring of a warp: [STAGES][inputs (1, or 2 with the residual add)][CHUNKS][32 lanes] 16-byte pieces.
__host__ __device__ inline size_t layernorm_fwd_smem_bytes(int chunks, int stages, int inputs) {
    return (size_t)LAYERNORM_FWD_WARPS * stages * inputs * chunks * WARP_SIZE * 16;
}

// Elementwise sum of two pieces of 8 BF16 values, each rounded once to BF16 (two per instruction).
// Equal to rounding the FP32 sum: that sum is exact whenever its rounding could change the result
// (operands more than 2^15 apart leave the larger one either way).
__device__ __forceinline__ uint4 bf16x8_packed_add(const uint4 &a, const uint4 &b) {
    uint4 r;
    const __nv_bfloat162 *pa = reinterpret_cast<const __nv_bfloat162 *>(&a), *pb = reinterpret_cast<const __nv_bfloat162 *>(&b);
    __nv_bfloat162 *pr = reinterpret_cast<__nv_bfloat162 *>(&r);
#pragma unroll
    for (int j = 0; j < 4; j++) pr[j] = __hadd2(pa[j], pb[j]);
    return r;
}

// Sum of 8 floats as a balanced tree (a short dependency chain; the order is fixed).
__device__ __forceinline__ float layernorm_sum8(const float v[8]) {
    return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
}

// Starts copying the lane's pieces of `row` of inp1 (and inp2) into ring slot `slot`. Columns at or
// past C arrive as zeros. Without 16-byte aligned rows (VEC false: C % 8 != 0) the pieces are loaded
// and stored synchronously.
template <int CHUNKS, bool VEC>
__device__ __forceinline__ void layernorm_fwd_issue(uint4 *ring, int slot, int inputs, const bf16 *inp1, const bf16 *inp2,
                                                    int row, int C) {
    const int lane = threadIdx.x % WARP_SIZE;
    const size_t offset = (size_t)row * C;
#pragma unroll
    for (int t = 0; t < 2; t++) {
        if (t == inputs) break;
        const bf16 *src = (t == 0 ? inp1 : inp2) + offset;
        uint4 *dst = ring + (size_t)((slot * inputs + t) * CHUNKS) * WARP_SIZE + lane;
#pragma unroll
        for (int k = 0; k < CHUNKS; k++) {
            const int c = (k * WARP_SIZE + lane) * 8;
            if (VEC) {
                cp_async16(dst + k * WARP_SIZE, src + (c < C ? c : 0), c < C);
            } else {
                const Bf16x8 v = load_bf16x8(src, c, C, false);
                dst[k * WARP_SIZE] = *reinterpret_cast<const uint4 *>(&v);
            }
        }
    }
}

// Elements [c, c+8) of a row as one packed piece (columns past C read as zero) and back: one 16-byte
// access when VEC (C % 8 == 0 and c < C), element by element otherwise.
template <bool VEC>
__device__ __forceinline__ uint4 layernorm_load_piece(const bf16 *row, int c, int C) {
    if (VEC) return *reinterpret_cast<const uint4 *>(row + c);
    const Bf16x8 v = load_bf16x8(row, c, C, false);
    return *reinterpret_cast<const uint4 *>(&v);
}
template <bool VEC>
__device__ __forceinline__ void layernorm_store_piece(bf16 *row, int c, int C, const uint4 &v) {
    if (VEC) {
        *reinterpret_cast<uint4 *>(row + c) = v;
    } else {
        store_bf16x8(row, c, C, false, *reinterpret_cast<const Bf16x8 *>(&v));
    }
}

// x = inp1[row] (+ inp2[row], then residual_out[row] = x in BF16); writes out[row] = LayerNorm(x) (RMS:
// RMSNorm(x)), mean[row] (not with RMS), rstd[row], for every row of the warp (layout above). inp2 == NULL means no residual add
// (and residual_out is not written). Statistics are taken on the BF16-rounded x that backward will see.
// Per lane and row: x - mean is kept in FP32 registers (CHUNKS*8 of them) from the variance pass to the
// output. VEC: C % 8 == 0, so a piece lies wholly inside or wholly outside the row (16-byte stores).
// blockDim.x = LAYERNORM_FWD_WARPS * 32; shared memory layernorm_fwd_smem_bytes(CHUNKS, STAGES, inputs).
template <int CHUNKS, int STAGES, bool VEC, bool RMS>
__global__ void __launch_bounds__(LAYERNORM_FWD_WARPS *WARP_SIZE)
    layernorm_forward_kernel(bf16 *residual_out, bf16 *out, float *mean, float *rstd, const bf16 *inp1,
                             const bf16 *inp2, const bf16 *weight, const bf16 *bias, int N, int C, float eps) {
    extern __shared__ __align__(16) unsigned char layernorm_smem[];
    const int lane = threadIdx.x % WARP_SIZE, inputs = inp2 != NULL ? 2 : 1;
    const int warp = blockIdx.x * LAYERNORM_FWD_WARPS + threadIdx.x / WARP_SIZE, total_warps = gridDim.x * LAYERNORM_FWD_WARPS;
    uint4 *ring = reinterpret_cast<uint4 *>(layernorm_smem) + (size_t)(threadIdx.x / WARP_SIZE) * STAGES * inputs * CHUNKS * WARP_SIZE;
    const float inv_C = 1.0f / C;
    const int rows = warp < N ? ceil_div(N - warp, total_warps) : 0;  // rows warp + i * total_warps, i < rows
#pragma unroll
    for (int i = 0; i < STAGES; i++) {
        if (i < rows) layernorm_fwd_issue<CHUNKS, VEC>(ring, i, inputs, inp1, inp2, warp + i * total_warps, C);
        cp_async_commit();  // empty groups keep the count of groups per row fixed
    }
    for (int i = 0; i < rows; i++) {
        cp_async_wait<STAGES - 1>();  // row i has landed (this lane's pieces)
        const int row = warp + i * total_warps;
        const size_t offset = (size_t)row * C;
        const uint4 *piece = ring + (size_t)(i % STAGES) * inputs * CHUNKS * WARP_SIZE + lane;
        uint4 x[CHUNKS];
#pragma unroll
        for (int k = 0; k < CHUNKS; k++) x[k] = piece[k * WARP_SIZE];
        if (inputs == 2) {
#pragma unroll
            for (int k = 0; k < CHUNKS; k++) x[k] = bf16x8_packed_add(x[k], piece[(CHUNKS + k) * WARP_SIZE]);
        }
        // the slot has been read: start filling it with the row STAGES further on
        const int ahead = i + STAGES;
        if (ahead < rows) layernorm_fwd_issue<CHUNKS, VEC>(ring, i % STAGES, inputs, inp1, inp2, warp + ahead * total_warps, C);
        cp_async_commit();
        if (inputs == 2) {
#pragma unroll
            for (int k = 0; k < CHUNKS; k++) {
                const int c = (k * WARP_SIZE + lane) * 8;
                if (c < C) layernorm_store_piece<VEC>(residual_out + offset, c, C, x[k]);
            }
        }
        // out-of-range elements arrived as zero, so they add nothing to the sum
        float d[CHUNKS][8], sum = 0.0f;
#pragma unroll
        for (int k = 0; k < CHUNKS; k++) {
#pragma unroll
            for (int e = 0; e < 8; e++) d[k][e] = bf16x8_packed_get(x[k], e);
            if (!RMS) sum += layernorm_sum8(d[k]);
        }
        const float m = RMS ? 0.0f : warp_sum(sum) * inv_C;
        float sq = 0.0f;
#pragma unroll
        for (int k = 0; k < CHUNKS; k++) {
            const int c = (k * WARP_SIZE + lane) * 8;
            float squares[8];
#pragma unroll
            for (int e = 0; e < 8; e++) {
                if (!RMS) d[k][e] -= m;
                squares[e] = (VEC || c + e < C) ? d[k][e] * d[k][e] : 0.0f;
            }
            if (!VEC || c < C) sq += layernorm_sum8(squares);
        }
        const float s = rsqrtf(warp_sum(sq) * inv_C + eps);
#pragma unroll
        for (int k = 0; k < CHUNKS; k++) {
            const int c = (k * WARP_SIZE + lane) * 8;
            if (c >= C) continue;
            // weight and bias are shared by all rows, so these loads hit L1 after the first row
            const uint4 wp = layernorm_load_piece<VEC>(weight, c, C);
            float o[8];
            if (RMS) {
#pragma unroll
                for (int e = 0; e < 8; e++) o[e] = d[k][e] * s * bf16x8_packed_get(wp, e);
            } else {
                const uint4 bp = layernorm_load_piece<VEC>(bias, c, C);
#pragma unroll
                for (int e = 0; e < 8; e++) o[e] = d[k][e] * s * bf16x8_packed_get(wp, e) + bf16x8_packed_get(bp, e);
            }
            layernorm_store_piece<VEC>(out + offset, c, C, bf16x8_pack(o));
        }
        if (lane == 0) {
            if (!RMS) mean[row] = m;
            rstd[row] = s;
        }
    }
}

// Starts copying the thread's pieces of rows first_row .. first_row+ROWS-1 into ring slot `slot`.
// Rows at or past row_end and columns at or past C arrive as zeros (mean = rstd = 0), so they add
// nothing; without a mean (RMSNorm: mean NULL) the mean reads as zero; so does dinp when it is not accumulated into (accumulate_dinp false: it is not read). Without
// 16-byte aligned rows (C % 8 != 0) the pieces are loaded and stored synchronously.
template <int ROWS>
__device__ __forceinline__ void layernorm_bwd_issue(uint4 *ring, float *stats, int slot, const bf16 *dout, const bf16 *inp,
                                                    const bf16 *dinp, bool accumulate_dinp, const float *mean, const float *rstd,
                                                    int first_row, int row_end, int c, int C, bool vec) {
    const int lane = threadIdx.x % WARP_SIZE;
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
        const int row = first_row + r;
        const bool row_ok = row < row_end, ok = row_ok && c < C;
        uint4 *dst = ring + (size_t)(slot * ROWS + r) * 3 * blockDim.x + threadIdx.x;
        const size_t offset = row_ok ? (size_t)row * C : 0;
        if (vec) {
            cp_async16(dst, dout + offset + (ok ? c : 0), ok);
            cp_async16(dst + blockDim.x, inp + offset + (ok ? c : 0), ok);
            cp_async16(dst + 2 * blockDim.x, dinp + offset + (ok && accumulate_dinp ? c : 0), ok && accumulate_dinp);
        } else {
            const bf16 *srcs[3] = {dout, inp, dinp};
#pragma unroll
            for (int k = 0; k < 3; k++) {
                const Bf16x8 v = row_ok && (k < 2 || accumulate_dinp) ? load_bf16x8(srcs[k] + offset, c, C, false) : Bf16x8{};
                dst[k * blockDim.x] = *reinterpret_cast<const uint4 *>(&v);
            }
        }
    }
    if (lane < 2 * ROWS) {
        const int row = first_row + lane % ROWS;
        const float *src = lane < ROWS ? mean : rstd;
        const bool row_ok = row < row_end && src != NULL;
        float *dst = stats + (size_t)(slot * (blockDim.x / WARP_SIZE) + threadIdx.x / WARP_SIZE) * 2 * ROWS + lane;
        cp_async4(dst, row_ok ? src + row : rstd, row_ok);
    }
}

// Barrier over the `threads` threads (whole warps) of row group `group` alone: named barrier group + 1
// (0 is __syncthreads'), so a block's row groups do not wait for each other.
static_assert(LAYERNORM_BWD_THREADS / WARP_SIZE < 16, "a block's row groups need a named barrier each (ids 1..15)");
__device__ __forceinline__ void layernorm_group_barrier(int group, int threads) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(group + 1), "r"(threads) : "memory");
}

// Block b handles rows [b*rows_per_block, min(N, (b+1)*rows_per_block)) in the layout above. Per
// batch: row sums of g (not with RMS) and g*xhat by butterfly per warp, then over the group's warps in warp order
// through row_sums (two buffers by batch parity, so one barrier of the group per batch; a warp reaches
// the next batch's barrier only after reading this batch's sums); dinp[row] += dx rounded
// once to BF16 (dinp[row] = +0 + dx when not accumulate_dinp); the thread's column sums. At the end the
// groups' column sums are added in group order and partials[b] = [dbias | dweight | dinp_colsum] (C
// floats each, the last only when quantities == 3) is written in FP32. dinp_colsum sums the updated dinp as stored (BF16).
// blockDim.x = groups * layernorm_bwd_group_threads(C); shared memory layernorm_bwd_smem_bytes.
template <int ROWS, int STAGES, bool RMS>
__global__ void __maxnreg__(LAYERNORM_BWD_MAX_REGS)
    layernorm_backward_kernel(bf16 *dinp, bool accumulate_dinp, float *partials, const bf16 *dout, const bf16 *inp, const bf16 *weight,
                              const float *mean, const float *rstd, int N, int C, int rows_per_block, int quantities) {
    extern __shared__ __align__(16) unsigned char layernorm_smem[];
    const int group_threads = layernorm_bwd_group_threads(C), group_warps = group_threads / WARP_SIZE;
    const int groups = blockDim.x / group_threads, group = threadIdx.x / group_threads;
    const int warp = (threadIdx.x % group_threads) / WARP_SIZE, lane = threadIdx.x % WARP_SIZE;
    const int c = (threadIdx.x % group_threads) * 8;
    const bool vec = (C % 8 == 0);
    const float inv_C = 1.0f / C;
    uint4 *ring = reinterpret_cast<uint4 *>(layernorm_smem);
    float *row_sums = reinterpret_cast<float *>(ring + layernorm_bwd_ring_pieces(groups, group_threads, ROWS, STAGES));
    float *stats = row_sums + layernorm_bwd_row_sums_floats(groups, group_threads, ROWS);

    float w[8], acc_dbias[8], acc_dweight[8], acc_colsum[8];
    const Bf16x8 wv = load_bf16x8(weight, c, C, vec);
#pragma unroll
    for (int e = 0; e < 8; e++) {
        w[e] = __bfloat162float(wv.v[e]);
        acc_dbias[e] = acc_dweight[e] = acc_colsum[e] = 0.0f;
    }
    const int row_begin = blockIdx.x * rows_per_block;
    const int row_end = min(row_begin + rows_per_block, N);
    const int step = groups * ROWS, batches = ceil_div(row_end - row_begin, step);
    const int group_row0 = row_begin + group * ROWS;  // this group's first row of batch 0
#pragma unroll
    for (int i = 0; i < STAGES - 1; i++) {
        if (i < batches)
            layernorm_bwd_issue<ROWS>(ring, stats, i, dout, inp, dinp, accumulate_dinp, mean, rstd, group_row0 + i * step, row_end, c,
                                      C, vec);
        cp_async_commit();  // empty groups keep the count of groups per batch fixed
    }
    for (int i = 0; i < batches; i++) {
        const int ahead = i + STAGES - 1;
        if (ahead < batches)
            layernorm_bwd_issue<ROWS>(ring, stats, ahead % STAGES, dout, inp, dinp, accumulate_dinp, mean, rstd,
                                      group_row0 + ahead * step, row_end, c, C, vec);
        cp_async_commit();
        cp_async_wait<STAGES - 1>();  // batch i has landed (this thread's pieces)
        __syncwarp();                           // and the warp's mean/rstd
        const int slot = i % STAGES, first_row = group_row0 + i * step;
        const uint4 *piece = ring + (size_t)slot * ROWS * 3 * blockDim.x + threadIdx.x;  // [r][tensor] stride blockDim.x
        const float *st = stats + (size_t)(slot * (blockDim.x / WARP_SIZE) + threadIdx.x / WARP_SIZE) * 2 * ROWS;
        // sums[2r] = sum of g over row r, sums[2r+1] = sum of g*xhat
        float sums[2 * ROWS];
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
            const uint4 d = piece[(r * 3) * blockDim.x], x = piece[(r * 3 + 1) * blockDim.x];
            float sum_g = 0.0f, sum_gx = 0.0f;
#pragma unroll
            for (int e = 0; e < 8; e++) {
                const float g = bf16x8_packed_get(d, e) * w[e];
                sum_g += g;
                sum_gx += g * ((bf16x8_packed_get(x, e) - st[r]) * st[ROWS + r]);
            }
            sums[2 * r] = warp_sum(sum_g);
            sums[2 * r + 1] = warp_sum(sum_gx);
        }
        LayerNormBwdRowSums<ROWS> *rs = reinterpret_cast<LayerNormBwdRowSums<ROWS> *>(row_sums) + ((i % 2) * groups + group) * group_warps;
        if (lane == 0) {
            LayerNormBwdRowSums<ROWS> mine;
#pragma unroll
            for (int q = 0; q < 2 * ROWS; q++) mine.v[q] = sums[q];
            rs[warp] = mine;
        }
        layernorm_group_barrier(group, group_threads);  // only this group reads its row sums
#pragma unroll
        for (int q = 0; q < 2 * ROWS; q++) sums[q] = 0.0f;
        for (int v = 0; v < group_warps; v++) {
            const LayerNormBwdRowSums<ROWS> other = rs[v];
#pragma unroll
            for (int q = 0; q < 2 * ROWS; q++) sums[q] += other.v[q];
        }
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
            const int row = first_row + r;
            const uint4 d = piece[(r * 3) * blockDim.x], x = piece[(r * 3 + 1) * blockDim.x], dinp_old = piece[(r * 3 + 2) * blockDim.x];
            const float m = st[r], s = st[ROWS + r], mean_g = RMS ? 0.0f : sums[2 * r] * inv_C, mean_gx = sums[2 * r + 1] * inv_C;
            float updated[8];
#pragma unroll
            for (int e = 0; e < 8; e++) {
                const float dv = bf16x8_packed_get(d, e);
                const float xhat = (bf16x8_packed_get(x, e) - m) * s;
                const float dx = s * (dv * w[e] - mean_g - xhat * mean_gx);
                updated[e] = bf16x8_packed_get(dinp_old, e) + dx;
                acc_dbias[e] += dv;
                acc_dweight[e] += dv * xhat;
            }
            const uint4 di = bf16x8_pack(updated);
            // a row past row_end arrived as zeros with mean = rstd = 0, so its di is zero and adds nothing
#pragma unroll
            for (int e = 0; e < 8; e++) acc_colsum[e] += bf16x8_packed_get(di, e);
            if (row < row_end) store_bf16x8(dinp + (size_t)row * C, c, C, vec, *reinterpret_cast<const Bf16x8 *>(&di));
        }
    }
    // add the groups' column sums in group order (group 0's first), through the ring's memory
    if (groups > 1) {
        float *group_acc = reinterpret_cast<float *>(ring);
        const int stride = group_threads * 8;
        __syncthreads();  // every thread is done reading the ring
        if (group > 0) {
            float *mine = group_acc + (size_t)(group - 1) * 3 * stride + c;
#pragma unroll
            for (int e = 0; e < 8; e++) {
                mine[e] = acc_dbias[e];
                mine[stride + e] = acc_dweight[e];
                mine[2 * stride + e] = acc_colsum[e];
            }
        }
        __syncthreads();
        if (group > 0) return;
        for (int g = 1; g < groups; g++) {
            const float *other = group_acc + (size_t)(g - 1) * 3 * stride + c;
#pragma unroll
            for (int e = 0; e < 8; e++) {
                acc_dbias[e] += other[e];
                acc_dweight[e] += other[stride + e];
                acc_colsum[e] += other[2 * stride + e];
            }
        }
    }
    float *out = partials + (size_t)blockIdx.x * quantities * C + c;
#pragma unroll
    for (int e = 0; e < 8; e++) {
        if (c + e >= C) break;
        out[e] = acc_dbias[e];
        out[C + e] = acc_dweight[e];
        if (quantities == 3) out[2 * C + e] = acc_colsum[e];
    }
}

// Column sums of the partials: block (32 x LAYERNORM_REDUCE_SLICES threads) handles 32 columns of
// [dbias | dweight | dinp_colsum] (quantities*C columns); thread row y sums the partial rows of slice y
// (contiguous, in order), then thread row 0 adds the slice sums in slice order and stores the total to
// dbias[c], dweight[c] or dinp_colsum[c] with grad_store (added, or written over).
#define LAYERNORM_REDUCE_SLICES 16
template <typename GradT>
__global__ void __launch_bounds__(WARP_SIZE *LAYERNORM_REDUCE_SLICES)
    layernorm_param_grad_kernel(GradT *dweight, GradT *dbias, float *dinp_colsum, const float *partials,
                                int num_blocks, int C, int quantities, bool accumulate) {
    __shared__ float slice_sums[LAYERNORM_REDUCE_SLICES][WARP_SIZE];
    const int width = quantities * C;
    const int col = blockIdx.x * WARP_SIZE + threadIdx.x, slice = threadIdx.y;
    constexpr int max_per_slice = ceil_div(LAYERNORM_BWD_MAX_BLOCKS, LAYERNORM_REDUCE_SLICES);
    const int per_slice = ceil_div(num_blocks, LAYERNORM_REDUCE_SLICES);
    const int begin = slice * per_slice, end = min(begin + per_slice, num_blocks);
    // all of the slice's loads are issued before the first add (past `end` they read as zero)
    float part[max_per_slice];
#pragma unroll
    for (int j = 0; j < max_per_slice; j++) part[j] = col < width && begin + j < end ? partials[(size_t)(begin + j) * width + col] : 0.0f;
    float acc = 0.0f;
#pragma unroll
    for (int j = 0; j < max_per_slice; j++) acc += part[j];
    slice_sums[slice][threadIdx.x] = acc;
    __syncthreads();
    if (slice != 0 || col >= width) return;
    float total = 0.0f;
#pragma unroll
    for (int y = 0; y < LAYERNORM_REDUCE_SLICES; y++) total += slice_sums[y][threadIdx.x];
    if (col >= 2 * C) grad_store(&dinp_colsum[col - 2 * C], total, accumulate);
    else if (col >= C) grad_store(&dweight[col - C], total, accumulate);
    else if (dbias != NULL) grad_store(&dbias[col], total, accumulate);  // RMSNorm has no bias
}

// ----------------------------------------------------------------------------------------------
// launchers

static inline int layernorm_chunks_(int C) {
    shapeCheck(C > 0 && C <= LAYERNORM_MAX_C, "LayerNorm needs 0 < C <= %d, got C=%d", LAYERNORM_MAX_C, C);
    const int chunks = ceil_div(C, WARP_SIZE * 8);
    return chunks <= 8 ? chunks : LAYERNORM_MAX_CHUNKS;  // 9..12 groups share one instantiation
}

static inline void layernorm_check_alignment_(int C, const void *a, const void *b, const void *c, const void *d) {
    shapeCheck(C % 8 != 0 || ((uintptr_t)a % 16 == 0 && (uintptr_t)b % 16 == 0 && (uintptr_t)c % 16 == 0 &&
                              (uintptr_t)d % 16 == 0),
               "with C %% 8 == 0 the BF16 tensors must be 16-byte aligned");
}

// Grid of layernorm_forward_kernel<CHUNKS, STAGES, VEC> with `inputs` inputs: as many blocks as fit on
// the device at once. Queried once per instantiation and input count (the forward runs 2L+1 times a
// step); the shared-memory limit is set for the two-input size, which covers both.
template <int CHUNKS, int STAGES, bool VEC, bool RMS>
static inline int layernorm_forward_resident_blocks_(int inputs) {
    static int resident[2] = {0, 0};
    if (resident[inputs - 1] == 0) {
        const size_t smem = layernorm_fwd_smem_bytes(CHUNKS, STAGES, inputs);
        int device, sms, per_sm = 0;
        cudaCheck(cudaGetDevice(&device));
        cudaCheck(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
        cudaCheck(cudaFuncSetAttribute(layernorm_forward_kernel<CHUNKS, STAGES, VEC, RMS>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       (int)layernorm_fwd_smem_bytes(CHUNKS, STAGES, 2)));
        cudaCheck(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, layernorm_forward_kernel<CHUNKS, STAGES, VEC, RMS>,
                                                                LAYERNORM_FWD_WARPS * WARP_SIZE, smem));
        shapeCheck(per_sm > 0, "LayerNorm forward: %zu bytes of shared memory per block do not fit", smem);
        resident[inputs - 1] = sms * per_sm;
    }
    return resident[inputs - 1];
}

// Launches layernorm_forward_kernel<CHUNKS, STAGES, C % 8 == 0, RMS> on as many blocks as fit on the device
// at once (fewer for small N).
template <int CHUNKS, int STAGES, bool RMS>
static inline void layernorm_forward_launch_(bf16 *residual_out, bf16 *out, float *mean, float *rstd, const bf16 *inp1,
                                             const bf16 *inp2, const bf16 *weight, const bf16 *bias, int N, int C, float eps,
                                             cudaStream_t stream) {
    const int inputs = inp2 != NULL ? 2 : 1, block = LAYERNORM_FWD_WARPS * WARP_SIZE;
    const size_t smem = layernorm_fwd_smem_bytes(CHUNKS, STAGES, inputs);
    if (C % 8 == 0) {
        const int grid = min(layernorm_forward_resident_blocks_<CHUNKS, STAGES, true, RMS>(inputs), ceil_div(N, LAYERNORM_FWD_WARPS));
        layernorm_forward_kernel<CHUNKS, STAGES, true, RMS><<<grid, block, smem, stream>>>(residual_out, out, mean, rstd, inp1, inp2,
                                                                                         weight, bias, N, C, eps);
    } else {
        const int grid = min(layernorm_forward_resident_blocks_<CHUNKS, STAGES, false, RMS>(inputs), ceil_div(N, LAYERNORM_FWD_WARPS));
        layernorm_forward_kernel<CHUNKS, STAGES, false, RMS><<<grid, block, smem, stream>>>(residual_out, out, mean, rstd, inp1, inp2,
                                                                                          weight, bias, N, C, eps);
    }
    cudaCheckLaunch();
}

// Launches the forward kernel with a ring of STAGES rows per warp (the dev harness times several);
// inp2/residual_out NULL or not. RMS: RMSNorm (mean and bias NULL), else LayerNorm with eps LAYERNORM_EPS.
template <int STAGES, bool RMS = false>
static inline void layernorm_forward_variant_(bf16 *residual_out, bf16 *out, float *mean, float *rstd, const bf16 *inp1,
                                              const bf16 *inp2, const bf16 *weight, const bf16 *bias, int N, int C,
                                              cudaStream_t stream, float eps = LAYERNORM_EPS) {
    shapeCheck(N > 0, "N=%d", N);
    shapeCheck(RMS == (mean == NULL && bias == NULL), "LayerNorm takes a mean and a bias, RMSNorm neither");
    const int chunks = layernorm_chunks_(C);
    layernorm_check_alignment_(C, out, inp1, weight, RMS ? weight : bias);
    if (inp2 != NULL) layernorm_check_alignment_(C, inp2, residual_out, out, out);
    switch (chunks) {
#define LAYERNORM_FWD_CASE(K)                                                                                                 \
    case K:                                                                                                                   \
        layernorm_forward_launch_<K, STAGES, RMS>(residual_out, out, mean, rstd, inp1, inp2, weight, bias, N, C, eps, stream);  \
        break;
        LAYERNORM_FWD_CASE(1) LAYERNORM_FWD_CASE(2) LAYERNORM_FWD_CASE(3) LAYERNORM_FWD_CASE(4)
        LAYERNORM_FWD_CASE(5) LAYERNORM_FWD_CASE(6) LAYERNORM_FWD_CASE(7) LAYERNORM_FWD_CASE(8)
        LAYERNORM_FWD_CASE(LAYERNORM_MAX_CHUNKS)
#undef LAYERNORM_FWD_CASE
    }
}

// out = LayerNorm(inp) [N, C]; mean, rstd [N].
static inline void layernorm_forward(bf16 *out, float *mean, float *rstd, const bf16 *inp, const bf16 *weight,
                                     const bf16 *bias, int N, int C, cudaStream_t stream) {
    layernorm_forward_variant_<LAYERNORM_FWD_STAGES>(NULL, out, mean, rstd, inp, NULL, weight, bias, N, C, stream);
}

// residual_out = residual + branch (BF16), out = LayerNorm(residual_out); all [N, C], mean/rstd [N].
// residual_out may alias residual (in-place update of the residual stream).
static inline void fused_residual_layernorm_forward(bf16 *residual_out, bf16 *out, float *mean, float *rstd,
                                                    const bf16 *residual, const bf16 *branch, const bf16 *weight,
                                                    const bf16 *bias, int N, int C, cudaStream_t stream) {
    shapeCheck(residual_out != NULL && branch != NULL, "fused residual LayerNorm needs residual_out and branch");
    layernorm_forward_variant_<LAYERNORM_FWD_STAGES>(residual_out, out, mean, rstd, residual, branch, weight, bias, N, C, stream);
}

// out = RMSNorm(inp) [N, C] with the model's eps; rstd [N].
static inline void rmsnorm_forward(bf16 *out, float *rstd, const bf16 *inp, const bf16 *weight, int N, int C, float eps,
                                   cudaStream_t stream) {
    layernorm_forward_variant_<LAYERNORM_FWD_STAGES, true>(NULL, out, NULL, rstd, inp, NULL, weight, NULL, N, C, stream, eps);
}

// residual_out = residual + branch (BF16), out = RMSNorm(residual_out); all [N, C], rstd [N].
static inline void fused_residual_rmsnorm_forward(bf16 *residual_out, bf16 *out, float *rstd, const bf16 *residual, const bf16 *branch,
                                                  const bf16 *weight, int N, int C, float eps, cudaStream_t stream) {
    shapeCheck(residual_out != NULL && branch != NULL, "fused residual RMSNorm needs residual_out and branch");
    layernorm_forward_variant_<LAYERNORM_FWD_STAGES, true>(residual_out, out, NULL, rstd, residual, branch, weight, NULL, N, C, stream, eps);
}

// Backward launch geometry, from N and C only (so results do not depend on the device): row groups
// per block, rows per block (a whole number of batches), and the number of blocks (= partial rows),
// at most LAYERNORM_BWD_MAX_BLOCKS.
struct LayerNormBwdGeometry {
    int groups, rows_per_block, blocks;
};

static inline LayerNormBwdGeometry layernorm_backward_geometry_(int N, int C, int rows_per_batch) {
    LayerNormBwdGeometry g;
    const int group_threads = layernorm_bwd_group_threads(C);
    g.groups = group_threads >= LAYERNORM_BWD_THREADS ? 1 : LAYERNORM_BWD_THREADS / group_threads;
    const int step = g.groups * rows_per_batch;
    g.rows_per_block = ceil_div(ceil_div(N, LAYERNORM_BWD_MAX_BLOCKS), step) * step;
    g.blocks = ceil_div(N, g.rows_per_block);
    return g;
}

// Floats of device scratch that layernorm_backward needs for N rows of C channels (with or without
// dinp_colsum).
static inline size_t layernorm_backward_scratch_floats(int N, int C) {
    return (size_t)(N < LAYERNORM_BWD_MAX_BLOCKS ? N : LAYERNORM_BWD_MAX_BLOCKS) * 3 * C;
}

// Second stage of the backward: adds the column sums of the first `blocks` partial rows in scratch to
// dbias, dweight and, when not NULL, dinp_colsum (or writes them there: accumulate 0).
template <typename GradT>
static inline void layernorm_backward_reduce_(GradT *dweight, GradT *dbias, float *dinp_colsum, const float *scratch,
                                              int blocks, int C, bool accumulate, cudaStream_t stream) {
    const int quantities = dinp_colsum != NULL ? 3 : 2;
    const dim3 reduce_block(WARP_SIZE, LAYERNORM_REDUCE_SLICES);
    layernorm_param_grad_kernel<<<ceil_div(quantities * C, WARP_SIZE), reduce_block, 0, stream>>>(dweight, dbias, dinp_colsum,
                                                                                                  scratch, blocks, C, quantities,
                                                                                                  accumulate);
    cudaCheckLaunch();
}

// layernorm_backward with ROWS rows per row group and batch and a ring of STAGES batches (the dev
// harness times several). The block has at most max(LAYERNORM_BWD_THREADS, LAYERNORM_MAX_C / 8) = 384
// threads, within what LAYERNORM_BWD_MAX_REGS allows. RMS: RMSNorm's backward (mean and dbias NULL).
template <int ROWS, int STAGES, typename GradT, bool RMS = false>
static inline void layernorm_backward_variant_(bf16 *dinp, float *dinp_colsum, GradT *dweight, GradT *dbias, float *scratch,
                                               const bf16 *dout, const bf16 *inp, const bf16 *weight, const float *mean,
                                               const float *rstd, int N, int C, bool accumulate_dinp, bool accumulate,
                                               cudaStream_t stream) {
    shapeCheck(N > 0 && C > 0 && C <= LAYERNORM_MAX_C, "LayerNorm backward needs N > 0 and 0 < C <= %d, got N=%d C=%d",
               LAYERNORM_MAX_C, N, C);
    shapeCheck(RMS == (mean == NULL && dbias == NULL), "LayerNorm's backward takes a mean and dbias, RMSNorm's neither");
    layernorm_check_alignment_(C, dinp, dout, inp, weight);
    const LayerNormBwdGeometry g = layernorm_backward_geometry_(N, C, ROWS);
    const int group_threads = layernorm_bwd_group_threads(C);
    const size_t smem = layernorm_bwd_smem_bytes(g.groups, group_threads, ROWS, STAGES);
    cudaCheck(cudaFuncSetAttribute(layernorm_backward_kernel<ROWS, STAGES, RMS>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    layernorm_backward_kernel<ROWS, STAGES, RMS><<<g.blocks, g.groups * group_threads, smem, stream>>>(
        dinp, accumulate_dinp, scratch, dout, inp, weight, mean, rstd, N, C, g.rows_per_block, dinp_colsum != NULL ? 3 : 2);
    cudaCheckLaunch();
    layernorm_backward_reduce_(dweight, dbias, dinp_colsum, scratch, g.blocks, C, accumulate, stream);
}

// dinp [N, C] += input gradient (BF16); dweight, dbias [C] += parameter gradients; if dinp_colsum
// [C] (FP32) is not NULL, dinp_colsum[c] += sum over rows of the updated dinp[row, c] as stored in
// BF16 (the bias gradient of a linear layer whose output gradient is dinp).
// dout [N, C], inp [N, C] (the x that forward normalized), weight [C], mean/rstd [N] from forward.
// scratch: layernorm_backward_scratch_floats(N, C) floats of device memory.
// accumulate_dinp: 1 adds to dinp, 0 writes it (dinp not read); accumulate: the same for dweight, dbias
// and dinp_colsum (0 in the first micro-step of an optimizer step).
template <typename GradT>
static inline void layernorm_backward(bf16 *dinp, float *dinp_colsum, GradT *dweight, GradT *dbias, float *scratch,
                                      const bf16 *dout, const bf16 *inp, const bf16 *weight, const float *mean,
                                      const float *rstd, int N, int C, bool accumulate_dinp, bool accumulate, cudaStream_t stream) {
    layernorm_backward_variant_<LAYERNORM_BWD_ROWS, LAYERNORM_BWD_STAGES>(dinp, dinp_colsum, dweight, dbias, scratch, dout, inp,
                                                                          weight, mean, rstd, N, C, accumulate_dinp, accumulate,
                                                                          stream);
}

// RMSNorm's backward: dinp [N, C] += input gradient (BF16), dweight [C] += sum_rows dout * x * rstd, and
// dinp_colsum as in layernorm_backward; rstd [N] from forward; scratch as for layernorm_backward.
template <typename GradT>
static inline void rmsnorm_backward(bf16 *dinp, float *dinp_colsum, GradT *dweight, float *scratch, const bf16 *dout, const bf16 *inp,
                                    const bf16 *weight, const float *rstd, int N, int C, bool accumulate_dinp, bool accumulate,
                                    cudaStream_t stream) {
    layernorm_backward_variant_<LAYERNORM_BWD_ROWS, LAYERNORM_BWD_STAGES, GradT, true>(dinp, dinp_colsum, dweight, (GradT *)NULL, scratch,
                                                                                       dout, inp, weight, NULL, rstd, N, C, accumulate_dinp,
                                                                                       accumulate, stream);
}

#endif // KERNELS_LAYERNORM_CUH
