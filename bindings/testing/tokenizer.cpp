// The bare merge loops (csrc/tokenizer) on symbol ids, for the tests that feed them one
// pre-token's symbols and compare with a reference tokenizer. Glue only. The classes are this
// module's own bindings of the C++ types (module_local), independent of _core's.
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "bindings/testing/testing.h"
#include "csrc/tokenizer/bpe.h"

namespace py = pybind11;

namespace edgellama::bindings::testing {
namespace {

template <class Bpe>
std::vector<int32_t> merged(const Bpe& bpe, std::vector<int32_t> symbols) {
    tokenizer::apply_merges(symbols, bpe.table());
    return symbols;
}

}  // namespace

void bind_tokenizer(py::module_& m) {
    using tokenizer::ByteLevelBpe;
    using tokenizer::SentencePieceBpe;
    py::class_<ByteLevelBpe>(m, "ByteLevelBpe", py::module_local(),
                             "Byte-level BPE merges over a gpt2-style vocabulary (ranks from the merge list)")
        .def(py::init<const std::vector<std::string>&, const std::vector<std::string>&,
                      const std::vector<std::string>&, int32_t>(),
             py::arg("tokens"), py::arg("byte_chars"), py::arg("merges"), py::arg("unk_id") = -1)
        .def("merge", &merged<ByteLevelBpe>, py::arg("symbols"), "Apply the merges to a sequence of symbol ids")
        .def_property_readonly("n_merges", &ByteLevelBpe::n_merges);
    py::class_<SentencePieceBpe>(m, "SentencePieceBpe", py::module_local(),
                                 "SentencePiece-style BPE: merges by piece score, byte fallback")
        .def(py::init<const std::vector<std::string>&, const std::vector<float>&,
                      const std::vector<int32_t>&, int32_t>(),
             py::arg("tokens"), py::arg("scores"), py::arg("types"), py::arg("unk_id") = -1)
        .def("merge", &merged<SentencePieceBpe>, py::arg("symbols"), "Apply the merges to a sequence of symbol ids");
}

}  // namespace edgellama::bindings::testing
