#include "csrc/model/llama_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "csrc/formats/float_convert.h"
#include "csrc/formats/tensor_type.h"

namespace edgellama {
namespace {

// Closes a descriptor on every path out of map().
struct Descriptor {
    int fd;
    ~Descriptor() {
        if (fd >= 0) ::close(fd);
    }
};

int64_t rows_of(const GgufTensor& t) {
    // The product of dims[1:]: the parser bounded the tensor's bytes by the file, so it fits.
    uint64_t rows = 1;
    for (size_t i = 1; i < t.dims.size(); ++i) rows *= t.dims[i];
    return static_cast<int64_t>(rows);
}

// A F16 or BF16 vector of n values as float32 (the core reads vectors as float32). The portable
// half conversion keeps a signalling NaN's bits as numpy does (F16C's instruction quiets it), so
// the vectors are bit-identical to the Python loader's on every CPU level.
std::vector<float> to_f32(const uint8_t* data, int32_t type, uint64_t n) {
    std::vector<float> out(static_cast<size_t>(n));
    for (size_t i = 0; i < out.size(); ++i) {
        const uint16_t bits = load_gguf_value<uint16_t>(data + 2 * i);
        out[i] = type == id_of(TensorType::BF16) ? bf16_to_fp32(bits) : fp16_to_fp32_portable(bits);
    }
    return out;
}

// A message for a C caller: valid UTF-8 (names from the file decoded as Python decodes them), one
// line, and no NUL that would cut it short (control characters escaped as \xNN).
std::string message_text(const std::string& raw) { return printable(raw); }

// "{path}, tensor '{name}': {problem}" or "{path}: {problem}", as Python's messages read.
std::string located(const std::string& path, const GgufError& e) {
    const std::string what = e.what();
    if (e.tensor().empty()) return path + ": " + what;
    // what() is "tensor '<name>': <problem>", cut short by a NUL byte in the name (a C string).
    const std::string prefix = "tensor '" + e.tensor() + "': ";
    const std::string problem = what.size() >= prefix.size() ? what.substr(prefix.size())
                                                             : "malformed (its name holds a NUL byte)";
    return path + ", " + prefix + problem;
}

}  // namespace

std::unique_ptr<LlamaFile> LlamaFile::open(const std::string& path) {
    std::unique_ptr<LlamaFile> file(new LlamaFile(path));  // unmaps on every error below
    file->map();
    // Problems of the file name it first, as Python's "{path}, tensor '{name}': {problem}".
    try {
        file->load();
    } catch (const GgufError& e) {
        throw GgufError(message_text(located(path, e)));
    } catch (const UnsupportedModelError& e) {
        throw UnsupportedModelError(message_text(path + ": " + e.what()));
    }
    return file;
}

LlamaFile::~LlamaFile() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

void LlamaFile::map() {
    // O_NONBLOCK: opening a FIFO must not wait for a writer (it is then refused as not a file).
    const Descriptor d{::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK)};
    if (d.fd < 0) {
        const int err = errno;
        if (err == ENOENT || err == ENOTDIR) throw FileOpenError("model file not found: " + path_);
        throw FileOpenError("cannot open model file " + path_ + ": " + std::strerror(err));
    }
    struct stat st {};
    if (::fstat(d.fd, &st) != 0) throw FileOpenError("cannot stat model file " + path_ + ": " + std::strerror(errno));
    if (!S_ISREG(st.st_mode)) throw FileOpenError("model file not found: " + path_ + " (not a regular file)");
    if (st.st_size == 0) throw GgufError(path_ + ": the file is empty");  // mmap refuses a length of 0
    if (static_cast<uint64_t>(st.st_size) > SIZE_MAX) throw FileOpenError("model file " + path_ + " is too large to map");
    size_ = static_cast<size_t>(st.st_size);
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, d.fd, 0);
    if (p == MAP_FAILED) throw FileOpenError("cannot map model file " + path_ + ": " + std::strerror(errno));
    data_ = static_cast<const uint8_t*>(p);
}

void LlamaFile::load() {
    gguf_ = parse_gguf(data_, size_);
    reader_ = std::make_unique<MetadataReader>(gguf_);
    const TensorTable table(gguf_);
    config_ = validate_llama_file(gguf_, *reader_, table);

    // core_tensors(): every tensor, the last of a repeated name winning (its dict).
    for (const GgufTensor& t : gguf_.tensors) {
        tensors_[t.name] = TensorRef{data_ + t.offset, t.type, rows_of(t), static_cast<int64_t>(t.dims[0])};
    }
    // _vectors_to_f32: the model's F16/BF16 vectors (validated as such) converted.
    for (const auto& [name, shape] : expected_shapes(config_, table)) {
        TensorRef& ref = tensors_.at(name);
        if (shape.size() != 1 || ref.type == id_of(TensorType::F32)) continue;
        owned_.push_back(to_f32(static_cast<const uint8_t*>(ref.data), ref.type, shape[0]));
        ref = TensorRef{owned_.back().data(), id_of(TensorType::F32), 1, static_cast<int64_t>(shape[0])};
    }
    // rope_divisors(): the one divisor vector of the rotary frequencies, the file's own factors
    // times the scaling's; absent for plain RoPE.
    const auto freqs = tensors_.find("rope_freqs.weight");
    const LlamaConfig& c = config_.core;
    std::vector<float> divisors =
        combined_rope_divisors(config_.rope_scaling, c.rope_dim, config_.rope_base,
                               freqs == tensors_.end() ? nullptr : static_cast<const float*>(freqs->second.data));
    if (!divisors.empty()) {
        owned_.push_back(std::move(divisors));
        tensors_["rope_freqs.weight"] =
            TensorRef{owned_.back().data(), id_of(TensorType::F32), 1, static_cast<int64_t>(owned_.back().size())};
    }
}

}  // namespace edgellama
