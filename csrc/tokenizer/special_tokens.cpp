#include "csrc/tokenizer/special_tokens.h"

#include <algorithm>
#include <unordered_map>

#include "csrc/tokenizer/bpe.h"

namespace edgellama::tokenizer {

SpecialTokens::SpecialTokens(const std::vector<std::string>& tokens, const std::vector<int32_t>& types) {
    std::unordered_map<std::string_view, int32_t> by_text;
    for (size_t i = 0; i < tokens.size(); ++i) {
        if ((types[i] == kControl || types[i] == kUserDefined) && !tokens[i].empty()) {
            by_text[tokens[i]] = static_cast<int32_t>(i);
        }
    }
    for (const auto& [text, id] : by_text) {
        by_first_byte_[static_cast<unsigned char>(text[0])].push_back(Entry{std::string(text), id});
    }
    for (auto& entries : by_first_byte_) {
        std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
            return a.text.size() != b.text.size() ? a.text.size() > b.text.size() : a.text < b.text;
        });
    }
    n_ = by_text.size();
}

std::vector<SpecialMatch> SpecialTokens::find(std::string_view text) const {
    std::vector<SpecialMatch> out;
    if (n_ == 0) return out;
    for (size_t pos = 0; pos < text.size();) {
        const Entry* hit = nullptr;
        for (const Entry& e : by_first_byte_[static_cast<unsigned char>(text[pos])]) {
            if (text.compare(pos, e.text.size(), e.text) == 0) {
                hit = &e;
                break;
            }
        }
        if (hit) {
            out.push_back(SpecialMatch{pos, pos + hit->text.size(), hit->id});
            pos += hit->text.size();
        } else {
            // Special strings are well-formed UTF-8, so none starts inside a character.
            pos += utf8_len(static_cast<unsigned char>(text[pos]));
        }
    }
    return out;
}

}  // namespace edgellama::tokenizer
