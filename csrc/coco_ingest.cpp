// Reading COCO lists of dicts (results, ground-truth annotations) into flat arrays for
// detseg.metrics.coco (issue 7): one pass in C over the dicts instead of one numpy.fromiter per
// field, which took half of a 500k-detection evaluation.
//
// These are fast paths only. They accept exactly the values whose conversion is unambiguous
// (exact dicts; Python int / bool / float, float subclasses such as numpy.float64; bboxes as
// lists / tuples of four such numbers; RLE counts all str (ASCII) or all bytes) and return None
// for anything else: a missing key, another type, an int past int64. python/detseg/metrics/coco.py
// then runs its Python parser, which stays the definition of the accepted input and of the error
// messages. So the arrays are those of the Python path whenever one is returned.
#include <Python.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "detseg/rle.h"

namespace py = pybind11;

namespace detseg {
namespace {

// numpy's float64 conversion of a Python number: float(v) (correctly rounded for ints).
bool as_double(PyObject* v, double* out) {
  if (PyFloat_Check(v)) {
    *out = PyFloat_AS_DOUBLE(v);
    return true;
  }
  if (PyLong_CheckExact(v) || PyBool_Check(v)) {
    *out = PyLong_AsDouble(v);
    if (*out == -1.0 && PyErr_Occurred()) {
      PyErr_Clear();
      return false;
    }
    return true;
  }
  return false;
}

bool as_int64(PyObject* v, int64_t* out) {
  if (!(PyLong_CheckExact(v) || PyBool_Check(v))) return false;
  int overflow = 0;
  const long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
  if (overflow || (x == -1 && PyErr_Occurred())) {
    PyErr_Clear();
    return false;
  }
  *out = int64_t(x);
  return true;
}

// A list / tuple of exactly four numbers.
bool as_box(PyObject* v, double* out) {
  if (!(PyList_CheckExact(v) || PyTuple_CheckExact(v)) || PySequence_Fast_GET_SIZE(v) != 4) return false;
  PyObject** it = PySequence_Fast_ITEMS(v);
  for (int j = 0; j < 4; ++j)
    if (!as_double(it[j], out + j)) return false;
  return true;
}

// The items of a list / tuple of exact dicts, or empty with ok = false.
struct Dicts {
  PyObject** items = nullptr;
  Py_ssize_t n = 0;
  bool ok = false;
  explicit Dicts(py::handle seq) {
    PyObject* s = seq.ptr();
    if (!(PyList_CheckExact(s) || PyTuple_CheckExact(s))) return;
    items = PySequence_Fast_ITEMS(s);
    n = PySequence_Fast_GET_SIZE(s);
    for (Py_ssize_t i = 0; i < n; ++i)
      if (!PyDict_CheckExact(items[i])) return;
    ok = true;
  }
};

// coco_columns(dicts, keys, kinds): for each key one array over the dicts, by kind
//   'i' int64 [n], 'f' float64 [n], 'b' float64 [n, 4] (a bbox), 'c' bool [n]: the truth of
//   an int / bool / float value, False when the key is missing (``bool(d.get(key, 0))``).
// Returns a tuple of arrays, or None where the Python parser must decide.
py::object coco_columns(py::handle seq, const py::tuple& keys, const std::string& kinds) {
  if (keys.size() != kinds.size()) throw py::value_error("detseg._C.coco_columns: one kind per key expected");
  const Dicts d(seq);
  if (!d.ok) return py::none();
  const size_t nk = keys.size();
  const Py_ssize_t n = d.n;
  std::vector<py::object> names(nk);
  std::vector<py::array> arrays(nk);
  std::vector<void*> data(nk);
  for (size_t k = 0; k < nk; ++k) {
    // Interned: the key of dicts built from literals is this very object (pointer comparison).
    names[k] = py::reinterpret_steal<py::object>(PyUnicode_InternFromString(keys[k].cast<std::string>().c_str()));
    if (!names[k]) throw py::error_already_set();
    switch (kinds[k]) {
      case 'i': arrays[k] = py::array_t<int64_t>(n); break;
      case 'f': arrays[k] = py::array_t<double>(n); break;
      case 'b': arrays[k] = py::array_t<double>({n, Py_ssize_t(4)}); break;
      case 'c': arrays[k] = py::array_t<bool>(n); break;
      default: throw py::value_error("detseg._C.coco_columns: kinds are 'i', 'f', 'b' or 'c'");
    }
    data[k] = arrays[k].mutable_data();
  }
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* dict = d.items[i];
    for (size_t k = 0; k < nk; ++k) {
      PyObject* v = PyDict_GetItemWithError(dict, names[k].ptr());  // borrowed
      if (v == nullptr) {
        if (PyErr_Occurred()) throw py::error_already_set();
        if (kinds[k] != 'c') return py::none();
        static_cast<bool*>(data[k])[i] = false;
        continue;
      }
      bool ok = true;
      switch (kinds[k]) {
        case 'i': ok = as_int64(v, static_cast<int64_t*>(data[k]) + i); break;
        case 'f': ok = as_double(v, static_cast<double*>(data[k]) + i); break;
        case 'b': ok = as_box(v, static_cast<double*>(data[k]) + 4 * i); break;
        case 'c':  // plain numbers only: another type's __bool__ is Python code, left to Python
          if (PyLong_CheckExact(v) || PyBool_Check(v)) {
            static_cast<bool*>(data[k])[i] = PyObject_IsTrue(v) > 0;  // cannot fail on an int
          } else if (PyFloat_CheckExact(v)) {
            static_cast<bool*>(data[k])[i] = PyFloat_AS_DOUBLE(v) != 0;  // NaN is true, as bool(nan)
          } else {
            ok = false;
          }
          break;
      }
      if (!ok) return py::none();
    }
  }
  py::tuple out(nk);
  for (size_t k = 0; k < nk; ++k) out[k] = arrays[k];
  return out;
}

// coco_rle_runs(dicts): the compressed RLEs d["segmentation"] = {"counts": str | bytes,
// "size": [h, w]} decoded as rle_string_to_counts does (rle::from_string): (counts int64
// [total runs], offsets int64 [n + 1], sizes int64 [n, 2], areas float64 [n] (rle_area's)),
// or None unless every counts is an
// ASCII str or every counts is bytes, and every size two ints. Decoding here skips the
// concatenated string, the uint32 batch and its int64 copy of the op path.
py::object coco_rle_runs(py::handle seq) {
  const Dicts d(seq);
  if (!d.ok) return py::none();
  const Py_ssize_t n = d.n;
  py::str seg_key("segmentation"), counts_key("counts"), size_key("size");
  py::array_t<int64_t> offsets(n + 1), sizes({n, Py_ssize_t(2)});
  int64_t* off = offsets.mutable_data();
  int64_t* sz = sizes.mutable_data();
  std::vector<const char*> str(n);
  std::vector<int64_t> len(n);
  int kind = -1;  // 0: str, 1: bytes
  int64_t chars = 0, longest = 0;
  Py_ssize_t i = 0;
  for (; i < n; ++i) {
    PyObject* s = PyDict_GetItemWithError(d.items[i], seg_key.ptr());
    if (s == nullptr || !PyDict_CheckExact(s)) break;
    PyObject* c = PyDict_GetItemWithError(s, counts_key.ptr());
    PyObject* hw = PyDict_GetItemWithError(s, size_key.ptr());
    if (c == nullptr || hw == nullptr || !(PyList_CheckExact(hw) || PyTuple_CheckExact(hw)) ||
        PySequence_Fast_GET_SIZE(hw) != 2 || !as_int64(PySequence_Fast_ITEMS(hw)[0], sz + 2 * i) ||
        !as_int64(PySequence_Fast_ITEMS(hw)[1], sz + 2 * i + 1))
      break;
    const int k = PyUnicode_CheckExact(c) ? 0 : PyBytes_CheckExact(c) ? 1 : -2;
    if (k < 0 || (kind >= 0 && k != kind) || (k == 0 && !PyUnicode_IS_ASCII(c))) break;
    kind = k;
    str[i] = k == 0 ? static_cast<const char*>(PyUnicode_DATA(c)) : PyBytes_AS_STRING(c);
    len[i] = k == 0 ? PyUnicode_GET_LENGTH(c) : PyBytes_GET_SIZE(c);
    chars += len[i];
    longest = std::max(longest, len[i]);
  }
  if (PyErr_Occurred()) throw py::error_already_set();
  if (i < n) return py::none();
  // At most one run per char: decode into that bound, hand back the used prefix.
  py::array_t<int64_t> counts(chars);
  py::array_t<double> areas(n);
  int64_t* out = counts.mutable_data();
  double* area = areas.mutable_data();
  std::vector<uint32_t> runs(longest);
  off[0] = 0;
  for (i = 0; i < n; ++i) {
    const int64_t m = rle::from_string(str[i], len[i], runs.data());
    std::copy_n(runs.data(), m, out + off[i]);
    off[i + 1] = off[i] + m;
    area[i] = double(int64_t(rle::area(runs.data(), m)));  // rle_area's int64, as float64
  }
  return py::make_tuple(counts[py::slice(0, off[n], 1)], offsets, sizes, areas);
}

}  // namespace

void register_coco_ingest(py::module_& m) {
  m.def("coco_columns", &coco_columns, py::arg("dicts"), py::arg("keys"), py::arg("kinds"));
  m.def("coco_rle_runs", &coco_rle_runs, py::arg("dicts"));
}

}  // namespace detseg
