// Test and inspection access to the kernel registry (edgellama._testing): single rows, dot
// products and matmuls held to numpy in the tests. Glue only: sizes are validated here so a bad
// call raises ValueError instead of reading past a buffer.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "bindings/testing/testing.h"
#include "csrc/kernels/elementwise.h"
#include "csrc/kernels/fast_exp.h"
#include "csrc/formats/float_convert.h"
#include "csrc/kernels/matmul.h"
#include "csrc/kernels/row_groups.h"
#include "csrc/kernels/type_traits.h"
#include "csrc/model/prepared_matmul.h"

namespace py = pybind11;

namespace edgellama::bindings::testing {
namespace {

using Bytes = py::array_t<uint8_t, py::array::c_style>;
using Floats = py::array_t<float, py::array::c_style | py::array::forcecast>;

const TypeTraits& traits_or_raise(int32_t type_id) {
    const TypeTraits* t = find_type_traits(type_id);
    if (!t) throw py::value_error("unsupported tensor type id " + std::to_string(type_id));
    return *t;
}

ActFormat act_format_or_raise(int32_t format) {
    if (format < 0 || format > static_cast<int32_t>(ActFormat::Q8_256)) {
        throw py::value_error("unknown activation format " + std::to_string(format));
    }
    return static_cast<ActFormat>(format);
}

// Weight bytes must be a uint8 array (no silent casts of other dtypes into bytes).
Bytes as_bytes(const py::array& data) {
    if (!data.dtype().is(py::dtype::of<uint8_t>())) throw py::value_error("weight data must be a uint8 array");
    return Bytes::ensure(data);
}

void check_multiple(int64_t n, int64_t block, const char* what) {
    if (n < 0 || n % block != 0) {
        throw py::value_error(std::string(what) + " length " + std::to_string(n) + " is not a multiple of " +
                              std::to_string(block));
    }
}

void check_weight_bytes(int32_t type_id, const Bytes& w, int64_t n) {
    const size_t want = weight_row_bytes(type_id, n);
    if (static_cast<size_t>(w.size()) != want) {
        throw py::value_error("weight row has " + std::to_string(w.size()) + " bytes, expected " +
                              std::to_string(want) + " for " + std::to_string(n) + " elements");
    }
}

py::array_t<float> dequantize_row_py(int32_t type_id, const py::array& data, int64_t n) {
    const TypeTraits& t = traits_or_raise(type_id);
    check_multiple(n, t.block_size, "row");
    Bytes w = as_bytes(data);
    check_weight_bytes(type_id, w, n);
    py::array_t<float> out(n);
    t.dequantize_row(w.data(), out.mutable_data(), n);
    return out;
}

std::vector<uint8_t> quantize_act(ActFormat format, const Floats& x) {
    const int64_t n = x.size();
    check_multiple(n, act_block_size(format), "activation");
    std::vector<uint8_t> buf(act_row_bytes(format, n));
    quantize_act_row(format, x.data(), buf.data(), n);
    return buf;
}

float vec_dot_py(int32_t type_id, const py::array& weight_row, const Floats& x, bool scalar) {
    const TypeTraits& t = traits_or_raise(type_id);
    const int64_t n = x.size();
    check_multiple(n, t.block_size, "activation");
    Bytes w = as_bytes(weight_row);
    check_weight_bytes(type_id, w, n);
    const std::vector<uint8_t> act = quantize_act(t.act_format, x);
    const VecDotFn dot = scalar ? scalar_vec_dot(type_id) : t.vec_dot;
    return dot(n, w.data(), act.data());
}

// Checks a (rows, row_bytes) uint8 matrix of n-element rows of the type; returns the row count.
int64_t check_weight_matrix(int32_t type_id, const py::array& weight_rows, int64_t n) {
    if (!weight_rows.dtype().is(py::dtype::of<uint8_t>()) || weight_rows.ndim() != 2 || weight_rows.shape(0) < 1) {
        throw py::value_error("weight rows must be a uint8 array of shape (rows, row_bytes)");
    }
    check_multiple(n, traits_or_raise(type_id).block_size, "activation");
    if (static_cast<size_t>(weight_rows.shape(1)) != weight_row_bytes(type_id, n)) {
        throw py::value_error("weight rows have " + std::to_string(weight_rows.shape(1)) + " bytes, expected " +
                              std::to_string(weight_row_bytes(type_id, n)) + " for " + std::to_string(n) +
                              " elements");
    }
    return weight_rows.shape(0);
}

// A PreparedMatmul that keeps its weight array alive.
struct PyPreparedMatmul {
    Bytes rows;
    std::unique_ptr<PreparedMatmul> matmul;

