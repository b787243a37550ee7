#include "csrc/tokenizer/unicode_classes.h"

#include <algorithm>
#include <array>

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

// The second byte's range for a lead byte (Unicode Table 3-7), {0, 0} for an invalid lead.
struct SecondByte {
    uint8_t low, high, length;
};
SecondByte second_byte(uint8_t lead) {
    if (lead >= 0xC2 && lead <= 0xDF) return {0x80, 0xBF, 2};
    if (lead == 0xE0) return {0xA0, 0xBF, 3};
    if (lead == 0xED) return {0x80, 0x9F, 3};
    if (lead >= 0xE1 && lead <= 0xEF) return {0x80, 0xBF, 3};
    if (lead == 0xF0) return {0x90, 0xBF, 4};
    if (lead >= 0xF1 && lead <= 0xF3) return {0x80, 0xBF, 4};
    if (lead == 0xF4) return {0x80, 0x8F, 4};
    return {0, 0, 0};
}

// Length of the well-formed sequence at s[pos]; otherwise 0, with *bad_end set to the end of the
// maximal ill-formed subpart (at least pos + 1).
size_t sequence_length(std::string_view s, size_t pos, size_t* bad_end) {
    const uint8_t lead = static_cast<uint8_t>(s[pos]);
    if (lead < 0x80) return 1;
    const SecondByte rule = second_byte(lead);
    size_t k = pos + 1;
    if (rule.length != 0) {
        for (; k < pos + rule.length; ++k) {
            if (k >= s.size()) break;
            const uint8_t b = static_cast<uint8_t>(s[k]);
            const uint8_t low = k == pos + 1 ? rule.low : 0x80, high = k == pos + 1 ? rule.high : 0xBF;
            if (b < low || b > high) break;
        }
        if (k == pos + rule.length) return rule.length;
    }
    *bad_end = k;
    return 0;
}

}  // namespace

CharClass char_class(uint32_t cp) { return cp < 128 ? ascii_classes()[cp] : lookup(cp); }

size_t find_invalid_utf8(std::string_view s) {
    size_t bad_end = 0;
    for (size_t pos = 0; pos < s.size();) {
        const size_t n = sequence_length(s, pos, &bad_end);
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

std::string utf8_with_replacement(std::string_view s) {
    if (find_invalid_utf8(s) == std::string_view::npos) return std::string(s);
    std::string out;
    out.reserve(s.size() + 8);
    size_t bad_end = 0;
    for (size_t pos = 0; pos < s.size();) {
        const size_t n = sequence_length(s, pos, &bad_end);
        if (n != 0) {
            out.append(s.data() + pos, n);
            pos += n;
        } else {
            out += "\xEF\xBF\xBD";  // U+FFFD
            pos = bad_end;
        }
    }
    return out;
}

}  // namespace edgellama::tokenizer
