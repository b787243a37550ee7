// Size arithmetic that cannot wrap around. Every buffer size derived from n_ctx, n_threads or the
// model's dimensions (which come from a caller or a file) goes through checked_bytes, so an absurd
// request throws std::overflow_error naming the buffer instead of allocating a wrapped-around,
// too-small buffer that the forward step would then write past.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

namespace edgellama {

// elem_bytes times the product of the counts, or std::overflow_error naming `what` when it exceeds
// PTRDIFF_MAX (the largest object size; then every int64 index into the buffer fits as well).
// Throws std::invalid_argument for a negative count.
inline size_t checked_bytes(const std::string& what, size_t elem_bytes, std::initializer_list<int64_t> counts) {
    size_t total = elem_bytes;
    for (int64_t n : counts) {
        if (n < 0) throw std::invalid_argument(what + ": negative size");
        if (__builtin_mul_overflow(total, static_cast<size_t>(n), &total) ||
            total > static_cast<size_t>(PTRDIFF_MAX)) {
            throw std::overflow_error(what + " would need more than " + std::to_string(PTRDIFF_MAX) + " bytes");
        }
    }
    return total;
}

// The element count behind checked_bytes (for std::vector::resize and new T[]).
template <class T>
size_t checked_count(const std::string& what, std::initializer_list<int64_t> counts) {
    return checked_bytes(what, sizeof(T), counts) / sizeof(T);
}

}  // namespace edgellama
