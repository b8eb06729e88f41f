// Embedding layer: token embedding wte [Vp, C] plus, for GPT-2, position embedding wpe [maxT, C] (Llama has
// none: wpe and dwpe NULL).
// Forward:  out[b,t,:] = wte[tokens[b,t],:] (+ wpe[t,:])          (BF16, sum in FP32, one rounding)
// Backward: dwte[tokens[b,t],:] += dout[b,t,:], dwpe[t,:] += sum_b dout[b,t,:]
// Activations are row-major [B*T, C]; tokens int32 [B*T]. Parameter gradients are FP32 or BF16
// (GradT). dwte is always accumulated into (+=): GPT-2's tied LM head's Wgrad writes it first; without a
// tied head (Llama) the caller zeroes it in the first micro-step. dwpe is
// accumulated into or, in the first micro-step of an optimizer step, written: then all of its rows,
// those of positions t >= T with zeros, so that no memset is needed.
//
// Determinism of the backward: no floating-point atomics. dwpe: each (t, 8 columns) is summed by
// one thread over b = 0..B-1 in order. dwte: the (token, position) pairs are sorted by token with
// a stable radix sort (positions stay ascending within a token), the sorted entries are cut into chunks of
// ENCODER_WTE_CHUNK, and the rows of each run of equal tokens are summed in a fixed order (within a chunk:
// row slices, then the slices in order; a run that crosses chunks: its pieces in chunk order), in FP32, then
// added once to dwte. The order depends only on the sorted tokens, so the bits do too.
#ifndef KERNELS_ENCODER_CUH
#define KERNELS_ENCODER_CUH

#include <algorithm>
#include <cub/device/device_radix_sort.cuh>
#include "kernels/layer_common.cuh"

#define ENCODER_WTE_CHUNK 32        // sorted entries per block of the dwte pass (one warp's ballot finds the runs)
#define ENCODER_WTE_SLICES 4        // slices of a piece's rows (measured in dev/cuda/encoder.cu)
#define ENCODER_WTE_SMEM (48 << 10)  // shared memory for the slice sums, [slices][C] floats

// ----------------------------------------------------------------------------------------------
// kernels

// One thread per (row, 8 columns): out[row, c..c+8) = wte[tokens[row], c..] (+ wpe[row % T, c..] with POS).
template <bool POS>
__global__ void encoder_forward_kernel(bf16 *out, const int *tokens, const bf16 *wte, const bf16 *wpe,
                                       int N, int T, int C) {
    const int groups = (C + 7) / 8;
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)N * groups) return;
    const int row = (int)(idx / groups), c = (int)(idx % groups) * 8;
    const bool vec = (C % 8 == 0);
    const Bf16x8 a = load_bf16x8(wte + (size_t)tokens[row] * C, c, C, vec);
    if (!POS) {
        store_bf16x8(out + (size_t)row * C, c, C, vec, a);
        return;
    }
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

