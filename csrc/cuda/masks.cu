// CUDA kernels of the mask family: confusion_matrix (per-block shared-memory histograms of the
// bins of detseg/masks.h), mask_iou (masks packed to 64-bit words with a warp ballot, one block
// per pair summing popcounts), masks_to_boxes and paste_masks_in_image (one thread per output
// pixel, the taps of detseg/masks.h). Counts are integers: the atomics add exactly, in any
// order, so every result is deterministic (deterministicAlgorithms() needs nothing more).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <limits>
#include <optional>
#include <type_traits>
#include <string_view>
#include <tuple>

#include "checks.h"
#include "cuda/launch.cuh"
#include "detseg/masks.h"
#include "masks_host.h"

namespace detseg::cuda {
namespace {

// ------------------------------------------------------------------ confusion_matrix

// Bins per block that fit the shared-memory histogram (uint32 each, 48 KiB).
constexpr int64_t kSharedBins = 12 * 1024;

// hist: [B, bins] uint64 (the int64 output viewed unsigned). blockIdx.y = image (per_image) or 0.
template <typename T, bool kShared>
__global__ void confusion_kernel(const T* __restrict__ pred, const T* __restrict__ target, int64_t per, int64_t c,
                                 T ignore, bool has_ignore, unsigned long long* __restrict__ hist) {
  extern __shared__ unsigned int sh[];
  const int64_t bins = confusion_bins(c);
  const int64_t img = blockIdx.y;
  unsigned long long* out = hist + img * bins;
  if (kShared) {
    for (int64_t b = threadIdx.x; b < bins; b += blockDim.x) sh[b] = 0u;
    __syncthreads();
  }
  const T* p = pred + img * per;
  const T* t = target + img * per;
  const int64_t step = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < per; i += step) {
    const uint32_t bin = confusion_bin<uint32_t, T>(p[i], t[i], static_cast<uint32_t>(c), ignore, has_ignore);
    if (kShared) {
      atomicAdd(sh + bin, 1u);
    } else {
      atomicAdd(out + bin, 1ull);
    }
  }
  if (kShared) {
    __syncthreads();
    for (int64_t b = threadIdx.x; b < bins; b += blockDim.x) {
      if (sh[b]) atomicAdd(out + b, static_cast<unsigned long long>(sh[b]));
    }
  }
}

template <typename T>
void launch_confusion(const at::Tensor& pred, const at::Tensor& target, int64_t batch, int64_t c,
                      std::optional<int64_t> ignore, at::Tensor& hist, cudaStream_t stream) {
  const int64_t per = batch > 0 ? pred.numel() / batch : 0;
  if (per == 0) return;
  const bool has_ignore = ignore.has_value() && *ignore >= int64_t(std::numeric_limits<T>::lowest()) &&
                          *ignore <= int64_t(std::numeric_limits<T>::max());
  const T ig = has_ignore ? static_cast<T>(*ignore) : T(0);
  const int64_t bins = confusion_bins(c);
  const dim3 grid(grid_1d(per, kThreads, 1024), static_cast<unsigned>(batch));
  auto* h = reinterpret_cast<unsigned long long*>(hist.mutable_data_ptr<int64_t>());
  if (bins <= kSharedBins) {
    confusion_kernel<T, true><<<grid, kThreads, bins * sizeof(unsigned int), stream>>>(
        pred.const_data_ptr<T>(), target.const_data_ptr<T>(), per, c, ig, has_ignore, h);
  } else {
    confusion_kernel<T, false><<<grid, kThreads, 0, stream>>>(pred.const_data_ptr<T>(), target.const_data_ptr<T>(),
                                                             per, c, ig, has_ignore, h);
  }
  DETSEG_CUDA_LAUNCH_CHECK();
}

std::tuple<at::Tensor, at::Tensor> confusion_matrix_cuda(const at::Tensor& pred_in, const at::Tensor& target_in,
                                                         int64_t num_classes, std::optional<int64_t> ignore_index,
                                                         bool per_image, c10::string_view invalid) {
  checks::confusion_matrix(pred_in, target_in, num_classes, per_image, std::string_view(invalid.data(), invalid.size()));
  DeviceScope scope(pred_in);
  at::ScalarType st = pred_in.scalar_type() == at::kBool ? at::kByte : pred_in.scalar_type();
  const at::ScalarType st2 = target_in.scalar_type() == at::kBool ? at::kByte : target_in.scalar_type();
  if (st2 != st) st = c10::promoteTypes(st, st2);
  const at::Tensor pred = pred_in.to(st).contiguous();
  const at::Tensor target = target_in.to(st).contiguous();
  TORCH_CHECK_VALUE(!per_image || pred.size(0) <= kMaxGridY, "detseg.confusion_matrix: per_image supports at most ",
                    kMaxGridY, " images per call on CUDA, got ", pred.size(0));
  const int64_t c = num_classes, bins = confusion_bins(c);
  const int64_t batch = per_image ? pred.size(0) : 1;
  at::Tensor hist = at::zeros({batch, bins}, pred.options().dtype(at::kLong));
  AT_DISPATCH_SWITCH(st, "confusion_matrix",
      AT_DISPATCH_CASE(at::kByte, [&] { launch_confusion<uint8_t>(pred, target, batch, c, ignore_index, hist, scope.stream); })
      AT_DISPATCH_CASE(at::kChar, [&] { launch_confusion<int8_t>(pred, target, batch, c, ignore_index, hist, scope.stream); })
      AT_DISPATCH_CASE(at::kShort, [&] { launch_confusion<int16_t>(pred, target, batch, c, ignore_index, hist, scope.stream); })
      AT_DISPATCH_CASE(at::kInt, [&] { launch_confusion<int32_t>(pred, target, batch, c, ignore_index, hist, scope.stream); })
      AT_DISPATCH_CASE(at::kLong, [&] { launch_confusion<int64_t>(pred, target, batch, c, ignore_index, hist, scope.stream); }));
  at::Tensor invalid_count = hist.select(1, confusion_invalid_bin(c)).clone();
  if (invalid == "error" && invalid_count.sum().item<int64_t>() > 0) {
    // The error path only: find the first offending pixel on the host, for the message.
    const at::Tensor p = pred.reshape(-1).to(at::kCPU).to(at::kLong), t = target.reshape(-1).to(at::kCPU).to(at::kLong);
    const int64_t* pp = p.const_data_ptr<int64_t>();
    const int64_t* tp = t.const_data_ptr<int64_t>();
    for (int64_t i = 0; i < p.numel(); ++i) {
      if (ignore_index.has_value() && tp[i] == *ignore_index) continue;
      if (pp[i] < 0 || pp[i] >= c || tp[i] < 0 || tp[i] >= c) checks::confusion_invalid_error(i, pp[i], tp[i], c);
    }
  }
  at::Tensor matrix = hist.narrow(1, 0, c * c).reshape({batch, c, c});
  if (!per_image) {
    matrix = matrix.squeeze(0);
    invalid_count = invalid_count.squeeze(0);
  }
  return {matrix.contiguous(), invalid_count};
}

// ------------------------------------------------------------------ mask_iou

// words [n, h, ww]: one warp packs 32 consecutive pixels of a row per ballot; two ballots make
// a 64-bit word. area[n] (int64) gets the popcounts; or_bytes[n] flags a byte > 1.
__global__ void pack_kernel(const uint8_t* __restrict__ masks, int64_t n, int64_t h, int64_t w, int64_t ww,
                            unsigned long long* __restrict__ words, unsigned long long* __restrict__ area,
                            int* __restrict__ non_binary) {
  const int64_t total_words = n * h * ww;
  const int lane = threadIdx.x & 31;
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * blockDim.x / 32;
  for (int64_t wi = warp; wi < total_words; wi += warps) {
    const int64_t j = wi % ww, row = wi / ww;  // row = mask * h + y
    const uint8_t* src = masks + row * w;
    unsigned long long word = 0;
    for (int half = 0; half < 2; ++half) {
      const int64_t x = 64 * j + 32 * half + lane;
      const uint8_t v = x < w ? src[x] : uint8_t(0);
      if (v > 1) atomicOr(non_binary, 1);
      word |= static_cast<unsigned long long>(__ballot_sync(0xffffffffu, v != 0)) << (32 * half);
    }
    if (lane == 0) {
      words[wi] = word;
      if (word) atomicAdd(area + row / h, static_cast<unsigned long long>(__popcll(word)));
    }
  }
}

// One block per (i, j) pair: the sum of popcount(a & b) over the masks' words.
__global__ void pair_kernel(const unsigned long long* __restrict__ w1, const unsigned long long* __restrict__ w2,
                            const unsigned long long* __restrict__ area1, const unsigned long long* __restrict__ area2,
                            const bool* __restrict__ crowd, int64_t n, int64_t m, int64_t words,
                            float* __restrict__ out) {
  __shared__ unsigned long long partial[kThreads];
  for (int64_t pair = blockIdx.x; pair < n * m; pair += gridDim.x) {
    const int64_t i = pair / m, j = pair % m;
    const unsigned long long* a = w1 + i * words;
    const unsigned long long* b = w2 + j * words;
    unsigned long long s = 0;
    for (int64_t k = threadIdx.x; k < words; k += blockDim.x) s += __popcll(a[k] & b[k]);
    partial[threadIdx.x] = s;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
      if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
      __syncthreads();
    }
    if (threadIdx.x == 0) {
      out[pair] = static_cast<float>(mask_pair_iou(static_cast<int64_t>(partial[0]), static_cast<int64_t>(area1[i]),
                                                   static_cast<int64_t>(area2[j]), crowd != nullptr && crowd[j]));
    }
    __syncthreads();
  }
}

