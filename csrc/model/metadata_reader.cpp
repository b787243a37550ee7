#include "csrc/model/metadata_reader.h"

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace edgellama {
namespace {

constexpr size_t kShownMax = 80;  // errors.InvalidMetadataError cuts a longer repr to 77 + "..."

// ---- how Python shows a value ------------------------------------------------------------------

bool is_integer_type(GgufType t) {
    switch (t) {
        case GgufType::U8: case GgufType::I8: case GgufType::U16: case GgufType::I16:
        case GgufType::U32: case GgufType::I32: case GgufType::U64: case GgufType::I64: return true;
        default: return false;
    }
}

bool is_float_type(GgufType t) { return t == GgufType::F32 || t == GgufType::F64; }

// An integer item as Python holds it: sign and magnitude (u64 and i64 both fit).
struct Int {
    bool negative = false;
    uint64_t magnitude = 0;
};

Int load_int(GgufType t, const uint8_t* p) {
    auto sig = [](int64_t v) {
        return Int{v < 0, v < 0 ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v)};
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

// Python's float(x) of an integer or float item (ints round to nearest, as float() does).
double load_real(GgufType t, const uint8_t* p) {
    if (t == GgufType::F32) return load_gguf_value<float>(p);
    if (t == GgufType::F64) return load_gguf_value<double>(p);
    const Int v = load_int(t, p);
    return v.negative ? -static_cast<double>(v.magnitude) : static_cast<double>(v.magnitude);
}

std::string int_text(Int v) { return (v.negative ? "-" : "") + std::to_string(v.magnitude); }

// repr() of a str: quoted, control characters escaped (only what is shown is built).
std::string str_repr(std::string_view bytes) {
    std::string out = "'";
    for (const char c : printable(bytes.substr(0, 4 * kShownMax))) {
        if (c == '\'') out += '\\';
        out += c;
    }
    return out + "'";
}

// repr() of one scalar (or array item) of type t at p.
std::string scalar_repr(GgufType t, const uint8_t* p) {
    if (t == GgufType::Bool) return p[0] ? "True" : "False";
    if (is_float_type(t)) return python_float_repr(load_real(t, p));
    return int_text(load_int(t, p));
}

// repr() of a list, stopped once it is longer than what InvalidMetadataError shows.
std::string array_repr(const GgufValue& v) {
    std::string out = "[";
    const size_t size = gguf_scalar_size(static_cast<uint32_t>(v.item_type));
    for (uint64_t i = 0; i < v.count && out.size() <= kShownMax; ++i) {
        if (i) out += ", ";
        out += v.item_type == GgufType::String ? str_repr(v.texts[i]) : scalar_repr(v.item_type, v.bytes + i * size);
    }
    return out + "]";
}

std::string value_repr(const GgufValue* v) {
    if (!v) return "None";
    std::string shown = v->type == GgufType::String  ? str_repr(v->text)
                        : v->type == GgufType::Array ? array_repr(*v)
                                                     : scalar_repr(v->type, v->bytes);
    if (shown.size() > kShownMax) shown = shown.substr(0, kShownMax - 3) + "...";
    return shown;
}

// Python's type name of a decoded value, for "must be an integer, not <name>".
const char* python_type_name(const GgufValue& v) {
    if (v.type == GgufType::String) return "str";
    if (v.type == GgufType::Array) return "list";
    if (v.type == GgufType::Bool) return "bool";
    return is_float_type(v.type) ? "float" : "int";
}

std::string g_format(double x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", x);
    return buf;
}

// ---- array items ---------------------------------------------------------------------------------

// The index of the first item that is not an integer in [low, high], or -1.
int64_t first_bad_integer(const GgufValue& v, int64_t low, int64_t high) {
    if (v.count == 0) return -1;
    if (!is_integer_type(v.item_type)) return 0;
    const size_t size = gguf_scalar_size(static_cast<uint32_t>(v.item_type));
    for (uint64_t i = 0; i < v.count; ++i) {
        const Int x = load_int(v.item_type, v.bytes + i * size);
        const bool ok = x.negative ? low < 0 && x.magnitude <= 0 - static_cast<uint64_t>(low)
                                   : high >= 0 && x.magnitude <= static_cast<uint64_t>(high) &&
                                         (low <= 0 || x.magnitude >= static_cast<uint64_t>(low));
        if (!ok) return static_cast<int64_t>(i);
    }
    return -1;
}

// ... that is not a finite number a float32 can hold (integers always are: |x| < 2**64).
int64_t first_bad_real(const GgufValue& v) {
    if (v.count == 0 || is_integer_type(v.item_type)) return -1;
    if (!is_float_type(v.item_type)) return 0;
    const size_t size = gguf_scalar_size(static_cast<uint32_t>(v.item_type));
    for (uint64_t i = 0; i < v.count; ++i) {
        const double x = load_real(v.item_type, v.bytes + i * size);
        if (!std::isfinite(x) || std::fabs(x) > kFloat32Max) return static_cast<int64_t>(i);
    }
    return -1;
}

std::string item_repr(const GgufValue& v, uint64_t i) {
    if (v.item_type == GgufType::String) return str_repr(v.texts[i]);
    return scalar_repr(v.item_type, v.bytes + i * gguf_scalar_size(static_cast<uint32_t>(v.item_type)));
}

}  // namespace

// ---- text ------------------------------------------------------------------------------------------

std::string utf8_replace(std::string_view s) {
    static const char kReplacement[] = "\xEF\xBF\xBD";
    std::string out;
    out.reserve(s.size());
    size_t i = 0;
    while (i < s.size()) {
        const auto b = static_cast<unsigned char>(s[i]);
        if (b < 0x80) {
            out += static_cast<char>(b);
            ++i;
            continue;
        }
        // The sequence's length and the range of its second byte (Unicode's table 3-7); anything
        // else is a lone bad byte.
        size_t n = 0;
        unsigned char lo = 0x80, hi = 0xBF;
        if (b >= 0xC2 && b <= 0xDF) n = 2;
        else if (b == 0xE0) n = 3, lo = 0xA0;
        else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) n = 3;
        else if (b == 0xED) n = 3, hi = 0x9F;
        else if (b == 0xF0) n = 4, lo = 0x90;
        else if (b >= 0xF1 && b <= 0xF3) n = 4;
        else if (b == 0xF4) n = 4, hi = 0x8F;
        size_t good = 1;  // bytes of the sequence that are well-formed so far
        while (n && good < n && i + good < s.size()) {
            const auto c = static_cast<unsigned char>(s[i + good]);
            const bool ok = good == 1 ? c >= lo && c <= hi : c >= 0x80 && c <= 0xBF;
            if (!ok) break;
            ++good;
        }
        if (n && good == n) {
            out.append(s.data() + i, n);
        } else {
            out += kReplacement;  // one U+FFFD for the maximal ill-formed prefix
        }
        i += good;
    }
    return out;
}

std::string printable(std::string_view bytes) { return escape_control_bytes(utf8_replace(bytes)); }

std::string python_float_repr(double x) {
    if (std::isnan(x)) return "nan";
    if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
    char buf[40];
    for (int digits = 0; digits <= 16; ++digits) {
        std::snprintf(buf, sizeof buf, "%.*e", digits, x);
        if (std::strtod(buf, nullptr) == x) break;
    }
    // buf is [-]d[.ddd]e[+-]XX: take the digits and the exponent, then lay them out as repr does.
    std::string s(buf), digits;
    const bool negative = s[0] == '-';
    const size_t e = s.find('e');
    for (size_t i = negative ? 1 : 0; i < e; ++i) {
        if (s[i] != '.') digits += s[i];
    }
    while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
    const int exp = std::atoi(s.c_str() + e + 1);
    std::string out = negative ? "-" : "";
    if (exp >= -4 && exp < 16) {
        if (exp < 0) return out + "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
        const size_t int_digits = static_cast<size_t>(exp) + 1;
        if (digits.size() <= int_digits) return out + digits + std::string(int_digits - digits.size(), '0') + ".0";
        return out + digits.substr(0, int_digits) + "." + digits.substr(int_digits);
    }
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char exp_text[16];
    std::snprintf(exp_text, sizeof exp_text, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    return out + exp_text;
}

// ---- MetadataReader -------------------------------------------------------------------------------

MetadataReader::MetadataReader(const GgufFile& file) {
    for (const auto& [key, value] : file.metadata) values_[key] = &value;  // later keys overwrite
}

const GgufValue* MetadataReader::find(std::string_view key) const {
    const auto it = values_.find(key);
    return it == values_.end() ? nullptr : it->second;
}

void MetadataReader::fail(std::string_view key, const std::string& shown, const std::string& problem) const {
    throw GgufError("metadata '" + std::string(key) + "' = " + shown + ": " + problem);
}

void MetadataReader::fail(std::string_view key, const GgufValue* value, const std::string& problem) const {
    fail(key, value_repr(value), problem);
}

const GgufValue* MetadataReader::required(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) fail(key, v, "this required key is missing");
    return v;
}

std::optional<uint64_t> MetadataReader::integer(std::string_view key, uint64_t low, uint64_t high) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (!is_integer_type(v->type)) fail(key, v, std::string("must be an integer, not ") + python_type_name(*v));
    const Int x = load_int(v->type, v->bytes);
    if (x.negative || x.magnitude < low || x.magnitude > high) {
        fail(key, v, "must be in [" + std::to_string(low) + ", " + std::to_string(high) + "]");
    }
    return x.magnitude;
}

