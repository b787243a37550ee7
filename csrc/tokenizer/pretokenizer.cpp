#include "csrc/tokenizer/pretokenizer.h"

#include "csrc/tokenizer/unicode_classes.h"

namespace edgellama::tokenizer {
namespace {

// The text as code points with their classes; offset[i] is the byte offset of code point i
// (offset[n] = the text's size), so a match [i, j) is the bytes [offset[i], offset[j]).
struct CodePoints {
    std::vector<uint32_t> cp;
    std::vector<CharClass> cls;
    std::vector<size_t> offset;

    explicit CodePoints(std::string_view text) {
        cp.reserve(text.size());
        cls.reserve(text.size());
        offset.reserve(text.size() + 1);
        for (size_t pos = 0; pos < text.size();) {
            offset.push_back(pos);
            const uint32_t c = next_code_point(text, pos);
            cp.push_back(c);
            cls.push_back(char_class(c));
        }
        offset.push_back(text.size());
    }
    size_t size() const { return cp.size(); }
};

bool is_cr_or_lf(uint32_t c) { return c == '\r' || c == '\n'; }

// The end of the run of class k that starts at i (i itself when cls[i] is not k), within end.
size_t run_end(const CodePoints& t, size_t i, size_t end, CharClass k) {
    while (i < end && t.cls[i] == k) ++i;
    return i;
}

size_t cr_lf_run_end(const CodePoints& t, size_t i, size_t end) {
    while (i < end && is_cr_or_lf(t.cp[i])) ++i;
    return i;
}

// (?i:...) in the `regex` package folds case simply: besides ASCII case, U+017F (long s) is 's'.
uint32_t fold_contraction_letter(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + ('a' - 'A');
    if (c == 0x17F) return 's';
    return c;
}

// The end of 's|'t|'re|'ve|'m|'ll|'d at i (compared after fold), or 0 when none matches.
template <class Fold>
size_t contraction_end(const CodePoints& t, size_t i, size_t end, Fold fold) {
    if (t.cp[i] != '\'' || i + 1 >= end) return 0;
    const uint32_t a = fold(t.cp[i + 1]);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if (i + 2 >= end) return 0;
    const uint32_t b = fold(t.cp[i + 2]);
    if ((a == 'r' || a == 'v') && b == 'e') return i + 3;
    if (a == 'l' && b == 'l') return i + 3;
    return 0;
}

// \s+(?!\S)|\s+ at a whitespace run [i, j): the whole run when nothing follows it in the piece;
// otherwise all but its last character (which then goes with what follows), unless the run is a
// single character, which \s+ takes alone.
size_t space_run_match(size_t i, size_t j, size_t end) {
    if (j == end) return j;
    return j - i >= 2 ? j - 1 : j;
}

// ' ?X+' for the class X: a space joins a run of X that follows it.
size_t optional_space_run(const CodePoints& t, size_t i, size_t end, CharClass k) {
    if (t.cp[i] == ' ' && i + 1 < end && t.cls[i + 1] == k) return run_end(t, i + 1, end, k);
    if (t.cls[i] == k) return run_end(t, i, end, k);
    return 0;
}

// gpt2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
size_t gpt2_match(const CodePoints& t, size_t i, size_t end) {
    if (size_t e = contraction_end(t, i, end, [](uint32_t c) { return c; })) return e;
    for (CharClass k : {CharClass::kLetter, CharClass::kNumber, CharClass::kOther}) {
        if (size_t e = optional_space_run(t, i, end, k)) return e;
    }
    // Only whitespace is left (every code point has one of the four classes).
    return space_run_match(i, run_end(t, i, end, CharClass::kSpace), end);
}

// llama-bpe: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}
//            | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
size_t llama3_match(const CodePoints& t, size_t i, size_t end) {
    if (size_t e = contraction_end(t, i, end, fold_contraction_letter)) return e;
    const CharClass c = t.cls[i];
    if (c == CharClass::kLetter) return run_end(t, i, end, CharClass::kLetter);
    // One character that is no letter, digit, CR or LF may lead a run of letters.
    if (c != CharClass::kNumber && !is_cr_or_lf(t.cp[i]) && i + 1 < end && t.cls[i + 1] == CharClass::kLetter) {
        return run_end(t, i + 1, end, CharClass::kLetter);
    }
    if (c == CharClass::kNumber) {
        const size_t j = run_end(t, i, end, CharClass::kNumber);
        return j - i > 3 ? i + 3 : j;
    }
    if (size_t e = optional_space_run(t, i, end, CharClass::kOther)) return cr_lf_run_end(t, e, end);
    // Whitespace. \s*[\r\n]+: greedy \s* backs off to the run's last CR or LF, which ends the match.
    const size_t j = run_end(t, i, end, CharClass::kSpace);
    for (size_t k = j; k > i; --k) {
        if (is_cr_or_lf(t.cp[k - 1])) return k;
    }
    return space_run_match(i, j, end);
}

// Appends the matches of one pattern over code points [begin, end) as byte views.
template <class Match>
void split_range(const CodePoints& t, std::string_view text, size_t begin, size_t end, Match match,
                 std::vector<std::string_view>& pieces) {
    for (size_t i = begin; i < end;) {
        const size_t j = match(t, i, end);
        pieces.push_back(text.substr(t.offset[i], t.offset[j] - t.offset[i]));
        i = j;
    }
}

// smollm: \p{N} alone first (the text between digits kept as pieces), then gpt2 within each piece,
// so the gpt2 pattern never looks across a digit.
void split_smollm(const CodePoints& t, std::string_view text, std::vector<std::string_view>& pieces) {
    size_t gap = 0;
    for (size_t i = 0; i < t.size(); ++i) {
        if (t.cls[i] != CharClass::kNumber) continue;
        split_range(t, text, gap, i, gpt2_match, pieces);
        pieces.push_back(text.substr(t.offset[i], t.offset[i + 1] - t.offset[i]));
        gap = i + 1;
    }
    split_range(t, text, gap, t.size(), gpt2_match, pieces);
}

}  // namespace

std::optional<PreTokenizerKind> pre_tokenizer_kind(std::string_view name) {
    if (name == "gpt-2" || name == "gpt2") return PreTokenizerKind::kGpt2;
    if (name == "llama-bpe") return PreTokenizerKind::kLlama3;
    if (name == "smollm") return PreTokenizerKind::kSmolLM;
    return std::nullopt;
}

bool ignores_merges(PreTokenizerKind kind) { return kind == PreTokenizerKind::kLlama3; }

void pre_tokenize(PreTokenizerKind kind, std::string_view text, std::vector<std::string_view>& pieces) {
    if (text.empty()) return;
    const CodePoints t(text);
    switch (kind) {
        case PreTokenizerKind::kGpt2: split_range(t, text, 0, t.size(), gpt2_match, pieces); break;
        case PreTokenizerKind::kLlama3: split_range(t, text, 0, t.size(), llama3_match, pieces); break;
        case PreTokenizerKind::kSmolLM: split_smollm(t, text, pieces); break;
    }
}

}  // namespace edgellama::tokenizer
