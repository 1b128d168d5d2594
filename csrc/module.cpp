// The pybind11 module detseg._C: build metadata and the CPU output cache's controls. Tensors never cross pybind11 (its
// casters differ from torch's bundled copy); they go through torch.ops.detseg.*.
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <pybind11/pybind11.h>

#include "cpu/alloc.h"
#include "cpu/isa.h"

#ifndef DETSEG_VERSION
#define DETSEG_VERSION "unknown"
#endif
#ifndef DETSEG_CUDA_MODE
#define DETSEG_CUDA_MODE "OFF"
#endif

namespace py = pybind11;
namespace detseg { void register_coco_ingest(py::module_& m); }  // csrc/coco_ingest.cpp

PYBIND11_MODULE(_C, m) {
  detseg::register_coco_ingest(m);
  m.def("cpu_cache_bytes", &detseg::cpu::pool_cached_bytes,
        "Bytes of freed large CPU outputs detseg keeps for reuse (DETSEG_CPU_CACHE_MB caps it).");
  m.def("cpu_empty_cache", &detseg::cpu::pool_empty, "Frees the large CPU output blocks kept for reuse.");
  m.def("build_info", []() {
    py::dict d;
    d["version"] = DETSEG_VERSION;
    d["cpu_isa"] = detseg::cpu::isa_name(detseg::cpu::current_isa());
    d["cpu_isa_variants"] = py::make_tuple("DEFAULT", "AVX2", "AVX512");
#ifdef _OPENMP
    d["openmp"] = true;
#else
    d["openmp"] = false;
#endif
    d["parallel_backend"] = at::get_parallel_info();
    d["cuda_mode"] = DETSEG_CUDA_MODE;
#ifdef DETSEG_WITH_CUDA
    d["cuda"] = true;
#else
    d["cuda"] = false;
#endif
    d["torch_cxx_abi"] = static_cast<bool>(_GLIBCXX_USE_CXX11_ABI);
    return d;
  });
}
