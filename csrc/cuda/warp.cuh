// The warp-wide operations of the warp-level code (mma_tiles.cuh, gemv_rows.cuh, act_quant.cuh)
// on the device: the lane, shuffles, and the int8 MMAs; and the reductions built on them.
// host_warp.h has the same interface for 32 host threads, so that code also runs on a machine
// without a GPU (tests).
#pragma once

#include <cstdint>
#include <type_traits>

#include "csrc/cuda/common.cuh"

namespace edgellama::cuda {

struct DeviceWarp {
    __device__ __forceinline__ int lane() const { return static_cast<int>(threadIdx.x % kWarp); }

    template <class T>
    __device__ __forceinline__ T shfl(T v, int src_lane) const {
        return __shfl_sync(0xffffffffu, v, src_lane);
    }

    template <class T>
    __device__ __forceinline__ T shfl_xor(T v, int lane_mask) const {
        return __shfl_xor_sync(0xffffffffu, v, lane_mask);
    }

    // d = a x b for one 16x8x32 int8 tile (sm_80+). Fragments (PTX ISA, "matrix fragments for
    // mma.m16n8k32", .s8), with g = lane / 4, c = lane % 4: a0 holds A's row g, columns 4c..4c+3;
    // a1 row g + 8, same columns; a2 and a3 the same rows at columns 16 + 4c..; b0 holds B's rows
    // 4c..4c+3 of column g, b1 rows 16 + 4c..; d0, d1 are D's row g, columns 2c and 2c + 1, d2 and
    // d3 row g + 8.
    __device__ __forceinline__ void mma_16x8x32(const uint32_t (&a)[4], const uint32_t (&b)[2], int (&d)[4]) const {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
        asm volatile(
            "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
            "{%10, %10, %10, %10};\n"
            : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(0));
#else
        __trap();  // never launched below sm_80 (int8_mma_supported)
#endif
    }

    // d = a x b for one 16x8x16 int8 tile (sm_80+): a0 row g, a1 row g + 8, columns 4c..4c+3;
    // b0 rows 4c..4c+3 of column g; d as for 16x8x32.
    __device__ __forceinline__ void mma_16x8x16(const uint32_t (&a)[2], uint32_t b, int (&d)[4]) const {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5}, {%6}, {%7, %7, %7, %7};\n"
            : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(b), "r"(0));
#else
        __trap();
#endif
    }
};

// A thread block on the device for block-level code (attention_block.cuh, norm_block.cuh): its
// thread, size, the thread's warp, the barrier and the block's shared memory (host_warp.h's
// HostBlock is the host's).
template <class Shared>
struct DeviceBlock {
    Shared& sh;
    __device__ __forceinline__ int thread() const { return static_cast<int>(threadIdx.x); }
    __device__ __forceinline__ int threads() const { return static_cast<int>(blockDim.x); }
    __device__ __forceinline__ DeviceWarp warp() const { return DeviceWarp{}; }
    __device__ __forceinline__ void sync() const { __syncthreads(); }
    __device__ __forceinline__ Shared& shared() const { return sh; }
};

// Butterfly reductions over the warp (every lane gets the result), for any Warp: xor-shuffles
// over lane distances first_distance, first_distance / 2, ..., 1 (16: the warp, 8: a half-warp),
// each of n values in turn. A Warp may provide the same butterfly (same operations in the same
// order, so the same bits) as butterfly_n; HostWarp does, so its threads meet once, not 5 n times.
enum class Reduce { kSum, kMax };

template <Reduce kOp, class T>
__host__ __device__ __forceinline__ T combine(T a, T b) {
    if constexpr (kOp == Reduce::kSum) return a + b;
    else return fmaxf(a, b);
}

template <Reduce kOp, class T, int N>
__device__ __forceinline__ void device_butterfly(const DeviceWarp& warp, T (&v)[N], int first_distance) {
#pragma unroll
    for (int i = 0; i < N; ++i) {
#pragma unroll
        for (int o = first_distance; o > 0; o >>= 1) v[i] = combine<kOp>(v[i], warp.shfl_xor(v[i], o));
    }
}

template <Reduce kOp, class Warp, class T, int N>
__host__ __device__ __forceinline__ void warp_butterfly(const Warp& warp, T (&v)[N], int first_distance) {
    if constexpr (std::is_same_v<Warp, DeviceWarp>) {
        device_butterfly<kOp>(warp, v, first_distance);
    } else {
        warp.template butterfly_n<kOp>(v, first_distance);
    }
}

template <class Warp, class T, int N>
__host__ __device__ __forceinline__ void warp_reduce_sum_n(const Warp& warp, T (&v)[N]) {
    warp_butterfly<Reduce::kSum>(warp, v, kWarp / 2);
}

template <class Warp, class T>
__host__ __device__ __forceinline__ T warp_reduce_sum(const Warp& warp, T v) {
    T a[1] = {v};
    warp_butterfly<Reduce::kSum>(warp, a, kWarp / 2);
    return a[0];
}

template <class Warp>
__host__ __device__ __forceinline__ float warp_reduce_max(const Warp& warp, float v) {
    float a[1] = {v};
    warp_butterfly<Reduce::kMax>(warp, a, kWarp / 2);
    return a[0];
}

// A block's share of a count that several blocks of a launch add to: after the block's writes are
// fenced (visible device-wide), adds `amount` to *count and returns, on every thread of the block,
// whether this made the count reach `total` — that block is the last of them to finish, sees the
// others' writes (through load_cg) and resets the count to zero for the next launch. Needs a
// `bool last` in the block's shared memory. Every thread calls it. On the host blocks run one
// after another: a plain count.
template <class Block>
__host__ __device__ __forceinline__ bool last_to_finish(const Block& block, unsigned* count, unsigned amount,
                                                        unsigned total) {
#if defined(__CUDA_ARCH__)
    __threadfence();
#endif
    block.sync();
    if (block.thread() == 0) {
#if defined(__CUDA_ARCH__)
        const unsigned before = atomicAdd(count, amount);
        __threadfence();  // the block's reads of the others' writes come after the count
#else
        const unsigned before = *count;
        *count += amount;
#endif
        block.shared().last = before + amount == total;
        if (block.shared().last) *count = 0;
    }
    block.sync();
    return block.shared().last;
}

// The sum over the 16 lanes of this lane's half-warp.
template <class Warp>
__host__ __device__ __forceinline__ int half_warp_reduce_sum(const Warp& warp, int v) {
    int a[1] = {v};
    warp_butterfly<Reduce::kSum>(warp, a, kWarp / 4);
    return a[0];
}

}  // namespace edgellama::cuda
