// Transposed convolution on the CPU (torch.nn.functional.conv_transpose2d), forward: the path
// choice and the GEMM + col2im paths; the sub-pixel paths are in conv_transpose_phase.cpp, the
// backward in conv_transpose_backward.cpp.
//
// Forward = one GEMM per (image, group, band of output rows) then col2im: cols = W_g^T X
// (rows (c_out, ky, kx), one column per input pixel) is scattered into the output. The NCHW
// input is a plain row-major [C_in, H * W] matrix, so BLAS reads it in place (no layout copy,
// no weight reorder). Paths, chosen by shape (each tested equal to the general one):
//  - non_overlapping (kernel footprint <= stride: U-Net / Mask R-CNN kernel-2 stride-2): each
//    output gets at most one tap, so col2im is a rearrangement writing every output once;
//  - large_kernel (FCN's k64 s32): the GEMM is transposed (one row per input pixel) so each
//    tap row of the kernel lands as a contiguous run of the output row (vector adds);
//  - phase (FCN, kernel a multiple of the stride): one GEMM over (c_in, taps that land) per
//    output sub-pixel grid, each output written once;
//  - phase_direct (float32 FCN, also for channels-last inputs): the same sums computed per output
//    row by register tiles (cpu/vec/conv_phase_vec.cpp) that store each output once;
//  - channels_last: GEMM on the [N * H * W, C_in] view with the weight as [C_in, kH * kW * C_out],
//    each tap a contiguous run of C_out channels of one output pixel;
//  - general: fill with bias, accumulate the taps.
// Determinism: work is split into tasks by output region (fixed sizes from the shape only), a
// task owns its outputs and adds in a fixed order, and every GEMM runs single-threaded inside
// at::parallel_for: results are bitwise identical for any thread count.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string_view>
#include <vector>

#include "checks.h"
#include "conv_transpose_host.h"
#include "cpu/conv_transpose_cpu.h"
#include "cpu/alloc.h"
#include "cpu/isa.h"
#include "cpu/vec/conv_phase_vec.h"
#include "cpu/vec/conv_scatter_vec.h"
#include "detseg/conv_transpose.h"

