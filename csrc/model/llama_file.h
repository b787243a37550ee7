// A llama GGUF file opened, validated and mapped, for callers without Python (the C ABI): the C++
// twin of edgellama/gguf_loader.py's load_gguf. Every rule of the Python loader holds here, in the
// same order where the order decides the error (tests/test_capi_hostile.py holds the two to the
// same verdict on hostile, mutated and truncated files):
// - GgufError (gguf_reader.h): the file is malformed: a bad header, a metadata value of the wrong
//   type or range ("metadata 'llama.embedding_length' = 0: ..."), a missing tensor, a bad shape;
// - UnsupportedModelError: valid GGUF of another architecture, tensor type or RoPE scaling;
// - FileOpenError: the file cannot be opened or mapped (Python: FileNotFoundError / OSError).
// Messages start with the path, as Python's do.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "csrc/model/gguf_reader.h"
#include "csrc/model/llama_config.h"
#include "csrc/model/llama_loader.h"
#include "csrc/model/load_errors.h"
#include "csrc/model/metadata_reader.h"

namespace edgellama {

class LlamaFile {
public:
    // Maps the file read-only (the core never writes weights), parses and validates it.
    static std::unique_ptr<LlamaFile> open(const std::string& path);
    ~LlamaFile();
    LlamaFile(const LlamaFile&) = delete;
    LlamaFile& operator=(const LlamaFile&) = delete;

    const std::string& path() const { return path_; }
    const GgufFile& gguf() const { return gguf_; }  // views into the mapping: valid while this lives
    // A metadata value (the last of repeated keys), or nullptr when absent.
    const GgufValue* metadata(std::string_view key) const { return reader_->find(key); }
    // ModelConfig.core_dict(): rope_magnitude included.
    const LlamaConfig& config() const { return config_.core; }
    int64_t context_length() const { return static_cast<int64_t>(config_.context_length); }  // default 2048
    // GGUFModel.core_tensors(), ready for build_llama_weights: every tensor of the file (the last of
    // a repeated name) as an address in the mapping; the F16/BF16 vectors the model reads converted
    // to F32 (owned here); rope_freqs.weight the combined RoPE divisors when scaling or the file's
    // factors change a frequency.
    const TensorMap& tensors() const { return tensors_; }
    // The full config as the Python loader reads it (context length, RoPE scaling).
    const LlamaFileConfig& file_config() const { return config_; }
    // True: every weight matrix lies in the read-only mapping, so the core may drop the pages of
    // the matrices it repacks (they can be read again).
    bool matrices_in_mapping() const { return true; }

private:
    explicit LlamaFile(std::string path) : path_(std::move(path)) {}
    void map();
    void load();

    std::string path_;
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
    GgufFile gguf_;
    std::unique_ptr<MetadataReader> reader_;
    LlamaFileConfig config_;
    TensorMap tensors_;
    std::list<std::vector<float>> owned_;  // converted vectors and RoPE divisors (stable addresses)
};

}  // namespace edgellama
