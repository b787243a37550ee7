// The merge loop shared by edgellama's two tokenizer families.
//
// Both byte-level BPE (gpt2-style vocabularies: Llama 3, SmolLM2) and SentencePiece-style BPE
// (`llama` vocabularies: Llama 2, TinyLlama) tokenize a piece of text the same way once its
// initial symbols are known: repeatedly replace the adjacent pair with the best merge by the
// merged token, until no adjacent pair can merge. They differ only in what "best" means — the
// lowest merge rank for byte-level BPE, the highest score of the merged piece for SentencePiece —
// so a MergeTable stores one `priority` per pair (lower merges first) and ties go to the leftmost
// pair, as both reference tokenizers do.
//
// Python keeps the pre-tokenization (regular expressions); this file owns everything after it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace edgellama::tokenizer {

struct MergeRule {
    float priority;  // lower merges first
    int32_t merged;  // the token the pair becomes
};

// (left id, right id) -> rule. Negative ids never merge (they mark symbols without a token).
class MergeTable {
public:
    // Keeps the first rule added for a pair (a repeated merge line never overrides its first rank).
    void add(int32_t left, int32_t right, int32_t merged, float priority);
    const MergeRule* find(int32_t left, int32_t right) const {
        if (left < 0 || right < 0) return nullptr;
        auto it = rules_.find(key(left, right));
        return it == rules_.end() ? nullptr : &it->second;
    }
    size_t size() const { return rules_.size(); }

private:
    static uint64_t key(int32_t l, int32_t r) {
        return (static_cast<uint64_t>(static_cast<uint32_t>(l)) << 32) | static_cast<uint32_t>(r);
    }
    std::unordered_map<uint64_t, MergeRule> rules_;
};

// Applies merges to `symbols` in place (one merge at a time: the lowest priority, leftmost on ties).
void apply_merges(std::vector<int32_t>& symbols, const MergeTable& table);

// A byte token's byte: "<0xAB>" (two ASCII hex digits, as SentencePiece writes them) -> 0xAB;
// -1 for any other text (a BYTE-typed token without that form decodes as its text). The Python
// tokenizer's parse_byte_token applies the same rule.
int parse_byte_token(std::string_view s);

// Byte-level BPE over a gpt2-style vocabulary. Pre-tokens arrive as UTF-8; each byte starts as
// the token of its printable stand-in character, then merges apply by rank. Results of repeated
// pre-tokens are cached (thread-safe).
class ByteLevelBpe {
public:
    // tokens: the vocabulary as stored (printable stand-ins, UTF-8). byte_chars[b]: the stand-in
    // character of byte b. merges: "left right" lines in rank order; a line whose parts or result
    // are not tokens is ignored. unk_id >= 0: a byte without a token becomes this id (it never
    // merges); unk_id < 0: such a byte is dropped before merging.
    ByteLevelBpe(const std::vector<std::string>& tokens, const std::vector<std::string>& byte_chars,
                 const std::vector<std::string>& merges, int32_t unk_id);

    // Appends the ids of one pre-token to `out`.
    void encode_piece(std::string_view piece, std::vector<int32_t>& out);
    const MergeTable& table() const { return table_; }
    size_t n_merges() const { return table_.size(); }

private:
    void encode_uncached(std::string_view piece, std::vector<int32_t>& out) const;

    MergeTable table_;
    int32_t byte_token_[256];
    int32_t unk_id_;
    std::mutex cache_mutex_;
    std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

// SentencePiece-style BPE. The text arrives already escaped (spaces as U+2581, the space prefix
// added by the caller); its UTF-8 characters are the initial symbols, pairs merge when their
// concatenation is a normal or user-defined token, highest score first. A character that is no
// token becomes its UTF-8 bytes as <0xNN> tokens when the vocabulary has them (byte fallback),
// else the unknown token.
class SentencePieceBpe {
public:
    SentencePieceBpe(const std::vector<std::string>& tokens, const std::vector<float>& scores,
                     const std::vector<int32_t>& types, int32_t unk_id);

    void encode(std::string_view text, std::vector<int32_t>& out) const;
    const MergeTable& table() const { return table_; }

private:
    MergeTable table_;
    std::unordered_map<std::string, int32_t> piece_id_;  // mergeable pieces only
    int32_t byte_token_[256];
    int32_t unk_id_;
};

// Token types as stored in tokenizer.ggml.token_type.
enum TokenType : int32_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

// Length of the UTF-8 sequence that starts with byte c (1 for a stray continuation byte).
inline size_t utf8_len(unsigned char c) {
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) return 2;
    if ((c & 0xF0) == 0xE0) return 3;
    if ((c & 0xF8) == 0xF0) return 4;
    return 1;
}

}  // namespace edgellama::tokenizer