namespace detseg {
namespace {

using namespace conv_cpu;

// Output bands of `band` rows; input rows per band from the shared geometry.
struct Bands {
  int64_t band, count, max_in;
};

Bands row_bands(const Geom& g, int64_t in_rows) {
  Bands b{in_rows * g.sh, 0, 0};
  b.count = (g.ho + b.band - 1) / b.band;
  for (int64_t i = 0; i < b.count; ++i) {
    int64_t lo, hi;
    conv_transpose_band_inputs(i * b.band, std::min(g.ho, (i + 1) * b.band), g.h, g.kh, g.sh, g.ph, g.dh, &lo, &hi);
    b.max_in = std::max(b.max_in, hi - lo);
  }
  return b;
}


// One output row of the non-overlapping path: output ox takes tap kx of input ix (or bias).
template <typename T>
void write_row_direct(const Geom& g, T* orow, const T* src, int64_t kstride, T bias) {
  if (g.sw == g.kw && g.dw == 1 && g.pw == 0) {  // kernel == stride: an interleave
    const int64_t full = std::min(g.w, g.wo / g.sw);
    if (g.kw == 2) {
      DETSEG_ISA_CALL(conv_interleave2, orow, src, src + kstride, full, bias);
    } else {
      for (int64_t ix = 0; ix < full; ++ix)
        for (int64_t kx = 0; kx < g.kw; ++kx) orow[ix * g.kw + kx] = src[kx * kstride + ix] + bias;
    }
    for (int64_t ox = full * g.sw; ox < g.wo; ++ox) orow[ox] = bias;  // output_padding columns
    return;
  }
  for (int64_t ox = 0; ox < g.wo; ++ox) {
    const int64_t u = ox + g.pw, ix = u / g.sw, r = u % g.sw;
    const bool hit = ix < g.w && r % g.dw == 0 && r / g.dw < g.kw;
    orow[ox] = hit ? src[(r / g.dw) * kstride + ix] + bias : bias;
  }
}

// Buffer elements of the general path's GEMM output: half of L2, which left room for the packed
// operands and the output rows (3x3 decoder, 2 threads: ~4% less CPU time than 1 MiB).
constexpr int64_t kGeneralElems = int64_t(1) << 17;

// Buffer elements of the non-overlapping path's GEMM output (read back once by the interleave).
constexpr int64_t kDirectElems = kL2Elems;

// Tasks of (image, group, block of output channels): at least this many when the shape allows.
constexpr int64_t kMinTasks = 8;

// NCHW non-overlapping path (kernel footprint <= stride): output row bands, each output written
// once from the GEMM columns of the input rows that reach the band.
template <typename T>
void forward_direct(const Geom& g, const T* x, const T* wt, const T* bias, T* out) {
  const int64_t R = g.rows(), HW = g.hw(), plane = g.plane();
  const Bands bands = row_bands(g, rows_for(R * g.w, g.h, kDirectElems));
  const int64_t per_group = g.n * bands.count;
  // Group-major tasks: a thread's consecutive tasks share the packed weight.
  at::parallel_for(0, g.groups * per_group, 1, [&](int64_t begin, int64_t end) {
    auto buf = scratch<T>(R * bands.max_in * g.w);
    T* cols = buf.get();
    std::unique_ptr<WeightGemm<T>> gemm;
    int64_t gemm_of = -1;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t gi = task / per_group, n = task % per_group / bands.count;
      const int64_t oy0 = (task % bands.count) * bands.band, oy1 = std::min(g.ho, oy0 + bands.band);
      if (gemm_of != gi) {
        gemm = std::make_unique<WeightGemm<T>>(true, R, g.cig, wt + gi * g.cig * R, R, bands.max_in * g.w);
        gemm_of = gi;
      }
      int64_t iy0, iy1;
      conv_transpose_band_inputs(oy0, oy1, g.h, g.kh, g.sh, g.ph, g.dh, &iy0, &iy1);
      const int64_t P = std::max<int64_t>(iy1 - iy0, 0) * g.w;
      if (P > 0) (*gemm)(P, x + (n * g.cin + gi * g.cig) * HW + iy0 * g.w, HW, cols, P);
      for (int64_t co = 0; co < g.cog; ++co) {
        T* pl = out + (n * g.cout + gi * g.cog + co) * plane;
        const T b = bias ? bias[gi * g.cog + co] : T(0);
        const T* src_c = cols + co * g.kh * g.kw * P;
        for (int64_t oy = oy0; oy < oy1; ++oy) {
          const int64_t u = oy + g.ph, iy = u / g.sh, r = u % g.sh;
          T* orow = pl + oy * g.wo;
          if (iy >= g.h || r % g.dh != 0 || r / g.dh >= g.kh) {
            std::fill(orow, orow + g.wo, b);
            continue;
          }
          write_row_direct<T>(g, orow, src_c + (r / g.dh) * g.kw * P + (iy - iy0) * g.w, P, b);
        }
      }
    }
  });
}

// NCHW general path. A task owns the output planes of (image, group, block of output channels)
// and walks the input in bands of rows: one GEMM per band (rows (c_out, ky, kx) of the block x
// the band's pixels, sized to stay in L2 until the scatter reads it), each input row computed
// once. Each output row the band reaches is finished in registers (conv_row_taps): bias, or
// the partial sums of earlier bands, plus this band's taps in (ky, kx) order, stored once.
// Tasks run image-fastest so a thread's consecutive tasks share the packed weight block.
template <typename T>
void forward_general(const Geom& g, const T* x, const T* wt, const T* bias, T* out) {
  const int64_t R = g.rows(), HW = g.hw(), plane = g.plane(), kk = g.kh * g.kw;
  int64_t cb = g.cog;
  while (cb > 1 && g.n * g.groups * ((g.cog + cb - 1) / cb) < kMinTasks) cb = (cb + 1) / 2;
  const int64_t nblk = (g.cog + cb - 1) / cb, in_rows = rows_for(cb * kk * g.w, g.h, kGeneralElems);
  // Input columns each kx tap reaches (the same for every row).
  std::vector<int64_t> jlo(g.kw), jhi(g.kw);
  for (int64_t kx = 0; kx < g.kw; ++kx)
    conv_transpose_tap_inputs(kx, 0, g.wo, g.w, g.sw, g.pw, g.dw, &jlo[kx], &jhi[kx]);
  at::parallel_for(0, g.n * g.groups * nblk, 1, [&](int64_t begin, int64_t end) {
    auto buf = scratch<T>(cb * kk * in_rows * g.w);
    T* cols = buf.get();
    std::unique_ptr<WeightGemm<T>> gemm;
    int64_t gemm_of = -1;
    std::vector<const T*> tap_src(kk);
    std::vector<int64_t> tap_first(kk), tap_count(kk);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task % g.n, gb = task / g.n, gi = gb / nblk;
      const int64_t co0 = (gb % nblk) * cb, co1 = std::min(g.cog, co0 + cb);
      if (gemm_of != gb) {
        gemm = std::make_unique<WeightGemm<T>>(true, (co1 - co0) * kk, g.cig, wt + gi * g.cig * R + co0 * kk, R,
                                               in_rows * g.w);
        gemm_of = gb;
      }
      T* pl0 = out + (n * g.cout + gi * g.cog) * plane;
      auto fill = [&](int64_t r0, int64_t r1) {
        for (int64_t co = co0; co < co1; ++co)
          std::fill(pl0 + co * plane + r0 * g.wo, pl0 + co * plane + r1 * g.wo, bias ? bias[gi * g.cog + co] : T(0));
      };
      int64_t filled = 0;
      for (int64_t iy0 = 0; iy0 < g.h; iy0 += in_rows) {
        const int64_t iy1 = std::min(g.h, iy0 + in_rows), P = (iy1 - iy0) * g.w;
        // Output rows [oy0, oy1) take taps of this band; rows below oy0 are reached by no later band.
        const int64_t oy0 = std::clamp<int64_t>(iy0 * g.sh - g.ph, 0, g.ho);
        const int64_t oy1 = std::clamp<int64_t>((iy1 - 1) * g.sh - g.ph + (g.kh - 1) * g.dh + 1, oy0, g.ho);
        if (oy0 > filled) fill(filled, oy0), filled = oy0;
        (*gemm)(P, x + (n * g.cin + gi * g.cig) * HW + iy0 * g.w, HW, cols, P);
        for (int64_t co = co0; co < co1; ++co) {
          T* pl = pl0 + co * plane;
          const T b = bias ? bias[gi * g.cog + co] : T(0);
          for (int64_t oy = oy0; oy < oy1; ++oy) {
            int ntaps = 0;
            for (int64_t ky = 0; ky < g.kh; ++ky) {
              const int64_t u = oy + g.ph - ky * g.dh;
              if (u < 0 || u % g.sh != 0 || u / g.sh < iy0 || u / g.sh >= iy1) continue;
              const T* src = cols + ((co - co0) * kk + ky * g.kw) * P + (u / g.sh - iy0) * g.w;
              for (int64_t kx = 0; kx < g.kw; ++kx)
                if (jhi[kx] > jlo[kx]) {
                  tap_src[ntaps] = src + kx * P + jlo[kx];
                  tap_first[ntaps] = jlo[kx] * g.sw + kx * g.dw - g.pw;
                  tap_count[ntaps++] = jhi[kx] - jlo[kx];
                }
            }
            DETSEG_ISA_CALL(conv_row_taps, pl + oy * g.wo, g.wo, oy >= filled, b, ntaps, tap_src.data(),
                            tap_first.data(), tap_count.data(), g.sw);
          }
        }
        filled = std::max(filled, oy1);
      }
      fill(filled, g.ho);
    }
  });
}

