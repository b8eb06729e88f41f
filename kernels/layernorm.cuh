// LayerNorm over the channel axis, optionally fused with the residual add that precedes it.
// Layouts: activations row-major [N, C] BF16 (N = B*T rows), weight/bias [C] BF16, mean/rstd [N]
// FP32, parameter gradients [C] in FP32 or BF16 (GradT).
// Forward:  x = inp1 (+ inp2, rounded to BF16 and stored as the new residual stream),
//           mean = sum(x)/C, rstd = 1/sqrt(sum((x-mean)^2)/C + eps), out = (x-mean)*rstd*weight + bias.
// Backward: with xhat = (x-mean)*rstd and g = dout*weight,
//           dinp += rstd * (g - mean(g) - xhat*mean(g*xhat)), dweight += sum_rows dout*xhat,
//           dbias += sum_rows dout.
// Both use one warp per row with the row held in registers (each lane owns the 8-column groups
// lane, lane+32, ...), so a row is read once; CHUNKS = ceil(C/256) groups per lane is a template
// argument so that the register arrays are indexed by constants. C <= LAYERNORM_MAX_C.
//
// Determinism: row statistics use fixed butterfly reductions. The backward's weight/bias sums
// never use atomics: each warp accumulates its rows into its own shared-memory slab, each block
// sums its slabs in warp order into one partial row of `scratch`, and a second kernel sums the
// partials in a fixed order (contiguous slices in order, then the slice sums in order). The row -> block assignment depends only on N.
#ifndef KERNELS_LAYERNORM_CUH
#define KERNELS_LAYERNORM_CUH

#include "kernels/layer_common.cuh"

#define LAYERNORM_EPS 1e-5f
#define LAYERNORM_WARPS 8                       // rows in flight per block (one warp each)
#define LAYERNORM_MAX_CHUNKS 12                 // 8-column groups per lane at most
#define LAYERNORM_MAX_C (LAYERNORM_MAX_CHUNKS * WARP_SIZE * 8)
#define LAYERNORM_BWD_MAX_BLOCKS 256            // partial rows of dweight/dbias at most

// ----------------------------------------------------------------------------------------------
// kernels

// One warp per row. x = inp1[row] (+ inp2[row], then residual_out[row] = x in BF16); writes
// out[row] = LayerNorm(x), mean[row], rstd[row]. inp2 == NULL means no residual add (and
// residual_out is not written). Statistics are taken on the BF16-rounded x that backward will see.
template <int CHUNKS>
__global__ void __launch_bounds__(LAYERNORM_WARPS *WARP_SIZE)
    layernorm_forward_kernel(bf16 *residual_out, bf16 *out, float *mean, float *rstd, const bf16 *inp1,
                             const bf16 *inp2, const bf16 *weight, const bf16 *bias, int N, int C) {
    const int lane = threadIdx.x % WARP_SIZE;
    const int row = blockIdx.x * LAYERNORM_WARPS + threadIdx.x / WARP_SIZE;
    if (row >= N) return;
    const bool vec = (C % 8 == 0);
    const size_t offset = (size_t)row * C;
    Bf16x8 x[CHUNKS];
#pragma unroll
    for (int k = 0; k < CHUNKS; k++) x[k] = load_bf16x8(inp1 + offset, (k * WARP_SIZE + lane) * 8, C, vec);
    if (inp2 != NULL) {
#pragma unroll
        for (int k = 0; k < CHUNKS; k++) {
            const int c = (k * WARP_SIZE + lane) * 8;
            const Bf16x8 y = load_bf16x8(inp2 + offset, c, C, vec);
#pragma unroll
            for (int e = 0; e < 8; e++) x[k].v[e] = __float2bfloat16(__bfloat162float(x[k].v[e]) + __bfloat162float(y.v[e]));
            store_bf16x8(residual_out + offset, c, C, vec, x[k]);
        }
    }
    // out-of-range elements were loaded as zero, so they add nothing to the sum
    float sum = 0.0f;
#pragma unroll
    for (int k = 0; k < CHUNKS; k++) {
#pragma unroll
        for (int e = 0; e < 8; e++) sum += __bfloat162float(x[k].v[e]);
    }
    const float m = warp_sum(sum) / C;
    float sq = 0.0f;
#pragma unroll
    for (int k = 0; k < CHUNKS; k++) {
        const int c = (k * WARP_SIZE + lane) * 8;
#pragma unroll
        for (int e = 0; e < 8; e++) {
            const float d = __bfloat162float(x[k].v[e]) - m;
            sq += (c + e < C) ? d * d : 0.0f;
        }
    }
    const float s = rsqrtf(warp_sum(sq) / C + LAYERNORM_EPS);
#pragma unroll
    for (int k = 0; k < CHUNKS; k++) {
        const int c = (k * WARP_SIZE + lane) * 8;
        if (c >= C) continue;
        // weight and bias are shared by all rows, so these loads hit L1 after the first row
        const Bf16x8 w = load_bf16x8(weight, c, C, vec), b = load_bf16x8(bias, c, C, vec);
        Bf16x8 o;
#pragma unroll
        for (int e = 0; e < 8; e++) {
            const float n = (__bfloat162float(x[k].v[e]) - m) * s;
            o.v[e] = __float2bfloat16(n * __bfloat162float(w.v[e]) + __bfloat162float(b.v[e]));
        }
        store_bf16x8(out + offset, c, C, vec, o);
    }
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = s;
    }
}

