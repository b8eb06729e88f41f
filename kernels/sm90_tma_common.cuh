// Hopper (sm_90a) building blocks of the warp-specialized GEMMs (the INT8 GEMM, the BF16 GEMM with GELU
// epilogues): shared-memory barriers (mbarrier), tensor copies (TMA) into 128-byte-swizzled tiles, cluster
// helpers, the wgmma descriptor of such a tile, the host-side tensor map and the grouped tile raster of a
// persistent grid. The device functions compile to PTX only for sm_90a: callers keep them behind
// SM90_HAS_WGMMA or in kernels built for sm_90a only.
#ifndef KERNELS_SM90_TMA_COMMON_CUH
#define KERNELS_SM90_TMA_COMMON_CUH

#include <stdint.h>
#include <cuda.h>
#include <cudaTypedefs.h>
#include "kernels/cuda_common.h"

__device__ __forceinline__ uint32_t sm90_smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void sm90_mbar_init(uint64_t *bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(sm90_smem_addr(bar)), "r"(count));
}

__device__ __forceinline__ void sm90_mbar_arrive_expect_tx(uint64_t *bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(sm90_smem_addr(bar)), "r"(bytes) : "memory");
}

// One arrival on the barrier at shared address `bar`.
__device__ __forceinline__ void sm90_mbar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void sm90_mbar_arrive(uint64_t *bar) { sm90_mbar_arrive(sm90_smem_addr(bar)); }

// Spins until the phase with parity `parity` of the barrier at shared address `bar` has completed.
__device__ __forceinline__ void sm90_mbar_wait(uint32_t bar, uint32_t parity) {
    asm volatile(
        "{\n"
        ".reg .pred done;\n"
        "SM90_WAIT_%=:\n"
        "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
        "@!done bra SM90_WAIT_%=;\n"
        "}\n" ::"r"(bar), "r"(parity) : "memory");
}

// One thread sets up a ring of `stages` stages: full[s] completes on one arrival plus the stage's copied bytes,
// empty[s] on `empty_arrivals` consumer arrivals. That thread then calls sm90_fence_barrier_init after its
// last barrier init, and every thread sm90_barriers_ready<CS>() before any copy is issued.
__device__ __forceinline__ void sm90_ring_barriers_init(uint64_t *full, uint64_t *empty, int stages, uint32_t empty_arrivals) {
    for (int s = 0; s < stages; s++) {
        sm90_mbar_init(&full[s], 1);
        sm90_mbar_init(&empty[s], empty_arrivals);
    }
}
__device__ __forceinline__ void sm90_fence_barrier_init() { asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory"); }

// Position in a ring of STAGES stages (of a copy thread or a consumer): stage, and the parity of the stage's
// current fill. advance() moves one step on.
template <int STAGES>
struct Sm90RingPos {
    uint32_t stage = 0, parity = 0;
    __device__ __forceinline__ void advance() {
        if (++stage == STAGES) {
            stage = 0;
            parity ^= 1;
        }
    }
};

// Arrives on the barrier at the same shared-memory offset in block `rank` of the cluster. CTA-scope
// (default) semantics suffice when the arrival only says that this block's wgmma finished reading a stage
// (wgmma.wait_group came first): nothing the arriving thread wrote must become visible to the peer.
__device__ __forceinline__ void sm90_mbar_arrive_cluster(uint64_t *bar, uint32_t rank) {
    uint32_t remote;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(sm90_smem_addr(bar)), "r"(rank));
    asm volatile("mbarrier.arrive.shared::cluster.b64 _, [%0];" ::"r"(remote) : "memory");
}

__device__ __forceinline__ uint32_t sm90_cluster_rank() {
    uint32_t rank;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(rank));
    return rank;
}

// A consumer warpgroup releases ring stage s (its wgmma that read the stage completed): one arrival, by the
// warpgroup's first thread, on that stage's empty barrier in every block of the cluster of CS blocks.
template <int CS>
__device__ __forceinline__ void sm90_release_stage(uint64_t *empty, uint32_t s) {
    if (threadIdx.x % 128 != 0) return;
    if constexpr (CS > 1) {
        for (int r = 0; r < CS; r++) sm90_mbar_arrive_cluster(&empty[s], (uint32_t)r);
    } else {
        sm90_mbar_arrive(&empty[s]);
    }
}

