#include "csrc/model/gguf_reader.h"

#include <cstring>

namespace edgellama {
namespace {

constexpr int kMaxDims = 4;
constexpr uint32_t kDefaultAlignment = 32;

// Every ggml tensor type the GGUF format defines today: id, elements per block, bytes per block
// (the same table as the gguf package's GGML_QUANT_SIZES).
struct BlockLayout {
    int32_t type;
    int64_t block_size, block_bytes;
};
constexpr BlockLayout kLayouts[] = {
    {0, 1, 4},      {1, 1, 2},      {2, 32, 18},    {3, 32, 20},    {6, 32, 22},    {7, 32, 24},
    {8, 32, 34},    {9, 32, 40},    {10, 256, 84},  {11, 256, 110}, {12, 256, 144}, {13, 256, 176},
    {14, 256, 210}, {15, 256, 292}, {16, 256, 66},  {17, 256, 74},  {18, 256, 98},  {19, 256, 50},
    {20, 32, 18},   {21, 256, 110}, {22, 256, 82},  {23, 256, 136}, {24, 1, 1},     {25, 1, 2},
    {26, 1, 4},     {27, 1, 8},     {28, 1, 8},     {29, 256, 56},  {30, 1, 2},     {34, 256, 54},
    {35, 256, 66},  {39, 32, 17},   {40, 64, 36},   {41, 128, 18},
};

// A position in the file and the checks on every read from it.
class Cursor {
public:
    Cursor(const uint8_t* data, uint64_t size) : data_(data), size_(size) {}

    uint64_t pos() const { return pos_; }
    uint64_t size() const { return size_; }
    uint64_t left() const { return size_ - pos_; }

    // The position of n bytes, which must lie inside the file; advances past them.
    uint64_t take(uint64_t n, const std::string& what) {
        if (n > left()) {
            throw GgufError(what + " at byte " + std::to_string(pos_) + " needs " + std::to_string(n) +
                            " bytes but the file ends at " + std::to_string(size_) + " (truncated?)");
        }
        const uint64_t start = pos_;
        pos_ += n;
        return start;
    }
    const uint8_t* at(uint64_t offset) const { return data_ + offset; }

    uint32_t u32(const std::string& what) { return load<uint32_t>(take(4, what)); }
    uint64_t u64(const std::string& what) { return load<uint64_t>(take(8, what)); }
    std::string_view string(const std::string& what) {
        const uint64_t n = u64("length of " + what);
        const uint64_t start = take(n, what);
        return {reinterpret_cast<const char*>(data_ + start), static_cast<size_t>(n)};
    }

