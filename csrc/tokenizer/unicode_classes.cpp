#include "csrc/tokenizer/unicode_classes.h"

#include <algorithm>
#include <array>

#include "csrc/model/gguf_values.h"  // utf8_sequence: the loader's notion of well-formed UTF-8

namespace edgellama::tokenizer {
namespace {

CharClass lookup(uint32_t cp) {
    const CodePointRange* begin = kCodePointRanges;
    const CodePointRange* end = kCodePointRanges + kCodePointRangeCount;
    // The first range that ends at or after cp: cp is in it or in no range.
    const CodePointRange* r =
        std::lower_bound(begin, end, cp, [](const CodePointRange& range, uint32_t c) { return range.last < c; });
    if (r != end && r->first <= cp) return static_cast<CharClass>(r->cls);
    return CharClass::kOther;
}

// ASCII dominates most text: one array read instead of a binary search.
const std::array<CharClass, 128>& ascii_classes() {
    static const std::array<CharClass, 128> table = [] {
        std::array<CharClass, 128> t{};
        for (uint32_t c = 0; c < 128; ++c) t[c] = lookup(c);
        return t;
    }();
    return table;
}

}  // namespace

CharClass char_class(uint32_t cp) { return cp < 128 ? ascii_classes()[cp] : lookup(cp); }

size_t find_invalid_utf8(std::string_view s) {
    size_t bad_end = 0;
    for (size_t pos = 0; pos < s.size();) {
        const size_t n = utf8_sequence(s, pos, &bad_end);
        if (n == 0) return pos;
        pos += n;
    }
    return std::string_view::npos;
}

uint32_t next_code_point(std::string_view s, size_t& pos) {
    const uint8_t lead = static_cast<uint8_t>(s[pos]);
    if (lead < 0x80) {
        ++pos;
        return lead;
    }
    const size_t n = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
    uint32_t cp = lead & (0x7F >> n);
    for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<uint8_t>(s[pos + k]) & 0x3F);
    pos += n;
    return cp;
}

void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

}  // namespace edgellama::tokenizer
