// The two load failures that are not a malformed file (GgufError, gguf_reader.h, is that one):
// a file that cannot be opened at all, and a well-formed file of something edgellama does not run.
// The C ABI maps them to EDGELLAMA_ERR_IO and EDGELLAMA_ERR_UNSUPPORTED_MODEL; Python raises
// FileNotFoundError / OSError and UnsupportedModelError for the same files.
#pragma once

#include <stdexcept>

namespace edgellama {

// The file cannot be opened, stat'ed or mapped (missing, a directory, no permission).
class FileOpenError : public std::runtime_error {
public:
    using runtime_error::runtime_error;
};

// Valid GGUF, but another architecture, tensor type or RoPE scaling than the ones edgellama runs.
class UnsupportedModelError : public std::invalid_argument {
public:
    using invalid_argument::invalid_argument;
};

}  // namespace edgellama
