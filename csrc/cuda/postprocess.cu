// CUDA kernels of the NMS variants soft_nms, diou_nms and matrix_nms (schemas in csrc/ops.cpp; CPU
// kernels in csrc/cpu/nms_variants.cpp). The pair IoU is detseg::pair_iou<kIoU, kMatrix>
// (csrc/include/detseg/boxes.h: the same operations as detseg::nms_suppresses); exp is the
// device's (::exp via detseg::dexp), so gaussian decays may differ from the CPU kernel's in the
// last bits. No atomics: every output element has one writer, so results are deterministic.
// multiclass_nms has its own file, csrc/cuda/multiclass_nms.cu.
#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/repeat_interleave.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/unique_consecutive.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>
#include <tuple>
#include <type_traits>

#include "checks.h"
#include "cuda/launch.cuh"
#include "detseg/box_coder.h"
#include "detseg/boxes.h"
#include "detseg/nms.h"

namespace detseg::cuda {
namespace {

template <typename T>
__device__ __forceinline__ Box<T> box_at(const T* b, int64_t i) {
  return Box<T>{b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]};
}

// IoU with the NaN of NaN coordinates read as no overlap (the CPU kernels' rule).
template <typename T>
__device__ __forceinline__ T overlap(const Box<T>& a, const Box<T>& b) {
  const T v = pair_iou<IouKind::kIoU, IouForm::kMatrix>(a, b, T(0));
  return v != v ? T(0) : v;
}

// Boxes, scores and categories in priority order (stable descending score, then stably by
// category, so each category is one run in its own priority order), with the input index.
struct Sorted {
  at::Tensor boxes, scores, labels, index;
};

Sorted sort_problem(const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& idxs,
                    at::ScalarType dt) {
  at::Tensor s = scores.to(dt);
  at::Tensor order = std::get<1>(at::sort(s, /*stable=*/true, /*dim=*/0, /*descending=*/true));
  at::Tensor labels;
  if (idxs) {
    at::Tensor lab = idxs->to(at::kLong).index_select(0, order);
    const auto [sorted_lab, perm] = at::sort(lab, /*stable=*/true, /*dim=*/0, /*descending=*/false);
    order = order.index_select(0, perm);
    labels = sorted_lab;
  } else {
    labels = at::zeros({boxes.size(0)}, boxes.options().dtype(at::kLong));
  }
  return Sorted{boxes.to(dt).index_select(0, order).contiguous(), s.index_select(0, order).contiguous(),
                labels.contiguous(), order};
}

// Category runs of the sorted labels: (seg Tensor[G + 1] of run starts and the end, counts
// Tensor[G]); one device->host sync for G.
std::tuple<at::Tensor, at::Tensor> category_runs(const at::Tensor& labels) {
  const auto [values, inverse, counts] = at::unique_consecutive(labels, false, true);
  at::Tensor seg = at::zeros({counts.size(0) + 1}, counts.options());
  seg.narrow(0, 1, counts.size(0)).copy_(counts.cumsum(0));
  return {seg, counts};
}

// ------------------------------------------------------------------ matrix_nms

// comp[j] = max(0, IoU(i, j) for i < j of j's category).
template <typename T>
__global__ void matrix_comp_kernel(const T* __restrict__ b, const int64_t* __restrict__ lab, int64_t n,
                                   T* __restrict__ comp) {
  grid_stride(n, [&](int64_t j) {
    const Box<T> bj = box_at(b, j);
    T m = T(0);
    for (int64_t i = j - 1; i >= 0 && lab[i] == lab[j]; --i) {
      const T v = overlap(box_at(b, i), bj);
      m = v > m ? v : m;
    }
    comp[j] = m;
  });
}

// out[index[j]] = score[j] * min(1 for the first of a category, f(IoU_ij) / f(comp_i) for i < j),
// NaN propagating (as torch.min).
template <typename T>
__global__ void matrix_decay_kernel(const T* __restrict__ b, const T* __restrict__ s, const int64_t* __restrict__ lab,
                                    const int64_t* __restrict__ index, const T* __restrict__ comp, int64_t n,
                                    bool gaussian, T nsig, T* __restrict__ out) {
  grid_stride(n, [&](int64_t j) {
    const Box<T> bj = box_at(b, j);
    const bool first = j == 0 || lab[j - 1] != lab[j];
    T mn = first ? T(1) : T(INFINITY);
    for (int64_t i = j - 1; i >= 0 && lab[i] == lab[j]; --i) {
      const T v = overlap(box_at(b, i), bj);
      const T ci = comp[i];
      const T f = gaussian ? (v == T(0) ? T(1) : dexp(nsig * (v * v))) : T(1) - v;
      const T fc = gaussian ? dexp(nsig * (ci * ci)) : T(1) - ci;
      const T r = f / fc;
      mn = (mn != mn) ? mn : ((r != r || r < mn) ? r : mn);
    }
    out[index[j]] = s[j] * mn;
  });
}

at::Tensor matrix_nms_cuda(const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& idxs,
                           c10::string_view kernel, double sigma) {
  const bool gaussian = checks::matrix_nms(boxes, scores, idxs, std::string_view(kernel.data(), kernel.size()), sigma);
  const at::ScalarType dt = boxes.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const int64_t n = boxes.size(0);
  at::Tensor out = at::empty({n}, boxes.options().dtype(dt));
  if (n == 0) return out;
  DeviceScope scope(boxes);
  const Sorted p = sort_problem(boxes, scores, idxs, dt);
  at::Tensor comp = at::empty({n}, boxes.options().dtype(dt));
  auto launch = [&](auto zero) {
    using T = decltype(zero);
    matrix_comp_kernel<T><<<grid_1d(n), kThreads, 0, scope.stream>>>(
        p.boxes.data_ptr<T>(), p.labels.data_ptr<int64_t>(), n, comp.data_ptr<T>());
    DETSEG_CUDA_LAUNCH_CHECK();
    matrix_decay_kernel<T><<<grid_1d(n), kThreads, 0, scope.stream>>>(
        p.boxes.data_ptr<T>(), p.scores.data_ptr<T>(), p.labels.data_ptr<int64_t>(), p.index.data_ptr<int64_t>(),
        comp.data_ptr<T>(), n, gaussian, static_cast<T>(-sigma), out.data_ptr<T>());
    DETSEG_CUDA_LAUNCH_CHECK();
  };
  if (dt == at::kDouble) {
    launch(0.0);
  } else {
    launch(0.0f);
  }
  return out;
}

// ------------------------------------------------------------------ soft_nms

constexpr int kSoftThreads = 256;

// ranks_before of the CPU kernel: NaN first, larger score, then lower input index.
template <typename T>
__device__ __forceinline__ bool ranks_before(T sa, int64_t ia, T sb, int64_t ib) {
  const bool na = sa != sa, nb = sb != sb;
  if (na || nb) return na && (!nb || ia < ib);
  return sa > sb || (sa == sb && ia < ib);
}

// One block per category run [seg[g], seg[g + 1]) of the sorted problem: the greedy picks
// (block-wide arg-max), each followed by a parallel decay of the live boxes. `cur` holds the
// live scores (scratch), `live` 1 / 0. Picks go to (keep_index, keep_score)[start + k] and
// their count to count[g].
template <typename T>
__global__ void soft_nms_kernel(const T* __restrict__ b, const int64_t* __restrict__ index,
                                const int64_t* __restrict__ seg, T* __restrict__ cur, uint8_t* __restrict__ live,
                                double thr, T sigma, double min_score, bool gaussian, bool opencv,
                                int64_t* __restrict__ keep_index, T* __restrict__ keep_score,
                                int64_t* __restrict__ count) {
  const int64_t g = blockIdx.x;
  const int64_t start = seg[g], end = seg[g + 1];
  __shared__ T best_s[kSoftThreads];
  __shared__ int64_t best_i[kSoftThreads];
  __shared__ int64_t best_p[kSoftThreads];
  __shared__ int64_t picked;
  __shared__ bool stop;
  for (int64_t j = start + threadIdx.x; j < end; j += blockDim.x) {
    const T sc = cur[j];
    live[j] = sc == sc && (!opencv || static_cast<double>(sc) > min_score);
  }
  if (threadIdx.x == 0) picked = 0;
  __syncthreads();
  bool first = true;
  while (true) {
    T ms = T(0);
    int64_t mi = -1, mp = -1;
    for (int64_t j = start + threadIdx.x; j < end; j += blockDim.x) {
      if (live[j] && (mp < 0 || ranks_before(cur[j], index[j], ms, mi))) {
        ms = cur[j];
        mi = index[j];
        mp = j;
      }
    }
    best_s[threadIdx.x] = ms;
    best_i[threadIdx.x] = mi;
    best_p[threadIdx.x] = mp;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w >>= 1) {
      if (threadIdx.x < w) {
        const int o = threadIdx.x + w;
        if (best_p[o] >= 0 && (best_p[threadIdx.x] < 0 ||
                               ranks_before(best_s[o], best_i[o], best_s[threadIdx.x], best_i[threadIdx.x]))) {
          best_s[threadIdx.x] = best_s[o];
          best_i[threadIdx.x] = best_i[o];
          best_p[threadIdx.x] = best_p[o];
        }
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) {
      const int64_t p = best_p[0];
      stop = p < 0 || (opencv && static_cast<double>(best_s[0]) < min_score);
      if (!stop) {
        keep_index[start + picked] = best_i[0];
        keep_score[start + picked] = best_s[0];
        ++picked;
        live[p] = 0;
      }
    }
    __syncthreads();
    if (stop) break;
    const int64_t p = best_p[0];
    const Box<T> bp = box_at(b, p);
    for (int64_t j = start + threadIdx.x; j < end; j += blockDim.x) {
      if (!live[j]) continue;
      if (!opencv && first && static_cast<double>(cur[j]) < min_score) {
        live[j] = 0;  // mmcv: undecayed boxes under min_score go after the first pick
        continue;
      }
      const T v = overlap(bp, box_at(b, j));
      if (!(v > T(0))) continue;  // weight exactly 1
      T w;
      if (gaussian) {
        w = dexp(-(v * v) / sigma);
      } else {
        const double dv = static_cast<double>(v);
        w = (opencv ? dv > thr : dv >= thr) ? T(1) - v : T(1);
      }
      cur[j] = cur[j] * w;
      if (!opencv && static_cast<double>(cur[j]) < min_score) live[j] = 0;
    }
    first = false;
    __syncthreads();
  }
  if (threadIdx.x == 0) count[g] = picked;
}

std::tuple<at::Tensor, at::Tensor> soft_nms_cuda(const at::Tensor& boxes, const at::Tensor& scores,
                                                 const std::optional<at::Tensor>& idxs, double iou_threshold,
                                                 double sigma, double min_score, c10::string_view method,
                                                 c10::string_view convention) {
  const auto [gaussian, opencv] =
      checks::soft_nms(boxes, scores, idxs, iou_threshold, sigma, min_score,
                       std::string_view(method.data(), method.size()),
                       std::string_view(convention.data(), convention.size()));
  const at::ScalarType dt = boxes.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const int64_t n = boxes.size(0);
  if (n == 0) {
    return {at::empty({0}, boxes.options().dtype(at::kLong)), at::empty({0}, boxes.options().dtype(dt))};
  }
  DeviceScope scope(boxes);
  const Sorted p = sort_problem(boxes, scores, idxs, dt);
  const auto [seg, counts] = category_runs(p.labels);
  const int64_t ng = counts.size(0);
  at::Tensor cur = p.scores.clone();
  at::Tensor live = at::empty({n}, boxes.options().dtype(at::kByte));
  at::Tensor keep_index = at::empty({n}, boxes.options().dtype(at::kLong));
  at::Tensor keep_score = at::empty({n}, boxes.options().dtype(dt));
  at::Tensor count = at::empty({ng}, boxes.options().dtype(at::kLong));
  auto launch = [&](auto zero) {
    using T = decltype(zero);
    soft_nms_kernel<T><<<static_cast<unsigned>(ng), kSoftThreads, 0, scope.stream>>>(
        p.boxes.data_ptr<T>(), p.index.data_ptr<int64_t>(), seg.data_ptr<int64_t>(), cur.data_ptr<T>(),
        live.data_ptr<uint8_t>(), iou_threshold, static_cast<T>(sigma), min_score, gaussian, opencv,
        keep_index.data_ptr<int64_t>(), keep_score.data_ptr<T>(), count.data_ptr<int64_t>());
    DETSEG_CUDA_LAUNCH_CHECK();
  };
  if (dt == at::kDouble) {
    launch(0.0);
  } else {
    launch(0.0f);
  }
  // Slots [seg[g], seg[g] + count[g]) hold category g's picks: select them (one sync), then
  // order by (score descending, index ascending) as the CPU kernel.
  at::Tensor slot = at::arange(n, seg.options());
  at::Tensor group = at::repeat_interleave(counts);
  at::Tensor valid = slot.lt(seg.index_select(0, group).add(count.index_select(0, group)));
  at::Tensor ki = keep_index.masked_select(valid);
  at::Tensor ks = keep_score.masked_select(valid);
  at::Tensor by_index = std::get<1>(at::sort(ki, /*stable=*/true, /*dim=*/0, /*descending=*/false));
  ki = ki.index_select(0, by_index);
  ks = ks.index_select(0, by_index);
  at::Tensor by_score = std::get<1>(at::sort(ks, /*stable=*/true, /*dim=*/0, /*descending=*/true));
  return {ki.index_select(0, by_score), ks.index_select(0, by_score)};
}

// ------------------------------------------------------------------ diou_nms

// One block per category run: greedy over the run in priority order; a kept box clears, in
// parallel, every later box whose DIoU with it (detseg::pair_iou<kDIoU, kMatrix>, eps 0)
// exceeds the threshold.
template <typename T>
__global__ void diou_nms_kernel(const T* __restrict__ b, const int64_t* __restrict__ seg, T thr,
                                uint8_t* __restrict__ keep) {
  const int64_t start = seg[blockIdx.x], end = seg[blockIdx.x + 1];
  for (int64_t j = start + threadIdx.x; j < end; j += blockDim.x) keep[j] = 1;
  __syncthreads();
  for (int64_t i = start; i < end; ++i) {
    if (!keep[i]) continue;  // every thread reads the same, settled flag
    const Box<T> bi = box_at(b, i);
    for (int64_t j = i + 1 + threadIdx.x; j < end; j += blockDim.x) {
      if (keep[j] && pair_iou<IouKind::kDIoU, IouForm::kMatrix>(bi, box_at(b, j), T(0)) > thr) keep[j] = 0;
    }
    __syncthreads();
  }
}

at::Tensor diou_nms_cuda(const at::Tensor& boxes, const at::Tensor& scores, const std::optional<at::Tensor>& idxs,
                         double iou_threshold) {
  checks::diou_nms(boxes, scores, idxs, iou_threshold);
  const int64_t n = boxes.size(0);
  if (n == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  const at::ScalarType dt = boxes.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  DeviceScope scope(boxes);
  const Sorted p = sort_problem(boxes, scores, idxs, dt);
  const auto [seg, counts] = category_runs(p.labels);
  at::Tensor keep = at::empty({n}, boxes.options().dtype(at::kByte));
  auto launch = [&](auto zero) {
    using T = decltype(zero);
    const T thr = std::is_same_v<T, double> ? static_cast<T>(iou_threshold)
                                            : static_cast<T>(detseg::nms_threshold_f32(iou_threshold));
    diou_nms_kernel<T><<<static_cast<unsigned>(counts.size(0)), kSoftThreads, 0, scope.stream>>>(
        p.boxes.data_ptr<T>(), seg.data_ptr<int64_t>(), thr, keep.data_ptr<uint8_t>());
    DETSEG_CUDA_LAUNCH_CHECK();
  };
  if (dt == at::kDouble) {
    launch(0.0);
  } else {
    launch(0.0f);
  }
  // Kept input indices by decreasing score, ties by index (the CPU kernel's order).
  at::Tensor ki = p.index.masked_select(keep.to(at::kBool));
  at::Tensor ks = p.scores.masked_select(keep.to(at::kBool));
  at::Tensor by_index = std::get<1>(at::sort(ki, /*stable=*/true, /*dim=*/0, /*descending=*/false));
  ki = ki.index_select(0, by_index);
  ks = ks.index_select(0, by_index);
  return ki.index_select(0, std::get<1>(at::sort(ks, /*stable=*/true, /*dim=*/0, /*descending=*/true)));
}

}  // namespace
}  // namespace detseg::cuda

TORCH_LIBRARY_IMPL(detseg, CUDA, m) {
  m.impl("soft_nms", &detseg::cuda::soft_nms_cuda);
  m.impl("matrix_nms", &detseg::cuda::matrix_nms_cuda);
  m.impl("diou_nms", &detseg::cuda::diou_nms_cuda);
}
