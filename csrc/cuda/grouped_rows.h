// Weight rows regrouped at upload for wide loads: the device's own layouts of some GGUF types.
//
// GGUF blocks of Q4_0 (18 bytes: an f16 scale, then 16 bytes of codes), Q8_0 (34) and Q6_K (210:
// ql, qh, scales, d) are only 2-byte aligned, so a GPU thread reads them two bytes at a time.
// Grouped, each run of eight blocks of a row stores each field of the eight blocks together:
// [8 x codes][8 x scale] (Q4_0, Q8_0), [8 x ql][8 x qh][8 x scales][8 x d] (Q6_K). The same bytes
// in the same row, every field of every block 16-byte aligned (8-byte for Q6_K's scales), as the
// groups are 144, 272 and 1680 bytes: the GEMV then loads them 16 bytes at a time (int8_dot.cuh's
// grouped readers). Rows that are not whole groups (Q4_0 / Q8_0: 256 elements, Q6_K: 2048) keep
// the GGUF layout.
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
constexpr int32_t kDeviceQ6_KGrouped = kGroupedRows | 14;
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
