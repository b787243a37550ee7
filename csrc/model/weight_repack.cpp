#include "csrc/model/weight_repack.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <new>

namespace edgellama {

namespace {

constexpr size_t kAlignment = 64;
// Repack this many groups between page releases, so at most this much of a tensor is resident
// twice at any moment.
constexpr int64_t kGroupsPerStep = 256;

AlignedBytes allocate(size_t bytes) {
    const size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
    void* p = std::aligned_alloc(kAlignment, rounded);
    if (p == nullptr) throw std::bad_alloc();
#if defined(MADV_HUGEPAGE)
    // Decode streams every weight once per token: huge pages spare it most TLB misses.
    madvise(p, rounded, MADV_HUGEPAGE);
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

}  // namespace

AlignedBytes repack_matrix(ThreadPool& pool, WeightMatrix& w, bool release_file_pages) {
    const RowGroupKernel* found = find_row_group_kernel(w.type);
    if (found == nullptr) return nullptr;
    const RowGroupKernel& kernel = *found;
    const int64_t n_groups = (w.rows + kGroupRows - 1) / kGroupRows;
    const size_t group_bytes = kernel.group_bytes(w.cols);
    AlignedBytes buffer = allocate(group_bytes * static_cast<size_t>(n_groups));
    uint8_t* dst = buffer.get();
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
    return buffer;
}

std::vector<AlignedBytes> repack_row_groups(ThreadPool& pool, LlamaWeights& weights, bool release_file_pages) {
    std::vector<AlignedBytes> owned;
    auto repack = [&](WeightMatrix& w) {
        if (AlignedBytes copy = repack_matrix(pool, w, release_file_pages)) owned.push_back(std::move(copy));
    };
    for (LayerWeights& l : weights.layers) {
        for (WeightMatrix* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) repack(*w);
    }
    const bool tied = weights.output.data == weights.token_embd.data;
    repack(weights.output);
    if (tied && weights.output.groups != nullptr) {
        // The embedding lookup reads its rows from the same groups (the file pages may be gone).
        weights.token_embd.group_kernel = weights.output.group_kernel;
        weights.token_embd.groups = weights.output.groups;
        weights.token_embd.group_bytes = weights.output.group_bytes;
    }
    return owned;
}

}  // namespace edgellama
