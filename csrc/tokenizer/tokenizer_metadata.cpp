#include "csrc/tokenizer/tokenizer_metadata.h"

#include <cmath>
#include <limits>
#include <string_view>
#include <unordered_map>

#include "csrc/tokenizer/pretokenizer.h"
#include "csrc/tokenizer/unicode_classes.h"

namespace edgellama::tokenizer {
namespace {

constexpr std::string_view kModel = "tokenizer.ggml.model";
constexpr std::string_view kPre = "tokenizer.ggml.pre";
constexpr std::string_view kTokens = "tokenizer.ggml.tokens";
constexpr std::string_view kTypes = "tokenizer.ggml.token_type";
constexpr std::string_view kScores = "tokenizer.ggml.scores";
constexpr std::string_view kMerges = "tokenizer.ggml.merges";
constexpr int32_t kNormal = 1;
constexpr double kFloat32Max = 3.4028234663852886e38;

[[noreturn]] void fail(std::string_view key, const std::string& problem) {
    throw GgufError("metadata '" + std::string(key) + "': " + problem);
}

// The file's values by key; a repeated key: the last wins, as in the Python loader's dict.
class Values {
public:
    explicit Values(const GgufFile& file) {
        for (const auto& [key, value] : file.metadata) by_key_[key] = &value;
    }
    const GgufValue* find(std::string_view key) const {
        auto it = by_key_.find(key);
        return it == by_key_.end() ? nullptr : it->second;
    }

private:
    std::unordered_map<std::string_view, const GgufValue*> by_key_;
};

bool is_integer_type(GgufType t) {
    switch (t) {
        case GgufType::U8: case GgufType::I8: case GgufType::U16: case GgufType::I16:
        case GgufType::U32: case GgufType::I32: case GgufType::U64: case GgufType::I64: return true;
        default: return false;
    }
}

bool is_float_type(GgufType t) { return t == GgufType::F32 || t == GgufType::F64; }

// An integer value; a uint64 beyond int64 saturates (every check compares it with int32 bounds).
int64_t integer_at(GgufType t, const uint8_t* p) {
    switch (t) {
        case GgufType::U8: return load_gguf_value<uint8_t>(p);
        case GgufType::I8: return load_gguf_value<int8_t>(p);
        case GgufType::U16: return load_gguf_value<uint16_t>(p);
        case GgufType::I16: return load_gguf_value<int16_t>(p);
        case GgufType::U32: return load_gguf_value<uint32_t>(p);
        case GgufType::I32: return load_gguf_value<int32_t>(p);
        case GgufType::I64: return load_gguf_value<int64_t>(p);
        default: {
            const uint64_t u = load_gguf_value<uint64_t>(p);
            return u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ? std::numeric_limits<int64_t>::max()
                                                                                  : static_cast<int64_t>(u);
        }
    }
}

// A number as Python holds it (int or float), as a double.
double real_at(GgufType t, const uint8_t* p) {
    if (t == GgufType::F32) return load_gguf_value<float>(p);
    if (t == GgufType::F64) return load_gguf_value<double>(p);
    if (t == GgufType::U64) return static_cast<double>(load_gguf_value<uint64_t>(p));
    return static_cast<double>(integer_at(t, p));
}

const uint8_t* item_at(const GgufValue& v, uint64_t i) {
    return v.bytes + i * gguf_scalar_size(static_cast<uint32_t>(v.item_type));
}

std::string text_value(const Values& values, std::string_view key, bool* present) {
    const GgufValue* v = values.find(key);
    *present = v != nullptr;
    if (!v) return {};
    if (v->type != GgufType::String) fail(key, "must be a string");
    return utf8_with_replacement(v->text);
}

// An array, or nullptr when the key is absent. The caller checks the items (an empty array of
// any item type is an empty list to Python, so it passes every item check).
const GgufValue* array_value(const Values& values, std::string_view key, const char* item_kind) {
    const GgufValue* v = values.find(key);
    if (!v) return nullptr;
    if (v->type != GgufType::Array) fail(key, std::string("must be an array of ") + item_kind);
    return v;
}

const GgufValue* string_array(const Values& values, std::string_view key) {
    const GgufValue* v = array_value(values, key, "strings");
    if (v && v->count > 0 && v->item_type != GgufType::String) fail(key, "item 0 is not a string");
    return v;
}

void check_length(std::string_view key, const GgufValue& v, const GgufValue* tokens) {
    if (tokens && v.count != tokens->count) {
        fail(key, "has " + std::to_string(v.count) + " items but " + std::string(kTokens) + " has " +
                      std::to_string(tokens->count));
    }
}

std::vector<std::string> string_items(const GgufValue* v) {
    std::vector<std::string> out;
    if (!v) return out;
    out.reserve(v->texts.size());
    for (std::string_view s : v->texts) out.push_back(utf8_with_replacement(s));
    return out;
}

std::vector<int32_t> type_items(const Values& values, const GgufValue* tokens) {
    constexpr const char* kind = "an integer in [-2147483648, 2147483647]";
    const GgufValue* v = array_value(values, kTypes, kind);
    std::vector<int32_t> out;
    if (!v) return out;
    for (uint64_t i = 0; i < v->count; ++i) {
        if (!is_integer_type(v->item_type)) fail(kTypes, "item " + std::to_string(i) + " is not " + kind);
        const int64_t x = integer_at(v->item_type, item_at(*v, i));
        if (x < std::numeric_limits<int32_t>::min() || x > std::numeric_limits<int32_t>::max()) {
            fail(kTypes, "item " + std::to_string(i) + " is not " + kind);
        }
        out.push_back(static_cast<int32_t>(x));
    }
    check_length(kTypes, *v, tokens);
    return out;
}

// Scores: finite numbers that fit a float32 (the merge loop takes them as float32).
std::vector<float> score_items(const Values& values, const GgufValue* tokens) {
    constexpr const char* kind = "a finite float32 number";
    const GgufValue* v = array_value(values, kScores, kind);
    std::vector<float> out;
    if (!v) return out;
    const bool numeric = is_integer_type(v->item_type) || is_float_type(v->item_type);
    for (uint64_t i = 0; i < v->count; ++i) {
        const double x = numeric ? real_at(v->item_type, item_at(*v, i)) : 0.0;
        if (!numeric || !std::isfinite(x) || std::fabs(x) > kFloat32Max) {
            fail(kScores, "item " + std::to_string(i) + " is not " + kind);
        }
        out.push_back(static_cast<float>(x));
    }
    check_length(kScores, *v, tokens);
    return out;
}

// A flag: a bool, or an integer 0 or 1.
bool flag_value(const Values& values, std::string_view key, bool fallback) {
    const GgufValue* v = values.find(key);
    if (!v) return fallback;
    if (v->type == GgufType::Bool) return *v->bytes != 0;
    if (is_integer_type(v->type)) {
        const int64_t x = integer_at(v->type, v->bytes);
        if (x == 0 || x == 1) return x == 1;
    }
    fail(key, "must be a boolean");
}

// A token id: an integer in [0, n_tokens) (when the file has no token list, in [0, INT32_MAX]).
int32_t id_value(const Values& values, std::string_view key, const GgufValue* tokens) {
    const GgufValue* v = values.find(key);
    if (!v) return -1;
    const int64_t high = tokens ? static_cast<int64_t>(tokens->count) - 1 : std::numeric_limits<int32_t>::max();
    const int64_t x = is_integer_type(v->type) ? integer_at(v->type, v->bytes) : -1;
    if (x < 0 || x > high) {
        fail(key, tokens ? "must be a token id in [0, " + std::to_string(tokens->count) + ") (the size of " +
                               std::string(kTokens) + ")"
                         : std::string("must be an integer in [0, 2147483647]"));
    }
    return static_cast<int32_t>(x);
}

// Python splits a merge with line.split(" "): exactly two non-empty parts.
void check_merges(const std::vector<std::string>& merges) {
    for (size_t rank = 0; rank < merges.size(); ++rank) {
        const std::string& line = merges[rank];
        const size_t space = line.find(' ');
        if (space == std::string::npos || space == 0 || space + 1 == line.size() ||
            line.find(' ', space + 1) != std::string::npos) {
            throw GgufError(std::string(kMerges) + "[" + std::to_string(rank) + "] is not 'left right': '" + line + "'");
        }
    }
}

// What Tokenizer.from_metadata requires beyond the types: a supported family and its arrays.
void check_family(TokenizerMetadata& m, bool has_pre, const GgufValue* tokens, const GgufValue* types,
                  const GgufValue* merges, const GgufValue* scores) {
    if (m.model != "gpt2" && m.model != "llama") {
        throw UnsupportedTokenizerError("unsupported " + std::string(kModel) + " '" + m.model +
                                        "'; edgellama handles 'gpt2', 'llama'");
    }
    if (m.model == "gpt2" && !has_pre) {
        throw GgufError("GGUF metadata has no " + std::string(kPre) + "; the pre-tokenizer cannot be guessed "
                        "(supported: gpt-2, gpt2, llama-bpe, smollm)");
    }
    if (!tokens || tokens->count == 0) throw GgufError("GGUF metadata has no " + std::string(kTokens));
    if (!types) m.types.assign(m.tokens.size(), kNormal);
    if (m.model == "gpt2" && !merges) {
        throw GgufError("GGUF metadata has no " + std::string(kMerges) + " (required for gpt2 BPE)");
    }
    if (m.model == "llama" && !scores) {
        throw GgufError("GGUF metadata has no " + std::string(kScores) + " (required for llama SentencePiece)");
    }
    if (m.model == "gpt2" && !pre_tokenizer_kind(m.pre)) {
        throw UnsupportedTokenizerError("unsupported " + std::string(kPre) + " '" + m.pre +
                                        "'; edgellama supports gpt-2, gpt2, llama-bpe, smollm");
    }
    if (m.model == "gpt2") check_merges(m.merges);
}

}  // namespace

bool has_tokenizer_metadata(const GgufFile& file) { return Values(file).find(kModel) != nullptr; }

TokenizerMetadata read_tokenizer_metadata(const GgufFile& file) {
    const Values values(file);
    TokenizerMetadata m;
    // Types and ranges first, in check_tokenizer_metadata's order.
    bool has_model = false, has_pre = false;
    m.model = text_value(values, kModel, &has_model);
    m.pre = text_value(values, kPre, &has_pre);
    const GgufValue* tokens = string_array(values, kTokens);
    m.types = type_items(values, tokens);
    m.scores = score_items(values, tokens);
    const GgufValue* merges = string_array(values, kMerges);
    m.add_space_prefix = flag_value(values, "tokenizer.ggml.add_space_prefix", true);
    m.add_bos = flag_value(values, "tokenizer.ggml.add_bos_token", false);
    m.add_eos = flag_value(values, "tokenizer.ggml.add_eos_token", false);
    m.bos = id_value(values, "tokenizer.ggml.bos_token_id", tokens);
    m.eos = id_value(values, "tokenizer.ggml.eos_token_id", tokens);
    m.eot = id_value(values, "tokenizer.ggml.eot_token_id", tokens);
    m.pad = id_value(values, "tokenizer.ggml.padding_token_id", tokens);
    m.unk = id_value(values, "tokenizer.ggml.unknown_token_id", tokens);
    if (!has_model) {
        throw GgufError("this model file has no tokenizer (no " + std::string(kModel) +
                        " in its GGUF metadata): it takes token ids, not text");
    }
    m.tokens = string_items(tokens);
    m.merges = string_items(merges);
    check_family(m, has_pre, tokens, values.find(kTypes), merges, values.find(kScores));
    if (m.tokens.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
        throw GgufError("metadata '" + std::string(kTokens) + "': more tokens than int32 ids can number");
    }
    return m;
}

}  // namespace edgellama::tokenizer
