// UTF-8 and the code point classes of the pre-tokenizer patterns (\p{L}, \p{N}, \s).
//
// The classes come from a generated table (unicode_tables.cpp, written by
// scripts/gen_unicode_tables.py from the `regex` package that the Python pre-tokenizer matches
// with), so both sides agree on every code point, including the letters of Unicode versions newer
// than Python's own tables.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace edgellama::tokenizer {

enum class CharClass : uint8_t { kOther = 0, kLetter = 1, kNumber = 2, kSpace = 3 };

struct CodePointRange {
    uint32_t first;
    uint32_t last;
    uint8_t cls;  // a CharClass value
};
extern const CodePointRange kCodePointRanges[];
extern const size_t kCodePointRangeCount;

CharClass char_class(uint32_t cp);

// Offset of the first byte that is not part of well-formed UTF-8 (overlong forms, surrogates and
// code points past U+10FFFF are ill-formed), or std::string_view::npos when s is valid. (Metadata
// strings are decoded with edgellama::utf8_replace, csrc/model/gguf_values.h, on the same rules.)
size_t find_invalid_utf8(std::string_view s);

// Decodes the code point at s[pos] of *valid* UTF-8 and advances pos past it.
uint32_t next_code_point(std::string_view s, size_t& pos);

void append_utf8(std::string& out, uint32_t cp);

}  // namespace edgellama::tokenizer
