// A warp on the host: 32 lanes, fibers of one thread (host_fibers.h), run the same warp code
// (mma_tiles.cuh) in step. lane(), the shuffles and the int8 MMAs of warp.cuh's DeviceWarp
// exchange values through shared slots between barriers; the MMAs rebuild their operands from
// the lanes' fragments with the PTX layouts that warp.cuh documents. For tests on machines
// without a GPU: it checks everything in the tiles but the hardware itself.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "csrc/cuda/host_fibers.h"
#include "csrc/cuda/warp.cuh"

namespace edgellama::cuda {

class HostWarpExchange {
public:
    static constexpr int kLanes = 32;

    explicit HostWarpExchange(int parties = kLanes) : parties_(parties) {}

    // Returns once all parties (a warp's 32 lanes, or a block's threads) have called it. The
    // parties are fibers of one thread (host_fibers.h): a waiter hands the thread to the next one,
    // so plain counters suffice.
    void barrier() {
        const unsigned generation = generation_;
        if (++arrived_ == parties_) {
            arrived_ = 0;
            ++generation_;
        } else {
            while (generation_ == generation) fiber_yield();
        }
    }

    uint64_t value[kLanes] = {};
    std::vector<uint64_t> values;  // butterfly_n: n values a lane
    uint32_t a[kLanes][4] = {};
    uint32_t b[kLanes][2] = {};

private:
    const int parties_;
    int arrived_ = 0;
    unsigned generation_ = 0;
};

// The interface is __host__ __device__ only because the tiles it is passed to are; its code runs on
// the host alone (the device compilation sees empty bodies).
struct HostWarp {
    HostWarpExchange* x;
    int lane_;

    __host__ __device__ int lane() const { return lane_; }

    template <class T>
    __host__ __device__ T shfl(T v, int src_lane) const {
#if defined(__CUDA_ARCH__)
        return v;
#else
        static_assert(sizeof(T) <= sizeof(uint64_t), "one slot a lane");
        uint64_t bits = 0;
        std::memcpy(&bits, &v, sizeof v);
        x->value[lane_] = bits;
        x->barrier();
        T out;
        const uint64_t got = x->value[src_lane];
        std::memcpy(&out, &got, sizeof out);
        x->barrier();  // nobody overwrites a slot before everyone has read
        return out;
#endif
    }

    template <class T>
    __host__ __device__ T shfl_xor(T v, int lane_mask) const {
        return shfl(v, lane_ ^ lane_mask);
    }

    // warp.cuh's butterfly for n values at once, every lane simulating the xor-shuffle stages on
    // all lanes' values: the same operations in the same order as the shuffles, two barriers.
    template <Reduce kOp, class T, int N>
    __host__ __device__ void butterfly_n(T (&v)[N], int first_distance) const {
#if !defined(__CUDA_ARCH__)
        static_assert(sizeof(T) <= sizeof(uint64_t), "one slot a value");
        if (lane_ == 0 && x->values.size() < static_cast<size_t>(kWarp * N)) x->values.resize(kWarp * N);
        x->barrier();
        for (int i = 0; i < N; ++i) std::memcpy(&x->values[lane_ * N + i], &v[i], sizeof(T));
        x->barrier();
        for (int i = 0; i < N; ++i) {
            T lanes[kWarp];
            for (int l = 0; l < kWarp; ++l) std::memcpy(&lanes[l], &x->values[l * N + i], sizeof(T));
            for (int o = first_distance; o > 0; o >>= 1) {
                T next[kWarp];
                for (int l = 0; l < kWarp; ++l) next[l] = combine<kOp>(lanes[l], lanes[l ^ o]);
                std::memcpy(lanes, next, sizeof lanes);
            }
            v[i] = lanes[lane_];
        }
        x->barrier();  // nobody overwrites a slot before everyone has read
#endif
    }

    __host__ __device__ void mma_16x8x32(const uint32_t (&a)[4], const uint32_t (&b)[2], int (&d)[4]) const {
#if !defined(__CUDA_ARCH__)
        mma(a, b, 32, d);
#endif
    }