at::Tensor mask_iou_cuda(const at::Tensor& masks1, const at::Tensor& masks2, const std::optional<at::Tensor>& iscrowd) {
  checks::mask_iou(masks1, masks2, iscrowd);
  DeviceScope scope(masks1);
  const int64_t n = masks1.size(0), m = masks2.size(0), h = masks1.size(1), w = masks1.size(2);
  at::Tensor out = at::empty({n, m}, masks1.options().dtype(at::kFloat));
  if (n == 0 || m == 0) return out;
  const int64_t ww = ceil_div(w, 64);
  auto pack = [&](const at::Tensor& masks, const char* arg) {
    const at::Tensor bytes = masks.scalar_type() == at::kBool ? masks.contiguous().view(at::kByte) : masks.contiguous();
    const int64_t k = bytes.size(0);
    at::Tensor words = at::empty({k, h * ww}, bytes.options().dtype(at::kLong));
    at::Tensor area = at::zeros({k}, bytes.options().dtype(at::kLong));
    at::Tensor flag = at::zeros({1}, bytes.options().dtype(at::kInt));
    if (h * ww > 0) {
      pack_kernel<<<grid_1d(k * h * ww * 32), kThreads, 0, scope.stream>>>(
          bytes.const_data_ptr<uint8_t>(), k, h, w, ww,
          reinterpret_cast<unsigned long long*>(words.mutable_data_ptr<int64_t>()),
          reinterpret_cast<unsigned long long*>(area.mutable_data_ptr<int64_t>()), flag.mutable_data_ptr<int>());
      DETSEG_CUDA_LAUNCH_CHECK();
    }
    if (flag.item<int>() != 0) {
      const at::Tensor bad = bytes.masked_select(bytes.gt(1));
      checks::non_binary_error("mask_iou", arg, bad.select(0, 0).item<int64_t>());
    }
    return std::make_pair(words, area);
  };
  auto [w1, a1] = pack(masks1, "masks1");
  auto [w2, a2] = pack(masks2, "masks2");
  const at::Tensor crowd = iscrowd.has_value() ? iscrowd->contiguous() : at::Tensor();
  pair_kernel<<<grid_1d(n * m, 1), kThreads, 0, scope.stream>>>(
      reinterpret_cast<const unsigned long long*>(w1.const_data_ptr<int64_t>()),
      reinterpret_cast<const unsigned long long*>(w2.const_data_ptr<int64_t>()),
      reinterpret_cast<const unsigned long long*>(a1.const_data_ptr<int64_t>()),
      reinterpret_cast<const unsigned long long*>(a2.const_data_ptr<int64_t>()),
      crowd.defined() ? crowd.const_data_ptr<bool>() : nullptr, n, m, h * ww, out.mutable_data_ptr<float>());
  DETSEG_CUDA_LAUNCH_CHECK();
  return out;
}

