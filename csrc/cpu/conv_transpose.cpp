// Transposed convolution on the CPU (torch.nn.functional.conv_transpose2d), forward and backward.
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

// Buffer elements of a GEMM whose output is read back by a scatter (col2im): small enough to
// stay in L2 between the GEMM and the scatter (MKL runs as fast on such tiles).
// Measured on the 3x3 decoder: 1 MiB of float runs as fast as 4 MiB without the recomputed
// input rows of output-row bands.
constexpr int64_t kL2Elems = int64_t(1) << 18;

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

// Sub-pixel ("phase") form, dilation 1: output u = q * stride + r (uncropped) takes taps
// t = r + j * stride from inputs q - j, j < ceil(k / stride). GEMMs compute every output once:
// rows = the q grid, K = (c_in, jy, jx), columns = (c_out, ry, rx); then a copy into place.
// For FCN's k = 2 * stride this does the arithmetic with K = 4 * C_in instead of C_in and no
// overlapping adds (the cost of the other paths' col2im). The weight is packed once (in
// parallel); tasks are (image, group, output channel block, band of q rows) with the GEMM
// output sized for L2, enough of them to balance two threads on FCN's single image.
template <typename T>
void forward_phase(const Geom& g, const T* x, const T* wt, const T* bias, T* out) {
  const int64_t jy = (g.kh + g.sh - 1) / g.sh, jx = (g.kw + g.sw - 1) / g.sw, ss = g.sh * g.sw;
  const int64_t q0y = g.ph / g.sh, qy_n = (g.ph + g.ho - 1) / g.sh + 1 - q0y;
  const int64_t q0x = g.pw / g.sw, qx_n = (g.pw + g.wo - 1) / g.sw + 1 - q0x;
  const int64_t K = g.cig * jy * jx, HW = g.hw(), plane = g.plane(), kk = g.kh * g.kw, ldw = g.cog * ss;
  const int64_t cb = rows_for(qy_n * qx_n * ss, g.cog, kL2Elems), nblk = (g.cog + cb - 1) / cb;
  const int64_t qb = rows_for(qx_n * cb * ss, qy_n, kL2Elems), nq = (qy_n + qb - 1) / qb;
  // wp[gi][(ci, ay, ax), (co, ry, rx)] = W[gi * cig + ci, co, ry + ay * sh, rx + ax * sw] (0 past the kernel)
  const auto wp_buf = scratch<T>(g.groups * K * ldw);  // fully written below: no zero-fill pass
  T* const wpk = wp_buf.get();
  at::parallel_for(0, g.groups * g.cig, 1, [&](int64_t b, int64_t e) {
    for (int64_t gci = b; gci < e; ++gci)
      for (int64_t ay = 0; ay < jy; ++ay)
        for (int64_t ax = 0; ax < jx; ++ax) {
          T* dst = wpk + ((gci * jy + ay) * jx + ax) * ldw;
          for (int64_t co = 0; co < g.cog; ++co) {
            const T* wk = wt + (gci * g.cog + co) * kk;
            // (a run of sw taps of one kernel row: a copy, zeros past the kernel)
            const int64_t kx0 = ax * g.sw, nx = std::clamp<int64_t>(g.kw - kx0, 0, g.sw);
            for (int64_t ry = 0; ry < g.sh; ++ry) {
              const int64_t ky = ry + ay * g.sh;
              T* d = dst + (co * g.sh + ry) * g.sw;
              const int64_t n = ky < g.kh ? nx : 0;
              if (n > 0) std::copy(wk + ky * g.kw + kx0, wk + ky * g.kw + kx0 + n, d);
              std::fill(d + n, d + g.sw, T(0));
            }
          }
        }
  });
  at::parallel_for(0, g.n * g.groups * nblk * nq, 1, [&](int64_t begin, int64_t end) {
    auto a = scratch<T>(qb * qx_n * K), c = scratch<T>(qb * qx_n * cb * ss);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / (g.groups * nblk * nq), gi = (task / (nblk * nq)) % g.groups;
      const int64_t co0 = (task / nq % nblk) * cb, co1 = std::min(g.cog, co0 + cb), ncol = (co1 - co0) * ss;
      const int64_t qy0 = (task % nq) * qb, qy1 = std::min(qy_n, qy0 + qb);
      const T* xg = x + (n * g.cin + gi * g.cig) * HW;
      for (int64_t qy = qy0; qy < qy1; ++qy)
        for (int64_t qx = 0; qx < qx_n; ++qx) {
          T* row = a.get() + ((qy - qy0) * qx_n + qx) * K;
          for (int64_t ci = 0; ci < g.cig; ++ci)
            for (int64_t ay = 0; ay < jy; ++ay)
              for (int64_t ax = 0; ax < jx; ++ax) {
                const int64_t iy = q0y + qy - ay, ix = q0x + qx - ax;
                row[(ci * jy + ay) * jx + ax] =
                    (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w) ? xg[ci * HW + iy * g.w + ix] : T(0);
              }
        }
      gemm_rm<T>(false, false, (qy1 - qy0) * qx_n, ncol, K, a.get(), K, wpk + gi * K * ldw + co0 * ss, ldw,
                 false, c.get(), ncol);
      // Output rows whose q row lies in [qy0, qy1).
      const int64_t oy0 = std::max<int64_t>(0, (q0y + qy0) * g.sh - g.ph);
      const int64_t oy1 = std::min(g.ho, (q0y + qy1) * g.sh - g.ph);
      for (int64_t co = co0; co < co1; ++co) {
        T* pl = out + (n * g.cout + gi * g.cog + co) * plane;
        const T b = bias ? bias[gi * g.cog + co] : T(0);
        for (int64_t oy = oy0; oy < oy1; ++oy) {
          const int64_t u = oy + g.ph;
          const T* src = c.get() + (u / g.sh - q0y - qy0) * qx_n * ncol + ((co - co0) * g.sh + u % g.sh) * g.sw;
          T* orow = pl + oy * g.wo;
          for (int64_t qx = 0; qx < qx_n; ++qx) {
            const int64_t base = (q0x + qx) * g.sw - g.pw;
            const int64_t r0 = std::max<int64_t>(0, -base), r1 = std::min(g.sw, g.wo - base);
            const T* sq = src + qx * ncol;
            for (int64_t rx = r0; rx < r1; ++rx) orow[base + rx] = sq[rx] + b;
          }
        }
      }
    }
  });
}