// NCHW forward for kernels much wider than the stride (FCN): GEMM rows = input pixels, columns
// = a chunk of (ky, kx) taps of one output channel; each tap row lands as a contiguous run.
template <typename T>
void forward_large_kernel(const Geom& g, const T* x, const T* wt, const T* bias, T* out) {
  const int64_t R = g.rows(), HW = g.hw(), plane = g.plane(), kk = g.kh * g.kw;
  const int64_t in_rows = rows_for(g.w * g.kw, g.h);
  const int64_t ky_chunk = rows_for(in_rows * g.w * g.kw, g.kh);
  at::parallel_for(0, g.n * g.cout, 1, [&](int64_t begin, int64_t end) {
    auto buf = scratch<T>(in_rows * g.w * ky_chunk * g.kw);
    T* cols = buf.get();
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / g.cout, c = task % g.cout, gi = c / g.cog, co = c % g.cog;
      T* pl = out + task * plane;
      std::fill(pl, pl + plane, bias ? bias[c] : T(0));
      for (int64_t ky0 = 0; ky0 < g.kh; ky0 += ky_chunk) {
        const int64_t ky1 = std::min(g.kh, ky0 + ky_chunk), ncol = (ky1 - ky0) * g.kw;
        for (int64_t iy0 = 0; iy0 < g.h; iy0 += in_rows) {
          const int64_t iy1 = std::min(g.h, iy0 + in_rows);
          // Skip the GEMM when no (input row, tap row) pair of this chunk lands in the output.
          int64_t lo, hi;
          bool any = false;
          for (int64_t ky = ky0; ky < ky1 && !any; ++ky) {
            conv_transpose_tap_inputs(ky, 0, g.ho, g.h, g.sh, g.ph, g.dh, &lo, &hi);
            any = std::max(lo, iy0) < std::min(hi, iy1);
          }
          if (!any) continue;
          const int64_t P = (iy1 - iy0) * g.w;
          gemm_rm<T>(true, false, P, ncol, g.cig, x + (n * g.cin + gi * g.cig) * HW + iy0 * g.w, HW,
                     wt + gi * g.cig * R + co * kk + ky0 * g.kw, R, false, cols, ncol);
          for (int64_t iy = iy0; iy < iy1; ++iy) {
            for (int64_t ky = ky0; ky < ky1; ++ky) {
              const int64_t oy = iy * g.sh - g.ph + ky * g.dh;
              if (oy < 0 || oy >= g.ho) continue;
              T* orow = pl + oy * g.wo;
              for (int64_t ix = 0; ix < g.w; ++ix) {
                const int64_t ox0 = ix * g.sw - g.pw;
                const int64_t k0 = std::max<int64_t>(0, -ox0), k1 = std::min(g.kw, g.wo - ox0);
                const T* s = cols + ((iy - iy0) * g.w + ix) * ncol + (ky - ky0) * g.kw;
                for (int64_t kx = k0; kx < k1; ++kx) orow[ox0 + kx] += s[kx];
              }
            }
          }
        }
      }
    }
  });
}