// ------------------------------------------------------------------ masks_to_boxes

// box[n] as int (x0, y0, -x1, -y1) minima, initialised to (w, h, 1, 1): atomicMin only.
template <typename T>
__global__ void bounds_kernel(const T* __restrict__ masks, int64_t n, int64_t h, int64_t w, int* __restrict__ box) {
  grid_stride(n * h * w, [&](int64_t i) {
    if (static_cast<at::opmath_type<T>>(masks[i]) != at::opmath_type<T>(0)) {
      const int64_t k = i / (h * w), y = (i / w) % h, x = i % w;
      atomicMin(box + 4 * k, static_cast<int>(x));
      atomicMin(box + 4 * k + 1, static_cast<int>(y));
      atomicMin(box + 4 * k + 2, -static_cast<int>(x));
      atomicMin(box + 4 * k + 3, -static_cast<int>(y));
    }
  });
}

__global__ void boxes_out_kernel(const int* __restrict__ box, int64_t n, float* __restrict__ out) {
  grid_stride(n, [&](int64_t k) {
    const int* b = box + 4 * k;
    const bool empty = b[2] == 1;
    out[4 * k] = empty ? 0.f : static_cast<float>(b[0]);
    out[4 * k + 1] = empty ? 0.f : static_cast<float>(b[1]);
    out[4 * k + 2] = empty ? 0.f : static_cast<float>(-b[2]);
    out[4 * k + 3] = empty ? 0.f : static_cast<float>(-b[3]);
  });
}

