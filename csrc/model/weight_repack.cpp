#include "csrc/model/weight_repack.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <new>

namespace edgellama {

namespace {

constexpr size_t kAlignment = 64;
// Huge-page size on x86-64 and most arm64 kernels: the arena of all repacked weights starts on
// such a boundary so that transparent huge pages can back all of it.
constexpr size_t kHugePage = size_t(2) << 20;
// Repack this many groups between page releases, so at most this much of a tensor is resident
// twice at any moment.
constexpr int64_t kGroupsPerStep = 256;

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

// `bytes` of uninitialised memory aligned to `alignment` (a power of two, multiple of 64).
AlignedBytes allocate(size_t bytes, size_t alignment) {
    const size_t rounded = round_up(std::max<size_t>(bytes, 1), alignment);
    void* p = std::aligned_alloc(alignment, rounded);
    if (p == nullptr) throw std::bad_alloc();
#if defined(MADV_HUGEPAGE)
    // Decode streams every weight once per token: with 4 KiB pages each page costs a TLB miss.
    // (madvise needs a page-aligned start, hence the huge-page alignment of the arena.)
    if (alignment >= kHugePage) madvise(p, rounded, MADV_HUGEPAGE);
#endif
    return AlignedBytes(static_cast<uint8_t*>(p));
}

// Gives the whole pages inside [begin, end) of the mapped file back to the OS (they are re-read
// from the page cache if touched again).
void release_pages(const uint8_t* begin, const uint8_t* end) {
    static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    const uintptr_t first = (reinterpret_cast<uintptr_t>(begin) + page - 1) / page * page;
    const uintptr_t last = reinterpret_cast<uintptr_t>(end) / page * page;
    if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

size_t repacked_bytes(const WeightMatrix& w, const RowGroupKernel& kernel) {
    return kernel.group_bytes(w.cols) * static_cast<size_t>((w.rows + kGroupRows - 1) / kGroupRows);
}

// Repacks w into dst (repacked_bytes of room) and points w at it.
void repack_into(ThreadPool& pool, WeightMatrix& w, const RowGroupKernel& kernel, uint8_t* dst,
                 bool release_file_pages) {
    const int64_t n_groups = (w.rows + kGroupRows - 1) / kGroupRows;
    const size_t group_bytes = kernel.group_bytes(w.cols);
    for (int64_t g0 = 0; g0 < n_groups; g0 += kGroupsPerStep) {
        const int64_t g1 = std::min(n_groups, g0 + kGroupsPerStep);
        pool.run([&](int ith, int nth) {
            int64_t begin, end;
            split_range(g1 - g0, ith, nth, begin, end);
            for (int64_t g = g0 + begin; g < g0 + end; ++g) {
                const int64_t row = g * kGroupRows;
                const int n_rows = static_cast<int>(std::min<int64_t>(kGroupRows, w.rows - row));
                kernel.pack_group(w.cols, w.row(row), w.row_bytes, n_rows, dst + g * group_bytes);
            }
        });
        if (release_file_pages) release_pages(w.row(g0 * kGroupRows), w.row(std::min(w.rows, g1 * kGroupRows)));
    }
    w.group_kernel = &kernel;
    w.groups = dst;
    w.group_bytes = group_bytes;
}

}  // namespace

AlignedBytes repack_matrix(ThreadPool& pool, WeightMatrix& w, bool release_file_pages) {
    const RowGroupKernel* kernel = find_row_group_kernel(w.type);
    if (kernel == nullptr) return nullptr;
    AlignedBytes buffer = allocate(repacked_bytes(w, *kernel), kAlignment);
    repack_into(pool, w, *kernel, buffer.get(), release_file_pages);
    return buffer;
}

AlignedBytes repack_row_groups(ThreadPool& pool, LlamaWeights& weights, bool release_file_pages) {
    // One arena for every repacked matrix: a single huge-page-aligned block, each matrix 64-byte
    // aligned inside it (separate blocks would each waste up to a huge page at their end).
    std::vector<WeightMatrix*> matrices;
    for (LayerWeights& l : weights.layers) {
        for (WeightMatrix* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) matrices.push_back(w);
    }
    matrices.push_back(&weights.output);
    size_t total = 0;
    for (WeightMatrix* w : matrices) {
        if (const RowGroupKernel* kernel = find_row_group_kernel(w->type)) total += round_up(repacked_bytes(*w, *kernel), kAlignment);
    }
    if (total == 0) return nullptr;
    AlignedBytes arena = allocate(total, total >= kHugePage ? kHugePage : kAlignment);
    uint8_t* next = arena.get();
    const bool tied = weights.output.data == weights.token_embd.data;
    for (WeightMatrix* w : matrices) {
        const RowGroupKernel* kernel = find_row_group_kernel(w->type);
        if (kernel == nullptr) continue;
        repack_into(pool, *w, *kernel, next, release_file_pages);
        next += round_up(repacked_bytes(*w, *kernel), kAlignment);
    }
    if (tied && weights.output.groups != nullptr) {
        // The embedding lookup reads its rows from the same groups (the file pages may be gone).
        weights.token_embd.group_kernel = weights.output.group_kernel;
        weights.token_embd.groups = weights.output.groups;
        weights.token_embd.group_bytes = weights.output.group_bytes;
    }
    return arena;
}

}  // namespace edgellama
