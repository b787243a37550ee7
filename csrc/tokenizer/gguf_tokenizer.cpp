#include "csrc/tokenizer/gguf_tokenizer.h"

#include <array>
#include <stdexcept>

#include "csrc/tokenizer/unicode_classes.h"

namespace edgellama::tokenizer {
namespace {

constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

// Control-token texts that end a turn in common chat formats (Python's STOP_TEXTS).
constexpr std::string_view kStopTexts[] = {"<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "</s>",
                                           "<|endoftext|>"};

// The gpt2 byte <-> unicode map: bytes 33-126, 161-172 and 174-255 stand for themselves; the other
// 68 bytes, in increasing order, for U+0100, U+0101, ... so every byte is a printable character.
struct ByteMap {
    std::array<uint32_t, 256> char_of{};
    std::array<int16_t, 0x144> byte_of{};  // code point -> byte, -1 for none

    ByteMap() {
        byte_of.fill(-1);
        uint32_t extra = 0;
        for (uint32_t b = 0; b < 256; ++b) {
            const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
            char_of[b] = printable ? b : 256 + extra++;
            byte_of[char_of[b]] = static_cast<int16_t>(b);
        }
    }
};

const ByteMap& byte_map() {
    static const ByteMap map;
    return map;
}

// Stored symbols back to bytes; a character outside the map passes through as its UTF-8.
std::string symbols_to_bytes(std::string_view text) {
    const ByteMap& map = byte_map();
    std::string out;
    out.reserve(text.size());
    for (size_t pos = 0; pos < text.size();) {
        const size_t start = pos;
        const uint32_t cp = next_code_point(text, pos);
        if (cp < map.byte_of.size() && map.byte_of[cp] >= 0) out += static_cast<char>(map.byte_of[cp]);
        else out.append(text.data() + start, pos - start);
    }
    return out;
}

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

// What the constructor relies on; read_tokenizer_metadata guarantees it, this keeps it local.
void check_consistent(const TokenizerMetadata& m) {
    const size_t n = m.tokens.size();
    if (n == 0 || m.types.size() != n) throw GgufError("tokenizer metadata: no tokens, or not one type per token");
    for (int32_t id : {m.bos, m.eos, m.eot, m.pad, m.unk}) {
        if (id < -1 || (id >= 0 && static_cast<size_t>(id) >= n)) throw GgufError("tokenizer metadata: bad token id");
    }
    const bool gpt2 = m.model == "gpt2";
    if (gpt2 ? !pre_tokenizer_kind(m.pre) : m.model != "llama") {
        throw UnsupportedTokenizerError("tokenizer metadata: unsupported model '" + m.model + "' / pre '" + m.pre + "'");
    }
}

}  // namespace

std::unique_ptr<GgufTokenizer> GgufTokenizer::from_gguf(const GgufFile& file) {
    TokenizerMetadata meta = read_tokenizer_metadata(file);
    check_consistent(meta);
    return std::unique_ptr<GgufTokenizer>(new GgufTokenizer(std::move(meta)));
}

GgufTokenizer::GgufTokenizer(TokenizerMetadata meta)
    : model_(std::move(meta.model)),
      tokens_(std::move(meta.tokens)),
      types_(std::move(meta.types)),
      bos_(meta.bos), eos_(meta.eos), eot_(meta.eot), pad_(meta.pad), unk_(meta.unk),
      add_bos_(meta.add_bos), add_eos_(meta.add_eos),
      add_space_prefix_(model_ == "llama" && meta.add_space_prefix),
      special_(tokens_, types_) {
    for (int32_t id : {eos_, eot_}) {
        if (id >= 0) stop_ids_.insert(id);
    }
    for (size_t i = 0; i < tokens_.size(); ++i) {
        if (types_[i] != kControl) continue;
        for (std::string_view stop : kStopTexts) {
            if (tokens_[i] == stop) stop_ids_.insert(static_cast<int32_t>(i));
        }
    }
    if (model_ == "gpt2") {
        pre_ = *pre_tokenizer_kind(meta.pre);
        ignore_merges_ = ignores_merges(pre_);
        // Only a genuine unknown token (type UNKNOWN) stands in for a byte without a token.
        const int32_t fallback = unk_ >= 0 && types_[static_cast<size_t>(unk_)] == kUnknown ? unk_ : -1;
        std::vector<std::string> byte_chars(256);
        for (size_t b = 0; b < 256; ++b) append_utf8(byte_chars[b], byte_map().char_of[b]);
        bpe_ = std::make_unique<ByteLevelBpe>(tokens_, byte_chars, meta.merges, fallback);
        if (ignore_merges_) {
            vocab_.reserve(tokens_.size());
            for (size_t i = 0; i < tokens_.size(); ++i) vocab_.emplace(tokens_[i], static_cast<int32_t>(i));
        }
    } else {
        spm_ = std::make_unique<SentencePieceBpe>(tokens_, meta.scores, types_, unk_);
    }
    bytes_.reserve(tokens_.size());
    for (size_t i = 0; i < tokens_.size(); ++i) bytes_.push_back(compute_token_bytes(i));
}

std::string GgufTokenizer::compute_token_bytes(size_t i) const {
    const std::string& text = tokens_[i];
    const bool byte_level = model_ == "gpt2";
    if (types_[i] == kByte) {
        const int b = parse_byte_token(text);
        if (b >= 0) return std::string(1, static_cast<char>(b));
        return byte_level ? symbols_to_bytes(text) : text;
    }
    if (types_[i] == kNormal) {
        if (byte_level) return symbols_to_bytes(text);
        std::string out;  // SentencePiece: U+2581 is a space
        for (size_t pos = 0; pos < text.size();) {
            if (text.compare(pos, kSpmSpace.size(), kSpmSpace) == 0) {
                out += ' ';
                pos += kSpmSpace.size();
            } else {
                out += text[pos++];
            }
        }
        return out;
    }
    // Control, user-defined, unknown and unused tokens are stored as plain text.
    return text;
}

// ---- encoding -----------------------------------------------------------------------------------

std::vector<int32_t> GgufTokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
    if (text.size() > kMaxTextBytes) {
        throw std::invalid_argument("the text is " + std::to_string(text.size()) + " bytes; at most " +
                                    std::to_string(kMaxTextBytes) + " can be tokenized at once");
    }
    const size_t bad = find_invalid_utf8(text);
    if (bad != std::string_view::npos) {
        throw std::invalid_argument("the text is not valid UTF-8 (at byte " + std::to_string(bad) + ")");
    }
    std::vector<int32_t> ids;
    ids.reserve(text.size() / 3 + 2);
    if (add_bos && add_bos_) {
        if (bos_ < 0) throw GgufError("tokenizer.ggml.add_bos_token is set but the vocabulary has no bos_token_id");
        ids.push_back(bos_);
    }
    if (parse_special && !special_.empty()) {
        size_t pos = 0;
        for (const SpecialMatch& m : special_.find(text)) {
            if (m.start > pos) encode_plain(text.substr(pos, m.start - pos), pos == 0, ids);
            ids.push_back(m.id);
            pos = m.end;
        }
        if (pos < text.size()) encode_plain(text.substr(pos), pos == 0, ids);
    } else {
        encode_plain(text, true, ids);
    }
    if (add_bos && add_eos_) {
        if (eos_ < 0) throw GgufError("tokenizer.ggml.add_eos_token is set but the vocabulary has no eos_token_id");
        ids.push_back(eos_);
    }
    return ids;
}