    __host__ __device__ void mma_16x8x16(const uint32_t (&a)[2], uint32_t b, int (&d)[4]) const {
#if !defined(__CUDA_ARCH__)
        const uint32_t a4[4] = {a[0], a[1], 0, 0};
        const uint32_t b2[2] = {b, 0};
        mma(a4, b2, 16, d);
#endif
    }

private:
    static int byte_at(uint32_t word, int k) { return static_cast<int8_t>((word >> (8 * (k % 4))) & 0xffu); }

    // A[m][k] and B[k][n] from the lanes' fragments (warp.cuh): lane (g, c) holds A's rows g and
    // g + 8 at columns 4c.. (registers 0, 1) and 16 + 4c.. (2, 3), and B's rows 4c.. (register 0)
    // and 16 + 4c.. (1) of column g.
    int a_at(int m, int k) const {
        const int owner = (m % 8) * 4 + (k % 16) / 4;
        return byte_at(x->a[owner][(m < 8 ? 0 : 1) + (k < 16 ? 0 : 2)], k);
    }
    int b_at(int k, int n) const {
        const int owner = n * 4 + (k % 16) / 4;
        return byte_at(x->b[owner][k < 16 ? 0 : 1], k);
    }

    void mma(const uint32_t (&a)[4], const uint32_t (&b)[2], int depth, int (&d)[4]) const {
        std::memcpy(x->a[lane_], a, sizeof a);
        std::memcpy(x->b[lane_], b, sizeof b);
        x->barrier();
        const int g = lane_ / 4, c = lane_ % 4;
        for (int i = 0; i < 4; ++i) {  // d_i: row g + 8 (i / 2), column 2c + i % 2
            const int m = g + 8 * (i / 2), n = 2 * c + i % 2;
            int sum = 0;
            for (int k = 0; k < depth; ++k) sum += a_at(m, k) * b_at(k, n);
            d[i] = sum;
        }
        x->barrier();
    }
};

// A thread block on the host (the Block interface of attention_block.cuh): n_threads threads, a
// HostWarp for each warp of them, a barrier over all, and one Shared for the block.
template <class Shared>
struct HostBlockState {
    explicit HostBlockState(int n_threads) : threads(n_threads), all(n_threads), warps(n_threads / 32) {}
    int threads;
    HostWarpExchange all;
    std::vector<HostWarpExchange> warps;
    Shared shared{};
};

template <class Shared>
struct HostBlock {
    HostBlockState<Shared>* state;
    int thread_;
    __host__ __device__ int thread() const { return thread_; }
    __host__ __device__ int threads() const {
#if defined(__CUDA_ARCH__)
        return 0;
#else
        return state->threads;
#endif
    }
    __host__ __device__ HostWarp warp() const {
#if defined(__CUDA_ARCH__)
        return HostWarp{nullptr, 0};
#else
        return HostWarp{&state->warps[thread_ / HostWarpExchange::kLanes], thread_ % HostWarpExchange::kLanes};
#endif
    }
    __host__ __device__ void sync() const {
#if !defined(__CUDA_ARCH__)
        state->all.barrier();
#endif
    }
    __host__ __device__ Shared& shared() const { return state->shared; }
};

// Runs fn(HostBlock) on n_threads fibers (a multiple of 32) and waits for all of them.
template <class Shared, class Fn>
void run_host_block(int n_threads, Fn&& fn) {
    HostBlockState<Shared> state(n_threads);
    run_fibers(n_threads, [&](int t) { fn(HostBlock<Shared>{&state, t}); });
}

// Runs fn(HostWarp) on 32 fibers, one a lane, and waits for all of them.
template <class Fn>
void run_host_warp(Fn&& fn) {
    HostWarpExchange exchange;
    run_fibers(HostWarpExchange::kLanes, [&](int lane) { fn(HostWarp{&exchange, lane}); });
}

}  // namespace edgellama::cuda
