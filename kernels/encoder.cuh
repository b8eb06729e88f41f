// GPT-2 embedding layer: token embedding wte [Vp, C] plus position embedding wpe [maxT, C].
// Forward:  out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:]            (BF16, sum in FP32, one rounding)
// Backward: dwte[tokens[b,t],:] += dout[b,t,:], dwpe[t,:] += sum_b dout[b,t,:]
// Activations are row-major [B*T, C]; tokens int32 [B*T]. Parameter gradients are FP32 or BF16
// (GradT). dwte is always accumulated into (+=): the tied LM head's Wgrad writes it first. dwpe is
// accumulated into or, in the first micro-step of an optimizer step, written: then all of its rows,
// those of positions t >= T with zeros, so that no memset is needed.
//
// Determinism of the backward: no floating-point atomics. dwpe: each (t, 8 columns) is summed by
// one thread over b = 0..B-1 in order. dwte: the (token, position) pairs are sorted by token with
// a stable radix sort (positions stay ascending within a token), and each distinct token's rows are
// summed by one thread block in a fixed order (row slices, then the slices in order), in FP32, then added
// once to dwte.
#ifndef KERNELS_ENCODER_CUH
#define KERNELS_ENCODER_CUH

#include <algorithm>
#include <cub/device/device_radix_sort.cuh>
#include "kernels/layer_common.cuh"

#define ENCODER_WTE_SLICES 4        // slices of a token's rows in the dwte kernel (measured in dev/cuda/encoder.cu)
#define ENCODER_WTE_SMEM (48 << 10)  // its shared memory for the slice sums, [slices][C] floats

// ----------------------------------------------------------------------------------------------
// kernels

// One thread per (row, 8 columns): out[row, c..c+8) = wte[tokens[row], c..] + wpe[row % T, c..].
__global__ void encoder_forward_kernel(bf16 *out, const int *tokens, const bf16 *wte, const bf16 *wpe,
                                       int N, int T, int C) {
    const int groups = (C + 7) / 8;
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)N * groups) return;
    const int row = (int)(idx / groups), c = (int)(idx % groups) * 8;
    const bool vec = (C % 8 == 0);
    const Bf16x8 a = load_bf16x8(wte + (size_t)tokens[row] * C, c, C, vec);
    const Bf16x8 p = load_bf16x8(wpe + (size_t)(row % T) * C, c, C, vec);
    Bf16x8 o;
#pragma unroll
    for (int e = 0; e < 8; e++) o.v[e] = __float2bfloat16(__bfloat162float(a.v[e]) + __bfloat162float(p.v[e]));
    store_bf16x8(out + (size_t)row * C, c, C, vec, o);
}

// One thread per (t, 8 columns) of the first `rows` rows of dwpe: dwpe[t, c..c+8) += (or, not accumulate,
// =) the sum over b = 0..B-1 (in order) of dout[b*T+t, c..], which is zero for t >= T.
template <typename GradT>
__global__ void encoder_backward_wpe_kernel(GradT *dwpe, const bf16 *dout, int B, int T, int C, int rows, bool accumulate) {
    const int groups = (C + 7) / 8;
    const int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= rows * groups) return;
    const int t = idx / groups, c = (idx % groups) * 8;
    const bool vec = (C % 8 == 0);
    float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    const int batch = t < T ? B : 0;  // no token sits at a position t >= T
    for (int b = 0; b < batch; b++) {
        const Bf16x8 d = load_bf16x8(dout + ((size_t)b * T + t) * C, c, C, vec);
#pragma unroll
        for (int e = 0; e < 8; e++) acc[e] += __bfloat162float(d.v[e]);
    }
    GradT *dst = dwpe + (size_t)t * C;
    for (int e = 0; e < 8 && c + e < C; e++) grad_store(&dst[c + e], acc[e], accumulate);
}

// Fills positions[i] = i (the values that the radix sort carries along with the tokens).
__global__ void encoder_iota_kernel(int *positions, int N) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N) positions[i] = i;
}