uint64_t MetadataReader::required_integer(std::string_view key, uint64_t low, uint64_t high) const {
    required(key);
    return *integer(key, low, high);
}

std::optional<double> MetadataReader::real(std::string_view key, const RealRange& r) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (!is_integer_type(v->type) && !is_float_type(v->type)) {
        fail(key, v, std::string("must be a number, not ") + python_type_name(*v));
    }
    const double x = load_real(v->type, v->bytes);
    // Python shows the value after float(): an integer key appears as e.g. 10000.0.
    if (!std::isfinite(x)) fail(key, python_float_repr(x), "must be a finite number");
    const bool too_low = r.low_open ? x <= r.low : x < r.low;
    const bool too_high = r.high_open ? x >= r.high : x > r.high;
    if (too_low || too_high) {
        fail(key, python_float_repr(x), std::string("must be in ") + (r.low_open ? "(" : "[") + g_format(r.low) + ", " +
                                            g_format(r.high) + (r.high_open ? ")" : "]"));
    }
    return x;
}

std::optional<std::string_view> MetadataReader::text(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (v->type != GgufType::String) fail(key, v, std::string("must be a string, not ") + python_type_name(*v));
    return v->text;
}

std::string_view MetadataReader::required_text(std::string_view key) const {
    required(key);
    return *text(key);
}

