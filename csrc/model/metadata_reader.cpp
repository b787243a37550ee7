#include "csrc/model/metadata_reader.h"

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace edgellama {
namespace {

constexpr size_t kShownMax = 80;  // errors.InvalidMetadataError cuts a longer repr to 77 + "..."

// ---- how Python shows a value ------------------------------------------------------------------

std::string int_text(GgufInt v) { return (v.negative ? "-" : "") + std::to_string(v.magnitude); }

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
    if (is_gguf_float(t)) return python_float_repr(load_gguf_real(t, p));
    return int_text(load_gguf_int(t, p));
}

// repr() of one array item.
std::string item_repr(const GgufValue& v, uint64_t i) {
    return v.item_type == GgufType::String ? str_repr(v.texts[i]) : scalar_repr(v.item_type, gguf_item(v, i));
}

// repr() of a list, stopped once it is longer than what InvalidMetadataError shows.
std::string array_repr(const GgufValue& v) {
    std::string out = "[";
    for (uint64_t i = 0; i < v.count && out.size() <= kShownMax; ++i) {
        if (i) out += ", ";
        out += item_repr(v, i);
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
    return is_gguf_float(v.type) ? "float" : "int";
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
    if (!is_gguf_integer(v.item_type)) return 0;
    for (uint64_t i = 0; i < v.count; ++i) {
        if (!load_gguf_int(v.item_type, gguf_item(v, i)).within(low, high)) return static_cast<int64_t>(i);
    }
    return -1;
}

// ... that is not a finite number a float32 can hold (integers always are: |x| < 2**64).
int64_t first_bad_real(const GgufValue& v) {
    if (v.count == 0 || is_gguf_integer(v.item_type)) return -1;
    if (!is_gguf_float(v.item_type)) return 0;
    for (uint64_t i = 0; i < v.count; ++i) {
        const double x = load_gguf_real(v.item_type, gguf_item(v, i));
        if (!std::isfinite(x) || std::fabs(x) > kFloat32Max) return static_cast<int64_t>(i);
    }
    return -1;
}

}  // namespace

// ---- text ------------------------------------------------------------------------------------------

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
    if (!is_gguf_integer(v->type)) fail(key, v, std::string("must be an integer, not ") + python_type_name(*v));
    const GgufInt x = load_gguf_int(v->type, v->bytes);
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
    if (!is_gguf_integer(v->type) && !is_gguf_float(v->type)) {
        fail(key, v, std::string("must be a number, not ") + python_type_name(*v));
    }
    const double x = load_gguf_real(v->type, v->bytes);
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
    if (is_gguf_integer(v->type)) {
        const GgufInt x = load_gguf_int(v->type, v->bytes);
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
    r.text("tokenizer.ggml.model");
    r.text("tokenizer.ggml.pre");
    const std::optional<uint64_t> n_tokens = r.strings(kTokensKey);
    r.integers("tokenizer.ggml.token_type", INT32_MIN, INT32_MAX, n_tokens, kTokensKey);
    r.reals("tokenizer.ggml.scores", n_tokens, kTokensKey);
    r.strings("tokenizer.ggml.merges");
    for (const char* key : {"tokenizer.ggml.add_space_prefix", "tokenizer.ggml.add_bos_token",
                            "tokenizer.ggml.add_eos_token"}) {
        r.flag(key);
    }
    // The special token ids: each must name a token.
    for (const char* key : kSpecialTokenIdKeys) {
        if (!n_tokens) {
            r.integer(key, 0, kInt32Max);
            continue;
        }
        const GgufValue* v = r.find(key);
        if (!v) continue;
        const GgufInt id = is_gguf_integer(v->type) ? load_gguf_int(v->type, v->bytes) : GgufInt{true, 0};
        if (!is_gguf_integer(v->type) || id.negative || id.magnitude >= *n_tokens) {
            r.fail(key, v,
                   "must be a token id in [0, " + std::to_string(*n_tokens) + ") (the size of " + kTokensKey + ")");
        }
    }
    return n_tokens;
}

}  // namespace edgellama