// Channels-last forward: x is [N, H, W, C_in], wr the weight as [C_in, kH, kW, C_out / groups],
// out [N, H_out, W_out, C_out]; GEMM rows = input pixels of a band, columns (ky, kx, c_out).
template <typename T>
void forward_channels_last(const Geom& g, const T* x, const T* wr, const T* bias, T* out) {
  const int64_t R = g.rows();
  const Bands bands = row_bands(g, rows_for(R * g.w, g.h));
  at::parallel_for(0, g.n * bands.count, 1, [&](int64_t begin, int64_t end) {
    auto buf = scratch<T>(R * bands.max_in * g.w);
    T* cols = buf.get();
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / bands.count;
      const int64_t oy0 = (task % bands.count) * bands.band, oy1 = std::min(g.ho, oy0 + bands.band);
      T* ob = out + (n * g.ho + oy0) * g.wo * g.cout;
      for (int64_t p = 0; p < (oy1 - oy0) * g.wo; ++p)
        for (int64_t c = 0; c < g.cout; ++c) ob[p * g.cout + c] = bias ? bias[c] : T(0);
      int64_t iy0, iy1;
      conv_transpose_band_inputs(oy0, oy1, g.h, g.kh, g.sh, g.ph, g.dh, &iy0, &iy1);
      if (iy1 <= iy0) continue;
      const int64_t P = (iy1 - iy0) * g.w;
      for (int64_t gi = 0; gi < g.groups; ++gi) {
        gemm_rm<T>(false, false, P, R, g.cig, x + (n * g.h + iy0) * g.w * g.cin + gi * g.cig, g.cin,
                   wr + gi * g.cig * R, R, false, cols, R);
        for (int64_t ky = 0; ky < g.kh; ++ky) {
          int64_t ilo, ihi;
          conv_transpose_tap_inputs(ky, oy0, oy1, g.h, g.sh, g.ph, g.dh, &ilo, &ihi);
          for (int64_t iy = ilo; iy < ihi; ++iy) {
            const int64_t oy = iy * g.sh - g.ph + ky * g.dh;
            T* orow = out + ((n * g.ho + oy) * g.wo) * g.cout + gi * g.cog;
            for (int64_t kx = 0; kx < g.kw; ++kx) {
              int64_t jlo, jhi;
              conv_transpose_tap_inputs(kx, 0, g.wo, g.w, g.sw, g.pw, g.dw, &jlo, &jhi);
              for (int64_t ix = jlo; ix < jhi; ++ix) {
                T* d = orow + (ix * g.sw - g.pw + kx * g.dw) * g.cout;
                const T* s = cols + ((iy - iy0) * g.w + ix) * R + (ky * g.kw + kx) * g.cog;
                for (int64_t c = 0; c < g.cog; ++c) d[c] += s[c];
              }
            }
          }
        }
      }
    }
  });
}