// dwte pass 1. One block per chunk of ENCODER_WTE_CHUNK consecutive entries of the token-sorted arrays. The
// chunk splits into pieces of equal tokens; for each piece in turn the block's S = blockDim / G slices of G
// threads sum its dout rows (slice s: rows s, s + S, ... of the piece in order, 4 in flight; thread tid % G
// owns the 8-column groups tid % G, + G, ...) into part [S][C] in shared memory, and each column's slice sums
// are added in slice order. A piece that is a whole run is added to dwte[token] here; a piece of a run that
// crosses the chunk's ends goes to head[chunk] [C] when the run began before the chunk, else (the run's
// first piece) to tail[chunk] [C], for pass 2. Every block sums at most ENCODER_WTE_CHUNK rows, so a token
// that real text repeats thousands of times per batch is spread over many blocks.
template <typename GradT>
__global__ void __launch_bounds__(1024) encoder_backward_wte_chunk_kernel(GradT *dwte, float *head, float *tail, const bf16 *dout,
                                                                          const int *sorted_tokens, const int *sorted_positions,
                                                                          int N, int C, int G) {
    static_assert(ENCODER_WTE_CHUNK == 32, "one warp's ballot marks the pieces of a chunk");
    extern __shared__ float part[];  // [S][C]
    const int c0 = blockIdx.x * ENCODER_WTE_CHUNK, c1 = min(c0 + ENCODER_WTE_CHUNK, N);
    const int lane = threadIdx.x % 32;
    const int token_of_lane = c0 + lane < c1 ? sorted_tokens[c0 + lane] : -1;
    const int previous = __shfl_up_sync(0xffffffffu, token_of_lane, 1);
    // bit l: entry c0 + l starts a piece (every warp computes the same mask)
    unsigned starts = __ballot_sync(0xffffffffu, c0 + lane < c1 && (lane == 0 || token_of_lane != previous));
    const int before = c0 > 0 ? sorted_tokens[c0 - 1] : -1, after = c1 < N ? sorted_tokens[c1] : -1;
    const int S = blockDim.x / G, s = threadIdx.x / G;
    const bool vec = (C % 8 == 0);
    while (starts != 0) {
        const int l0 = __ffs(starts) - 1;
        starts &= starts - 1;
        const int p0 = c0 + l0, p1 = starts != 0 ? c0 + __ffs(starts) - 1 : c1;
        const int token = __shfl_sync(0xffffffffu, token_of_lane, l0);
        for (int c = (threadIdx.x % G) * 8; c < C; c += G * 8) {
            float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
            int j = p0 + s;
            for (; j + 3 * S < p1; j += 4 * S) {
                Bf16x8 d[4];
#pragma unroll
                for (int u = 0; u < 4; u++) d[u] = load_bf16x8(dout + (size_t)sorted_positions[j + u * S] * C, c, C, vec);
#pragma unroll
                for (int u = 0; u < 4; u++) {
#pragma unroll
                    for (int e = 0; e < 8; e++) acc[e] += __bfloat162float(d[u].v[e]);
                }
            }
            for (; j < p1; j += S) {
                const Bf16x8 d = load_bf16x8(dout + (size_t)sorted_positions[j] * C, c, C, vec);
#pragma unroll
                for (int e = 0; e < 8; e++) acc[e] += __bfloat162float(d.v[e]);
            }
            for (int e = 0; e < 8 && c + e < C; e++) part[s * C + c + e] = acc[e];
        }
        __syncthreads();
        const bool from_before = l0 == 0 && before == token, into_after = p1 == c1 && after == token;
        float *piece = from_before ? head + (size_t)blockIdx.x * C : into_after ? tail + (size_t)blockIdx.x * C : NULL;
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            float total = part[c];
            for (int q = 1; q < S; q++) total += part[q * C + c];
            if (piece != NULL) piece[c] = total;
            else grad_store(&dwte[(size_t)token * C + c], total, true);
        }
        __syncthreads();
    }
}

// dwte pass 2. One block per chunk; the block whose chunk holds the first piece of a run that continues past
// the chunk (pass 1 left it in tail[chunk]) finds the run's end, blockDim entries per round, and adds that
// piece and the head pieces of the following chunks, in chunk order, to dwte[token]; the other blocks exit.
template <typename GradT>
__global__ void encoder_backward_wte_span_kernel(GradT *dwte, const float *head, const float *tail, const int *sorted_tokens,
                                                 int N, int C) {
    __shared__ int run_end;
    const int c0 = blockIdx.x * ENCODER_WTE_CHUNK, c1 = min(c0 + ENCODER_WTE_CHUNK, N);
    if (c1 == N) return;
    const int token = sorted_tokens[c1 - 1];
    if (sorted_tokens[c1] != token) return;                                       // no run crosses the chunk's end
    if (c0 > 0 && sorted_tokens[c0] == token && sorted_tokens[c0 - 1] == token) return;  // it began before the chunk
    if (threadIdx.x == 0) run_end = N;
    __syncthreads();
    for (int base = c1 + 1; base < N; base += blockDim.x) {
        const int k = base + threadIdx.x;
        const bool other = k < N && sorted_tokens[k] != token;
        if (other) atomicMin(&run_end, k);
        if (__syncthreads_or(other)) break;
    }
    const int last_chunk = (run_end - 1) / ENCODER_WTE_CHUNK;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float total = tail[(size_t)blockIdx.x * C + c];
        for (int k = blockIdx.x + 1; k <= last_chunk; k++) total += head[(size_t)k * C + c];
        grad_store(&dwte[(size_t)token * C + c], total, true);
    }
}

// ----------------------------------------------------------------------------------------------
// launchers

// out [B*T, C] BF16; tokens [B*T] in [0, Vp); wte [Vp, C]; wpe [>=T, C], or NULL (no position embedding).
static inline void encoder_forward(bf16 *out, const int *tokens, const bf16 *wte, const bf16 *wpe,
                                   int B, int T, int C, cudaStream_t stream) {
    shapeCheck(B > 0 && T > 0 && C > 0, "B=%d T=%d C=%d", B, T, C);
    shapeCheck(C % 8 != 0 || ((uintptr_t)out % 16 == 0 && (uintptr_t)wte % 16 == 0 && (uintptr_t)wpe % 16 == 0),
               "with C %% 8 == 0 the BF16 tensors must be 16-byte aligned");
    const int N = B * T, block = 256;
    const long long threads = (long long)N * ((C + 7) / 8);
    const unsigned grid = (unsigned)ceil_div<long long>(threads, block);
    if (wpe != NULL) encoder_forward_kernel<true><<<grid, block, 0, stream>>>(out, tokens, wte, wpe, N, T, C);
    else encoder_forward_kernel<false><<<grid, block, 0, stream>>>(out, tokens, wte, wpe, N, T, C);
    cudaCheckLaunch();
}

