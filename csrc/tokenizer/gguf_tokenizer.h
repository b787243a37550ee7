// The whole tokenizer of a GGUF file in C++, for apps without Python (the C ABI): the text <->
// token ids that edgellama's Python Tokenizer (edgellama/tokenizer/) gives, built from the file's
// tokenizer.* metadata.
//
//   encode: valid UTF-8 -> [BOS] + control/user-defined strings cut out (parse_special) + each
//           piece of plain text through its family: gpt2 (byte-level BPE: pre-tokenizer by
//           tokenizer.ggml.pre, bytes as printable symbols, merges by rank) or llama
//           (SentencePiece BPE: spaces as U+2581, the space prefix, byte fallback, unknown)
//   decode: ids -> the bytes of their text (control/unknown/unused tokens only when asked)
//
// The merge loops are csrc/tokenizer/bpe.h, shared with the Python tokenizer; tests hold this class
// to the Python Tokenizer through the C ABI (tests/test_capi_tokenizer.py).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "csrc/model/gguf_reader.h"
#include "csrc/tokenizer/bpe.h"
#include "csrc/tokenizer/pretokenizer.h"
#include "csrc/tokenizer/special_tokens.h"
#include "csrc/tokenizer/tokenizer_metadata.h"

namespace edgellama::tokenizer {

class GgufTokenizer {
public:
    // From the parsed file; copies what it needs. Malformed tokenizer metadata: GgufError naming the
    // key; a tokenizer.ggml.model or .pre edgellama does not implement: UnsupportedTokenizerError (a
    // GgufError). The same files are accepted as by Python's Tokenizer.from_metadata.
    static std::unique_ptr<GgufTokenizer> from_gguf(const GgufFile& file);
    // Whether the file has a tokenizer at all (tokenizer.ggml.model); from_gguf throws when not.
    static bool has_tokenizer(const GgufFile& file) { return has_tokenizer_metadata(file); }

    // The longest text encode takes (512 MiB): the merge loops index symbols with 32-bit integers,
    // and SentencePiece's escaping makes a text up to three times longer.
    static constexpr size_t kMaxTextBytes = size_t{1} << 29;

    // Python's Tokenizer.encode(text, add_bos=None if add_bos else False,
    // add_eos=None if add_bos else False, special=parse_special): add_bos adds the file's special
    // tokens as tokenizer.ggml.add_bos_token / add_eos_token say (BOS first, EOS last).
    // Throws std::invalid_argument for text that is not valid UTF-8 or longer than kMaxTextBytes,
    // and GgufError when the file asks for BOS/EOS but has no such token.
    std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const;
    // Python's decode(ids, render_special), as bytes: no replacement of an unfinished UTF-8
    // sequence. Throws std::out_of_range for an id outside the vocabulary.
    std::string decode(const int32_t* ids, size_t n, bool render_special) const;

    int32_t n_vocab() const { return static_cast<int32_t>(tokens_.size()); }
    int32_t bos() const { return bos_; }  // -1 when absent
    int32_t eos() const { return eos_; }
    int32_t eot() const { return eot_; }
    int32_t unk() const { return unk_; }
    int32_t pad() const { return pad_; }
    bool add_bos() const { return add_bos_; }
    bool add_eos() const { return add_eos_; }
    bool is_end(int32_t id) const { return stop_ids_.count(id) != 0; }  // Python's stop_ids
    bool is_control(int32_t id) const { return in_range(id) && types_[static_cast<size_t>(id)] == kControl; }
    // The vocabulary entry as stored (ill-formed UTF-8 in the file replaced by U+FFFD, as Python
    // reads it). Throws std::out_of_range.
    const std::string& token_text(int32_t id) const;
    int32_t token_type(int32_t id) const;                // throws std::out_of_range
    const std::string& token_bytes(int32_t id) const;    // the bytes it stands for; throws std::out_of_range
    const std::string& model() const { return model_; }  // "gpt2" or "llama"

private:
    // meta as read_tokenizer_metadata returns it (checked again here: ids, lengths, the family).
    explicit GgufTokenizer(TokenizerMetadata meta);

    bool in_range(int32_t id) const { return id >= 0 && static_cast<size_t>(id) < tokens_.size(); }
    void check_id(int32_t id) const;
    void encode_plain(std::string_view text, bool at_start, std::vector<int32_t>& out) const;
    void encode_byte_level(std::string_view text, std::vector<int32_t>& out) const;
    void encode_sentencepiece(std::string_view text, bool at_start, std::vector<int32_t>& out) const;
    std::string compute_token_bytes(size_t i) const;
    bool strips_leading_space(int32_t id) const;

    std::string model_;
    std::vector<std::string> tokens_;
    std::vector<int32_t> types_;
    std::vector<std::string> bytes_;  // what each token contributes to decoded text
    int32_t bos_, eos_, eot_, pad_, unk_;
    bool add_bos_, add_eos_, add_space_prefix_;
    std::unordered_set<int32_t> stop_ids_;
    SpecialTokens special_;
    // gpt2
    PreTokenizerKind pre_ = PreTokenizerKind::kGpt2;
    bool ignore_merges_ = false;
    std::unordered_map<std::string, int32_t> vocab_;  // text -> first id (for ignore_merges)
    std::unique_ptr<ByteLevelBpe> bpe_;               // its cache is locked inside: safe from const methods
    // llama
    std::unique_ptr<SentencePieceBpe> spm_;
};

}  // namespace edgellama::tokenizer