// The blocks of a CM x CN cluster (rank = dm * CN + dn) that share this block's A tile (its tile row) and
// its B tile (its tile column), as TMA multicast masks.
template <int CM, int CN>
__device__ __forceinline__ void sm90_multicast_masks(int dm, int dn, uint16_t &mask_a, uint16_t &mask_b) {
    mask_a = (uint16_t)(((1 << CN) - 1) << (dm * CN));
    mask_b = 0;
    for (int i = 0; i < CM; i++) mask_b |= (uint16_t)(1 << (i * CN + dn));
}

// All threads of all blocks of the cluster meet here (release/acquire at cluster scope).
__device__ __forceinline__ void sm90_cluster_sync() {
    asm volatile("barrier.cluster.arrive.release;\nbarrier.cluster.wait.acquire;" ::: "memory");
}

// Every block's barriers are initialized (and visible cluster-wide) before any thread goes on: a block
// barrier, then, in clusters of CS > 1 blocks, a cluster barrier (a peer may multicast into this block).
template <int CS>
__device__ __forceinline__ void sm90_barriers_ready() {
    __syncthreads();
    if constexpr (CS > 1) sm90_cluster_sync();
}

// 2D tensor copy of the box at (c0 = column, c1 = row) into shared memory, completing on `bar`.
__device__ __forceinline__ void sm90_tma_load_2d(void *dst, const CUtensorMap *map, uint64_t *bar, int c0, int c1) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];"
        ::"r"(sm90_smem_addr(dst)), "l"((uint64_t)map), "r"(sm90_smem_addr(bar)), "r"(c0), "r"(c1) : "memory");
}

// The same copy into shared memory at the same offset in every block of `mask` (cluster ranks),
// completing on the barrier at the same offset in each.
__device__ __forceinline__ void sm90_tma_load_2d_multicast(void *dst, const CUtensorMap *map, uint64_t *bar, int c0, int c1,
                                                           uint16_t mask) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.multicast::cluster"
        " [%0], [%1, {%3, %4}], [%2], %5;"
        ::"r"(sm90_smem_addr(dst)), "l"((uint64_t)map), "r"(sm90_smem_addr(bar)), "r"(c0), "r"(c1), "h"(mask) : "memory");
}

// 1D bulk copy of `bytes` (multiple of 16, both addresses 16-byte aligned) from global to shared memory,
// completing on `bar`.
__device__ __forceinline__ void sm90_bulk_load(void *dst, const void *src, uint32_t bytes, uint64_t *bar) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                 ::"r"(sm90_smem_addr(dst)), "l"(src), "r"(bytes), "r"(sm90_smem_addr(bar)) : "memory");
}

// wgmma descriptor of a K-major tile in shared memory written with 128-byte swizzle: rows of 128 bytes,
// 8-row groups 1024 bytes apart (stride byte offset), tile base 1024-byte aligned.
// Low word: the address in 16-byte units (14 bits: shared addresses stay under 2^18) and a leading byte
// offset of 1 (unused with swizzle); high word, the same for every tile: stride byte offset and the swizzle
// mode. Tiles 16 * t bytes apart have low words t apart (the 14-bit field never carries within a block's
// shared memory), so a descriptor advances along K or across stages in its low word only.
#define SM90_SW128_DESC_HI ((uint64_t)(1024 >> 4) << 32 | 1ull << 62)
__device__ __forceinline__ uint32_t sm90_sw128_desc_lo(const void *tile) { return ((sm90_smem_addr(tile) & 0x3FFFFu) >> 4) | (1u << 16); }

// Where the j-th output tile of a persistent block lies. Cluster tiles (CM x CN tiles each) are visited in
// a grouped raster (GROUP_M tile rows walk the tile columns together, for L2 reuse); cluster c of the grid
// takes cluster tiles c, c + clusters, c + 2 * clusters, ... Returns false past the last one.
struct Sm90Tile {
    int cmt, cnt;  // cluster tile row and column
    int mt, nt;    // this block's tile row and column
    bool inside;   // the block's tile lies inside the matrix (not cluster padding)
};

