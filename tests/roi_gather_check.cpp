// Host check of the deterministic CUDA backward's per-element arithmetic (csrc/cuda/roi_gather.h):
// for random and degenerate RoIs, every gradient element gathered pixel by pixel (window test,
// then align_gather_roi / pool_gather_roi, RoIs in order) must equal, bit for bit, the scatter
// in the CPU kernels' order (RoI, bin, sample, corner). Built and run by tests/test_roi_cuda.py;
// prints "ok <elements>" or the first mismatch (exit status 1).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "cuda/roi_gather.h"

using namespace detseg;

namespace {

std::mt19937_64 rng(12345);

double uni(double a, double b) { return std::uniform_real_distribution<double>(a, b)(rng); }
int pick(int n) { return static_cast<int>(rng() % static_cast<uint64_t>(n)); }

// A RoI row (batch 0) in image coordinates for an H x W map at `scale`: mostly ordinary boxes,
// plus the degenerate ones (outside, inverted, zero or sub-pixel size, huge, far, non-finite).
template <typename T>
void make_roi(T* r, int H, int W, double scale) {
  const double ih = H / scale, iw = W / scale;
  double x1 = uni(-0.3 * iw, 1.1 * iw), y1 = uni(-0.3 * ih, 1.1 * ih);
  double x2 = x1 + uni(0, 1.2 * iw), y2 = y1 + uni(0, 1.2 * ih);
  switch (pick(14)) {
    case 0: x2 = x1 - uni(0, 5); break;                          // inverted
    case 1: x2 = x1, y2 = y1; break;                             // zero size
    case 2: x2 = x1 + uni(0, 0.05), y2 = y1 + uni(0, 0.05); break;  // sub-pixel
    case 3: x1 = -1e6, x2 = 1e6; break;                          // huge
    case 4: x1 = 1e5 * iw, x2 = x1 + 7; break;                   // far outside
    case 5: x1 = std::nan(""); break;
    case 6: y2 = std::numeric_limits<double>::infinity(); break;
    case 7: y1 = -std::numeric_limits<double>::infinity(); break;
    case 8: x1 = -iw * 0.05, x2 = iw * 1.05, y1 = -ih * 0.05, y2 = ih * 1.05; break;  // whole map
    default: break;
  }
  r[0] = T(0), r[1] = T(x1), r[2] = T(y1), r[3] = T(x2), r[4] = T(y2);
}

template <typename T>
bool same_bits(T a, T b) { return std::memcmp(&a, &b, sizeof(T)) == 0; }

int64_t checked = 0;

// One random case: K RoI rows, the position-sensitive bin (pon, qon) (-1 when not ps), an
// upstream gradient [K, ph, pw] in (-1, 1) and an argmax buffer of -1.
template <typename T>
struct Case {
  std::vector<T> rois, grad;
  std::vector<int64_t> arg;
  int pon, qon;
};

template <typename T>
Case<T> make_case(int H, int W, int ph, int pw, bool ps, double scale, int K) {
  Case<T> c;
  c.rois.resize(5 * K);
  for (int k = 0; k < K; ++k) make_roi(&c.rois[5 * k], H, W, scale);
  c.pon = ps ? pick(ph) : -1;
  c.qon = ps ? pick(pw) : -1;
  c.grad.resize(size_t(K) * ph * pw);
  c.arg.assign(c.grad.size(), -1);
  for (auto& g : c.grad) g = T(uni(-1, 1));
  return c;
}

template <typename T>
bool check_align(int H, int W, int ph, int pw, int sr, bool aligned, bool max_mode, bool ps, double scale, int K) {
  auto [rois, grad, arg, pon, qon] = make_case<T>(H, W, ph, pw, ps, scale, K);
  // An infinite gradient turns the zero-weight corner terms into NaN: the gather must visit
  // exactly the terms the scatter adds, not only the non-zero ones.
  if (pick(3) == 0) grad[pick(int(grad.size()))] = std::numeric_limits<T>::infinity();
  std::vector<RoiAlignGeom<T>> geo(K);
  for (int k = 0; k < K; ++k) {
    geo[k] = roi_align_geom<T>(&rois[5 * k], T(scale), ph, pw, sr, aligned);
    const auto& g = geo[k];
    for (int t = 0; t < ph * pw; ++t) {
      const int n = g.grid_h * g.grid_w;
      if (!max_mode || n == 0 || pick(5) == 0) continue;
      const int s = pick(n), i = s / g.grid_w, j = s % g.grid_w;
      const bool valid = axis_sample(roi_sample_pos(g.start_h, g.bin_h, t / pw, i, g.grid_h), H).valid &&
                         axis_sample(roi_sample_pos(g.start_w, g.bin_w, t % pw, j, g.grid_w), W).valid;
      arg[size_t(k) * ph * pw + t] = valid ? s : -1;  // the forward never picks an invalid sample
    }
  }
  // Scatter in the CPU kernel's order.
  std::vector<T> plane(size_t(H) * W, T(0));
  auto scatter = [&](const AxisSample<T>& ay, const AxisSample<T>& ax, T g, T count) {
    const Bilinear<T> w = bilinear(ay, ax);
    plane[ay.lo * W + ax.lo] += g * w.w1 / count;
    plane[ay.lo * W + ax.hi] += g * w.w2 / count;
    plane[ay.hi * W + ax.lo] += g * w.w3 / count;
    plane[ay.hi * W + ax.hi] += g * w.w4 / count;
  };
  for (int k = 0; k < K; ++k) {
    const auto& g = geo[k];
    for (int p = 0; p < ph; ++p) {
      for (int q = 0; q < pw; ++q) {
        if (ps && (p != pon || q != qon)) continue;
        const T gb = grad[(size_t(k) * ph + p) * pw + q];
        if (max_mode) {
          const int64_t am = arg[(size_t(k) * ph + p) * pw + q];
          if (am < 0) continue;
          scatter(axis_sample(roi_sample_pos(g.start_h, g.bin_h, p, int(am / g.grid_w), g.grid_h), H),
                  axis_sample(roi_sample_pos(g.start_w, g.bin_w, q, int(am % g.grid_w), g.grid_w), W), gb, T(1));
          continue;
        }
        for (int i = 0; i < g.grid_h; ++i) {
          const AxisSample<T> ay = axis_sample(roi_sample_pos(g.start_h, g.bin_h, p, i, g.grid_h), H);
          if (!ay.valid) continue;
          for (int j = 0; j < g.grid_w; ++j) {
            const AxisSample<T> ax = axis_sample(roi_sample_pos(g.start_w, g.bin_w, q, j, g.grid_w), W);
            if (ax.valid) scatter(ay, ax, gb, g.count);
          }
        }
      }
    }
  }
  // Gather, one element at a time.
  for (int h = 0; h < H; ++h) {
    for (int w = 0; w < W; ++w) {
      T acc = T(0);
      for (int k = 0; k < K; ++k) {
        const auto& g = geo[k];
        int y0, y1, x0, x1;
        align_axis_window(g.start_h, g.bin_h, ph, g.grid_h, H, y0, y1);
        align_axis_window(g.start_w, g.bin_w, pw, g.grid_w, W, x0, x1);
        if (h < y0 || h > y1 || w < x0 || w > x1) continue;
        auto grad_at = [&](int p, int q) { return grad[(size_t(k) * ph + p) * pw + q]; };
        auto arg_at = [&](int p, int q) { return arg[(size_t(k) * ph + p) * pw + q]; };
        align_gather_roi(g, ph, pw, H, W, h, w, pon, qon, max_mode, grad_at, arg_at, acc);
      }
      ++checked;
      if (!same_bits(acc, plane[h * W + w])) {
        std::printf("align mismatch (%s H=%d W=%d ph=%d pw=%d sr=%d aligned=%d max=%d ps=%d scale=%g) at (%d, %d): "
                    "gather %.17g scatter %.17g\n",
                    sizeof(T) == 8 ? "double" : "float", H, W, ph, pw, sr, int(aligned), int(max_mode), int(ps),
                    scale, h, w, double(acc), double(plane[h * W + w]));
        return false;
      }
    }
  }
  return true;
}

template <typename T>
bool check_pool(int H, int W, int ph, int pw, bool ps, double scale, int K) {
  auto [rois, grad, arg, pon, qon] = make_case<T>(H, W, ph, pw, ps, scale, K);
  std::vector<RoiPoolGeom<T>> geo(K);
  std::vector<T> plane(size_t(H) * W, T(0));
  for (int k = 0; k < K; ++k) {
    geo[k] = roi_pool_geom<T>(&rois[5 * k], T(scale), ph, pw, !ps);
    const auto& g = geo[k];
    for (int p = 0; p < ph; ++p) {
      for (int q = 0; q < pw; ++q) {
        int64_t h0 = 0, h1 = 0, w0 = 0, w1 = 0;
        if (g.finite) {
          roi_pool_bin(g.start_h, g.bin_h, p, H, h0, h1);
          roi_pool_bin(g.start_w, g.bin_w, q, W, w0, w1);
        }
        const size_t t = (size_t(k) * ph + p) * pw + q;
        if (h1 <= h0 || w1 <= w0) continue;
        if (ps) {
          if (p != pon || q != qon) continue;
          const T d = grad[t] / static_cast<T>((h1 - h0) * (w1 - w0));
          for (int64_t y = h0; y < h1; ++y)
            for (int64_t x = w0; x < w1; ++x) plane[y * W + x] += d;
        } else if (pick(6) != 0) {
          arg[t] = (h0 + pick(int(h1 - h0))) * W + w0 + pick(int(w1 - w0));
          plane[arg[t]] += grad[t];
        }
      }
    }
  }
  for (int h = 0; h < H; ++h) {
    for (int w = 0; w < W; ++w) {
      T acc = T(0);
      for (int k = 0; k < K; ++k) {
        int y0, y1, x0, x1;
        pool_axis_window(geo[k], true, ph, H, y0, y1);
        pool_axis_window(geo[k], false, pw, W, x0, x1);
        if (h < y0 || h > y1 || w < x0 || w > x1) continue;
        auto grad_at = [&](int p, int q) { return grad[(size_t(k) * ph + p) * pw + q]; };
        auto arg_at = [&](int p, int q) { return arg[(size_t(k) * ph + p) * pw + q]; };
        pool_gather_roi(geo[k], ph, pw, H, W, h, w, pon, qon, grad_at, arg_at, acc);
      }
      ++checked;
      if (!same_bits(acc, plane[h * W + w])) {
        std::printf("pool mismatch (%s H=%d W=%d ph=%d pw=%d ps=%d scale=%g) at (%d, %d): gather %.17g scatter %.17g\n",
                    sizeof(T) == 8 ? "double" : "float", H, W, ph, pw, int(ps), scale, h, w, double(acc),
                    double(plane[h * W + w]));
        return false;
      }
    }
  }
  return true;
}

template <typename T>
bool run_all() {
  const double scales[] = {1.0, 0.25, 0.5, 0.0625, 0.3};
  for (int rep = 0; rep < 40; ++rep) {
    const int H = 1 + pick(23), W = 1 + pick(29), ph = 1 + pick(7), pw = 1 + pick(7);
    const int sr = pick(4) - 1;  // -1, 0 (adaptive), 1, 2
    const double scale = scales[pick(5)];
    const int K = 1 + pick(40);
    for (int mode = 0; mode < 6; ++mode) {
      const bool aligned = mode & 1, max_mode = mode >= 2 && mode < 4, ps = mode >= 4;
      if (!check_align<T>(H, W, ph, pw, sr, ps || aligned, max_mode, ps, scale, K)) return false;
    }
    if (!check_pool<T>(H, W, ph, pw, false, scale, K) || !check_pool<T>(H, W, ph, pw, true, scale, K)) return false;
  }
  return true;
}

}  // namespace

int main() {
  if (!run_all<float>() || !run_all<double>()) return 1;
  std::printf("ok %lld\n", static_cast<long long>(checked));
  return 0;
}