// Bytes of the sort buffers of encoder_backward for N = B*T tokens, and of all its scratch (sort buffers,
// then head and tail pieces [chunks][C] floats each) for C channels.
static inline size_t encoder_backward_sort_bytes(int N) {
    size_t sort_bytes = 0;
    cudaCheck(cub::DeviceRadixSort::SortPairs(NULL, sort_bytes, (const int *)NULL, (int *)NULL,
                                              (const int *)NULL, (int *)NULL, N));
    return 3 * ceil_div<size_t>((size_t)N * sizeof(int), 256) * 256 + ceil_div<size_t>(sort_bytes, 256) * 256;
}
static inline size_t encoder_backward_scratch_bytes(int N, int C) {
    return encoder_backward_sort_bytes(N) + 2 * (size_t)ceil_div(N, ENCODER_WTE_CHUNK) * C * sizeof(float);
}

// dwte [Vp, C] += scatter of dout; dwpe [max_T, C] += sum over the batch (rows t < T), or NULL (no position
// embedding). dout [B*T, C] BF16,
// tokens [B*T] in [0, Vp) (checked by the caller's data path; the sort uses their bits up to Vp).
// scratch: encoder_backward_scratch_bytes(B*T, C) bytes of device memory.
// accumulate (dwpe only): 1 adds to rows t < T, 0 writes all max_T rows (zeros from T on); dwte is always added to.
template <typename GradT>
static inline void encoder_backward(GradT *dwte, GradT *dwpe, void *scratch, const bf16 *dout, const int *tokens,
                                    int B, int T, int C, int Vp, int max_T, bool accumulate, cudaStream_t stream) {
    shapeCheck(B > 0 && T > 0 && C > 0 && Vp > 0 && T <= max_T, "B=%d T=%d C=%d Vp=%d max_T=%d", B, T, C, Vp, max_T);
    shapeCheck(C % 8 != 0 || (uintptr_t)dout % 16 == 0, "with C %% 8 == 0 dout must be 16-byte aligned");
    shapeCheck((size_t)C * sizeof(float) <= ENCODER_WTE_SMEM, "encoder backward supports C <= %d, got C=%d",
               (int)(ENCODER_WTE_SMEM / sizeof(float)), C);
    const int N = B * T;
    // dwpe
    const int wpe_rows = accumulate ? T : max_T, wpe_threads = wpe_rows * ((C + 7) / 8), block = 256;
    if (dwpe != NULL) {
        encoder_backward_wpe_kernel<<<ceil_div(wpe_threads, block), block, 0, stream>>>(dwpe, dout, B, T, C, wpe_rows, accumulate);
        cudaCheckLaunch();
    }
    // dwte: stable sort of (token, position) by token, then the two passes over chunks of the sorted entries
    const size_t slot = ceil_div<size_t>((size_t)N * sizeof(int), 256) * 256;
    int *positions = (int *)scratch;
    int *sorted_positions = (int *)((char *)scratch + slot);
    int *sorted_tokens = (int *)((char *)scratch + 2 * slot);
    void *sort_temp = (char *)scratch + 3 * slot;
    const size_t sort_end = encoder_backward_sort_bytes(N);
    size_t sort_bytes = sort_end - 3 * slot;
    const int chunks = ceil_div(N, ENCODER_WTE_CHUNK);
    float *head = (float *)((char *)scratch + sort_end);
    float *tail = head + (size_t)chunks * C;
    encoder_iota_kernel<<<ceil_div(N, block), block, 0, stream>>>(positions, N);
    cudaCheckLaunch();
    int key_bits = 1;
    while ((1 << key_bits) < Vp) key_bits++;
    cudaCheck(cub::DeviceRadixSort::SortPairs(sort_temp, sort_bytes, tokens, sorted_tokens, positions,
                                              sorted_positions, N, 0, key_bits, stream));
    // G threads per slice of a piece's rows, up to ENCODER_WTE_SLICES slices per block
    const int groups = (C + 7) / 8;
    const int G = groups >= 256 ? 256 : ceil_div(groups, WARP_SIZE) * WARP_SIZE;
    const int slices = std::min(ENCODER_WTE_SLICES, (int)(ENCODER_WTE_SMEM / ((size_t)C * sizeof(float))));
    encoder_backward_wte_chunk_kernel<<<chunks, slices * G, slices * C * sizeof(float), stream>>>(dwte, head, tail, dout, sorted_tokens,
                                                                                                sorted_positions, N, C, G);
    cudaCheckLaunch();
    encoder_backward_wte_span_kernel<<<chunks, block, 0, stream>>>(dwte, head, tail, sorted_tokens, N, C);
    cudaCheckLaunch();
}

#endif // KERNELS_ENCODER_CUH
