// The byte-level BPE pre-tokenizers, by their tokenizer.ggml.pre name, without a regex engine.
//
// Each pattern of edgellama/pretokenizer.py is a fixed alternation; here it is a hand-written
// scanner over code points that returns, at each position, the end of the match that the
// backtracking regex would find there (first alternative that matches, greedy runs, the
// backtracking of \s+(?!\S) and \s*[\r\n]+ worked out). The matches tile the text, so splitting is
// "match, move to its end" until the text is used up. Classes (\p{L}, \p{N}, \s) come from
// unicode_classes.h, generated from the same `regex` package the Python side uses.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

namespace edgellama::tokenizer {

enum class PreTokenizerKind {
    kGpt2,    // "gpt-2", "gpt2": 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    kLlama3,  // "llama-bpe": case-insensitive contractions, digits in threes, newline handling
    kSmolLM,  // "smollm": every \p{N} on its own, then gpt2 on the pieces between
};

// The kind a tokenizer.ggml.pre name selects, or nullopt when edgellama has no such pre-tokenizer.
std::optional<PreTokenizerKind> pre_tokenizer_kind(std::string_view name);

// Whether a pre-token that is a token whole is that token without merging (Llama 3's BPE).
bool ignores_merges(PreTokenizerKind kind);

// Splits valid UTF-8 text into pre-tokens (views into text, in order, concatenating to text).
void pre_tokenize(PreTokenizerKind kind, std::string_view text, std::vector<std::string_view>& pieces);

}  // namespace edgellama::tokenizer
