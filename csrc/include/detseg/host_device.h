// Portability layer for the header-only math shared by the CPU, CUDA (and, by mirroring,
// Triton and reference) backends. Torch-free on purpose: these headers are the single
// statement of each formula.
#pragma once

#include <cmath>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define DETSEG_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define DETSEG_HOST_DEVICE inline
#endif

namespace detseg {

// Plain selects rather than std::min/max: they lower to branch-free vector min/max (with
// -fno-trapping-math) and behave identically on host and device. A NaN operand does not
// always propagate through them; callers rely on the NaN reaching the result through an
// area instead (documented per op).
template <typename T>
DETSEG_HOST_DEVICE T dmin(T a, T b) { return a < b ? a : b; }
template <typename T>
DETSEG_HOST_DEVICE T dmax(T a, T b) { return a > b ? a : b; }
// torch.clamp(min=0) semantics: NaN passes through.
template <typename T>
DETSEG_HOST_DEVICE T clamp_min0(T x) { return x < T(0) ? T(0) : x; }

template <typename T>
DETSEG_HOST_DEVICE T datan(T x) {
#if defined(__CUDA_ARCH__)
  return ::atan(x);
#else
  return std::atan(x);
#endif
}

// Gradient routing of torch.maximum / torch.minimum: all to the winner, half each on a tie.
template <typename T>
DETSEG_HOST_DEVICE void route_max(T g, T a, T b, T& ga, T& gb) {
  if (a > b) {
    ga += g;
  } else if (b > a) {
    gb += g;
  } else {
    ga += g / T(2);
    gb += g / T(2);
  }
}
template <typename T>
DETSEG_HOST_DEVICE void route_min(T g, T a, T b, T& ga, T& gb) {
  if (a < b) {
    ga += g;
  } else if (b < a) {
    gb += g;
  } else {
    ga += g / T(2);
    gb += g / T(2);
  }
}

}  // namespace detseg