at::Tensor masks_to_boxes_cuda(const at::Tensor& masks_in) {
  checks::masks_to_boxes(masks_in);
  DeviceScope scope(masks_in);
  const int64_t n = masks_in.size(0), h = masks_in.size(1), w = masks_in.size(2);
  at::Tensor out = at::zeros({n, 4}, masks_in.options().dtype(at::kFloat));
  if (n == 0 || h == 0 || w == 0) return out;
  TORCH_CHECK_VALUE(h < (int64_t(1) << 30) && w < (int64_t(1) << 30), "detseg.masks_to_boxes: masks height and "
                    "width must be below 2^30 on CUDA, got ", masks_in.sizes());
  const at::Tensor masks = masks_in.contiguous();
  at::Tensor box = at::empty({n, 4}, masks.options().dtype(at::kInt));
  box.select(1, 0).fill_(static_cast<int>(w));
  box.select(1, 1).fill_(static_cast<int>(h));
  box.select(1, 2).fill_(1);
  box.select(1, 3).fill_(1);
  AT_DISPATCH_ALL_TYPES_AND3(at::kBool, at::kHalf, at::kBFloat16, masks.scalar_type(), "masks_to_boxes", [&] {
    bounds_kernel<scalar_t><<<grid_1d(n * h * w), kThreads, 0, scope.stream>>>(masks.const_data_ptr<scalar_t>(), n, h,
                                                                            w, box.mutable_data_ptr<int>());
  });
  DETSEG_CUDA_LAUNCH_CHECK();
  boxes_out_kernel<<<grid_1d(n), kThreads, 0, scope.stream>>>(box.const_data_ptr<int>(), n,
                                                              out.mutable_data_ptr<float>());
  DETSEG_CUDA_LAUNCH_CHECK();
  return out;
}

// ------------------------------------------------------------------ paste_masks_in_image

template <typename T>
__device__ T masked_tap(const T* row, const AxisTap<T>& t) {
  return (t.i0 >= 0 ? t.l0 * row[t.i0] : T(0)) + (t.i1 >= 0 ? t.l1 * row[t.i1] : T(0));
}