    PyPreparedMatmul(int32_t type_id, const py::array& weight_rows, int64_t n, bool row_groups, int n_threads,
                     const std::string& activations) {
        if (n_threads < 1 || n_threads > 64) throw py::value_error("n_threads must be in 1..64");
        const int64_t n_rows = check_weight_matrix(type_id, weight_rows, n);
        rows = Bytes::ensure(weight_rows);
        try {
            matmul = std::make_unique<PreparedMatmul>(type_id, rows.data(), n_rows, n, row_groups, n_threads,
                                                      act_precision_from_name(activations));
        } catch (const std::invalid_argument& e) {
            throw py::value_error(e.what());
        }
    }

    py::array_t<float> run(const py::array& x) {
        Floats xs = Floats::ensure(x);
        const WeightMatrix& w = matmul->weights();
        if (!xs || xs.ndim() != 2 || xs.shape(0) < 1 || xs.shape(1) != w.cols) {
            throw py::value_error("x must have shape (n_tok, " + std::to_string(w.cols) + "), n_tok >= 1");
        }
        py::array_t<float> out({static_cast<py::ssize_t>(xs.shape(0)), static_cast<py::ssize_t>(w.rows)});
        float* y = out.mutable_data();
        py::gil_scoped_release release;
        matmul->run(xs.data(), xs.shape(0), y);
        return out;
    }
};

// y[t, r] = dot(weight row r, x[t]) through the model's matmul: the rows as stored (row_groups
// false) or repacked into row groups first, as the model does at load (row_groups true).
py::array_t<float> matmul_py(int32_t type_id, const py::array& weight_rows, const py::array& x, bool row_groups,
                             int n_threads, const std::string& activations) {
    Floats xs = Floats::ensure(x);
    if (!xs || xs.ndim() != 2 || xs.shape(0) < 1) throw py::value_error("x must have shape (n_tok, n), n_tok >= 1");
    PyPreparedMatmul prepared(type_id, weight_rows, xs.shape(1), row_groups, n_threads, activations);
    return prepared.run(xs);
}

// Every row packed into row groups by the type's kernel and read back with its unpack_row, as the
// embedding lookup of a tied output matrix reads them: the GGUF rows again, byte for byte.
Bytes row_group_round_trip_py(int32_t type_id, const py::array& weight_rows, int64_t n) {
    const int64_t n_rows = check_weight_matrix(type_id, weight_rows, n);
    const RowGroupKernel* kernel = find_row_group_kernel(type_id);
    if (kernel == nullptr) throw py::value_error("no row-group kernel for type id " + std::to_string(type_id));
    const Bytes rows = Bytes::ensure(weight_rows);
    const size_t row_bytes = static_cast<size_t>(rows.shape(1));
    std::vector<uint8_t> group(kernel->group_bytes(n));
    Bytes out({static_cast<py::ssize_t>(n_rows), static_cast<py::ssize_t>(row_bytes)});
    for (int64_t g0 = 0; g0 < n_rows; g0 += kGroupRows) {
        const int in_group = static_cast<int>(std::min<int64_t>(kGroupRows, n_rows - g0));
        kernel->pack_group(n, rows.data() + g0 * row_bytes, row_bytes, in_group, group.data());
        for (int r = 0; r < in_group; ++r) {
            kernel->unpack_row(n, group.data(), r, out.mutable_data() + (g0 + r) * row_bytes);
        }
    }
    return out;
}

py::array_t<uint8_t> quantize_act_row_py(int32_t format, const Floats& x) {
    const std::vector<uint8_t> buf = quantize_act(act_format_or_raise(format), x);
    py::array_t<uint8_t> out(static_cast<py::ssize_t>(buf.size()));
    std::copy(buf.begin(), buf.end(), out.mutable_data());
    return out;
}

py::dict type_info_py(int32_t type_id) {
    const TypeTraits& t = traits_or_raise(type_id);
    py::dict d;
    d["name"] = t.name;
    d["block_size"] = t.block_size;
    d["block_bytes"] = t.block_bytes;
    d["act_format"] = static_cast<int>(t.act_format);
    return d;
}

// The portable half conversions are not what -march=native builds run, so expose them for an
// exhaustive check against numpy.
py::array_t<float> half_to_float_portable(const py::array_t<uint16_t, py::array::c_style>& h) {
    py::array_t<float> out(h.size());
    for (py::ssize_t i = 0; i < h.size(); ++i) out.mutable_data()[i] = fp16_to_fp32_portable(h.data()[i]);
    return out;
}

py::array_t<uint16_t> float_to_half_portable(const py::array_t<float, py::array::c_style>& f) {
    py::array_t<uint16_t> out(f.size());
    for (py::ssize_t i = 0; i < f.size(); ++i) out.mutable_data()[i] = fp32_to_fp16_portable(f.data()[i]);
    return out;
}

}  // namespace

void bind_kernels(py::module_& m) {
    m.def("dequantize_row", &dequantize_row_py, py::arg("type_id"), py::arg("data"), py::arg("n"),
          "Dequantize one weight row of n elements (raw GGUF bytes) to float32.");
    m.def("vec_dot", &vec_dot_py, py::arg("type_id"), py::arg("weight_row"), py::arg("x"),
          py::arg("scalar") = false,
          "Quantize x into the type's activation format and return its dot product with the weight "
          "row. scalar=True uses the portable loop instead of the SIMD kernel.");
    m.def("matmul", &matmul_py, py::arg("type_id"), py::arg("weight_rows"), py::arg("x"), py::arg("row_groups"),
          py::arg("n_threads") = 1, py::arg("activations") = "int8",
          "y[t, r] = dot(weight row r, x[t]) through the model's matmul, optionally on row groups; activations:\n"
          "how x is rounded ('int8' or 'precise').");
    py::class_<PyPreparedMatmul>(m, "PreparedMatmul", py::module_local(),
                                 "A weight matrix prepared as the model prepares it; run(x) multiplies.")
        .def(py::init<int32_t, const py::array&, int64_t, bool, int, const std::string&>(), py::arg("type_id"),
             py::arg("weight_rows"), py::arg("n"), py::arg("row_groups"), py::arg("n_threads") = 1,
             py::arg("activations") = "int8")
        .def("run", &PyPreparedMatmul::run, py::arg("x"), "y[t, r] = dot(weight row r, x[t]).");
    m.def(
        "exp_approx",
        [](const Floats& x) {
            py::array_t<float> out(x.size());
            for (py::ssize_t i = 0; i < x.size(); ++i) out.mutable_data()[i] = exp_approx(x.data()[i]);
            return out;
        },
        py::arg("x"), "The vectorizable float32 exp of SwiGLU and softmax, element by element.");
    m.def(
        "swiglu",
        [](const Floats& gate, const Floats& up) {
            if (gate.size() != up.size()) throw py::value_error("gate and up must have the same size");
            py::array_t<float> out(gate.size());
            std::copy(gate.data(), gate.data() + gate.size(), out.mutable_data());
            swiglu(out.mutable_data(), up.data(), gate.size());
            return out;
        },
        py::arg("gate"), py::arg("up"), "silu(gate) * up, as the forward step computes it.");
    m.def("row_group_round_trip", &row_group_round_trip_py, py::arg("type_id"), py::arg("weight_rows"), py::arg("n"),
          "The rows packed into row groups and unpacked again one by one (the tied-embedding lookup's path).");
    m.def("has_row_group_kernel", [](int32_t type_id) { return find_row_group_kernel(type_id) != nullptr; },
          py::arg("type_id"), "Whether this build repacks the type into row groups at load.");
    m.def("quantize_act_row", &quantize_act_row_py, py::arg("format"), py::arg("x"),
          "Raw bytes of x in an activation format (0 F32, 1 Q8_32, 2 Q8_256).");
    m.def("type_info", &type_info_py, py::arg("type_id"),
          "dict(name, block_size, block_bytes, act_format) of a supported type.");
    m.def("supported_types", &supported_type_ids, "Supported GGUF tensor type ids.");
    m.def("half_to_float_portable", &half_to_float_portable, py::arg("bits"),
          "Portable (non-F16C) half -> float conversion of a uint16 array, for tests.");
    m.def("float_to_half_portable", &float_to_half_portable, py::arg("x"),
          "Portable (non-F16C) float -> half conversion of a float32 array, for tests.");
}

}  // namespace edgellama::bindings::testing
