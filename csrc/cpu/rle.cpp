// CPU kernels of the RLE family (pycocotools' mask API, byte for byte). The format and its
// arithmetic are detseg/rle.h. Each mask (or each mask pair) is handled by one thread from
// start to end and outputs are packed in mask order, so results do not depend on the thread
// count. There is no CUDA or Triton twin: run-length coding is a sequential scan per mask.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <vector>

#include "checks.h"
#include "cpu/isa.h"
#include "cpu/rle_runs.h"
#include "cpu/vec/rle_scan_vec.h"
#include "detseg/rle.h"

namespace detseg::cpu {
namespace {

// Runs of a column-major mask t[0, a) into out (capacity a + 1); returns their number, or -1
// when a byte is neither 0 nor 1. The vector scan (cpu/vec/rle_scan_vec.cpp) finds where the
// value changes; the runs are the gaps between those positions, starting with a (possibly
// empty) 0-run and ending at a, as pycocotools' rleEncode.
int64_t scan_runs(const uint8_t* t, int64_t a, uint32_t* out) {
  const int64_t m = DETSEG_ISA_CALL(rle_transitions, t, a, out);
  if (m < 0) return -1;
  uint32_t prev = 0;
  for (int64_t i = 0; i < m; ++i) {
    const uint32_t cur = out[i];
    out[i] = cur - prev;
    prev = cur;
  }
  out[m] = uint32_t(a - prev);
  return m + 1;
}

// Runs of every mask of masks [N, H, W]; f(i, runs, m) consumes mask i's runs. Masks laid out
// column-major (stride(1) == 1, stride(2) == H: a permuted Fortran array, pycocotools' input)
// are scanned in place, others through a transposed copy per thread (cpu/vec/rle_scan_vec.cpp).
template <typename F>
void for_each_mask_runs(const char* op, const at::Tensor& masks_in, F&& f) {
  checks::rle_masks(op, masks_in);
  const int64_t n = masks_in.size(0), h = masks_in.size(1), w = masks_in.size(2), a = h * w;
  at::Tensor masks = masks_in.scalar_type() == at::kBool ? masks_in.view(at::kByte) : masks_in;
  const bool colmajor = a == 0 || (masks.stride(1) == 1 && masks.stride(2) == h);
  if (!colmajor) masks = masks.contiguous();
  const uint8_t* base = masks.data_ptr<uint8_t>();
  const int64_t s0 = masks.stride(0);
  std::atomic<bool> bad{false};
  at::parallel_for(0, n, 1, [&](int64_t i0, int64_t i1) {
    // Thread-local scratch kept between calls (the pool threads persist): a fresh 1 MB buffer
    // per call is mmap'd by malloc and page-faulted in every time. Grown only (zero-filled once);
    // released after the call when over 16 MB.
    thread_local std::vector<uint32_t> runs_keep;
    thread_local std::vector<uint8_t> cols_keep;
    if (runs_keep.size() < size_t(a + 1)) runs_keep.resize(a + 1);
    if (!colmajor && cols_keep.size() < size_t(a)) cols_keep.resize(a);
    uint32_t* runs = runs_keep.data();
    uint8_t* cols = cols_keep.data();
    struct Release {
      ~Release() {
        if (runs_keep.size() * sizeof(uint32_t) > (size_t(16) << 20)) std::vector<uint32_t>().swap(runs_keep);
        if (cols_keep.size() > (size_t(16) << 20)) std::vector<uint8_t>().swap(cols_keep);
      }
    } release;
    for (int64_t i = i0; i < i1; ++i) {
      const uint8_t* src = base + i * s0;
      if (!colmajor) {
        DETSEG_ISA_CALL(rle_transpose, src, h, w, cols);
        src = cols;
      }
      const int64_t m = scan_runs(src, a, runs);
      if (m < 0) {
        bad = true;
        return;
      }
      f(i, runs, m);
    }
  });
  TORCH_CHECK_VALUE(!bad, "detseg.", op, ": masks must be binary (uint8 values 0 or 1), got another value");
}

at::Tensor offsets_from_lengths(const std::vector<int64_t>& len) {
  at::Tensor off = at::empty({int64_t(len.size()) + 1}, at::kLong);
  int64_t* o = off.data_ptr<int64_t>();
  o[0] = 0;
  for (size_t i = 0; i < len.size(); ++i) o[i + 1] = o[i] + len[i];
  return off;
}

// Packs per-mask vectors in mask order into one flat tensor.
template <typename T, typename Out>
at::Tensor pack(const std::vector<std::vector<T>>& parts, const at::Tensor& off, at::ScalarType dtype) {
  const int64_t n = int64_t(parts.size());
  at::Tensor out = at::empty({off.data_ptr<int64_t>()[n]}, dtype);
  Out* o = out.data_ptr<Out>();
  const int64_t* offs = off.data_ptr<int64_t>();
  at::parallel_for(0, n, 64, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) std::copy(parts[i].begin(), parts[i].end(), o + offs[i]);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> rle_encode_cpu(const at::Tensor& masks) {
  std::vector<std::vector<uint32_t>> parts(masks.dim() == 3 ? masks.size(0) : 0);
  for_each_mask_runs("rle_encode", masks, [&](int64_t i, const uint32_t* r, int64_t m) {
    parts[i].assign(r, r + m);
  });
  std::vector<int64_t> len(parts.size());
  for (size_t i = 0; i < parts.size(); ++i) len[i] = int64_t(parts[i].size());
  at::Tensor off = offsets_from_lengths(len);
  return {pack<uint32_t, int64_t>(parts, off, at::kLong), off};
}

std::tuple<at::Tensor, at::Tensor> rle_encode_string_cpu(const at::Tensor& masks) {
  std::vector<std::vector<char>> parts(masks.dim() == 3 ? masks.size(0) : 0);
  for_each_mask_runs("rle_encode_string", masks, [&](int64_t i, const uint32_t* r, int64_t m) {
    parts[i].resize(m * rle::kMaxCharsPerRun);
    parts[i].resize(rle::to_string(r, m, parts[i].data()));
  });
  std::vector<int64_t> len(parts.size());
  for (size_t i = 0; i < parts.size(); ++i) len[i] = int64_t(parts[i].size());
  at::Tensor off = offsets_from_lengths(len);
  return {pack<char, uint8_t>(parts, off, at::kByte), off};
}

std::tuple<at::Tensor, at::Tensor> rle_counts_to_string_cpu(const at::Tensor& counts, const at::Tensor& offsets) {
  const RleBatch b = load_runs("rle_counts_to_string", "", counts, offsets);
  const int64_t n = b.size();
  std::vector<std::vector<char>> parts(n);
  at::parallel_for(0, n, 64, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      parts[i].resize(b.len(i) * rle::kMaxCharsPerRun);
      parts[i].resize(rle::to_string(b.data(i), b.len(i), parts[i].data()));
    }
  });
  std::vector<int64_t> len(n);
  for (int64_t i = 0; i < n; ++i) len[i] = int64_t(parts[i].size());
  at::Tensor off = offsets_from_lengths(len);
  return {pack<char, uint8_t>(parts, off, at::kByte), off};
}

std::tuple<at::Tensor, at::Tensor> rle_string_to_counts_cpu(const at::Tensor& chars, const at::Tensor& offsets) {
  const RleBatch b = load_strings("rle_string_to_counts", chars, offsets);
  at::Tensor counts = at::empty({int64_t(b.runs.size())}, at::kLong);
  std::copy(b.runs.begin(), b.runs.end(), counts.data_ptr<int64_t>());
  at::Tensor off = at::empty({int64_t(b.off.size())}, at::kLong);
  std::copy(b.off.begin(), b.off.end(), off.data_ptr<int64_t>());
  return {counts, off};
}

// -> bool Tensor[N, H, W] with column-major strides per mask (as pycocotools' Fortran
// arrays): runs are written as contiguous memsets.
at::Tensor rle_decode_cpu(const at::Tensor& counts, const at::Tensor& offsets, int64_t height, int64_t width) {
  const char* op = "rle_decode";
  TORCH_CHECK_VALUE(height >= 0 && width >= 0, "detseg.", op, ": height and width must be >= 0, got ", height, ", ",
              width);
  const RleBatch b = load_runs(op, "", counts, offsets);
  const int64_t n = b.size(), a = height * width;
  at::Tensor out = at::empty({n, width, height}, at::kBool);
  uint8_t* o = reinterpret_cast<uint8_t*>(out.data_ptr<bool>());
  std::atomic<int64_t> bad{-1};
  at::parallel_for(0, n, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      uint8_t* dst = o + i * a;
      const uint32_t* r = b.data(i);
      int64_t pos = 0;
      uint8_t v = 0;
      for (int64_t j = 0; j < b.len(i); ++j, v ^= 1) {
        if (pos + int64_t(r[j]) > a) {
          bad = i;
          break;
        }
        std::memset(dst + pos, v, r[j]);
        pos += r[j];
      }
      if (pos < a) std::memset(dst + pos, 0, a - pos);
    }
  });
  TORCH_CHECK_VALUE(bad < 0, "detseg.", op, ": the runs of RLE ", int64_t(bad), " sum past height * width = ", a);
  return out.transpose(1, 2);
}

