// Matrix products (decode and prefill) over weights in their GGUF formats, and the embedding
// lookup (row dequantize).
#include <type_traits>

#include "csrc/cuda/gemv_kernel.cuh"

namespace edgellama::cuda {

namespace {

// One thread per piece of the requested rows: out[t][piece] = decoded weights.
template <class Fmt>
__global__ void dequantize_rows_kernel(const uint8_t* __restrict__ w, size_t row_bytes, int64_t rows,
                                       const int32_t* __restrict__ ids, int64_t n_pieces, float* __restrict__ out,
                                       int64_t ld) {
    wait_for_prior_kernels();
    const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (p >= n_pieces) return;
    const int64_t t = blockIdx.y;
    const int32_t id = ids[t];
    if (id < 0 || id >= rows) return;  // the host checked the ids; never read outside the matrix
    float* dst = out + t * ld + p * Fmt::kPiece;
    Fmt::visit(w + static_cast<size_t>(id) * row_bytes, p, [&](int i, float v) { dst[i] = v; });
}

// kernel(std::false_type), or where `prefetch` is asked and the launch is one token's,
// kernel(std::true_type): the GEMV kernels' prefetching form (gemv_kernel.cuh) is built for
// one-token launches only.
template <int NT, class Kernel>
auto with_prefetch(bool prefetch, Kernel kernel) {
    if constexpr (NT == 1) {
        if (prefetch) return kernel(std::true_type{});
    }
    return kernel(std::false_type{});
}

// One tile's int8 GEMV launch: reader Q in Shape's blocks over the launch's rows; `tile`
// activation rows, `parts` a token (2: precise activations).
template <class Q, int NT, class Shape>
void launch_int8_gemv_tile(const RowSegments& seg, const DeviceMatrix& first, const uint8_t* act, size_t act_bytes,
                           int tile, bool accumulate, bool prefetch, int parts, cudaStream_t stream) {
    with_prefetch<NT>(prefetch, [&](auto kPrefetch) {
        launch("gemv_int8_kernel", gemv_int8_kernel<Q, NT, Shape, decltype(kPrefetch)::value>,
               ceil_div(seg.total_rows(), Shape::kRowsPerBlock), kGemvWarps * kWarp, stream, seg, first.row_bytes,
               first.cols, act, act_bytes, tile, accumulate, parts);
    });
}

// One type and width: every matrix in one launch per tile.
void launch_segments(const DeviceMatrix& first, const RowSegments& seg, const MatmulInput& in, bool accumulate,
                     cudaStream_t stream) {
    if (matmul_mma(first.type, seg, first.row_bytes, in, accumulate, stream)) return;
    const bool quantized = dispatch_gemv_reader(first.type, [&](auto fmt) {
        using Q = decltype(fmt);
        size_t act_bytes;
        const uint8_t* act = activation_blocks<Q>(in, &act_bytes);
        // The tiles cut the activation rows (precise: two a token, so a tile holds whole tokens).
        for_each_tile(in.n * in.parts, [&](int64_t start, int tile, auto nt) {
            launch_int8_gemv_tile<Q, decltype(nt)::value, GemvLaunchShape<Q>>(
                at_token(seg, start / in.parts), first, act + start * act_bytes, act_bytes, tile, accumulate,
                in.prefetch_weights, in.parts, stream);
        }, in.parts);
    });
    if (quantized) return;
    const unsigned grid = ceil_div(seg.total_rows(), kGemvWarps);
    const bool known = dispatch_format(first.type, [&](auto fmt) {
        using Fmt = decltype(fmt);
        for_each_tile(in.n, [&](int64_t start, int tile, auto nt) {
            launch("gemv_float_kernel", gemv_float_kernel<Fmt, decltype(nt)::value>, grid, kGemvWarps * kWarp, stream,
                   at_token(seg, start), first.row_bytes, first.cols / Fmt::kPiece, in.x + start * in.cols, in.cols,
                   tile, accumulate);
        });
    });
    if (!known) throw CudaError("matmul: unsupported weight type " + std::to_string(first.type));
}

}  // namespace

int piece_elements(int32_t type) {
    int n = 0;
    dispatch_format(type, [&](auto fmt) { n = decltype(fmt)::kPiece; });
    return n;
}

void matmul_group(const MatmulTarget* targets, int count, const MatmulInput& in, bool accumulate,
                  cudaStream_t stream) {
    for_each_launch_group(targets, count, in.cols, [&](const DeviceMatrix& first, const RowSegments& seg) {
        launch_segments(first, seg, in, accumulate, stream);
    });
}

void matmul(const DeviceMatrix& w, const MatmulInput& in, float* y, bool accumulate, cudaStream_t stream) {
    matmul_group({MatmulTarget{&w, y}}, in, accumulate, stream);
}

bool matmul_qkv_rope(const MatmulTarget (&qkv)[3], const MatmulInput& in, const RopeStore& rope,
                     unsigned* head_counts, cudaStream_t stream) {
    if (head_counts == nullptr || !qkv_rope_fusable(qkv, in, rope)) return false;
    for_each_launch_group(qkv, 3, in.cols, [&](const DeviceMatrix& first, const RowSegments& seg) {
        dispatch_gemv_reader(first.type, [&](auto fmt) {
            using Q = decltype(fmt);
            using Shape = GemvLaunchShape<Q>;
            size_t act_bytes;
            const uint8_t* act = activation_blocks<Q>(in, &act_bytes);
            with_prefetch<1>(in.prefetch_weights, [&](auto kPrefetch) {
                launch("gemv_int8_rope_kernel", gemv_int8_rope_kernel<Q, Shape, decltype(kPrefetch)::value>,
                       ceil_div(seg.total_rows(), Shape::kRowsPerBlock), kGemvWarps * kWarp, stream, seg,
                       first.row_bytes, first.cols, act, act_bytes, rope, head_counts);
            });
        });
    });
    return true;
}

bool matmul_swiglu(const DeviceMatrix& w_gate, const DeviceMatrix& w_up, const MatmulInput& in, float* gate,
                   float* up, const ActRowsOut& act_out, unsigned* chunk_counts, cudaStream_t stream) {
    // A long prefill on tensor cores: two products, then SwiGLU.
    if (!mma_applies(w_gate.type, in) && swiglu_fusable(w_gate, w_up, in.cols)) {
        const RowSegments seg = swiglu_segments(w_gate, w_up, gate);
        const ActRowsOut quantized = swiglu_act_out(w_gate, act_out, chunk_counts, in.parts);
        const bool fused = dispatch_gemv_reader(w_gate.type, [&](auto fmt) {
            using Q = decltype(fmt);
            using Shape = GemvLaunchShape<Q>;
            const unsigned grid = ceil_div(w_gate.rows, Shape::kRowsPerBlock);
            size_t act_bytes;
            const uint8_t* act = activation_blocks<Q>(in, &act_bytes);
            for_each_tile(in.n * in.parts, [&](int64_t start, int tile, auto nt) {  // activation rows
                const int64_t token = start / in.parts;
                RowSegments s = seg;
                s.y[0] += token * w_gate.rows;
                constexpr int NT = decltype(nt)::value;
                with_prefetch<NT>(in.prefetch_weights, [&](auto kPrefetch) {
                    launch("gemv_int8_swiglu_kernel",
                           gemv_int8_swiglu_kernel<Q, NT, Shape, decltype(kPrefetch)::value>, grid, kGemvWarps * kWarp,
                           stream, s, w_gate.row_bytes, w_gate.cols, act + start * act_bytes, act_bytes, tile,
                           at_token(quantized, token), chunk_counts, in.parts);
                });
            }, in.parts);
        });
        if (fused) return quantized.rows != nullptr;
    }
    matmul_group({MatmulTarget{&w_gate, gate}, MatmulTarget{&w_up, up}}, in, false, stream);
    swiglu(gate, up, in.n * w_gate.rows, stream);
    return false;
}

namespace {

// Reader Q keeping kN pieces in flight a lane instead of its own Q::kInFlight.
template <class Q, int kN>
struct WithInFlight : Q {
    static constexpr int kInFlight = kN;
};

// What the benchmarks compare: a block shape with the reader's own pieces in flight, or the
// reader's launch shape (Shape = void) with kInFlight pieces in flight.
template <class Shape, int kInFlight>
struct ProbeVariant {
    template <class Q>
    using Reader = std::conditional_t<kInFlight == 0, Q, WithInFlight<Q, kInFlight>>;
    template <class Q>
    using ShapeFor = std::conditional_t<std::is_void_v<Shape>, GemvLaunchShape<Q>, Shape>;
};

// The reader's launch shape with the registers uncapped (__launch_bounds__ asking for one block a
// multiprocessor): without it ptxas may trade spills for occupancy, as it does for the grouped Q6_K
// reader (96 registers and 12 bytes of spills; uncapped, 132 and none). Which is faster is what
// this variant measures.
struct UncappedRegisters {};
template <>
struct ProbeVariant<UncappedRegisters, 0> {
    template <class Q>
    using Reader = Q;
    template <class Q>
    using ShapeFor = GemvLaunchShape<Q>;
};

template <class Q, class Shape>
__global__ void __launch_bounds__(kGemvWarps * kWarp, 1)
gemv_int8_uncapped_kernel(RowSegments seg, size_t row_bytes, int64_t cols, const uint8_t* __restrict__ act,
                          size_t act_row_bytes) {
    wait_for_prior_kernels();
    __shared__ GemvShared<Shape::kRows, 1> shared;
    gemv_int8_rows<Q, 1, Shape>(DeviceBlock<GemvShared<Shape::kRows, 1>>{shared}, seg, row_bytes, cols, act,
                                act_row_bytes, 1, false, block_first_row<Shape>());
}

template <int kSplit, int kRows>
std::string variant_name(ProbeVariant<GemvShape<kSplit, kRows>, 0>) {
    return std::to_string(kSplit) + " warp(s) x " + std::to_string(kRows) + " row(s)";
}
template <int kInFlight>
std::string variant_name(ProbeVariant<void, kInFlight>) {
    return "launch shape, " + std::to_string(kInFlight) + " in flight";
}
std::string variant_name(ProbeVariant<UncappedRegisters, 0>) { return "launch shape, registers uncapped"; }

template <class Fn>
bool with_probe_variant(int variant, Fn&& fn) {
    switch (variant) {
        case 0: fn(ProbeVariant<GemvShape<1, 2>, 0>{}); return true;
        case 1: fn(ProbeVariant<GemvShape<2, 1>, 0>{}); return true;
        case 2: fn(ProbeVariant<GemvShape<2, 2>, 0>{}); return true;
        case 3: fn(ProbeVariant<GemvShape<4, 1>, 0>{}); return true;
        case 4: fn(ProbeVariant<GemvShape<4, 2>, 0>{}); return true;
        case 5: fn(ProbeVariant<GemvShape<4, 4>, 0>{}); return true;
        case 6: fn(ProbeVariant<void, 2>{}); return true;
        case 7: fn(ProbeVariant<void, 4>{}); return true;
        case 8: fn(ProbeVariant<void, 8>{}); return true;
        case 9: fn(ProbeVariant<void, 16>{}); return true;
        case 10: fn(ProbeVariant<UncappedRegisters, 0>{}); return true;
        default: return false;
    }
}
constexpr int kProbeVariants = 11;

// The readers the shapes are compared on (each shape's kernels are built for these alone).
template <class Q>
constexpr bool kProbedReader = std::is_same_v<Q, Int8Q4_0> || std::is_same_v<Q, Int8Q8_0> ||
                               std::is_same_v<Q, GemvReaderOf<Int8Q4_K>::type> || std::is_same_v<Q, Int8Q6_K> ||
                               std::is_same_v<Q, Int8Q4_0GroupedWide> || std::is_same_v<Q, Int8Q8_0GroupedWide> ||
                               std::is_same_v<Q, Int8Q6_KGroupedWide>;

}  // namespace

int gemv_probe_shape_count() { return kProbeVariants; }

std::string gemv_probe_shape_name(int shape) {
    std::string name;
    if (!with_probe_variant(shape, [&](auto v) { name = variant_name(v); })) {
        throw CudaError("no GEMV probe shape " + std::to_string(shape));
    }
    return name;
}

void matmul_with_gemv_shape(int shape, const DeviceMatrix& w, const MatmulInput& in, float* y, cudaStream_t stream) {
    if (in.n != 1 || in.parts != 1) throw CudaError("the GEMV shapes are compared on one token's int8 row");
    const MatmulTarget target{&w, y};
    bool known = false;
    for_each_launch_group(&target, 1, in.cols, [&](const DeviceMatrix&, const RowSegments& seg) {
        with_probe_variant(shape, [&](auto v) {
            using Variant = decltype(v);
            dispatch_gemv_reader(w.type, [&](auto fmt) {
                using Q = decltype(fmt);
                if constexpr (kProbedReader<Q>) {
                    size_t act_bytes;
                    const uint8_t* act = activation_blocks<Q>(in, &act_bytes);
                    if constexpr (std::is_same_v<Variant, ProbeVariant<UncappedRegisters, 0>>) {
                        using Shape = GemvLaunchShape<Q>;
                        launch("gemv_int8_uncapped_kernel", gemv_int8_uncapped_kernel<Q, Shape>,
                               ceil_div(seg.total_rows(), Shape::kRowsPerBlock), kGemvWarps * kWarp, stream, seg,
                               w.row_bytes, w.cols, act, act_bytes);
                    } else {
                        launch_int8_gemv_tile<typename Variant::template Reader<Q>, 1,
                                              typename Variant::template ShapeFor<Q>>(seg, w, act, act_bytes, 1, false,
                                                                                       false, 1, stream);
                    }
                    known = true;
                }
            });
        });
    });
    if (!known) throw CudaError("no GEMV probe shape " + std::to_string(shape) + " for type " + std::to_string(w.type));
}

void dequantize_rows(const DeviceMatrix& w, const int32_t* ids, int64_t n, float* out, cudaStream_t stream) {
    if (n <= 0) return;
    constexpr int kThreads = 128;
    const bool known = dispatch_format(w.type, [&](auto fmt) {
        using Fmt = decltype(fmt);
        const int64_t n_pieces = w.cols / Fmt::kPiece;
        const dim3 grid(ceil_div(n_pieces, kThreads), static_cast<unsigned>(n));
        launch("dequantize_rows_kernel", dequantize_rows_kernel<Fmt>, grid, kThreads, stream, w.data, w.row_bytes, w.rows,
               ids, n_pieces, out, w.cols);
    });
    if (!known) throw CudaError("dequantize_rows: unsupported weight type " + std::to_string(w.type));
}

}  // namespace edgellama::cuda
