// GGUF metadata values as the Python loader holds them once gguf_header.py has decoded them:
// every integer type an int (u64 and i64 both exact), F32/F64 a float, Bool a bool (never an
// int), strings a str decoded from UTF-8 with "replace". The loader's MetadataReader and the
// tokenizer both read raw values through these few helpers, so neither can drift from Python, or
// from the other, on what a value is.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "csrc/model/gguf_reader.h"

namespace edgellama {

inline bool is_gguf_integer(GgufType t) {
    switch (t) {
        case GgufType::U8: case GgufType::I8: case GgufType::U16: case GgufType::I16:
        case GgufType::U32: case GgufType::I32: case GgufType::U64: case GgufType::I64: return true;
        default: return false;
    }
}

inline bool is_gguf_float(GgufType t) { return t == GgufType::F32 || t == GgufType::F64; }

// An integer as Python holds it: sign and magnitude, so that u64 and i64 are both exact and a
// range check cannot wrap.
struct GgufInt {
    bool negative = false;
    uint64_t magnitude = 0;

    // low <= value <= high, exactly.
    bool within(int64_t low, int64_t high) const {
        if (negative) return low < 0 && magnitude <= 0 - static_cast<uint64_t>(low);
        return high >= 0 && magnitude <= static_cast<uint64_t>(high) &&
               (low <= 0 || magnitude >= static_cast<uint64_t>(low));
    }
    // The value; exact only for one that within() has placed inside int64's range.
    int64_t value() const {
        return static_cast<int64_t>(negative ? 0 - magnitude : magnitude);
    }
};

// The integer of type t at p; t must satisfy is_gguf_integer.
inline GgufInt load_gguf_int(GgufType t, const uint8_t* p) {
    auto sig = [](int64_t v) {
        return GgufInt{v < 0, v < 0 ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v)};
    };
    switch (t) {
        case GgufType::U8: return {false, load_gguf_value<uint8_t>(p)};
        case GgufType::I8: return sig(load_gguf_value<int8_t>(p));
        case GgufType::U16: return {false, load_gguf_value<uint16_t>(p)};
        case GgufType::I16: return sig(load_gguf_value<int16_t>(p));
        case GgufType::U32: return {false, load_gguf_value<uint32_t>(p)};
        case GgufType::I32: return sig(load_gguf_value<int32_t>(p));
        case GgufType::U64: return {false, load_gguf_value<uint64_t>(p)};
        default: return sig(load_gguf_value<int64_t>(p));
    }
}

// Python's float(x) of the integer or float of type t at p (an int rounds to nearest, as float()
// does).
inline double load_gguf_real(GgufType t, const uint8_t* p) {
    if (t == GgufType::F32) return load_gguf_value<float>(p);
    if (t == GgufType::F64) return load_gguf_value<double>(p);
    const GgufInt v = load_gguf_int(t, p);
    return v.negative ? -static_cast<double>(v.magnitude) : static_cast<double>(v.magnitude);
}

// The bytes of item i of an array of fixed-size items (parse_gguf has checked they lie in the file).
inline const uint8_t* gguf_item(const GgufValue& v, uint64_t i) {
    return v.bytes + i * gguf_scalar_size(static_cast<uint32_t>(v.item_type));
}

// ---- UTF-8 ------------------------------------------------------------------------------------------

// The length of the well-formed UTF-8 sequence at s[pos] (Unicode's table 3-7: no overlong forms,
// surrogates or code points past U+10FFFF). 0 when it is ill-formed, with *bad_end set to the end
// of its maximal ill-formed subpart (at least pos + 1): what one U+FFFD replaces in Python's
// "replace" decoding. Shared with the tokenizer's check of input text, so that what the loader
// calls well-formed is exactly what the tokenizer accepts.
inline size_t utf8_sequence(std::string_view s, size_t pos, size_t* bad_end) {
    const auto lead = static_cast<unsigned char>(s[pos]);
    if (lead < 0x80) return 1;
    size_t n = 0;  // the sequence's length, and the range of its second byte
    unsigned char low = 0x80, high = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) n = 2;
    else if (lead == 0xE0) n = 3, low = 0xA0;
    else if (lead == 0xED) n = 3, high = 0x9F;
    else if (lead >= 0xE1 && lead <= 0xEF) n = 3;
    else if (lead == 0xF0) n = 4, low = 0x90;
    else if (lead >= 0xF1 && lead <= 0xF3) n = 4;
    else if (lead == 0xF4) n = 4, high = 0x8F;
    size_t k = pos + 1;
    for (; n != 0 && k < pos + n && k < s.size(); ++k) {
        const auto c = static_cast<unsigned char>(s[k]);
        if (k == pos + 1 ? c < low || c > high : c < 0x80 || c > 0xBF) break;
    }
    if (n != 0 && k == pos + n) return n;
    *bad_end = k;
    return 0;
}

// The text Python's bytes.decode("utf-8", "replace") gives, as UTF-8: how the Python loader sees
// every key, name and string of a file.
inline std::string utf8_replace(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    size_t good = 0;  // the start of the well-formed run not yet copied (copied whole: most text is)
    size_t bad_end = 0;
    for (size_t pos = 0; pos < s.size();) {
        const size_t n = utf8_sequence(s, pos, &bad_end);
        if (n != 0) {
            pos += n;
            continue;
        }
        out.append(s.data() + good, pos - good);
        out += "\xEF\xBF\xBD";  // U+FFFD
        pos = good = bad_end;
    }
    out.append(s.data() + good, s.size() - good);
    return out;
}

}  // namespace edgellama
