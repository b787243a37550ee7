// Python access to the weight quantizers (quantize/codecs.h). Glue only: shapes and dtypes are
// checked here, the work runs with the GIL released.
#include <pybind11/numpy.h>

#include <stdexcept>
#include <string>

#include "bindings/bindings.h"
#include "csrc/kernels/quantize_rows.h"

namespace py = pybind11;

namespace edgellama::bindings {
namespace {

using Floats = py::array_t<float, py::array::c_style | py::array::forcecast>;

void check_type(int32_t type_id) {
    if (!quantize::can_quantize(type_id)) {
        throw py::value_error("cannot quantize to tensor type id " + std::to_string(type_id));
    }
}

void check_cols(int32_t type_id, int64_t cols) {
    const int64_t block = quantize::quant_block_size(type_id);
    if (cols <= 0 || cols % block != 0) {
        throw py::value_error("row length " + std::to_string(cols) + " is not a multiple of the block size " +
                              std::to_string(block));
    }
}

// rows x cols floats -> (rows x row_bytes uint8, sum of squared errors).
py::tuple quantize_rows_py(int32_t type_id, const Floats& src, int n_threads) {
    check_type(type_id);
    if (src.ndim() != 2) throw py::value_error("quantize_rows expects a 2-D float array");
    const int64_t rows = src.shape(0), cols = src.shape(1);
    check_cols(type_id, cols);
    const size_t row_bytes = quantize::quant_row_bytes(type_id, cols);
    py::array_t<uint8_t> out({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(row_bytes)});
    const float* in = src.data();
    uint8_t* dst = out.mutable_data();
    double sse;
    {
        py::gil_scoped_release release;
        sse = quantize::quantize_rows(type_id, in, dst, rows, cols, n_threads < 1 ? 1 : n_threads);
    }
    return py::make_tuple(out, sse);
}

py::array_t<float> dequantize_py(int32_t type_id, const py::array_t<uint8_t, py::array::c_style>& data,
                                 int64_t n) {
    check_type(type_id);
    check_cols(type_id, n);
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
    m.def("quantize_rows", &quantize_rows_py, py::arg("type_id"), py::arg("rows"), py::arg("n_threads") = 1,
          "Quantize a (rows, cols) float32 array to GGUF blocks of type_id on n_threads threads. "
          "Returns (uint8 array (rows, row_bytes), sum of squared reconstruction errors).");
    m.def("quantize_row_bytes", [](int32_t type_id, int64_t n) {
        check_type(type_id);
        check_cols(type_id, n);
        return quantize::quant_row_bytes(type_id, n);
    }, py::arg("type_id"), py::arg("n"));
    m.def("quantize_block_size", [](int32_t type_id) {
        check_type(type_id);
        return quantize::quant_block_size(type_id);
    }, py::arg("type_id"));
    m.def("dequantize_any", &dequantize_py, py::arg("type_id"), py::arg("data"), py::arg("n"),
          "Decode n elements of any type the quantizer writes (Q5_0/Q5_1 included).");
}

}  // namespace edgellama::bindings
