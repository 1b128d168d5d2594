// Transposed convolution on the CPU: the sub-pixel ("phase") forward paths, called by
// forward_impl in conv_transpose.cpp (which chooses the path; see its header comment).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "conv_transpose_host.h"
#include "cpu/conv_transpose_cpu.h"
#include "cpu/isa.h"
#include "cpu/vec/conv_phase_vec.h"
#include "cpu/vec/conv_scatter_vec.h"

namespace detseg::conv_cpu {

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

template void forward_phase<float>(const Geom&, const float*, const float*, const float*, float*);
template void forward_phase<double>(const Geom&, const double*, const double*, const double*, double*);
template void forward_phase_direct<float>(const Geom&, const float*, const float*, const float*, float*, bool);
template void forward_phase_direct<double>(const Geom&, const double*, const double*, const double*, double*, bool);

}  // namespace detseg::conv_cpu