    template <class T>
    T load(uint64_t offset) const {
        return load_gguf_value<T>(data_ + offset);
    }

private:
    const uint8_t* data_;
    uint64_t size_;
    uint64_t pos_ = 0;
};

std::string quoted(std::string_view s) { return "'" + escape_control_bytes(s) + "'"; }

GgufValue read_value(Cursor& c, uint32_t type, std::string_view key) {
    const std::string what = "value of metadata " + quoted(key);
    GgufValue v;
    v.type = static_cast<GgufType>(type);
    if (const size_t size = gguf_scalar_size(type)) {
        v.bytes = c.at(c.take(size, what));
        return v;
    }
    if (type == static_cast<uint32_t>(GgufType::String)) {
        v.text = c.string(what);
        return v;
    }
    if (type != static_cast<uint32_t>(GgufType::Array)) {
        throw GgufError("metadata " + quoted(key) + " has unknown value type " + std::to_string(type));
    }
    const uint32_t item_type = c.u32("item type of metadata " + quoted(key));
    v.item_type = static_cast<GgufType>(item_type);
    v.count = c.u64("item count of metadata " + quoted(key));
    if (const size_t size = gguf_scalar_size(item_type)) {
        // count * size overflowing is as impossible as a product beyond the file.
        uint64_t n_bytes = 0;
        if (__builtin_mul_overflow(v.count, static_cast<uint64_t>(size), &n_bytes)) n_bytes = UINT64_MAX;
        v.bytes = c.at(c.take(n_bytes, "items of metadata " + quoted(key)));
        return v;
    }
    if (item_type != static_cast<uint32_t>(GgufType::String)) {
        throw GgufError("metadata " + quoted(key) + " is an array of unsupported item type " +
                        std::to_string(item_type));
    }
    if (v.count > c.left() / 8) {
        throw GgufError("metadata " + quoted(key) + " claims " + std::to_string(v.count) +
                        " strings, more than the file can hold");
    }
    v.texts.reserve(static_cast<size_t>(v.count));
    for (uint64_t i = 0; i < v.count; ++i) v.texts.push_back(c.string("string in metadata " + quoted(key)));
    return v;
}

// general.alignment: the GGUF spec requires a uint32 multiple of 8.
uint32_t checked_alignment(const GgufValue& v) {
    const uint32_t value = v.type == GgufType::U32 ? load_gguf_value<uint32_t>(v.bytes) : 0;
    if (v.type != GgufType::U32 || value == 0 || value % 8 != 0) {
        throw GgufError("metadata 'general.alignment' must be a non-zero multiple of 8 stored as uint32 (GGUF spec)");
    }
    return value;
}

GgufTensor read_tensor_info(Cursor& c) {
    GgufTensor t;
    t.name = std::string(c.string("tensor name"));
    const uint32_t n_dims = c.u32("dimension count of tensor " + quoted(t.name));
    if (n_dims < 1 || n_dims > kMaxDims) {
        throw GgufError(std::to_string(n_dims) + " dimensions (expected 1 to " + std::to_string(kMaxDims) + ")",
                        t.name);
    }
    for (uint32_t d = 0; d < n_dims; ++d) t.dims.push_back(c.u64("dimensions of tensor " + quoted(t.name)));
    t.type = static_cast<int32_t>(c.u32("type of tensor " + quoted(t.name)));
    t.offset = c.u64("data offset of tensor " + quoted(t.name));
    const auto [block_size, block_bytes] = ggml_block_layout(t.type);
    if (block_size == 0) throw GgufError("unknown tensor type id " + std::to_string(static_cast<uint32_t>(t.type)), t.name);
    for (uint64_t d : t.dims) {
        if (d == 0) throw GgufError("zero dimension in the shape", t.name);
    }
    if (t.dims[0] % static_cast<uint64_t>(block_size) != 0) {
        throw GgufError("row length " + std::to_string(t.dims[0]) + " is not a multiple of the type's block size " +
                        std::to_string(block_size), t.name);
    }
    // Elements, then bytes: a product past 64 bits is past any file, so saturating is exact here.
    uint64_t n_elements = 1;
    for (uint64_t d : t.dims) {
        if (__builtin_mul_overflow(n_elements, d, &n_elements)) n_elements = UINT64_MAX;
    }
    const uint64_t n_blocks = n_elements / static_cast<uint64_t>(block_size);
    if (__builtin_mul_overflow(n_blocks, static_cast<uint64_t>(block_bytes), &t.n_bytes) || t.n_bytes > c.size()) {
        throw GgufError("the shape needs more bytes than the whole file", t.name);
    }
    return t;
}

}  // namespace

size_t gguf_scalar_size(uint32_t type) {
    switch (static_cast<GgufType>(type)) {
        case GgufType::U8: case GgufType::I8: case GgufType::Bool: return 1;
        case GgufType::U16: case GgufType::I16: return 2;
        case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
        case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
        default: return 0;
    }
}

std::pair<int64_t, int64_t> ggml_block_layout(int32_t type) {
    for (const BlockLayout& l : kLayouts) {
        if (l.type == type) return {l.block_size, l.block_bytes};
    }
    return {0, 0};
}

GgufFile parse_gguf(const uint8_t* data, uint64_t size) {
    if (size == 0) throw GgufError("the file is empty");
    Cursor c(data, size);
    if (std::memcmp(c.at(c.take(4, "magic")), "GGUF", 4) != 0) throw GgufError("not a GGUF file (bad magic)");
    GgufFile file;
    file.version = c.u32("version");
    if ((file.version & 0xFFFF) == 0) throw GgufError("big-endian GGUF files are not supported");
    if (file.version != 2 && file.version != 3) {
        throw GgufError("GGUF version " + std::to_string(file.version) + " is not supported (supported: 2, 3)");
    }
    const uint64_t n_tensors = c.u64("tensor count");
    const uint64_t n_kv = c.u64("metadata count");
    // Every entry takes at least 8 bytes: a larger count cannot be real.
    if (n_tensors > size / 8) throw GgufError("tensor count " + std::to_string(n_tensors) + " is impossible");
    if (n_kv > size / 8) throw GgufError("metadata count " + std::to_string(n_kv) + " is impossible");
    file.alignment = kDefaultAlignment;
    for (uint64_t i = 0; i < n_kv; ++i) {
        const std::string_view key = c.string("metadata key");
        const uint32_t type = c.u32("type of metadata " + quoted(key));
        GgufValue value = read_value(c, type, key);
        if (key == "general.alignment") file.alignment = checked_alignment(value);
        file.metadata.emplace_back(std::string(key), std::move(value));
    }
    for (uint64_t i = 0; i < n_tensors; ++i) file.tensors.push_back(read_tensor_info(c));
    const uint64_t data_start = (c.pos() + file.alignment - 1) / file.alignment * file.alignment;
    for (GgufTensor& t : file.tensors) {
        uint64_t start = 0, end = 0;
        const bool wraps = __builtin_add_overflow(data_start, t.offset, &start) ||
                           __builtin_add_overflow(start, t.n_bytes, &end);
        if (!wraps && start % file.alignment != 0) {
            throw GgufError("tensor data offset " + std::to_string(t.offset) + " is not aligned to " +
                            std::to_string(file.alignment) + " bytes", t.name);
        }
        if (wraps || end > size) {
            throw GgufError("tensor data lies past the end of the file (" + std::to_string(size) +
                            " bytes): the file is truncated or corrupt", t.name);
        }
        t.offset = start;
    }
    return file;
}

}  // namespace edgellama
