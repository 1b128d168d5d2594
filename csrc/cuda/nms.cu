// CUDA NMS and class-aware (batched) NMS. The suppression rule is detseg::nms_suppresses
// (csrc/include/detseg/nms.h); this file orders, tiles and unwraps.
//
// Pipeline (everything stays on the device; the only device->host syncs are named):
//   1. order  = stable descending sort of the scores (torch.sort: NaN first, ties keep
//      input order). batched_nms then stable-sorts the classes of that order, so each
//      class is one contiguous segment [s, e), itself in priority order.
//   2. mask   = 64-bit suppression words, upper triangle only and only within a segment:
//      bit k of word (i, cb) says sorted box i suppresses sorted box 64 * cb + k.
//   3. unwrap = greedy pass over the words, one CUDA block per segment, the `removed`
//      bitmask in shared memory (global scratch when it does not fit): writes keep flags.
//   4. compaction of the kept indices in priority order: masked_select (one sync for the
//      output length).
//
// Memory of the mask: row i stores the words of column blocks blk(i) .. blk(seg_end(i) - 1),
// so nms holds about N * (N / 64 + 1) / 2 words = N^2 / 16 bytes (625 MB at 100 k boxes,
// half of the full N * ceil(N / 64) matrix), and batched_nms the sum of that over the
// classes. Very large single-class N is accepted as is (no chunking yet); the grid limits
// N to 65535 * 64 boxes.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sort.h>
#include <torch/library.h>

#include <cstdint>
#include <tuple>

#include "checks.h"
#include "cuda/launch.cuh"
#include "cuda/nms.h"
#include "detseg/boxes.h"
#include "detseg/nms.h"

