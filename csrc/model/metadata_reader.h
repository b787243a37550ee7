// Typed, range-checked reads of GGUF metadata values: the C++ twin of edgellama/gguf_metadata.py
// (MetadataReader, check_tokenizer_metadata), for callers without Python.
//
// A hostile file can give any key any type. Every value the loader uses is read here, its type
// and range checked before it reaches arithmetic, a loop or an allocation, with the Python
// reader's semantics exactly (the same file is accepted or rejected by both):
// - an integer is any GGUF integer type (u8..u64, i8..i64); a bool or a float is not one;
// - a real is an integer or a float (f32, f64), finite; a bool is not one;
// - a value outside its range, or of the wrong type, is a GgufError whose message names the key
//   and the value as Python shows them: "metadata 'llama.embedding_length' = 0: must be in [1, ...]".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "csrc/model/gguf_reader.h"
#include "csrc/model/gguf_values.h"  // utf8_replace, and how a raw value reads as Python's

namespace edgellama {

// The largest finite float32 and the smallest positive normal one (gguf_metadata.py's bounds: the
// core receives hyper-parameters as float32).
constexpr double kFloat32Max = 3.4028234663852886e38;
constexpr double kFloat32Tiny = 1.1754943508222875e-38;
constexpr uint64_t kInt32Max = 2147483647;

// A string from the file as a message shows it: decoded as Python does, control characters
// (NUL included, which would end a C string) escaped as \xNN.
std::string printable(std::string_view bytes);

// repr() of a Python float (shortest round-trip digits; "1e-05", "10000.0", "nan").
std::string python_float_repr(double x);

// A closed or open interval of reals; the defaults are MetadataReader.real's.
struct RealRange {
    double low = -kFloat32Max;
    double high = kFloat32Max;
    bool low_open = false;
    bool high_open = false;
};

class MetadataReader {
public:
    explicit MetadataReader(const GgufFile& file);

    // The value of key (the last of repeated keys), or nullptr.
    const GgufValue* find(std::string_view key) const;
    bool has(std::string_view key) const { return find(key) != nullptr; }

    // Throws GgufError "metadata 'key' = <shown>: problem".
    [[noreturn]] void fail(std::string_view key, const std::string& shown, const std::string& problem) const;
    [[noreturn]] void fail(std::string_view key, const GgufValue* value, const std::string& problem) const;

    // Each reader returns nullopt when the key is absent; the required_* ones fail then instead.
    // An integer in [low, high] (every bound the loader uses is >= 0, so negatives always fail).
    std::optional<uint64_t> integer(std::string_view key, uint64_t low, uint64_t high) const;
    uint64_t required_integer(std::string_view key, uint64_t low, uint64_t high) const;
    std::optional<double> real(std::string_view key, const RealRange& range = {}) const;
    std::optional<std::string_view> text(std::string_view key) const;
    std::string_view required_text(std::string_view key) const;
    std::optional<bool> flag(std::string_view key) const;  // a bool, or an integer 0 / 1
    // Arrays: the item count. `length`, when given, is the count required (that of `length_of`).
    std::optional<uint64_t> strings(std::string_view key, std::optional<uint64_t> length = {},
                                    std::string_view length_of = {}) const;
    std::optional<uint64_t> integers(std::string_view key, int64_t low, int64_t high,
                                     std::optional<uint64_t> length = {}, std::string_view length_of = {}) const;
    std::optional<uint64_t> reals(std::string_view key, std::optional<uint64_t> length = {},
                                  std::string_view length_of = {}) const;

private:
    const GgufValue* required(std::string_view key) const;
    void check_length(std::string_view key, const GgufValue& v, std::optional<uint64_t> length,
                      std::string_view length_of) const;

    std::unordered_map<std::string_view, const GgufValue*> values_;
};

// gguf_metadata.TOKENS and SPECIAL_TOKEN_KEYS.
inline constexpr const char* kTokensKey = "tokenizer.ggml.tokens";
inline constexpr const char* kSpecialTokenIdKeys[] = {
    "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.padding_token_id", "tokenizer.ggml.unknown_token_id"};

// gguf_metadata.check_tokenizer_metadata: the types, lengths and ranges of the tokenizer keys that
// are present (none is required). Returns the number of tokens (tokenizer.ggml.tokens), if any.
// The loader runs it at load and the tokenizer before it reads the values, as both do in Python.
std::optional<uint64_t> check_tokenizer_metadata(const MetadataReader& reader);

}  // namespace edgellama
