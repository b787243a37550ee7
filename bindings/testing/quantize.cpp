// The quantizer's codecs one row at a time (edgellama._testing), for the tests that hold them to
// gguf.quants. Glue only: sizes are checked here (bindings/quantize_args.h, as for quantize_rows).
#include <pybind11/numpy.h>

#include <string>

#include "bindings/quantize_args.h"
#include "bindings/testing/testing.h"
#include "csrc/kernels/quantize_rows.h"

namespace py = pybind11;

namespace edgellama::bindings::testing {
namespace {

py::array_t<float> dequantize_py(int32_t type_id, const py::array_t<uint8_t, py::array::c_style>& data,
                                 int64_t n) {
    check_quantize_type(type_id);
    check_quantize_cols(type_id, n);
    if (static_cast<size_t>(data.size()) != quantize::quant_row_bytes(type_id, n)) {
        throw py::value_error("data has " + std::to_string(data.size()) + " bytes, expected " +
                              std::to_string(quantize::quant_row_bytes(type_id, n)));
    }
    py::array_t<float> out(n);
    quantize::dequantize_row_any(type_id, data.data(), out.mutable_data(), n);
    return out;
}

}  // namespace

void bind_quantize(py::module_& m) {
    m.def("quantize_row_bytes", [](int32_t type_id, int64_t n) {
        check_quantize_type(type_id);
        check_quantize_cols(type_id, n);
        return quantize::quant_row_bytes(type_id, n);
    }, py::arg("type_id"), py::arg("n"), "Bytes of one quantized row of n elements.");
    m.def("quantize_block_size", [](int32_t type_id) {
        check_quantize_type(type_id);
        return quantize::quant_block_size(type_id);
    }, py::arg("type_id"), "Elements per block of a type the quantizer writes.");
    m.def("dequantize_any", &dequantize_py, py::arg("type_id"), py::arg("data"), py::arg("n"),
          "Decode n elements of any type the quantizer writes (Q5_0/Q5_1 included).");
}

}  // namespace edgellama::bindings::testing