// One thread per output pixel (mask, y, x); the same taps and order as the CPU kernel.
template <typename T, typename O>
__global__ void paste_kernel(const T* __restrict__ masks, const T* __restrict__ boxes, int64_t n, int64_t mh,
                             int64_t mw, int64_t height, int64_t width, int64_t pad, bool torchvision, T thr,
                             O* __restrict__ out) {
  const double scale = static_cast<double>(mw + 2 * pad) / static_cast<double>(mw);
  grid_stride(n * height * width, [&](int64_t idx) {
    const int64_t x = idx % width, y = (idx / width) % height, k = idx / (width * height);
    const T* mask = masks + k * mh * mw;
    const T* box = boxes + 4 * k;
    T v = T(0);
    if (torchvision) {
      int64_t b[4];
      torchvision_paste_box<T>(box, scale, b);
      if (x >= b[0] && x <= b[2] && y >= b[1] && y <= b[3]) {
        AxisTap<T> tx = resize_tap<T>(x - b[0], mw + 2 * pad, b[2] - b[0] + 1 > 1 ? b[2] - b[0] + 1 : 1);
        AxisTap<T> ty = resize_tap<T>(y - b[1], mh + 2 * pad, b[3] - b[1] + 1 > 1 ? b[3] - b[1] + 1 : 1);
        tx.i0 -= pad, tx.i1 -= pad, ty.i0 -= pad, ty.i1 -= pad;
        if (tx.i0 < 0 || tx.i0 >= mw) tx.i0 = -1;
        if (tx.i1 < 0 || tx.i1 >= mw) tx.i1 = -1;
        if (ty.i0 < 0 || ty.i0 >= mh) ty.i0 = -1;
        if (ty.i1 < 0 || ty.i1 >= mh) ty.i1 = -1;
        v = (ty.i0 >= 0 ? ty.l0 * masked_tap(mask + ty.i0 * mw, tx) : T(0)) +
            (ty.i1 >= 0 ? ty.l1 * masked_tap(mask + ty.i1 * mw, tx) : T(0));
      }
    } else {
      const AxisTap<T> tx = grid_sample_tap<T>(x, box[0], box[2], mw);
      const AxisTap<T> ty = grid_sample_tap<T>(y, box[1], box[3], mh);
      if (ty.i0 >= 0 && tx.i0 >= 0) v += mask[ty.i0 * mw + tx.i0] * (tx.l0 * ty.l0);
      if (ty.i0 >= 0 && tx.i1 >= 0) v += mask[ty.i0 * mw + tx.i1] * (tx.l1 * ty.l0);
      if (ty.i1 >= 0 && tx.i0 >= 0) v += mask[ty.i1 * mw + tx.i0] * (tx.l0 * ty.l1);
      if (ty.i1 >= 0 && tx.i1 >= 0) v += mask[ty.i1 * mw + tx.i1] * (tx.l1 * ty.l1);
    }
    if constexpr (std::is_same_v<O, bool>) {
      out[idx] = v >= thr;
    } else {
      out[idx] = v;
    }
  });
}

at::Tensor paste_masks_cuda(const at::Tensor& masks, const at::Tensor& boxes, int64_t height, int64_t width,
                            int64_t padding, c10::string_view convention, std::optional<double> threshold) {
  const PasteMasksArgs a = paste_masks_args(masks, boxes, height, width, padding,
                                            std::string_view(convention.data(), convention.size()), threshold);
  DeviceScope scope(masks);
  const at::Tensor &m = a.m, &b = a.b;
  const int64_t n = a.n;
  at::Tensor out = at::empty({n, height, width}, m.options().dtype(a.kernel_dtype()));
  const int64_t total = n * height * width;
  if (total == 0) return a.finish(out);
  const bool tv = a.conv == checks::PasteConvention::kTorchvision;
  AT_DISPATCH_FLOATING_TYPES(a.st, "paste_masks_in_image", [&] {
    const scalar_t thr = threshold.has_value() ? static_cast<scalar_t>(*threshold) : scalar_t(0);
    if (threshold.has_value()) {
      paste_kernel<scalar_t, bool><<<grid_1d(total), kThreads, 0, scope.stream>>>(
          m.const_data_ptr<scalar_t>(), b.const_data_ptr<scalar_t>(), n, m.size(1), m.size(2), height, width, padding,
          tv, thr, out.mutable_data_ptr<bool>());
    } else {
      paste_kernel<scalar_t, scalar_t><<<grid_1d(total), kThreads, 0, scope.stream>>>(
          m.const_data_ptr<scalar_t>(), b.const_data_ptr<scalar_t>(), n, m.size(1), m.size(2), height, width, padding,
          tv, thr, out.mutable_data_ptr<scalar_t>());
    }
  });
  DETSEG_CUDA_LAUNCH_CHECK();
  return a.finish(out);
}

}  // namespace

TORCH_LIBRARY_IMPL(detseg, CUDA, m) {
  m.impl("confusion_matrix", &confusion_matrix_cuda);
  m.impl("mask_iou", &mask_iou_cuda);
  m.impl("masks_to_boxes", &masks_to_boxes_cuda);
  m.impl("paste_masks_in_image", &paste_masks_cuda);
}

}  // namespace detseg::cuda
