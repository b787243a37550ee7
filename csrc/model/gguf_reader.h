// A bounded reader of a GGUF file's header, metadata and tensor table, for callers without Python
// (the coming C ABI): every count, length, offset and shape is checked against the file's size
// with overflow-checked arithmetic before it is used, so a malformed or hostile file is a
// GgufError that says what is wrong and where, never a read past the end.
//
// It accepts and rejects exactly what the Python loader's parser does (edgellama/gguf_header.py);
// tests/test_gguf_reader.py holds the two to that on real files and thousands of mutated ones.
#pragma once

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace edgellama {

// A name from the file as messages show it: control bytes (a NUL would end what() early) as \xNN.
inline std::string escape_control_bytes(std::string_view name) {
    static const char kHex[] = "0123456789abcdef";
    std::string out;
    for (const char ch : name) {
        const auto c = static_cast<unsigned char>(ch);
        if (c < 0x20 || c == 0x7f) {
            out += "\\x";
            out += kHex[c >> 4];
            out += kHex[c & 15];
        } else {
            out += ch;
        }
    }
    return out;
}

// A malformed file; tensor() names the tensor (as stored) when the problem is one tensor's.
class GgufError : public std::invalid_argument {
public:
    GgufError(const std::string& problem, std::string tensor = {})
        : std::invalid_argument(tensor.empty() ? problem : "tensor '" + escape_control_bytes(tensor) + "': " + problem),
          tensor_(std::move(tensor)) {}
    const std::string& tensor() const { return tensor_; }

private:
    std::string tensor_;
};

// GGUF metadata value types.
enum class GgufType : uint32_t {
    U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7, String = 8, Array = 9,
    U64 = 10, I64 = 11, F64 = 12,
};

// A T stored at p, unaligned (GGUF is little-endian, as every host we build for).
template <class T>
T load_gguf_value(const uint8_t* p) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// Bytes of one value of a fixed-size type; 0 for String, Array and unknown types.
size_t gguf_scalar_size(uint32_t type);

// One metadata value, viewing the file's bytes (valid while they are).
struct GgufValue {
    GgufType type = GgufType::U8;
    GgufType item_type = GgufType::U8;   // arrays: the items' type
    uint64_t count = 0;                  // arrays: the item count
    const uint8_t* bytes = nullptr;      // scalars and arrays of scalars: the little-endian value(s)
    std::string_view text;               // strings (raw bytes, not checked as UTF-8)
    std::vector<std::string_view> texts; // arrays of strings
};

struct GgufTensor {
    std::string name;
    std::vector<uint64_t> dims;  // GGUF order: ne0 (the row length) first
    int32_t type = 0;            // ggml tensor type id
    uint64_t offset = 0;         // absolute byte offset of the data in the file
    uint64_t n_bytes = 0;
};

struct GgufFile {
    uint32_t version = 0;
    uint32_t alignment = 32;
    std::vector<std::pair<std::string, GgufValue>> metadata;  // in file order (a repeated key: the last wins)
    std::vector<GgufTensor> tensors;
};

// (elements per block, bytes per block) of a ggml tensor type id; {0, 0} when unknown.
std::pair<int64_t, int64_t> ggml_block_layout(int32_t type);

// Parses the size bytes at data (a mapping of the whole file). Throws GgufError.
GgufFile parse_gguf(const uint8_t* data, uint64_t size);

}  // namespace edgellama