at::Tensor rle_area_cpu(const at::Tensor& counts, const at::Tensor& offsets) {
  const RleBatch b = load_runs("rle_area", "", counts, offsets);
  at::Tensor out = at::empty({b.size()}, at::kLong);
  int64_t* o = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < b.size(); ++i) o[i] = int64_t(rle::area(b.data(i), b.len(i)));
  return out;
}

std::vector<int64_t> read_sizes(const char* op, const char* arg, const at::Tensor& sizes_t, int64_t n) {
  checks::rle_sizes(op, arg, sizes_t, n);
  const at::Tensor sizes = sizes_t.contiguous();
  std::vector<int64_t> s(sizes.data_ptr<int64_t>(), sizes.data_ptr<int64_t>() + 2 * n);
  for (int64_t i = 0; i < 2 * n; ++i)
    TORCH_CHECK_VALUE(s[i] >= 0 && s[i] < (int64_t(1) << 32), "detseg.", op, ": ", arg,
                "must hold sizes in [0, 2^32), got ", s[i]);
  return s;
}

std::vector<double> bboxes_of(const RleBatch& b, const std::vector<int64_t>& sizes) {
  std::vector<double> bb(4 * b.size());
  for (int64_t i = 0; i < b.size(); ++i)
    rle::to_bbox(b.data(i), b.len(i), uint32_t(sizes[2 * i]), uint32_t(sizes[2 * i + 1]), bb.data() + 4 * i);
  return bb;
}