// Sub-pixel rows written in place (FCN's float32 k64 s32): with u = oy + ph = q * sh + ry and
// ox + pw = m * sw + r, out[co, oy, ox] = bias + sum over (ty, ci, tx) of
// x[ci, q - ty, m - tx] * w[ci, co, ry + ty * sh, r + tx * sw]: per output row a small GEMM
// (M = blocks m, K = (ty, ci, tx), N = the sw columns of a block) run by the register tiles of
// conv_phase_row (cpu/vec/conv_phase_vec.cpp), each output stored once: no GEMM buffer, no
// copy, no packing of the whole weight. The input is laid out once as A[(n, g, q)][(ty, ci, tx)][m]
// (zeros outside the image; jy * jx times the input); the B rows of one (c_out, ry) pair are the
// weight's own runs (or zero-padded copies when the kernel or the stride leaves partial runs;
// 10 KiB for FCN: L1) and serve every row q with that ry. The taps of a row whose input row lies
// outside the image are a prefix or suffix of ty, so a row's K is one contiguous range. NCHW
// output: tasks (image, c_out, ry); channels-last output: tasks (image, ry), all channels of a
// row, then interleaved. Each output is one call's fixed-order chain: bitwise equal for any
// thread count and either layout.
template <typename T>
void forward_phase_direct(const Geom& g, const T* x, const T* wt, const T* bias, T* out, bool channels_last) {
  constexpr int64_t P = cpu::kConvPhasePanel;
  const int64_t jy = (g.kh + g.sh - 1) / g.sh, jx = (g.kw + g.sw - 1) / g.sw;
  const int64_t q0y = g.ph / g.sh, qy_n = (g.ph + g.ho - 1) / g.sh + 1 - q0y;
  const int64_t m0x = g.pw / g.sw, M = (g.pw + g.wo - 1) / g.sw + 1 - m0x, c0 = g.pw % g.sw;
  const int64_t np = (g.sw + P - 1) / P, ldb = np * P, kt = g.cig * jx, K = jy * kt;
  const int64_t HW = g.hw(), plane = g.plane(), kk = g.kh * g.kw;
  const auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  const at::Tensor abuf = at::empty({g.n * g.groups * qy_n * K * M}, opts);  // every element written below
  T* const ap = abuf.mutable_data_ptr<T>();
  at::parallel_for(0, g.n * g.groups * qy_n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t q = q0y + i % qy_n;
      const T* xg = x + i / qy_n * g.cig * HW;  // image n, group gi: (n * groups + gi) * cig channels in
      T* row = ap + i * K * M;
      for (int64_t ty = 0; ty < jy; ++ty)
        for (int64_t ci = 0; ci < g.cig; ++ci)
          for (int64_t tx = 0; tx < jx; ++tx, row += M) {
            const int64_t iy = q - ty;
            for (int64_t m = 0; m < M; ++m) {
              const int64_t ix = m0x + m - tx;
              row[m] = iy >= 0 && iy < g.h && ix >= 0 && ix < g.w ? xg[ci * HW + iy * g.w + ix] : T(0);
            }
          }
    }
  });
  // The weight's own rows serve as B when every block's lanes are whole runs of the kernel
  // (FCN: runs of 32 of a 64-wide row); otherwise a zero-padded copy.
  const bool direct = np * P == g.sw && jx * g.sw == g.kw;
  // The kernel rows ry + ty * sh of output channel c: f(ty, ci, row of kw weights).
  auto kernel_rows = [&](int64_t c, int64_t ry, auto&& f) {
    const int64_t gi = c / g.cog, co = c % g.cog;
    for (int64_t ty = 0; ty < jy && ry + ty * g.sh < g.kh; ++ty)
      for (int64_t ci = 0; ci < g.cig; ++ci)
        f(ty, ci, wt + ((gi * g.cig + ci) * g.cog + co) * kk + (ry + ty * g.sh) * g.kw);
  };
  // brow[K]: the B rows of (c, ry); bp[K * ldb]: room for their zero-padded copies.
  auto set_rows = [&](int64_t c, int64_t ry, const T** brow, T* bp) {
    if (!direct) std::fill(bp, bp + K * ldb, T(0));
    kernel_rows(c, ry, [&](int64_t ty, int64_t ci, const T* wk) {
      for (int64_t tx = 0; tx < jx; ++tx) {
        const int64_t k = (ty * g.cig + ci) * jx + tx;
        if (direct) {
          brow[k] = wk + tx * g.sw;
        } else {
          T* d = bp + k * ldb;
          for (int64_t r = 0, nr = std::min(g.sw, g.kw - tx * g.sw); r < nr; ++r) d[r] = wk[tx * g.sw + r];
          brow[k] = d;
        }
      }
    });
  };
  // The scattered weight runs of (c, ry) (no hardware prefetch): fetched while other rows compute.
  auto prefetch_rows = [&](int64_t c, int64_t ry) {
    kernel_rows(c, ry, [&](int64_t, int64_t, const T* wk) {
      for (int64_t i = 0; i < g.kw; i += 64 / int64_t(sizeof(T))) __builtin_prefetch(wk + i);
    });
  };
  // Output row oy = (q0y + qy) * sh + ry - ph (in [0, ho)) of channel c of image n into dst[wo].
  // Its landed taps: input row q - ty in [0, h) and kernel row ry + ty * sh < kh, a contiguous
  // range of ty.
  auto run_row = [&](int64_t n, int64_t c, int64_t ry, int64_t qy, const T* const* brow, T* dst, bool stream) {
    const int64_t q = q0y + qy;
    const int64_t ty_k = ry < g.kh ? std::min(jy - 1, (g.kh - 1 - ry) / g.sh) : -1;
    const int64_t ty0 = std::max<int64_t>(0, q - g.h + 1), ty1 = std::min(ty_k, q) + 1;
    const int64_t k0 = ty0 * kt, kn = std::max<int64_t>(ty1 - ty0, 0) * kt;
    const T* an = ap + ((n * g.groups + c / g.cog) * qy_n + qy) * K * M;
    DETSEG_ISA_CALL(conv_phase_row, dst, g.wo, g.sw, c0, M, np, an + k0 * M, M, brow + k0, kn,
                    bias ? bias[c] : T(0), stream);
  };
  auto row_of = [&](int64_t qy, int64_t ry) { return (q0y + qy) * g.sh + ry - g.ph; };
  if (!channels_last) {
    // Outputs past L3's share (FCN: 22 MB) are written once and not read back here: streamed
    // stores skip the read-for-ownership and leave the weight in the caches (1.1-1.3x at 1 thread).
    const bool stream = g.n * g.cout * plane * int64_t(sizeof(T)) >= (int64_t(8) << 20);
    // Tasks (image, c_out, ry): a B set (10 KiB for FCN) stays in L1 for the rows q that use it.
    at::parallel_for(0, g.n * g.cout * g.sh, 1, [&](int64_t begin, int64_t end) {
      const at::Tensor bbuf = at::empty({direct ? 0 : K * ldb}, opts);  // 64-byte aligned rows (whole panels)
      std::vector<const T*> brow(K, nullptr);
      for (int64_t unit = begin; unit < end; ++unit) {
        const int64_t n = unit / (g.cout * g.sh), c = unit / g.sh % g.cout, ry = unit % g.sh;
        set_rows(c, ry, brow.data(), bbuf.mutable_data_ptr<T>());
        if (unit + 1 < end) prefetch_rows((unit + 1) / g.sh % g.cout, (unit + 1) % g.sh);
        for (int64_t qy = 0; qy < qy_n; ++qy) {
          const int64_t oy = row_of(qy, ry);
          if (oy >= 0 && oy < g.ho)
            run_row(n, c, ry, qy, brow.data(), out + (n * g.cout + c) * plane + oy * g.wo, stream);
        }
      }
      if (stream) DETSEG_ISA_CALL(conv_phase_fence);
    });
    return;
  }
  // Channels-last output: tasks (image, ry) compute the rows of every channel into a buffer
  // [c_out][wo] (the B sets of all channels stay in L2), then interleave it into the row.
  at::parallel_for(0, g.n * g.sh, 1, [&](int64_t begin, int64_t end) {
    const at::Tensor bbuf = at::empty({direct ? 0 : g.cout * K * ldb}, opts);
    const at::Tensor rbuf = at::empty({g.cout * g.wo}, opts);
    std::vector<const T*> brow(g.cout * K, nullptr);
    T* const rows = rbuf.mutable_data_ptr<T>();
    for (int64_t unit = begin; unit < end; ++unit) {
      const int64_t n = unit / g.sh, ry = unit % g.sh;
      for (int64_t c = 0; c < g.cout; ++c)
        set_rows(c, ry, brow.data() + c * K, bbuf.mutable_data_ptr<T>() + c * K * ldb);
      for (int64_t qy = 0; qy < qy_n; ++qy) {
        const int64_t oy = row_of(qy, ry);
        if (oy < 0 || oy >= g.ho) continue;
        for (int64_t c = 0; c < g.cout; ++c) run_row(n, c, ry, qy, brow.data() + c * K, rows + c * g.wo, false);
        DETSEG_ISA_CALL(conv_interleave, out + (n * g.ho + oy) * g.wo * g.cout, rows, g.cout, g.wo);
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
