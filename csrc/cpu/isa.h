// Run-time choice among the per-ISA builds of csrc/cpu/vec/*.cpp. Each vec file is compiled
// three times with CPU_CAPABILITY = DEFAULT / AVX2 / AVX512 and defines its functions in
// namespace detseg::cpu::CPU_CAPABILITY; DETSEG_ISA_CALL picks the one matching
// at::get_cpu_capability() (so ATEN_CPU_CAPABILITY=default|avx2|avx512 forces a path).
#pragma once

#include <ATen/Version.h>

#include <string>

namespace detseg::cpu {

enum class Isa : int { DEFAULT = 0, AVX2 = 1, AVX512 = 2 };

inline Isa current_isa() {
  // Read once: torch fixes its capability at start-up too.
  static const Isa isa = [] {
    const std::string s = at::get_cpu_capability();
    if (s == "AVX512") return Isa::AVX512;
    if (s == "AVX2") return Isa::AVX2;
    return Isa::DEFAULT;
  }();
  return isa;
}

inline const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::AVX512: return "AVX512";
    case Isa::AVX2: return "AVX2";
    default: return "DEFAULT";
  }
}

}  // namespace detseg::cpu

// Calls detseg::cpu::<ISA>::fn(args...) for the current ISA.
#define DETSEG_ISA_CALL(fn, ...)                                         \
  [&]() -> decltype(auto) {                                              \
    switch (::detseg::cpu::current_isa()) {                              \
      case ::detseg::cpu::Isa::AVX512: return ::detseg::cpu::AVX512::fn(__VA_ARGS__); \
      case ::detseg::cpu::Isa::AVX2: return ::detseg::cpu::AVX2::fn(__VA_ARGS__);     \
      default: return ::detseg::cpu::DEFAULT::fn(__VA_ARGS__);           \
    }                                                                    \
  }()

// Declares `decl` (a function declaration) in each ISA namespace.
#define DETSEG_ISA_DECLARE(...)                       \
  namespace detseg::cpu::DEFAULT { __VA_ARGS__; }     \
  namespace detseg::cpu::AVX2 { __VA_ARGS__; }        \
  namespace detseg::cpu::AVX512 { __VA_ARGS__; }