enum class Path { kAuto, kGeneral, kNonOverlapping, kLargeKernel, kPhase, kPhaseDirect, kChannelsLast };

Path parse_path(std::string_view p) {
  if (p == "auto") return Path::kAuto;
  if (p == "general") return Path::kGeneral;
  if (p == "non_overlapping") return Path::kNonOverlapping;
  if (p == "large_kernel") return Path::kLargeKernel;
  if (p == "channels_last") return Path::kChannelsLast;
  if (p == "phase") return Path::kPhase;
  if (p == "phase_direct") return Path::kPhaseDirect;
  TORCH_CHECK_VALUE(false, "detseg._conv_transpose2d_path: path must be one of 'auto', 'general', 'non_overlapping', "
              "'large_kernel', 'phase', 'phase_direct', 'channels_last', got '", p, "'");
}

bool non_overlapping(const Geom& g) {
  return conv_transpose_non_overlapping(g.kh, g.sh, g.dh) && conv_transpose_non_overlapping(g.kw, g.sw, g.dw);
}

// A kernel row much wider than the stride: the transposed GEMM's contiguous runs pay off.
bool large_kernel(const Geom& g) { return g.dw == 1 && g.kw >= 16 && g.kw >= 2 * g.sw; }

// Kernels spanning several strides with few empty phase slots ((ceil(k / s) * s)^2 <= 1.2 k^2):
// the phase GEMM wastes little arithmetic on zero taps.
bool phase_pays(const Geom& g) {
  if (g.dh != 1 || g.dw != 1 || g.kh < 2 * g.sh || g.kw < 2 * g.sw) return false;
  const double slots = double((g.kh + g.sh - 1) / g.sh * g.sh) * double((g.kw + g.sw - 1) / g.sw * g.sw);
  return slots <= 1.2 * double(g.kh * g.kw);
}

// The register tiles of phase_direct fill their vectors when a stride spans panels with few
// idle lanes (FCN's 32: none); float32 on AVX2 / AVX-512 only (float64 and the scalar DEFAULT
// build, 3x slower than MKL on FCN, keep the phase GEMM). Kernel widths that are whole strides
// leave no zero-padded B lanes, so a non-finite input reaches exactly ATen's outputs (a zero
// lane times inf would spread NaN).
bool phase_direct_pays(const Geom& g, at::ScalarType ct) {
  constexpr int64_t P = cpu::kConvPhasePanel;
  return ct == at::kFloat && cpu::current_isa() != cpu::Isa::DEFAULT && phase_pays(g) && g.kw % g.sw == 0 &&
         g.sw >= P && 4 * ((g.sw + P - 1) / P * P) <= 5 * g.sw;
}

// The phase paths meet zero padding (inputs past the border, kernel slots past the kernel) as
// multiplications by 0, which turn an inf or NaN on the other operand into NaN where ATen adds
// nothing. The automatic choice takes them only for finite operands; the check is one
// vectorised read of the weight and the input (0.1 ms for FCN's 7 MB weight, about 1%).
bool all_finite(const at::Tensor& t) {
  if (t.scalar_type() != at::kFloat || !t.is_contiguous()) return at::isfinite(t).all().item<bool>();
  const uint32_t* bits = reinterpret_cast<const uint32_t*>(t.const_data_ptr<float>());
  std::atomic<bool> ok{true};
  at::parallel_for(0, t.numel(), int64_t(1) << 18, [&](int64_t b, int64_t e) {
    uint32_t bad = 0;  // an all-ones exponent marks inf and NaN
    for (int64_t i = b; i < e; ++i) bad |= static_cast<uint32_t>((bits[i] & 0x7f800000u) == 0x7f800000u);
    if (bad) ok.store(false, std::memory_order_relaxed);
  });
  return ok.load();
}

