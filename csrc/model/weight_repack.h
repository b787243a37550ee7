// Load-time repacking of weight matrices into row groups (csrc/kernels/row_groups.h).
//
// A repacked matrix takes exactly the bytes of its GGUF rows, so once a tensor is copied its
// mapped file pages can be handed back to the page cache (they stay on disk and in the OS cache; the
// embedding lookup of a tied output matrix reads the few rows it needs from there again). Peak
// memory therefore stays at about the file size: never the file plus a second copy of it.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include "csrc/core/thread_pool.h"
#include "csrc/model/llama_weights.h"

namespace edgellama {

struct FreeDeleter {
    void operator()(uint8_t* p) const { std::free(p); }
};
using AlignedBytes = std::unique_ptr<uint8_t[], FreeDeleter>;

// Repacks one matrix when its type has a row-group kernel in this build (else returns null and
// leaves w as it is); release_file_pages as below.
AlignedBytes repack_matrix(ThreadPool& pool, WeightMatrix& w, bool release_file_pages);

// Repacks every matmul weight (layers and output) whose type has a row-group kernel in this
// build into one huge-page-aligned arena advised for transparent huge pages, pointing each
// WeightMatrix at its copy; the returned arena owns the copies (null when nothing was repacked). Huge pages spare decode a TLB miss
// every 4 KiB of weights (1B Llama shape, 2 threads: decode +14%), at the price of slower page
// faults while loading (0.4 -> 1.2 s where the kernel compacts memory for them).
// release_file_pages: the weights live in a read-only file mapping, whose pages are dropped from
// this process once copied. Never set it for weights in ordinary memory: dropping those pages
// would zero them.
AlignedBytes repack_row_groups(ThreadPool& pool, LlamaWeights& weights, bool release_file_pages);

}  // namespace edgellama
