// The tokenizer merge loops (csrc/tokenizer) for edgellama.tokenizer. Glue only: Python does the
// pre-tokenization and hands over strings; the merging runs with the GIL released. The bare merge
// loop on symbol ids, for the tests, is in bindings/testing/tokenizer.cpp (edgellama._testing).
#include <pybind11/stl.h>

#include <string>
#include <string_view>
#include <vector>

#include "bindings/bindings.h"
#include "csrc/tokenizer/bpe.h"

namespace py = pybind11;

namespace edgellama::bindings {
namespace {

using tokenizer::ByteLevelBpe;
using tokenizer::SentencePieceBpe;

// Views of the UTF-8 of each str in the list (valid while the list is alive).
std::vector<std::string_view> utf8_views(const py::list& pieces) {
    std::vector<std::string_view> views;
    views.reserve(pieces.size());
    for (const py::handle item : pieces) {
        if (!PyUnicode_Check(item.ptr())) throw py::type_error("pre-tokens must be str");
        Py_ssize_t len = 0;
        const char* data = PyUnicode_AsUTF8AndSize(item.ptr(), &len);
        if (!data) throw py::error_already_set();
        views.emplace_back(data, static_cast<size_t>(len));
    }
    return views;
}

py::list to_list(const std::vector<int32_t>& ids) {
    py::list out(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
        PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i), PyLong_FromLong(ids[i]));
    }
    return out;
}

std::string_view utf8_view(const py::str& text) {
    Py_ssize_t len = 0;
    const char* data = PyUnicode_AsUTF8AndSize(text.ptr(), &len);
    if (!data) throw py::error_already_set();
    return {data, static_cast<size_t>(len)};
}

}  // namespace

void bind_tokenizer(py::module_& m) {
    // module_local: each CPU level's module binds the same C++ types, and a process may load several.
    py::class_<ByteLevelBpe>(m, "ByteLevelBpe", py::module_local(),
                             "Byte-level BPE merges over a gpt2-style vocabulary (ranks from the merge list)")
        .def(py::init<const std::vector<std::string>&, const std::vector<std::string>&,
                      const std::vector<std::string>&, int32_t>(),
             py::arg("tokens"), py::arg("byte_chars"), py::arg("merges"), py::arg("unk_id") = -1)
        .def("encode_pieces",
             [](ByteLevelBpe& self, const py::list& pieces) {
                 const auto views = utf8_views(pieces);
                 std::vector<int32_t> ids;
                 {
                     py::gil_scoped_release release;
                     ids.reserve(views.size() * 2);
                     for (const auto& v : views) self.encode_piece(v, ids);
                 }
                 return to_list(ids);
             },
             py::arg("pieces"), "Token ids of the pre-tokens (str), concatenated");

    py::class_<SentencePieceBpe>(m, "SentencePieceBpe", py::module_local(),
                                 "SentencePiece-style BPE: merges by piece score, byte fallback")
        .def(py::init<const std::vector<std::string>&, const std::vector<float>&,
                      const std::vector<int32_t>&, int32_t>(),
             py::arg("tokens"), py::arg("scores"), py::arg("types"), py::arg("unk_id") = -1)
        .def("encode",
             [](const SentencePieceBpe& self, const py::str& text) {
                 const std::string_view view = utf8_view(text);
                 std::vector<int32_t> ids;
                 {
                     py::gil_scoped_release release;
                     self.encode(view, ids);
                 }
                 return to_list(ids);
             },
             py::arg("text"), "Token ids of escaped text (spaces already U+2581)");
}

}  // namespace edgellama::bindings