at::Tensor rle_to_bbox_cpu(const at::Tensor& counts, const at::Tensor& offsets, const at::Tensor& sizes) {
  const RleBatch b = load_runs("rle_to_bbox", "", counts, offsets);
  const std::vector<double> bb = bboxes_of(b, read_sizes("rle_to_bbox", "sizes", sizes, b.size()));
  at::Tensor out = at::empty({b.size(), 4}, at::kDouble);
  std::copy(bb.begin(), bb.end(), out.data_ptr<double>());
  return out;
}

// -> float64 Tensor[D, G] (pycocotools' iou(dt, gt, iscrowd) layout).
at::Tensor rle_iou_cpu(const at::Tensor& dt_counts, const at::Tensor& dt_offsets, const at::Tensor& dt_sizes,
                       const at::Tensor& gt_counts, const at::Tensor& gt_offsets, const at::Tensor& gt_sizes,
                       const at::Tensor& iscrowd_t) {
  const char* op = "rle_iou";
  const RleBatch d = load_runs(op, "dt_", dt_counts, dt_offsets);
  const RleBatch g = load_runs(op, "gt_", gt_counts, gt_offsets);
  const std::vector<int64_t> ds = read_sizes(op, "dt_sizes", dt_sizes, d.size());
  const std::vector<int64_t> gs = read_sizes(op, "gt_sizes", gt_sizes, g.size());
  TORCH_CHECK_VALUE(iscrowd_t.dim() == 1 && iscrowd_t.size(0) == g.size(), "detseg.", op,
              ": iscrowd must be a Tensor[G] with G = ", g.size(), ", got shape ", iscrowd_t.sizes());
  const at::Tensor iscrowd = iscrowd_t.to(at::kBool).contiguous();
  const bool* crowd = iscrowd.data_ptr<bool>();
  const std::vector<double> dbb = bboxes_of(d, ds), gbb = bboxes_of(g, gs);
  const int64_t nd = d.size(), ng = g.size();
  at::Tensor out = at::empty({nd, ng}, at::kDouble);
  double* o = out.data_ptr<double>();
  at::parallel_for(0, nd, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t j = 0; j < ng; ++j)
        o[i * ng + j] = rle::iou(d.data(i), d.len(i), dbb.data() + 4 * i, ds[2 * i], ds[2 * i + 1], g.data(j),
                                 g.len(j), gbb.data() + 4 * j, gs[2 * j], gs[2 * j + 1], crowd[j]);
  });
  return out;
}

}  // namespace
}  // namespace detseg::cpu

TORCH_LIBRARY_IMPL(detseg, CPU, m) {
  m.impl("rle_encode", &detseg::cpu::rle_encode_cpu);
  m.impl("rle_encode_string", &detseg::cpu::rle_encode_string_cpu);
  m.impl("rle_counts_to_string", &detseg::cpu::rle_counts_to_string_cpu);
  m.impl("rle_string_to_counts", &detseg::cpu::rle_string_to_counts_cpu);
  m.impl("rle_decode", &detseg::cpu::rle_decode_cpu);
  m.impl("rle_area", &detseg::cpu::rle_area_cpu);
  m.impl("rle_to_bbox", &detseg::cpu::rle_to_bbox_cpu);
  m.impl("rle_iou", &detseg::cpu::rle_iou_cpu);
}
