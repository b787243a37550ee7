#include "csrc/tokenizer/bpe.h"

#include <algorithm>
#include <limits>
#include <queue>

namespace edgellama::tokenizer {

void MergeTable::add(int32_t left, int32_t right, int32_t merged, float priority) {
    if (left < 0 || right < 0 || merged < 0) return;
    rules_.emplace(key(left, right), MergeRule{priority, merged});
}

namespace {

// Short pre-tokens (the common case) merge fastest with plain scans over a compact array.
void apply_merges_small(std::vector<int32_t>& sym, const MergeTable& table) {
    while (sym.size() > 1) {
        const MergeRule* best = nullptr;
        size_t best_pos = 0;
        for (size_t i = 0; i + 1 < sym.size(); ++i) {
            const MergeRule* r = table.find(sym[i], sym[i + 1]);
            if (r && (!best || r->priority < best->priority)) {  // strict: leftmost wins ties
                best = r;
                best_pos = i;
            }
        }
        if (!best) return;
        sym[best_pos] = best->merged;
        sym.erase(sym.begin() + static_cast<std::ptrdiff_t>(best_pos) + 1);
    }
}

struct Candidate {
    float priority;
    uint32_t pos;  // index of the left symbol (indices keep their order while symbols merge)
    int32_t left;
    int32_t right;
};

struct WorseCandidate {
    bool operator()(const Candidate& a, const Candidate& b) const {
        if (a.priority != b.priority) return a.priority > b.priority;
        return a.pos > b.pos;
    }
};

// Long inputs (whole SentencePiece texts, long runs): a heap of candidate pairs over a linked
// list of symbols; stale candidates are recognised by their ids and skipped.
void apply_merges_heap(std::vector<int32_t>& sym, const MergeTable& table) {
    const uint32_t n = static_cast<uint32_t>(sym.size());
    constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();
    std::vector<uint32_t> prev(n), next(n);
    std::vector<char> dead(n, 0);
    for (uint32_t i = 0; i < n; ++i) {
        prev[i] = i == 0 ? kNone : i - 1;
        next[i] = i + 1 == n ? kNone : i + 1;
    }
    std::vector<Candidate> storage;
    storage.reserve(n);
    std::priority_queue<Candidate, std::vector<Candidate>, WorseCandidate> heap(WorseCandidate{},
                                                                                std::move(storage));
    auto consider = [&](uint32_t l) {
        if (l == kNone || next[l] == kNone) return;
        const MergeRule* r = table.find(sym[l], sym[next[l]]);
        if (r) heap.push(Candidate{r->priority, l, sym[l], sym[next[l]]});
    };
    for (uint32_t i = 0; i + 1 < n; ++i) consider(i);
    while (!heap.empty()) {
        const Candidate c = heap.top();
        heap.pop();
        const uint32_t l = c.pos;
        if (dead[l] || sym[l] != c.left) continue;
        const uint32_t r = next[l];
        if (r == kNone || sym[r] != c.right) continue;
        sym[l] = table.find(c.left, c.right)->merged;
        dead[r] = 1;
        next[l] = next[r];
        if (next[r] != kNone) prev[next[r]] = l;
        consider(prev[l]);
        consider(l);
    }
    size_t w = 0;
    for (uint32_t i = 0; i < n; ++i) {
        if (!dead[i]) sym[w++] = sym[i];
    }
    sym.resize(w);
}

std::unordered_map<std::string, int32_t> first_ids(const std::vector<std::string>& tokens) {
    std::unordered_map<std::string, int32_t> ids;
    ids.reserve(tokens.size() * 2);
    for (size_t i = 0; i < tokens.size(); ++i) ids.emplace(tokens[i], static_cast<int32_t>(i));
    return ids;
}


constexpr size_t kSmallInput = 24;
constexpr size_t kMaxCacheEntries = size_t{1} << 18;

}  // namespace

void apply_merges(std::vector<int32_t>& symbols, const MergeTable& table) {
    if (symbols.size() < 2) return;
    if (symbols.size() <= kSmallInput) apply_merges_small(symbols, table);
    else apply_merges_heap(symbols, table);
}

// ---------------------------------------------------------------------------------------------

ByteLevelBpe::ByteLevelBpe(const std::vector<std::string>& tokens,
                           const std::vector<std::string>& byte_chars,
                           const std::vector<std::string>& merges, int32_t unk_id)
    : unk_id_(unk_id) {
    const auto ids = first_ids(tokens);
    for (int b = 0; b < 256; ++b) {
        byte_token_[b] = -1;
        if (static_cast<size_t>(b) < byte_chars.size()) {
            auto it = ids.find(byte_chars[b]);
            if (it != ids.end()) byte_token_[b] = it->second;
        }
    }
    for (size_t rank = 0; rank < merges.size(); ++rank) {
        const std::string& line = merges[rank];
        const size_t space = line.find(' ');
        if (space == std::string::npos || space == 0 || space + 1 == line.size() ||
            line.find(' ', space + 1) != std::string::npos) {
            continue;
        }
        const std::string left = line.substr(0, space), right = line.substr(space + 1);
        auto l = ids.find(left), r = ids.find(right), m = ids.find(left + right);
        if (l == ids.end() || r == ids.end() || m == ids.end()) continue;
        table_.add(l->second, r->second, m->second, static_cast<float>(rank));
    }
}

void ByteLevelBpe::encode_uncached(std::string_view piece, std::vector<int32_t>& out) const {
    std::vector<int32_t> sym;
    sym.reserve(piece.size());
    for (unsigned char b : piece) {
        const int32_t t = byte_token_[b];
        if (t >= 0) sym.push_back(t);
        else if (unk_id_ >= 0) sym.push_back(-1);  // a placeholder that never merges
    }
    apply_merges(sym, table_);
    for (int32_t t : sym) out.push_back(t >= 0 ? t : unk_id_);
}

void ByteLevelBpe::encode_piece(std::string_view piece, std::vector<int32_t>& out) {
    std::string key(piece);
    {
        std::lock_guard<std::mutex> lock(cache_mutex_);
        auto it = cache_.find(key);
        if (it != cache_.end()) {
            out.insert(out.end(), it->second.begin(), it->second.end());
            return;
        }
    }
    const size_t start = out.size();
    encode_uncached(piece, out);
    std::vector<int32_t> ids(out.begin() + static_cast<std::ptrdiff_t>(start), out.end());
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();
    cache_.emplace(std::move(key), std::move(ids));
}

// ---------------------------------------------------------------------------------------------

SentencePieceBpe::SentencePieceBpe(const std::vector<std::string>& tokens,
                                   const std::vector<float>& scores,
                                   const std::vector<int32_t>& types, int32_t unk_id)
    : unk_id_(unk_id) {
    for (int b = 0; b < 256; ++b) byte_token_[b] = -1;
    const size_t n = tokens.size();
    auto mergeable = [&](size_t i) {
        const int32_t t = i < types.size() ? types[i] : kNormal;
        return t == kNormal || t == kUserDefined;
    };
    for (size_t i = 0; i < n; ++i) {
        const int32_t t = i < types.size() ? types[i] : kNormal;
        if (t == kByte) {
            const int b = parse_byte_token(tokens[i]);
            if (b >= 0 && byte_token_[b] < 0) byte_token_[b] = static_cast<int32_t>(i);
        } else if (mergeable(i)) {
            piece_id_.emplace(tokens[i], static_cast<int32_t>(i));
        }
    }
    // Every way of cutting a piece into two pieces at a character boundary is a merge into it.
    for (size_t i = 0; i < n; ++i) {
        if (!mergeable(i)) continue;
        const std::string& s = tokens[i];
        auto self = piece_id_.find(s);
        if (self == piece_id_.end() || self->second != static_cast<int32_t>(i)) continue;
        const float priority = -(i < scores.size() ? scores[i] : 0.0f);
        for (size_t k = utf8_len(static_cast<unsigned char>(s[0])); k < s.size();
             k += utf8_len(static_cast<unsigned char>(s[k]))) {
            auto l = piece_id_.find(s.substr(0, k));
            if (l == piece_id_.end()) continue;
            auto r = piece_id_.find(s.substr(k));
            if (r == piece_id_.end()) continue;
            table_.add(l->second, r->second, static_cast<int32_t>(i), priority);
        }
    }
}

void SentencePieceBpe::encode(std::string_view text, std::vector<int32_t>& out) const {
    // A character without a token is the symbol -(offset + 1): negative, so it never merges, and
    // its bytes can be found again afterwards.
    std::vector<int32_t> sym;
    sym.reserve(text.size());
    std::string ch;
    for (size_t o = 0; o < text.size();) {
        const size_t len = std::min(utf8_len(static_cast<unsigned char>(text[o])), text.size() - o);
        ch.assign(text.data() + o, len);
        auto it = piece_id_.find(ch);
        sym.push_back(it != piece_id_.end() ? it->second : -static_cast<int32_t>(o) - 1);
        o += len;
    }
    apply_merges(sym, table_);
    for (int32_t t : sym) {
        if (t >= 0) {
            out.push_back(t);
            continue;
        }
        const size_t o = static_cast<size_t>(-(t + 1));
        const size_t len = std::min(utf8_len(static_cast<unsigned char>(text[o])), text.size() - o);
        bool all_bytes = true;
        for (size_t k = 0; k < len; ++k) all_bytes &= byte_token_[static_cast<unsigned char>(text[o + k])] >= 0;
        if (all_bytes) {
            for (size_t k = 0; k < len; ++k) out.push_back(byte_token_[static_cast<unsigned char>(text[o + k])]);
        } else if (unk_id_ >= 0) {
            out.push_back(unk_id_);
        }
    }
}

int parse_byte_token(std::string_view s) {
    if (s.size() != 6 || s.compare(0, 3, "<0x") != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int k = 3; k < 5; ++k) {
        const char c = s[k];
        int d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else return -1;
        v = v * 16 + d;
    }
    return v;
}

}  // namespace edgellama::tokenizer
