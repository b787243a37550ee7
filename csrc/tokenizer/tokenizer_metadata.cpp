#include "csrc/tokenizer/tokenizer_metadata.h"

#include <iterator>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "csrc/model/metadata_reader.h"
#include "csrc/tokenizer/pretokenizer.h"

namespace edgellama::tokenizer {
namespace {

constexpr std::string_view kModel = "tokenizer.ggml.model";
constexpr std::string_view kPre = "tokenizer.ggml.pre";
constexpr std::string_view kTypes = "tokenizer.ggml.token_type";
constexpr std::string_view kScores = "tokenizer.ggml.scores";
constexpr std::string_view kMerges = "tokenizer.ggml.merges";
constexpr int32_t kNormal = 1;

// The readers below run after check_tokenizer_metadata, which has checked the type, range and
// length of every value present: they only convert (an empty array may have any item type, so
// they never look at the item type of an array without items).

std::string text_or_empty(const MetadataReader& r, std::string_view key) {
    const std::optional<std::string_view> v = r.text(key);
    return v ? utf8_replace(*v) : std::string();
}

std::vector<std::string> string_items(const GgufValue* v) {
    std::vector<std::string> out;
    if (!v) return out;
    out.reserve(v->texts.size());
    for (std::string_view s : v->texts) out.push_back(utf8_replace(s));
    return out;
}

// The items of a numeric array, each converted by convert(item type, item bytes).
template <class T, class Convert>
std::vector<T> numeric_items(const GgufValue* v, Convert convert) {
    std::vector<T> out;
    if (!v) return out;
    out.reserve(static_cast<size_t>(v->count));
    for (uint64_t i = 0; i < v->count; ++i) out.push_back(convert(v->item_type, gguf_item(*v, i)));
    return out;
}

int32_t to_int32(GgufType t, const uint8_t* p) { return static_cast<int32_t>(load_gguf_int(t, p).value()); }
// Scores are checked to fit a float32: the merge loop takes them so.
float to_float32(GgufType t, const uint8_t* p) { return static_cast<float>(load_gguf_real(t, p)); }

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

// What Tokenizer.from_metadata requires beyond check_tokenizer_metadata: a supported family and
// its arrays. Fills in the default token types.
void check_family(TokenizerMetadata& m, const MetadataReader& r) {
    if (m.model != "gpt2" && m.model != "llama") {
        throw UnsupportedTokenizerError("unsupported " + std::string(kModel) + " '" + m.model +
                                        "'; edgellama handles 'gpt2', 'llama'");
    }
    if (m.model == "gpt2" && !r.has(kPre)) {
        throw GgufError("GGUF metadata has no " + std::string(kPre) + "; the pre-tokenizer cannot be guessed "
                        "(supported: gpt-2, gpt2, llama-bpe, smollm)");
    }
    if (m.tokens.empty()) throw GgufError("GGUF metadata has no " + std::string(kTokensKey));
    if (!r.has(kTypes)) m.types.assign(m.tokens.size(), kNormal);
    if (m.model == "gpt2" && !r.has(kMerges)) {
        throw GgufError("GGUF metadata has no " + std::string(kMerges) + " (required for gpt2 BPE)");
    }
    if (m.model == "llama" && !r.has(kScores)) {
        throw GgufError("GGUF metadata has no " + std::string(kScores) + " (required for llama SentencePiece)");
    }
    if (m.model == "gpt2" && !pre_tokenizer_kind(m.pre)) {
        throw UnsupportedTokenizerError("unsupported " + std::string(kPre) + " '" + m.pre +
                                        "'; edgellama supports gpt-2, gpt2, llama-bpe, smollm");
    }
    if (m.model == "gpt2") check_merges(m.merges);
}

}  // namespace

bool has_tokenizer_metadata(const GgufFile& file) { return MetadataReader(file).has(kModel); }

TokenizerMetadata read_tokenizer_metadata(const GgufFile& file) {
    const MetadataReader r(file);
    // Tokenizer.from_metadata runs the loader's checks first: the same verdicts and messages.
    check_tokenizer_metadata(r);
    if (!r.has(kModel)) {
        throw GgufError("this model file has no tokenizer (no " + std::string(kModel) +
                        " in its GGUF metadata): it takes token ids, not text");
    }
    TokenizerMetadata m;
    m.model = text_or_empty(r, kModel);
    m.pre = text_or_empty(r, kPre);
    m.tokens = string_items(r.find(kTokensKey));
    m.types = numeric_items<int32_t>(r.find(kTypes), to_int32);  // checked: within int32
    m.scores = numeric_items<float>(r.find(kScores), to_float32);
    m.merges = string_items(r.find(kMerges));
    m.add_space_prefix = r.flag("tokenizer.ggml.add_space_prefix").value_or(true);
    m.add_bos = r.flag("tokenizer.ggml.add_bos_token").value_or(false);
    m.add_eos = r.flag("tokenizer.ggml.add_eos_token").value_or(false);
    int32_t* const ids[] = {&m.bos, &m.eos, &m.eot, &m.pad, &m.unk};  // kSpecialTokenIdKeys' order
    for (size_t k = 0; k < std::size(ids); ++k) {
        const std::optional<uint64_t> id = r.integer(kSpecialTokenIdKeys[k], 0, kInt32Max);
        *ids[k] = id ? static_cast<int32_t>(*id) : -1;
    }
    check_family(m, r);
    if (m.tokens.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
        throw GgufError("metadata '" + std::string(kTokensKey) + "': more tokens than int32 ids can number");
    }
    return m;
}

}  // namespace edgellama::tokenizer
