// The tokenizer.* metadata of a GGUF file, read and checked as Python's Tokenizer.from_metadata
// does it: first the loader's own check_tokenizer_metadata (csrc/model/metadata_reader, the twin
// of gguf_metadata.py, so the types, ranges and messages are the loader's), then what building a
// tokenizer needs beyond it (a supported family, its arrays, well-formed merges). The same files
// are accepted and refused as in Python, for the same reasons, so a file tokenizes in an app
// exactly when it does in Python.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "csrc/model/gguf_reader.h"

namespace edgellama::tokenizer {

// A tokenizer edgellama cannot run (another tokenizer.ggml.model or tokenizer.ggml.pre), as
// opposed to a malformed one: still a GgufError, so callers may treat both alike.
class UnsupportedTokenizerError : public GgufError {
public:
    using GgufError::GgufError;
};

struct TokenizerMetadata {
    std::string model;                // "gpt2" or "llama"
    std::string pre;                  // gpt2: tokenizer.ggml.pre (llama: unused, may be empty)
    std::vector<std::string> tokens;  // as Python decodes them (U+FFFD for ill-formed UTF-8)
    std::vector<int32_t> types;       // one per token (NORMAL when the file has none)
    std::vector<std::string> merges;  // gpt2: "left right" lines in rank order
    std::vector<float> scores;        // llama: one per token
    bool add_space_prefix = true;
    bool add_bos = false;
    bool add_eos = false;
    int32_t bos = -1, eos = -1, eot = -1, pad = -1, unk = -1;  // -1: absent
};

// Whether the file names a tokenizer at all (tokenizer.ggml.model is present); a file without one
// takes token ids only.
bool has_tokenizer_metadata(const GgufFile& file);

// Reads and checks the tokenizer metadata. Throws GgufError naming the key for a missing,
// mistyped or out-of-range value, UnsupportedTokenizerError for a model or pre-tokenizer that
// edgellama does not implement.
TokenizerMetadata read_tokenizer_metadata(const GgufFile& file);

}  // namespace edgellama::tokenizer