at::Tensor forward_impl(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                        at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef output_padding,
                        int64_t groups, at::IntArrayRef dilation, Path path, const char* op) {
  const at::Tensor* b = bias.has_value() && bias->defined() ? &*bias : nullptr;
  const Geom g = conv_transpose2d_geom(op, input, weight, b, stride, padding, output_padding, groups, dilation);
  const bool cl_in = checks::roi_channels_last(input);
  const auto ct = compute_type(input.scalar_type());
  if (path == Path::kAuto) {
    const bool phase_ok = phase_pays(g) && all_finite(weight) && all_finite(input);
    path = phase_ok && phase_direct_pays(g, ct) ? Path::kPhaseDirect
           : cl_in                              ? Path::kChannelsLast
           : non_overlapping(g)                 ? Path::kNonOverlapping
           : phase_ok                           ? Path::kPhase
           : large_kernel(g)                    ? Path::kLargeKernel
                                                : Path::kGeneral;
  }
  TORCH_CHECK_VALUE(path != Path::kNonOverlapping || non_overlapping(g), "detseg.", op,
              ": the non_overlapping path needs (k - 1) * dilation < stride on both axes");
  TORCH_CHECK_VALUE((path != Path::kPhase && path != Path::kPhaseDirect) || (g.dh == 1 && g.dw == 1), "detseg.", op,
              ": the phase and phase_direct paths need dilation (1, 1)");
  TORCH_CHECK_VALUE(path != Path::kLargeKernel || g.dw == 1, "detseg.", op,
              ": the large_kernel path needs dilation[1] == 1");
  // An empty batch has the layout every non-empty one ends in (the fake kernel's), whatever the path.
  if (g.n == 0)
    return at::empty({0, g.cout, g.ho, g.wo}, input.options().memory_format(cl_in ? at::MemoryFormat::ChannelsLast
                                                                                  : at::MemoryFormat::Contiguous));
  // phase_direct reads NCHW and writes either layout.
  const bool cl_out = path == Path::kChannelsLast || (path == Path::kPhaseDirect && cl_in);
  const auto fmt = cl_out ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  // From the output pool: reused blocks fault no more; new ones have huge pages (cpu/alloc.h).
  at::Tensor out = cpu::empty_pooled({g.n, g.cout, g.ho, g.wo}, input.options().dtype(ct).memory_format(fmt));
  const at::Tensor x = input.to(ct).contiguous(path == Path::kChannelsLast ? at::MemoryFormat::ChannelsLast
                                                                          : at::MemoryFormat::Contiguous);
  const at::Tensor w = path == Path::kChannelsLast ? weight.to(ct).permute({0, 2, 3, 1}).contiguous()
                                                   : weight.to(ct).contiguous();
  const at::Tensor bc = b ? b->to(ct).contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(ct, "detseg_conv_transpose2d", [&] {
    const scalar_t* bp = b ? bc.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* wp = w.const_data_ptr<scalar_t>();
    scalar_t* op_ = out.mutable_data_ptr<scalar_t>();
    switch (path) {
      case Path::kChannelsLast: forward_channels_last<scalar_t>(g, xp, wp, bp, op_); break;
      case Path::kLargeKernel: forward_large_kernel<scalar_t>(g, xp, wp, bp, op_); break;
      case Path::kPhase: forward_phase<scalar_t>(g, xp, wp, bp, op_); break;
      case Path::kPhaseDirect: forward_phase_direct<scalar_t>(g, xp, wp, bp, op_, cl_in); break;
      case Path::kNonOverlapping: forward_direct<scalar_t>(g, xp, wp, bp, op_); break;
      default: forward_general<scalar_t>(g, xp, wp, bp, op_);
    }
  });
  if (ct != input.scalar_type()) out = out.to(input.scalar_type());
  // Channels-last in, channels-last out (and the reverse) whichever path computed it.
  if (cl_in != cl_out) out = out.contiguous(cl_in ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  return out;
}

at::Tensor conv_transpose2d_cpu(const at::Tensor& input, const at::Tensor& weight,
                                const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                at::IntArrayRef padding, at::IntArrayRef output_padding, int64_t groups,
                                at::IntArrayRef dilation) {
  return forward_impl(input, weight, bias, stride, padding, output_padding, groups, dilation, Path::kAuto,
                      "conv_transpose2d");
}

at::Tensor conv_transpose2d_path_cpu(const at::Tensor& input, const at::Tensor& weight,
                                     const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                     at::IntArrayRef padding, at::IntArrayRef output_padding, int64_t groups,
                                     at::IntArrayRef dilation, c10::string_view path) {
  return forward_impl(input, weight, bias, stride, padding, output_padding, groups, dilation,
                      parse_path(std::string_view(path.data(), path.size())), "_conv_transpose2d_path");
}

}  // namespace
}  // namespace detseg

TORCH_LIBRARY_IMPL(detseg, CPU, m) {
  m.impl("conv_transpose2d", &detseg::conv_transpose2d_cpu);
  m.impl("_conv_transpose2d_path", &detseg::conv_transpose2d_path_cpu);
}
