// The host side of the grouped weight layouts (grouped_rows.h): choosing them and regrouping rows.
#include "csrc/cuda/grouped_rows.h"

#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <string>

#include "csrc/kernels/type_traits.h"
#include "quantize/block_formats.h"

namespace edgellama::cuda {

namespace {

// A field of a GGUF block: where it starts and how many bytes it has.
struct BlockField {
    size_t offset, bytes;
};

// The fields of a type's blocks in the order a grouped row stores them (grouped_rows.h), or an
// empty list for a type without a grouped layout.
struct GroupedFields {
    BlockField field[4];
    int count = 0;
};

GroupedFields grouped_fields(int32_t type) {
    switch (type) {
        case 2: return {{{offsetof(BlockQ4_0, qs), sizeof(BlockQ4_0::qs)}, {offsetof(BlockQ4_0, d), 2}}, 2};
        case 8: return {{{offsetof(BlockQ8_0, qs), sizeof(BlockQ8_0::qs)}, {offsetof(BlockQ8_0, d), 2}}, 2};
        case 14:
            return {{{offsetof(BlockQ6_K, ql), sizeof(BlockQ6_K::ql)},
                     {offsetof(BlockQ6_K, qh), sizeof(BlockQ6_K::qh)},
                     {offsetof(BlockQ6_K, scales), sizeof(BlockQ6_K::scales)},
                     {offsetof(BlockQ6_K, d), 2}},
                    4};
        default: return {};
    }
}

}  // namespace

int32_t grouped_type(int32_t type, int64_t cols) {
    if (grouped_fields(type).count == 0 || cols <= 0) return type;
    const int64_t group_elements = kBlocksPerGroup * type_traits(type).block_size;
    return cols % group_elements == 0 ? (kGroupedRows | type) : type;
}

void group_rows(int32_t type, int64_t cols, const uint8_t* src, uint8_t* dst, int64_t rows, size_t row_bytes) {
    if (grouped_type(type, cols) == type || row_bytes != weight_row_bytes(type, cols)) {
        throw std::invalid_argument("type " + std::to_string(type) + " rows of " + std::to_string(cols) +
                                    " elements have no grouped layout");
    }
    const GroupedFields fields = grouped_fields(type);
    const size_t block = type_traits(type).block_bytes, group = kBlocksPerGroup * block;
    const size_t groups = row_bytes / group;
    for (size_t g = 0; g < static_cast<size_t>(rows) * groups; ++g) {
        const uint8_t* in = src + g * group;
        uint8_t* out = dst + g * group;
        for (int f = 0; f < fields.count; ++f) {
            const BlockField& field = fields.field[f];
            for (int b = 0; b < kBlocksPerGroup; ++b, out += field.bytes) {
                std::memcpy(out, in + b * block + field.offset, field.bytes);
            }
        }
    }
}

}  // namespace edgellama::cuda