// One block per entry i of the token-sorted arrays. The block whose entry starts a run of equal tokens
// (the others exit) finds the run's end, blockDim entries per round, sums dout over the run's positions in
// FP32 and adds the sum to dwte[token]. Its S = blockDim / G slices of G threads split the rows: slice s
// sums rows s, s + S, ... of the run in order (4 rows in flight; thread tid % G owns the 8-column groups
// tid % G, + G, ...) into part [S][C] in shared memory, and then each column's S slice sums are added in
// slice order. The order depends only on the run's length, so the result is deterministic. Real text
// repeats a few tokens thousands of times per batch: one thread per column summing such a run row by row
// took milliseconds (dev/RESULTS.md).
template <typename GradT>
__global__ void __launch_bounds__(1024) encoder_backward_wte_kernel(GradT *dwte, const bf16 *dout, const int *sorted_tokens,
                                                                    const int *sorted_positions, int N, int C, int G) {
    extern __shared__ float part[];  // [S][C]
    __shared__ int run_end;
    const int i = blockIdx.x;
    const int token = sorted_tokens[i];
    if (i > 0 && sorted_tokens[i - 1] == token) return;
    if (threadIdx.x == 0) run_end = N;
    __syncthreads();
    for (int base = i + 1; base < N; base += blockDim.x) {
        const int k = base + threadIdx.x;
        const bool other = k < N && sorted_tokens[k] != token;
        if (other) atomicMin(&run_end, k);
        if (__syncthreads_or(other)) break;
    }
    const int end = run_end, S = blockDim.x / G, s = threadIdx.x / G;
    const bool vec = (C % 8 == 0);
    for (int c = (threadIdx.x % G) * 8; c < C; c += G * 8) {
        float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
        int j = i + s;
        for (; j + 3 * S < end; j += 4 * S) {
            Bf16x8 d[4];
#pragma unroll
            for (int u = 0; u < 4; u++) d[u] = load_bf16x8(dout + (size_t)sorted_positions[j + u * S] * C, c, C, vec);
#pragma unroll
            for (int u = 0; u < 4; u++) {
#pragma unroll
                for (int e = 0; e < 8; e++) acc[e] += __bfloat162float(d[u].v[e]);
            }
        }
        for (; j < end; j += S) {
            const Bf16x8 d = load_bf16x8(dout + (size_t)sorted_positions[j] * C, c, C, vec);
#pragma unroll
            for (int e = 0; e < 8; e++) acc[e] += __bfloat162float(d.v[e]);
        }
        for (int e = 0; e < 8 && c + e < C; e++) part[s * C + c + e] = acc[e];
    }
    __syncthreads();
    GradT *dst = dwte + (size_t)token * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float total = part[c];
        for (int q = 1; q < S; q++) total += part[q * C + c];
        grad_store(&dst[c], total, true);
    }
}

// ----------------------------------------------------------------------------------------------
// launchers

// out [B*T, C] BF16; tokens [B*T] in [0, Vp); wte [Vp, C]; wpe [>=T, C].
static inline void encoder_forward(bf16 *out, const int *tokens, const bf16 *wte, const bf16 *wpe,
                                   int B, int T, int C, cudaStream_t stream) {
    shapeCheck(B > 0 && T > 0 && C > 0, "B=%d T=%d C=%d", B, T, C);
    shapeCheck(C % 8 != 0 || ((uintptr_t)out % 16 == 0 && (uintptr_t)wte % 16 == 0 && (uintptr_t)wpe % 16 == 0),
               "with C %% 8 == 0 the BF16 tensors must be 16-byte aligned");
    const int N = B * T, block = 256;
    const long long threads = (long long)N * ((C + 7) / 8);
    encoder_forward_kernel<<<(unsigned)ceil_div<long long>(threads, block), block, 0, stream>>>(out, tokens, wte, wpe, N, T, C);
    cudaCheckLaunch();
}

