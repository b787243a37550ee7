// Control and user-defined token strings found in text (encode with parse_special), as
// edgellama/tokenizer/special_tokens.py finds them: scanning left to right, at each place the
// longest such string that starts there; text where none starts is plain text.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace edgellama::tokenizer {

struct SpecialMatch {
    size_t start, end;  // byte offsets into the text
    int32_t id;
};

class SpecialTokens {
public:
    // tokens/types: the vocabulary. A string held by several such tokens is the last one's (as
    // Python's dict built over the vocabulary keeps the last).
    SpecialTokens(const std::vector<std::string>& tokens, const std::vector<int32_t>& types);

    bool empty() const { return n_ == 0; }
    // The matches in valid UTF-8 text, in order, non-overlapping.
    std::vector<SpecialMatch> find(std::string_view text) const;

private:
    struct Entry {
        std::string text;
        int32_t id;
    };
    // By first byte, longest first: the first entry that matches at a place is the longest.
    std::array<std::vector<Entry>, 256> by_first_byte_;
    size_t n_ = 0;
};

}  // namespace edgellama::tokenizer
