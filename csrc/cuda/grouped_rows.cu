// The host side of the grouped weight layouts (grouped_rows.h): choosing them and regrouping rows.
#include "csrc/cuda/grouped_rows.h"

#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <string>

#include "csrc/kernels/type_traits.h"
#include "csrc/formats/block_formats.h"

namespace edgellama::cuda {

namespace {

// A field of a GGUF block: where it starts and how many bytes it has.
struct BlockField {
    size_t offset, bytes;
};

// The fields of a type's blocks in the order a grouped row stores them (grouped_rows.h).
template <class Block>
struct GroupedFields;
template <>
struct GroupedFields<BlockQ4_0> {
    static constexpr BlockField kField[] = {{offsetof(BlockQ4_0, qs), sizeof(BlockQ4_0::qs)}, {offsetof(BlockQ4_0, d), 2}};
};
template <>
struct GroupedFields<BlockQ8_0> {
    static constexpr BlockField kField[] = {{offsetof(BlockQ8_0, qs), sizeof(BlockQ8_0::qs)}, {offsetof(BlockQ8_0, d), 2}};
};
template <>
struct GroupedFields<BlockQ6_K> {
    static constexpr BlockField kField[] = {{offsetof(BlockQ6_K, ql), sizeof(BlockQ6_K::ql)},
                                            {offsetof(BlockQ6_K, qh), sizeof(BlockQ6_K::qh)},
                                            {offsetof(BlockQ6_K, scales), sizeof(BlockQ6_K::scales)},
                                            {offsetof(BlockQ6_K, d), 2}};
};

// fn(Block{}) for a type with a grouped layout; false for the others.
template <class Fn>
bool with_grouped_block(int32_t type, Fn&& fn) {
    switch (type) {
        case id_of(TensorType::Q4_0): fn(BlockQ4_0{}); return true;
        case id_of(TensorType::Q8_0): fn(BlockQ8_0{}); return true;
        case id_of(TensorType::Q6_K): fn(BlockQ6_K{}); return true;
        default: return false;
    }
}

// `groups` groups of eight blocks regrouped. The field sizes are constants, so the copies are
// plain moves (an 8B model's 4 GiB regroup at memory speed).
template <class Block>
void group_blocks(const uint8_t* src, uint8_t* dst, size_t groups) {
    for (size_t g = 0; g < groups; ++g, src += kBlocksPerGroup * sizeof(Block)) {
        for (const BlockField& field : GroupedFields<Block>::kField) {
            for (int b = 0; b < kBlocksPerGroup; ++b, dst += field.bytes) {
                std::memcpy(dst, src + b * sizeof(Block) + field.offset, field.bytes);
            }
        }
    }
}

}  // namespace

int32_t grouped_type(int32_t type, int64_t cols) {
    if (cols <= 0 || !with_grouped_block(type, [](auto) {})) return type;
    const int64_t group_elements = kBlocksPerGroup * type_traits(type).block_size;
    return cols % group_elements == 0 ? (kGroupedRows | type) : type;
}

void group_rows(int32_t type, int64_t cols, const uint8_t* src, uint8_t* dst, int64_t rows, size_t row_bytes) {
    if (grouped_type(type, cols) == type || row_bytes != weight_row_bytes(type, cols)) {
        throw std::invalid_argument("type " + std::to_string(type) + " rows of " + std::to_string(cols) +
                                    " elements have no grouped layout");
    }
    const size_t groups = static_cast<size_t>(rows) * row_bytes / (kBlocksPerGroup * type_traits(type).block_bytes);
    with_grouped_block(type, [&](auto block) { group_blocks<decltype(block)>(src, dst, groups); });
}

}  // namespace edgellama::cuda