// Block b handles rows [b*rows_per_block, ...) with warp w taking rows w, w+WARPS, ... of that range.
// Per row: dinp[row] += dx in BF16 (read-add-round-write). Each warp adds dout and dout*xhat into its
// shared-memory slab, laid out [2][CHUNKS*8][32] so that lane l's value for column
// (k*32+l)*8+e sits at [(k*8+e)*32 + l] (conflict-free). At the end the block sums the slabs in warp
// order and writes partials[b] = [dbias (C) | dweight (C)] in FP32.
template <int CHUNKS>
__global__ void __launch_bounds__(LAYERNORM_WARPS *WARP_SIZE)
    layernorm_backward_kernel(bf16 *dinp, float *partials, const bf16 *dout, const bf16 *inp, const bf16 *weight,
                              const float *mean, const float *rstd, int N, int C, int rows_per_block) {
    constexpr int SLAB = CHUNKS * 8 * WARP_SIZE;  // floats per quantity per warp
    extern __shared__ float slabs[];                // [WARPS][2][SLAB]
    const int lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE;
    float *dbias_acc = slabs + warp * 2 * SLAB;
    float *dweight_acc = dbias_acc + SLAB;
    const bool vec = (C % 8 == 0);
#pragma unroll
    for (int j = 0; j < CHUNKS * 8; j++) {
        dbias_acc[j * WARP_SIZE + lane] = 0.0f;
        dweight_acc[j * WARP_SIZE + lane] = 0.0f;
    }
    const int row_begin = blockIdx.x * rows_per_block;
    const int row_end = min(row_begin + rows_per_block, N);
    for (int row = row_begin + warp; row < row_end; row += LAYERNORM_WARPS) {
        const size_t offset = (size_t)row * C;
        // dinp is loaded with dout and x so that a row costs one memory round trip; the weight is
        // re-read per row from L1 (all rows share it) to keep registers for the row
        Bf16x8 d[CHUNKS], x[CHUNKS], di[CHUNKS];
#pragma unroll
        for (int k = 0; k < CHUNKS; k++) {
            d[k] = load_bf16x8(dout + offset, (k * WARP_SIZE + lane) * 8, C, vec);
            x[k] = load_bf16x8(inp + offset, (k * WARP_SIZE + lane) * 8, C, vec);
            di[k] = load_bf16x8(dinp + offset, (k * WARP_SIZE + lane) * 8, C, vec);
        }
        const float m = mean[row], s = rstd[row];
        // out-of-range elements have dout = weight = 0, so g and g*xhat vanish there
        float sum_g = 0.0f, sum_gx = 0.0f;
#pragma unroll
        for (int k = 0; k < CHUNKS; k++) {
            const Bf16x8 w = load_bf16x8(weight, (k * WARP_SIZE + lane) * 8, C, vec);
#pragma unroll
            for (int e = 0; e < 8; e++) {
                const float g = __bfloat162float(d[k].v[e]) * __bfloat162float(w.v[e]);
                const float xhat = (__bfloat162float(x[k].v[e]) - m) * s;
                sum_g += g;
                sum_gx += g * xhat;
            }
        }
        const float mean_g = warp_sum(sum_g) / C, mean_gx = warp_sum(sum_gx) / C;
#pragma unroll
        for (int k = 0; k < CHUNKS; k++) {
            const int c = (k * WARP_SIZE + lane) * 8;
            if (c >= C) continue;
            const Bf16x8 w = load_bf16x8(weight, c, C, vec);
#pragma unroll
            for (int e = 0; e < 8; e++) {
                const float dv = __bfloat162float(d[k].v[e]);
                const float xhat = (__bfloat162float(x[k].v[e]) - m) * s;
                const float g = dv * __bfloat162float(w.v[e]);
                const float dx = s * (g - mean_g - xhat * mean_gx);
                di[k].v[e] = __float2bfloat16(__bfloat162float(di[k].v[e]) + dx);
                dbias_acc[(k * 8 + e) * WARP_SIZE + lane] += dv;
                dweight_acc[(k * 8 + e) * WARP_SIZE + lane] += dv * xhat;
            }
            store_bf16x8(dinp + offset, c, C, vec, di[k]);
        }
    }
    __syncthreads();
    // sum the warps' slabs in warp order; slab index j*32 + l holds column (j/8*32 + l)*8 + j%8
    float *out = partials + (size_t)blockIdx.x * 2 * C;
    for (int idx = threadIdx.x; idx < 2 * SLAB; idx += blockDim.x) {
        const int q = idx / SLAB, j = (idx % SLAB) / WARP_SIZE, l = idx % WARP_SIZE;
        const int c = ((j / 8) * WARP_SIZE + l) * 8 + j % 8;
        if (c >= C) continue;
        float acc = 0.0f;
        for (int v = 0; v < LAYERNORM_WARPS; v++) acc += slabs[v * 2 * SLAB + idx];
        out[q * C + c] = acc;
    }
}

