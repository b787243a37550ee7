// Weight rows regrouped at upload for wide loads: the device's own layouts of some GGUF types.
//
// A GGUF Q4_0 block is 18 bytes (an f16 scale, then 16 bytes of codes) and a Q8_0 block 34, so
// their blocks are only 2-byte aligned and a GPU thread reads them two bytes at a time. Grouped,
// each run of eight blocks of a row becomes [the eight blocks' codes][their eight scales]: the
// same bytes in the same row, the codes of every block 16-byte aligned (groups are 144 / 272
// bytes). The GEMV then loads a block's codes in one or two 16-byte loads (int8_dot.cuh's
// grouped readers). Rows whose length is not a multiple of eight blocks (256 elements) keep the
// GGUF layout.
//
// A device weight type is a GGUF type id, or the id of a grouped layout below: kGroupedRows plus
// the GGUF type it holds.
#pragma once

#include <cstddef>
#include <cstdint>

namespace edgellama::cuda {

constexpr int32_t kGroupedRows = 0x100;
constexpr int32_t kDeviceQ4_0Grouped = kGroupedRows | 2;
constexpr int32_t kDeviceQ8_0Grouped = kGroupedRows | 8;
constexpr int kBlocksPerGroup = 8;

// The GGUF type a device weight type holds (its block size, row bytes, activation format).
constexpr int32_t gguf_type_of(int32_t device_type) { return device_type & ~kGroupedRows; }

// The device type rows of GGUF `type` and `cols` elements take when uploaded grouped: the grouped
// layout where the type has one and cols allows it, else `type` itself.
int32_t grouped_type(int32_t type, int64_t cols);

// dst = `rows` rows of src (row_bytes each, GGUF `type`) in the layout of grouped_type(type, cols);
// throws std::invalid_argument when the type has no grouped layout for these rows.
void group_rows(int32_t type, int64_t cols, const uint8_t* src, uint8_t* dst, int64_t rows, size_t row_bytes);

}  // namespace edgellama::cuda
