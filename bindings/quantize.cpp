// Python access to the threaded weight quantizer (edgellama.quantize). Glue only: shapes and
// dtypes are checked here, the work runs with the GIL released. The codecs one row at a time, for
// the tests, are in bindings/testing/quantize.cpp (edgellama._testing).
#include <pybind11/numpy.h>

#include "bindings/bindings.h"
#include "bindings/quantize_args.h"
#include "csrc/kernels/quantize_rows.h"

namespace py = pybind11;

namespace edgellama::bindings {
namespace {

using Floats = py::array_t<float, py::array::c_style | py::array::forcecast>;

// rows x cols floats -> (rows x row_bytes uint8, sum of squared errors).
py::tuple quantize_rows_py(int32_t type_id, const Floats& src, int n_threads) {
    check_quantize_type(type_id);
    if (src.ndim() != 2) throw py::value_error("quantize_rows expects a 2-D float array");
    const int64_t rows = src.shape(0), cols = src.shape(1);
    check_quantize_cols(type_id, cols);
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

}  // namespace

void bind_quantize(py::module_& m) {
    m.def("quantize_rows", &quantize_rows_py, py::arg("type_id"), py::arg("rows"), py::arg("n_threads") = 1,
          "Quantize a (rows, cols) float32 array to GGUF blocks of type_id on n_threads threads. "
          "Returns (uint8 array (rows, row_bytes), sum of squared reconstruction errors).");
}

}  // namespace edgellama::bindings