// Column sums of the partials: block (32 x LAYERNORM_REDUCE_SLICES threads) handles 32 columns of
// [dbias | dweight]; thread row y sums the partial rows of slice y (contiguous, in order), then
// thread row 0 adds the slice sums in slice order and adds the total to dbias[c] or dweight[c].
#define LAYERNORM_REDUCE_SLICES 16
template <typename GradT>
__global__ void __launch_bounds__(WARP_SIZE *LAYERNORM_REDUCE_SLICES)
    layernorm_param_grad_kernel(GradT *dweight, GradT *dbias, const float *partials, int num_blocks, int C) {
    __shared__ float slice_sums[LAYERNORM_REDUCE_SLICES][WARP_SIZE];
    const int col = blockIdx.x * WARP_SIZE + threadIdx.x, slice = threadIdx.y;
    const int per_slice = ceil_div(num_blocks, LAYERNORM_REDUCE_SLICES);
    const int begin = slice * per_slice, end = min(begin + per_slice, num_blocks);
    float acc = 0.0f;
    if (col < 2 * C) {
#pragma unroll 8
        for (int b = begin; b < end; b++) acc += partials[(size_t)b * 2 * C + col];
    }
    slice_sums[slice][threadIdx.x] = acc;
    __syncthreads();
    if (slice != 0 || col >= 2 * C) return;
    float total = 0.0f;
#pragma unroll
    for (int y = 0; y < LAYERNORM_REDUCE_SLICES; y++) total += slice_sums[y][threadIdx.x];
    GradT *dst = col < C ? &dbias[col] : &dweight[col - C];
    grad_from_float(dst, grad_to_float(*dst) + total);
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

// Shared body of layernorm_forward and fused_residual_layernorm_forward (inp2/residual_out NULL or not).
static inline void layernorm_forward_launch_(bf16 *residual_out, bf16 *out, float *mean, float *rstd, const bf16 *inp1,
                                             const bf16 *inp2, const bf16 *weight, const bf16 *bias, int N, int C,
                                             cudaStream_t stream) {
    shapeCheck(N > 0, "N=%d", N);
    const int chunks = layernorm_chunks_(C);
    layernorm_check_alignment_(C, out, inp1, weight, bias);
    if (inp2 != NULL) layernorm_check_alignment_(C, inp2, residual_out, out, out);
    const dim3 grid(ceil_div(N, LAYERNORM_WARPS)), block(LAYERNORM_WARPS * WARP_SIZE);
    switch (chunks) {
#define LAYERNORM_FWD_CASE(K) \
    case K: layernorm_forward_kernel<K><<<grid, block, 0, stream>>>(residual_out, out, mean, rstd, inp1, inp2, weight, bias, N, C); break;
        LAYERNORM_FWD_CASE(1) LAYERNORM_FWD_CASE(2) LAYERNORM_FWD_CASE(3) LAYERNORM_FWD_CASE(4)
        LAYERNORM_FWD_CASE(5) LAYERNORM_FWD_CASE(6) LAYERNORM_FWD_CASE(7) LAYERNORM_FWD_CASE(8)
        LAYERNORM_FWD_CASE(LAYERNORM_MAX_CHUNKS)
#undef LAYERNORM_FWD_CASE
    }
    cudaCheckLaunch();
}

// out = LayerNorm(inp) [N, C]; mean, rstd [N].
static inline void layernorm_forward(bf16 *out, float *mean, float *rstd, const bf16 *inp, const bf16 *weight,
                                     const bf16 *bias, int N, int C, cudaStream_t stream) {
    layernorm_forward_launch_(NULL, out, mean, rstd, inp, NULL, weight, bias, N, C, stream);
}

// residual_out = residual + branch (BF16), out = LayerNorm(residual_out); all [N, C], mean/rstd [N].
// residual_out may alias residual (in-place update of the residual stream).
static inline void fused_residual_layernorm_forward(bf16 *residual_out, bf16 *out, float *mean, float *rstd,
                                                    const bf16 *residual, const bf16 *branch, const bf16 *weight,
                                                    const bf16 *bias, int N, int C, cudaStream_t stream) {
    shapeCheck(residual_out != NULL && branch != NULL, "fused residual LayerNorm needs residual_out and branch");
    layernorm_forward_launch_(residual_out, out, mean, rstd, residual, branch, weight, bias, N, C, stream);
}

// Row range per block of the backward (depends on N only, so results do not depend on the device).
static inline int layernorm_backward_blocks_(int N, int *rows_per_block) {
    const int max_blocks = ceil_div(N, LAYERNORM_WARPS) < LAYERNORM_BWD_MAX_BLOCKS ? ceil_div(N, LAYERNORM_WARPS)
                                                                                   : LAYERNORM_BWD_MAX_BLOCKS;
    *rows_per_block = ceil_div(N, max_blocks);
    return ceil_div(N, *rows_per_block);
}

// Floats of device scratch that layernorm_backward needs for N rows of C channels.
static inline size_t layernorm_backward_scratch_floats(int N, int C) {
    int rows_per_block;
    return (size_t)layernorm_backward_blocks_(N, &rows_per_block) * 2 * C;
}

// dinp [N, C] += input gradient (BF16); dweight, dbias [C] += parameter gradients.
// dout [N, C], inp [N, C] (the x that forward normalized), weight [C], mean/rstd [N] from forward.
// scratch: layernorm_backward_scratch_floats(N, C) floats of device memory.
template <typename GradT>
static inline void layernorm_backward(bf16 *dinp, GradT *dweight, GradT *dbias, float *scratch, const bf16 *dout,
                                      const bf16 *inp, const bf16 *weight, const float *mean, const float *rstd,
                                      int N, int C, cudaStream_t stream) {
    shapeCheck(N > 0, "N=%d", N);
    const int chunks = layernorm_chunks_(C);
    layernorm_check_alignment_(C, dinp, dout, inp, weight);
    int rows_per_block;
    const int grid = layernorm_backward_blocks_(N, &rows_per_block);
    const int block = LAYERNORM_WARPS * WARP_SIZE;
    const size_t smem = (size_t)LAYERNORM_WARPS * 2 * chunks * 8 * WARP_SIZE * sizeof(float);
    switch (chunks) {
#define LAYERNORM_BWD_CASE(K)                                                                                   \
    case K:                                                                                                     \
        cudaCheck(cudaFuncSetAttribute(layernorm_backward_kernel<K>, cudaFuncAttributeMaxDynamicSharedMemorySize, \
                                       (int)smem));                                                             \
        layernorm_backward_kernel<K><<<grid, block, smem, stream>>>(dinp, scratch, dout, inp, weight, mean, rstd, N, C, \
                                                                    rows_per_block);                            \
        break;
        LAYERNORM_BWD_CASE(1) LAYERNORM_BWD_CASE(2) LAYERNORM_BWD_CASE(3) LAYERNORM_BWD_CASE(4)
        LAYERNORM_BWD_CASE(5) LAYERNORM_BWD_CASE(6) LAYERNORM_BWD_CASE(7) LAYERNORM_BWD_CASE(8)
        LAYERNORM_BWD_CASE(LAYERNORM_MAX_CHUNKS)
#undef LAYERNORM_BWD_CASE
    }
    cudaCheckLaunch();
    const dim3 reduce_block(WARP_SIZE, LAYERNORM_REDUCE_SLICES);
    layernorm_param_grad_kernel<<<ceil_div(2 * C, WARP_SIZE), reduce_block, 0, stream>>>(dweight, dbias, scratch, grid, C);
    cudaCheckLaunch();
}

#endif // KERNELS_LAYERNORM_CUH
