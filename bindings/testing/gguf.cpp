// _testing.read_gguf: the native GGUF reader (csrc/model/gguf_reader.h) on a file, its result as
// Python objects, for the tests that hold it to the Python loader's parser.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pybind11/stl.h>

#include <string>

#include "bindings/testing/testing.h"
#include "csrc/model/gguf_reader.h"

namespace py = pybind11;

namespace edgellama::bindings::testing {
namespace {

// The whole file, mapped read-only for the duration of one parse.
class MappedFile {
public:
    explicit MappedFile(const std::string& path) {
        fd_ = ::open(path.c_str(), O_RDONLY);
        struct stat st {};
        if (fd_ < 0 || ::fstat(fd_, &st) != 0) throw py::value_error("cannot open " + path);
        size_ = static_cast<uint64_t>(st.st_size);
        if (size_ > 0) {
            void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
            if (p == MAP_FAILED) throw py::value_error("cannot map " + path);
            data_ = static_cast<const uint8_t*>(p);
        }
    }
    ~MappedFile() {
        if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
        if (fd_ >= 0) ::close(fd_);
    }
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    const uint8_t* data() const { return data_; }
    uint64_t size() const { return size_; }

private:
    int fd_ = -1;
    const uint8_t* data_ = nullptr;
    uint64_t size_ = 0;
};

// Keys and tensor names as the Python parser decodes them: UTF-8, invalid bytes replaced.
py::str decoded(std::string_view s) {
    PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
    if (o == nullptr) throw py::error_already_set();
    return py::reinterpret_steal<py::str>(o);
}

py::object scalar(GgufType type, const uint8_t* p) {
    switch (type) {
        case GgufType::U8: return py::int_(load_gguf_value<uint8_t>(p));
        case GgufType::I8: return py::int_(load_gguf_value<int8_t>(p));
        case GgufType::U16: return py::int_(load_gguf_value<uint16_t>(p));
        case GgufType::I16: return py::int_(load_gguf_value<int16_t>(p));
        case GgufType::U32: return py::int_(load_gguf_value<uint32_t>(p));
        case GgufType::I32: return py::int_(load_gguf_value<int32_t>(p));
        case GgufType::U64: return py::int_(load_gguf_value<uint64_t>(p));
        case GgufType::I64: return py::int_(load_gguf_value<int64_t>(p));
        case GgufType::F32: return py::float_(load_gguf_value<float>(p));
        case GgufType::F64: return py::float_(load_gguf_value<double>(p));
        case GgufType::Bool: return py::bool_(*p != 0);
        default: throw py::value_error("not a scalar type");
    }
}

py::object value_object(const GgufValue& v) {
    if (v.type == GgufType::String) return py::bytes(v.text.data(), v.text.size());
    if (v.type != GgufType::Array) return scalar(v.type, v.bytes);
    py::list items;
    if (v.item_type == GgufType::String) {
        for (std::string_view s : v.texts) items.append(py::bytes(s.data(), s.size()));
    } else {
        const size_t size = gguf_scalar_size(static_cast<uint32_t>(v.item_type));
        for (uint64_t i = 0; i < v.count; ++i) items.append(scalar(v.item_type, v.bytes + i * size));
    }
    return std::move(items);
}

// {"version", "alignment", "metadata": {key: (type, item type or None, value)}, "tensors":
// [(name, dims, type id, absolute offset, bytes)]}; strings as bytes. ValueError for a bad file.
py::dict read_gguf(const std::string& path) {
    MappedFile file(path);
    const GgufFile g = parse_gguf(file.data(), file.size());
    py::dict metadata;
    for (const auto& [key, v] : g.metadata) {
        const py::object item_type =
            v.type == GgufType::Array ? py::object(py::int_(static_cast<uint32_t>(v.item_type))) : py::none();
        metadata[decoded(key)] = py::make_tuple(static_cast<uint32_t>(v.type), item_type, value_object(v));
    }
    py::list tensors;
    for (const GgufTensor& t : g.tensors) tensors.append(py::make_tuple(decoded(t.name), t.dims, t.type, t.offset, t.n_bytes));
    py::dict out;
    out["version"] = g.version;
    out["alignment"] = g.alignment;
    out["metadata"] = metadata;
    out["tensors"] = tensors;
    return out;
}

}  // namespace

void bind_gguf(py::module_& m) {
    m.def("read_gguf", &read_gguf, py::arg("path"),
          "The native reader's view of a GGUF file's header, metadata and tensor table (ValueError when "
          "the file is malformed).");
}

}  // namespace edgellama::bindings::testing