void GgufTokenizer::encode_plain(std::string_view text, bool at_start, std::vector<int32_t>& out) const {
    if (bpe_) encode_byte_level(text, out);
    else encode_sentencepiece(text, at_start, out);
}

void GgufTokenizer::encode_byte_level(std::string_view text, std::vector<int32_t>& out) const {
    std::vector<std::string_view> pieces;
    pre_tokenize(pre_, text, pieces);
    std::string symbols;
    for (std::string_view piece : pieces) {
        if (ignore_merges_) {
            // A pre-token that is a token whole is that token: merging could split it otherwise.
            symbols.clear();
            for (unsigned char b : piece) append_utf8(symbols, byte_map().char_of[b]);
            auto it = vocab_.find(symbols);
            if (it != vocab_.end()) {
                out.push_back(it->second);
                continue;
            }
        }
        bpe_->encode_piece(piece, out);
    }
}

void GgufTokenizer::encode_sentencepiece(std::string_view text, bool at_start, std::vector<int32_t>& out) const {
    std::string escaped;
    escaped.reserve(text.size() + 3 * 8);
    if (add_space_prefix_ && at_start && !text.empty()) escaped += kSpmSpace;
    for (char c : text) {
        if (c == ' ') escaped += kSpmSpace;
        else escaped += c;
    }
    spm_->encode(escaped, out);
}

// ---- decoding and queries -----------------------------------------------------------------------

void GgufTokenizer::check_id(int32_t id) const {
    if (!in_range(id)) {
        throw std::out_of_range("token id " + std::to_string(id) + " is outside the vocabulary (n_vocab=" +
                                std::to_string(tokens_.size()) + ")");
    }
}

const std::string& GgufTokenizer::token_text(int32_t id) const {
    check_id(id);
    return tokens_[static_cast<size_t>(id)];
}

int32_t GgufTokenizer::token_type(int32_t id) const {
    check_id(id);
    return types_[static_cast<size_t>(id)];
}

const std::string& GgufTokenizer::token_bytes(int32_t id) const {
    check_id(id);
    return bytes_[static_cast<size_t>(id)];
}

// The U+2581 that add_space_prefix put before the text comes back as a space the first piece drops.
bool GgufTokenizer::strips_leading_space(int32_t id) const {
    const size_t i = static_cast<size_t>(id);
    return add_space_prefix_ && types_[i] == kNormal && starts_with(tokens_[i], kSpmSpace);
}

std::string GgufTokenizer::decode(const int32_t* ids, size_t n, bool render_special) const {
    std::string out;
    bool first = true;
    for (size_t k = 0; k < n; ++k) {
        const int32_t id = ids[k];
        check_id(id);
        const int32_t type = types_[static_cast<size_t>(id)];
        if (!render_special && (type == kControl || type == kUnknown || type == kUnused)) continue;
        const std::string& data = bytes_[static_cast<size_t>(id)];
        if (first && !data.empty()) {
            first = false;
            if (strips_leading_space(id)) {
                out.append(data, 1, std::string::npos);
                continue;
            }
        }
        out += data;
    }
    return out;
}

}  // namespace edgellama::tokenizer