std::optional<bool> MetadataReader::flag(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (v->type == GgufType::Bool) return v->bytes[0] != 0;  // struct's "?": any non-zero byte is True
    if (is_integer_type(v->type)) {
        const Int x = load_int(v->type, v->bytes);
        if (!x.negative && x.magnitude <= 1) return x.magnitude == 1;
    }
    fail(key, v, "must be a boolean");
}

void MetadataReader::check_length(std::string_view key, const GgufValue& v, std::optional<uint64_t> length,
                                  std::string_view length_of) const {
    if (length && v.count != *length) {
        fail(key, &v, "has " + std::to_string(v.count) + " items but " + std::string(length_of) + " has " +
                          std::to_string(*length));
    }
}

std::optional<uint64_t> MetadataReader::strings(std::string_view key, std::optional<uint64_t> length,
                                                std::string_view length_of) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (v->type != GgufType::Array) fail(key, v, std::string("must be an array of strings, not ") + python_type_name(*v));
    // An empty array is an empty list whatever its item type.
    if (v->count && v->item_type != GgufType::String) {
        fail(key, v, "item 0 (" + item_repr(*v, 0) + ") is not strings");
    }
    check_length(key, *v, length, length_of);
    return v->count;
}

std::optional<uint64_t> MetadataReader::integers(std::string_view key, int64_t low, int64_t high,
                                                 std::optional<uint64_t> length, std::string_view length_of) const {
    const GgufValue* v = find(key);
    const std::string kind = "an integer in [" + std::to_string(low) + ", " + std::to_string(high) + "]";
    if (!v) return std::nullopt;
    if (v->type != GgufType::Array) fail(key, v, "must be an array of " + kind + ", not " + python_type_name(*v));
    const int64_t bad = first_bad_integer(*v, low, high);
    if (bad >= 0) {
        fail(key, v, "item " + std::to_string(bad) + " (" + item_repr(*v, static_cast<uint64_t>(bad)) + ") is not " + kind);
    }
    check_length(key, *v, length, length_of);
    return v->count;
}

std::optional<uint64_t> MetadataReader::reals(std::string_view key, std::optional<uint64_t> length,
                                              std::string_view length_of) const {
    const GgufValue* v = find(key);
    const std::string kind = "a finite float32 number";
    if (!v) return std::nullopt;
    if (v->type != GgufType::Array) fail(key, v, "must be an array of " + kind + ", not " + python_type_name(*v));
    const int64_t bad = first_bad_real(*v);
    if (bad >= 0) {
        fail(key, v, "item " + std::to_string(bad) + " (" + item_repr(*v, static_cast<uint64_t>(bad)) + ") is not " + kind);
    }
    check_length(key, *v, length, length_of);
    return v->count;
}

// ---- the tokenizer's keys --------------------------------------------------------------------------

std::optional<uint64_t> check_tokenizer_metadata(const MetadataReader& r) {
    static constexpr const char* kTokens = "tokenizer.ggml.tokens";
    r.text("tokenizer.ggml.model");
    r.text("tokenizer.ggml.pre");
    const std::optional<uint64_t> n_tokens = r.strings(kTokens);
    r.integers("tokenizer.ggml.token_type", INT32_MIN, INT32_MAX, n_tokens, kTokens);
    r.reals("tokenizer.ggml.scores", n_tokens, kTokens);
    r.strings("tokenizer.ggml.merges");
    for (const char* key : {"tokenizer.ggml.add_space_prefix", "tokenizer.ggml.add_bos_token",
                            "tokenizer.ggml.add_eos_token"}) {
        r.flag(key);
    }
    // The special token ids: each must name a token.
    for (const char* key : {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                            "tokenizer.ggml.padding_token_id", "tokenizer.ggml.unknown_token_id"}) {
        if (!n_tokens) {
            r.integer(key, 0, kInt32Max);
            continue;
        }
        const GgufValue* v = r.find(key);
        if (!v) continue;
        const Int id = is_integer_type(v->type) ? load_int(v->type, v->bytes) : Int{true, 0};
        if (!is_integer_type(v->type) || id.negative || id.magnitude >= *n_tokens) {
            r.fail(key, v, "must be a token id in [0, " + std::to_string(*n_tokens) + ") (the size of " + kTokens + ")");
        }
    }
    return n_tokens;
}

}  // namespace edgellama