// Bytes of device scratch that encoder_backward needs for N = B*T tokens (sort buffers).
static inline size_t encoder_backward_scratch_bytes(int N) {
    size_t sort_bytes = 0;
    cudaCheck(cub::DeviceRadixSort::SortPairs(NULL, sort_bytes, (const int *)NULL, (int *)NULL,
                                              (const int *)NULL, (int *)NULL, N));
    return 3 * ceil_div<size_t>((size_t)N * sizeof(int), 256) * 256 + sort_bytes;
}

// dwte [Vp, C] += scatter of dout; dwpe [max_T, C] += sum over the batch (rows t < T). dout [B*T, C] BF16,
// tokens [B*T] in [0, Vp) (checked by the caller's data path; the sort uses their bits up to Vp).
// scratch: encoder_backward_scratch_bytes(B*T) bytes of device memory.
// accumulate (dwpe only): 1 adds to rows t < T, 0 writes all max_T rows (zeros from T on); dwte is always added to.
template <typename GradT>
static inline void encoder_backward(GradT *dwte, GradT *dwpe, void *scratch, const bf16 *dout, const int *tokens,
                                    int B, int T, int C, int Vp, int max_T, bool accumulate, cudaStream_t stream) {
    shapeCheck(B > 0 && T > 0 && C > 0 && Vp > 0 && T <= max_T, "B=%d T=%d C=%d Vp=%d max_T=%d", B, T, C, Vp, max_T);
    shapeCheck(C % 8 != 0 || (uintptr_t)dout % 16 == 0, "with C %% 8 == 0 dout must be 16-byte aligned");
    const int N = B * T;
    // dwpe
    const int wpe_rows = accumulate ? T : max_T, wpe_threads = wpe_rows * ((C + 7) / 8), block = 256;
    encoder_backward_wpe_kernel<<<ceil_div(wpe_threads, block), block, 0, stream>>>(dwpe, dout, B, T, C, wpe_rows, accumulate);
    cudaCheckLaunch();
    // dwte: stable sort of (token, position) by token, then one block per run of equal tokens
    const size_t slot = ceil_div<size_t>((size_t)N * sizeof(int), 256) * 256;
    int *positions = (int *)scratch;
    int *sorted_positions = (int *)((char *)scratch + slot);
    int *sorted_tokens = (int *)((char *)scratch + 2 * slot);
    void *sort_temp = (char *)scratch + 3 * slot;
    size_t sort_bytes = encoder_backward_scratch_bytes(N) - 3 * slot;
    encoder_iota_kernel<<<ceil_div(N, block), block, 0, stream>>>(positions, N);
    cudaCheckLaunch();
    int key_bits = 1;
    while ((1 << key_bits) < Vp) key_bits++;
    cudaCheck(cub::DeviceRadixSort::SortPairs(sort_temp, sort_bytes, tokens, sorted_tokens, positions,
                                              sorted_positions, N, 0, key_bits, stream));
    // G threads per slice of a run's rows, up to ENCODER_WTE_SLICES slices per block
    const int groups = (C + 7) / 8;
    const int G = groups >= 256 ? 256 : ceil_div(groups, WARP_SIZE) * WARP_SIZE;
    const int slices = std::max(1, std::min(ENCODER_WTE_SLICES, (int)(ENCODER_WTE_SMEM / ((size_t)C * sizeof(float)))));
    shapeCheck((size_t)C * sizeof(float) <= ENCODER_WTE_SMEM, "encoder backward supports C <= %d, got C=%d",
               (int)(ENCODER_WTE_SMEM / sizeof(float)), C);
    encoder_backward_wte_kernel<<<N, slices * G, slices * C * sizeof(float), stream>>>(dwte, dout, sorted_tokens, sorted_positions, N, C, G);
    cudaCheckLaunch();
}

#endif // KERNELS_ENCODER_CUH