namespace detseg::cuda {
namespace {

constexpr int kBlockBits = 64;
// One block unwraps all of plain nms: give it the most warps to hide load latency. In
// batched_nms many blocks share the GPU, one per class, most of them short.
constexpr int kUnwrapThreadsSingle = 1024;
constexpr int kUnwrapThreadsSegments = 256;
// Above this many words the removed bitmask lives in global scratch instead of dynamic
// shared memory (48 KB per block without opt-in, minus the static arrays).
constexpr int64_t kMaxSharedWords = 4096;

// Word layout of plain nms: one segment [0, n); row i of block b holds nb - b words, so
// rows are packed by a closed form and no device->host sync is needed to size the mask.
struct TriangleLayout {
  static constexpr bool kSingleSegment = true;
  int64_t n, nb;
  __host__ __device__ int64_t offset(int64_t i) const {
    const int64_t b = i >> 6, r = i & 63;
    return 64 * (b * nb - b * (b - 1) / 2) + r * (nb - b);
  }
  __device__ int64_t seg_end(int64_t) const { return n; }
  __device__ bool is_start(int64_t s) const { return s == 0; }
  int64_t total_words() const { return offset(n); }  // offset() of the row after the last
};

// Word layout of batched_nms: per-row offsets and segment ends computed on the device.
struct SegmentLayout {
  static constexpr bool kSingleSegment = false;
  const int64_t* row_off;
  const int64_t* end;
  __device__ int64_t offset(int64_t i) const { return row_off[i]; }
  __device__ int64_t seg_end(int64_t i) const { return end[i]; }
  __device__ bool is_start(int64_t s) const { return s == 0 || end[s - 1] == s; }
};

// Grid: (nb, nb) blocks of 64 threads; block (cb, rb) is the 64 x 64 tile of sorted rows
// 64 rb.. against sorted columns 64 cb.., thread t owns row 64 rb + t and writes its one
// word for column block cb. Tiles below the diagonal exit at once; so do tiles whose
// columns lie beyond the segment of every row in the tile (no class-mate there, and the
// layout stores no word for them). Shared: the 64 column boxes and their areas.
// For j > i in sorted order, "same class" is exactly j < seg_end(i), so the class test
// is a loop bound, and boxes of different classes are never compared.
template <typename T, typename Layout>
__global__ void __launch_bounds__(kBlockBits)
    nms_mask_kernel(const T* __restrict__ boxes, int64_t n, T threshold, Layout layout, uint64_t* __restrict__ mask) {
  const int64_t rb = blockIdx.y, cb = blockIdx.x;
  if (cb < rb) return;
  const int64_t row0 = rb * kBlockBits, col0 = cb * kBlockBits;
  const int rows = static_cast<int>(n - row0 < kBlockBits ? n - row0 : kBlockBits);
  const int cols = static_cast<int>(n - col0 < kBlockBits ? n - col0 : kBlockBits);
  // seg_end is non-decreasing in the row, so the tile's last row reaches furthest.
  if (col0 >= layout.seg_end(row0 + rows - 1)) return;

  __shared__ T col_box[kBlockBits][5];
  const int t = threadIdx.x;
  if (t < cols) {
    const T* p = boxes + 4 * (col0 + t);
    col_box[t][0] = p[0];
    col_box[t][1] = p[1];
    col_box[t][2] = p[2];
    col_box[t][3] = p[3];
    col_box[t][4] = box_area(p[0], p[1], p[2], p[3]);
  }
  __syncthreads();
  if (t >= rows) return;
  const int64_t i = row0 + t;
  const int64_t end = layout.seg_end(i);
  if (col0 >= end) return;  // the row stores no word for this column block
  const T* p = boxes + 4 * i;
  const T x1 = p[0], y1 = p[1], x2 = p[2], y2 = p[3];
  const T area = box_area(x1, y1, x2, y2);
  const int k_end = static_cast<int>(end - col0 < cols ? end - col0 : cols);
  uint64_t word = 0;
  for (int k = cb == rb ? t + 1 : 0; k < k_end; ++k) {
    if (nms_suppresses(x1, y1, x2, y2, area, col_box[k][0], col_box[k][1], col_box[k][2], col_box[k][3],
                       col_box[k][4], threshold)) {
      word |= uint64_t(1) << k;
    }
  }
  mask[layout.offset(i) + (cb - rb)] = word;
}

// Greedy unwrap, one block per segment (grid-stride over candidate segment starts; plain
// nms launches one block). Per 64-row block b of the segment:
//   a. threads 0..63 stage the rows' diagonal words (their own column block) in shared;
//   b. thread 0 resolves the 64 rows in order against removed[b] (a few register ops per
//      row, no global latency in the serial part) and publishes the kept bits;
//   c. all threads OR the kept rows' words into removed[j] for the later blocks j, each
//      thread owning distinct j (no two threads write one word), loads coalesced in j.
// Three __syncthreads per 64 rows instead of one per row. Reads only words the layout
// stores (column blocks blk(i) .. blk(seg_end - 1) of rows of the segment). Writes
// keep[dest[i]] (or keep[i]) once for every row of the segment.
// Shared: diag[64], the kept word, and `removed` (ceil words of the segment) when
// use_shared, else removed = scratch + s (a segment [s, e) needs at most e - s words, so
// segments never overlap in a scratch of n words).
template <typename Layout>
__global__ void __launch_bounds__(kUnwrapThreadsSingle)
    nms_unwrap_kernel(const uint64_t* __restrict__ mask, int64_t n, Layout layout, uint64_t* __restrict__ scratch,
                      bool use_shared, const int64_t* __restrict__ dest, bool* __restrict__ keep) {
  extern __shared__ uint64_t shared_removed[];
  __shared__ uint64_t diag[kBlockBits];
  __shared__ uint64_t kept_shared;
  const int t = threadIdx.x;
  for (int64_t s = blockIdx.x; s < n; s += gridDim.x) {
    if (!layout.is_start(s)) continue;  // block-uniform
    const int64_t e = layout.seg_end(s);
    const int64_t b0 = s >> 6, b1 = (e - 1) >> 6;
    uint64_t* removed = use_shared ? shared_removed : scratch + s;
    for (int64_t w = t; w <= b1 - b0; w += blockDim.x) removed[w] = 0;
    __syncthreads();
    for (int64_t b = b0; b <= b1; ++b) {
      const int64_t base = b * kBlockBits;
      const int64_t lo = s > base ? s : base;
      const int64_t hi = e < base + kBlockBits ? e : base + kBlockBits;
      if (t < kBlockBits) {
        const int64_t i = base + t;
        diag[t] = (i >= lo && i < hi) ? mask[layout.offset(i)] : 0;
      }
      __syncthreads();
      if (t == 0) {
        uint64_t r = removed[b - b0];
        uint64_t kept = 0;
        for (int64_t i = lo; i < hi; ++i) {
          const int bit = static_cast<int>(i - base);
          if (!((r >> bit) & 1)) {
            kept |= uint64_t(1) << bit;
            r |= diag[bit];
          }
        }
        kept_shared = kept;
      }
      __syncthreads();
      const uint64_t kept = kept_shared;
      for (int64_t i = lo + t; i < hi; i += blockDim.x) {
        keep[dest ? dest[i] : i] = (kept >> (i - base)) & 1;
      }
      for (int64_t j = b + 1 + t; j <= b1; j += blockDim.x) {
        // Up to four independent loads in flight per step: this loop is latency-bound
        // (one block does the whole unwrap of a segment).
        uint64_t acc = 0;
        for (uint64_t km = kept; km;) {
          uint64_t w[4] = {0, 0, 0, 0};
#pragma unroll
          for (int u = 0; u < 4; ++u) {
            if (km) {
              const int bit = __ffsll(static_cast<long long>(km)) - 1;
              km &= km - 1;
              w[u] = mask[layout.offset(base + bit) + (j - b)];
            }
          }
          acc |= (w[0] | w[1]) | (w[2] | w[3]);
        }
        removed[j - b0] |= acc;
      }
      __syncthreads();  // removed, diag and kept_shared are reused by the next block
    }
    if (Layout::kSingleSegment) break;
  }
}

// Sorted classes -> per row: segment end (upper bound of its class) and the number of
// mask words it stores. Grid: grid-stride over the n rows; binary search, no shared.
__global__ void segments_kernel(const int64_t* __restrict__ cls, int64_t n, int64_t* __restrict__ seg_end,
                                int64_t* __restrict__ words) {
  grid_stride(n, [&](int64_t i) {
    const int64_t c = cls[i];
    int64_t lo = i + 1, hi = n;
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (cls[mid] <= c) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    seg_end[i] = lo;
    words[i] = ((lo - 1) >> 6) - (i >> 6) + 1;
  });
}

int64_t check_size(const char* op, int64_t n) {
  const int64_t nb = ceil_div(n, kBlockBits);
  TORCH_CHECK_VALUE(nb <= kMaxGridY, "detseg.", op, ": boxes must have at most ", kMaxGridY * kBlockBits,
                    " rows on CUDA, got ", n);
  return nb;
}

// Steps 2 and 3 on boxes already in priority order (compute dtype T, contiguous [n, 4]).
// keep[dest[i]] (keep[i] without dest) receives the flag of sorted row i.
template <typename T, typename Layout>
void suppress(const at::Tensor& sorted_boxes, double iou_threshold, const Layout& layout, int64_t total_words,
              const int64_t* dest, at::Tensor& keep, cudaStream_t stream) {
  constexpr bool segments = !Layout::kSingleSegment;
  const int64_t n = sorted_boxes.size(0);
  const int64_t nb = ceil_div(n, kBlockBits);
  const T thr = std::is_same_v<T, double> ? static_cast<T>(iou_threshold)
                                          : static_cast<T>(nms_threshold_f32(iou_threshold));
  at::Tensor mask = at::empty({total_words}, sorted_boxes.options().dtype(at::kLong));
  auto* mask_ptr = reinterpret_cast<uint64_t*>(mask.mutable_data_ptr<int64_t>());
  nms_mask_kernel<T, Layout><<<dim3(static_cast<unsigned>(nb), static_cast<unsigned>(nb)), kBlockBits, 0, stream>>>(
      sorted_boxes.const_data_ptr<T>(), n, thr, layout, mask_ptr);
  DETSEG_CUDA_LAUNCH_CHECK();

  const bool use_shared = nb <= kMaxSharedWords;
  at::Tensor scratch;
  uint64_t* scratch_ptr = nullptr;
  if (!use_shared) {
    scratch = at::empty({n}, mask.options());
    scratch_ptr = reinterpret_cast<uint64_t*>(scratch.mutable_data_ptr<int64_t>());
  }
  const unsigned grid = segments ? grid_1d(n, 1, 2048) : 1;
  const size_t shared_bytes = use_shared ? static_cast<size_t>(nb) * sizeof(uint64_t) : 0;
  const int threads = segments ? kUnwrapThreadsSegments : kUnwrapThreadsSingle;
  nms_unwrap_kernel<Layout><<<grid, threads, shared_bytes, stream>>>(
      mask_ptr, n, layout, scratch_ptr, use_shared, dest, keep.mutable_data_ptr<bool>());
  DETSEG_CUDA_LAUNCH_CHECK();
}

bool is_double(const at::Tensor& boxes) { return boxes.scalar_type() == at::kDouble; }

at::Tensor sort_desc(const at::Tensor& scores) {
  return std::get<1>(at::sort(scores, /*stable=*/true, /*dim=*/0, /*descending=*/true));
}

at::Tensor nms_cuda(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  checks::nms(boxes, scores, iou_threshold);
  DeviceScope scope(boxes);
  const int64_t n = boxes.size(0);
  if (n == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  const int64_t nb = check_size("nms", n);
  const at::Tensor order = sort_desc(scores);
  const at::Tensor sorted = boxes.to(is_double(boxes) ? at::kDouble : at::kFloat).index_select(0, order).contiguous();
  at::Tensor keep = at::empty({n}, boxes.options().dtype(at::kBool));  // in priority order
  const TriangleLayout layout{n, nb};
  if (is_double(boxes)) {
    suppress<double>(sorted, iou_threshold, layout, layout.total_words(), nullptr, keep, scope.stream);
  } else {
    suppress<float>(sorted, iou_threshold, layout, layout.total_words(), nullptr, keep, scope.stream);
  }
  return order.masked_select(keep);
}

at::Tensor batched_nms_cuda(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                            double iou_threshold) {
  checks::batched_nms(boxes, scores, idxs, iou_threshold);
  DeviceScope scope(boxes);
  const int64_t n = boxes.size(0);
  if (n == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  const at::Tensor by_score = sort_desc(scores);
  const at::Tensor keep = grouped_nms_keep(boxes.index_select(0, by_score),
                                           idxs.index_select(0, by_score).to(at::kLong), iou_threshold, "batched_nms");
  // Sync #2 (output length). by_score is descending score with ties by index ascending.
  return by_score.masked_select(keep);
}

}  // namespace

// Rows in priority order inside each group -> keep flags by row (declared in cuda/nms.h).
at::Tensor grouped_nms_keep(const at::Tensor& boxes, const at::Tensor& groups, double iou_threshold, const char* op) {
  DeviceScope scope(boxes);
  const int64_t n = boxes.size(0);
  at::Tensor keep = at::empty({n}, boxes.options().dtype(at::kBool));  // by row
  if (n == 0) return keep;
  check_size(op, n);
  // A stable sort of the groups keeps each group's rows in priority order.
  const auto [cls, order] = at::sort(groups, /*stable=*/true, /*dim=*/0, /*descending=*/false);

  at::Tensor seg_end = at::empty({n}, cls.options());
  at::Tensor words = at::empty({n}, cls.options());
  segments_kernel<<<grid_1d(n), kThreads, 0, scope.stream>>>(cls.const_data_ptr<int64_t>(), n,
                                                              seg_end.mutable_data_ptr<int64_t>(),
                                                              words.mutable_data_ptr<int64_t>());
  DETSEG_CUDA_LAUNCH_CHECK();
  const at::Tensor words_end = at::cumsum(words, 0);
  const at::Tensor row_off = words_end.sub(words);
  // Device->host sync #1: the mask size, about len^2 / 128 + len words per group of len boxes.
  const int64_t total_words = words_end[n - 1].item<int64_t>();
  const SegmentLayout layout{row_off.const_data_ptr<int64_t>(), seg_end.const_data_ptr<int64_t>()};

  const at::Tensor sorted = boxes.to(is_double(boxes) ? at::kDouble : at::kFloat).index_select(0, order).contiguous();
  if (is_double(boxes)) {
    suppress<double>(sorted, iou_threshold, layout, total_words, order.const_data_ptr<int64_t>(), keep,
                     scope.stream);
  } else {
    suppress<float>(sorted, iou_threshold, layout, total_words, order.const_data_ptr<int64_t>(), keep,
                    scope.stream);
  }
  return keep;
}

}  // namespace detseg::cuda

TORCH_LIBRARY_IMPL(detseg, CUDA, m) {
  m.impl("nms", &detseg::cuda::nms_cuda);
  m.impl("batched_nms", &detseg::cuda::batched_nms_cuda);
}