template <int CM, int CN, int GROUP_M>
__device__ __forceinline__ bool sm90_tile(Sm90Tile &t, int j, int m_tiles, int n_tiles, int dm, int dn) {
    static_assert(GROUP_M % CM == 0, "tile-row groups hold whole clusters");
    const int cm_tiles = (m_tiles + CM - 1) / CM, cn_tiles = (n_tiles + CN - 1) / CN;
    const int clusters = gridDim.x / (CM * CN);
    const int ct = blockIdx.x / (CM * CN) + j * clusters;
    if (ct >= cm_tiles * cn_tiles) return false;
    const int group_m = GROUP_M / CM;
    const int tiles_per_group = group_m * cn_tiles;
    const int group = ct / tiles_per_group, in_group = ct % tiles_per_group;
    const int first_cm = group * group_m;
    const int group_rows = min(cm_tiles - first_cm, group_m);
    t.cmt = first_cm + in_group % group_rows;
    t.cnt = in_group / group_rows;
    t.mt = t.cmt * CM + dm;
    t.nt = t.cnt * CN + dn;
    t.inside = t.mt < m_tiles && t.nt < n_tiles;
    return true;
}

// ---- host side

// Tensor map of a row-major [rows, cols] matrix of `type` (elem_bytes each), read in boxes of box_rows rows x
// box_cols columns (box_cols * elem_bytes a multiple of 16, at most 128 with 128-byte swizzle) written to shared
// memory with `swizzle`; boxes past the edges are zero-filled. Rows must be 16-byte aligned.
static inline CUtensorMap sm90_tensor_map_2d(const void *data, CUtensorMapDataType type, int elem_bytes, int rows, int cols, int box_rows,
                                             int box_cols, CUtensorMapSwizzle swizzle) {
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
    cuuint64_t strides[1] = {(cuuint64_t)cols * elem_bytes};
    cuuint32_t box[2] = {(cuuint32_t)box_cols, (cuuint32_t)box_rows};
    cuuint32_t elem_strides[2] = {1, 1};
    CUresult res = encode(&map, type, 2, (void *)data, dims, strides, box, elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle,
                          CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (res != CUDA_SUCCESS) {
        fprintf(stderr, "error: cuTensorMapEncodeTiled failed (%d) for a %d x %d matrix of %d-byte elements in %d x %d boxes\n", (int)res,
                rows, cols, elem_bytes, box_rows, box_cols);
        exit(1);
    }
    return map;
}

// The same in boxes of box_rows rows x 128 bytes with 128-byte swizzle (the GEMM operand tiles).
static inline CUtensorMap sm90_tensor_map_sw128(const void *data, CUtensorMapDataType type, int elem_bytes, int rows, int cols,
                                                int box_rows) {
    return sm90_tensor_map_2d(data, type, elem_bytes, rows, cols, box_rows, 128 / elem_bytes, CU_TENSOR_MAP_SWIZZLE_128B);
}

// Launches a persistent kernel on `blocks` blocks (a multiple of cluster_size) of `threads` threads with
// `smem` bytes of dynamic shared memory, in clusters of cluster_size blocks along x when that is above 1.
template <typename... KernelArgs, typename... Args>
static inline void sm90_launch_clusters(void (*kernel)(KernelArgs...), int blocks, int cluster_size, int threads, size_t smem,
                                        cudaStream_t stream, Args... args) {
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3(blocks);
    config.blockDim = dim3(threads);
    config.dynamicSmemBytes = smem;
    config.stream = stream;
    cudaLaunchAttribute attr = {};
    attr.id = cudaLaunchAttributeClusterDimension;
    attr.val.clusterDim.x = cluster_size;
    attr.val.clusterDim.y = 1;
    attr.val.clusterDim.z = 1;
    config.attrs = &attr;
    config.numAttrs = cluster_size > 1 ? 1 : 0;
    cudaCheck(cudaLaunchKernelEx(&config, kernel, args...));
}

// Multiprocessors of the current device (queried once).
static inline int sm90_sm_count() {
    static int sms = 0;
    if (sms == 0) {
        int device;
        cudaCheck(cudaGetDevice(&device));
        cudaCheck(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    }
    return sms;
}

#endif // KERNELS_SM90_TMA_COMMON_CUH
