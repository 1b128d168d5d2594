// CPU kernels of the box family (NMS lives in nms.cpp): argument checks, dtype handling and
// threading. The math is detseg/boxes.h; the SIMD loop of the IoU matrix is
// cpu/vec/box_iou_vec.cpp. Every output element is computed by one thread from a fixed
// sequence of operations, so results are bitwise identical for any thread count.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <c10/core/DefaultDtype.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string_view>
#include <type_traits>
#include <vector>

#include "checks.h"
#include "cpu/alloc.h"
#include "cpu/isa.h"
#include "cpu/vec/box_iou_vec.h"
#include "detseg/boxes.h"

namespace detseg::cpu {
namespace {

// ---------------------------------------------------------------- helpers

at::ScalarType compute_dtype(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

// Up to this many rows per batch, box_iou_matrix reads boxes2 as xyxy rows and splits them
// into columns in registers, rather than copying boxes2 to columns once. The copy lands in
// freshly faulted memory when boxes2 is large and pays off only over many rows (measured,
// 1 thread, float32 IoU: 1 x 10^6 3.5 -> 0.5 ms, 100 x 20000 1.3 -> 0.8 ms with rows;
// 5000 x 5000 15.4 ms with columns against 17-20 ms with rows).
constexpr int64_t kAosMaxRows = 256;

// Work per parallel_for chunk: large enough to amortise a task, small enough that two
// threads already share a 1000 x 1000 matrix.
constexpr int64_t kGrainPairs = 1 << 15;

int64_t grain_for(int64_t per_item) {
  return std::max<int64_t>(1, kGrainPairs / std::max<int64_t>(1, per_item));
}

template <typename T>
Box<T> load_box(const T* p) {
  return Box<T>{p[0], p[1], p[2], p[3]};
}

template <typename F>
void dispatch_kind(IouKind kind, F&& f) {
  switch (kind) {
    case IouKind::kIoU: return f(std::integral_constant<IouKind, IouKind::kIoU>{});
    case IouKind::kGIoU: return f(std::integral_constant<IouKind, IouKind::kGIoU>{});
    case IouKind::kDIoU: return f(std::integral_constant<IouKind, IouKind::kDIoU>{});
    case IouKind::kCIoU: return f(std::integral_constant<IouKind, IouKind::kCIoU>{});
  }
}

// ---------------------------------------------------------------- box utilities

template <typename T>
void area_loop(const T* p, T* o, int64_t n) {
  // Integers in unsigned arithmetic: wraps like torch's integer ops, without signed-overflow UB.
  using C = std::conditional_t<std::is_integral_v<T>, std::make_unsigned<T>, std::type_identity<T>>::type;
  at::parallel_for(0, n, 1 << 14, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      o[i] = static_cast<T>(box_area<C>(C(p[4 * i]), C(p[4 * i + 1]), C(p[4 * i + 2]), C(p[4 * i + 3])));
  });
}

at::Tensor box_area_cpu(const at::Tensor& boxes) {
  checks::boxes_last4("box_area", "boxes", boxes);
  // torchvision's _upcast: half/bfloat16 -> float32, int8/int16/uint8/bool -> int32.
  const auto st = boxes.scalar_type();
  at::ScalarType dt;
  if (at::isFloatingType(st)) {
    dt = compute_dtype(st);
  } else if (st == at::kInt || st == at::kLong) {
    dt = st;
  } else {
    dt = at::kInt;
  }
  const at::Tensor b = boxes.to(dt).contiguous();
  auto sizes = boxes.sizes().vec();
  sizes.pop_back();
  at::Tensor out = at::empty(sizes, boxes.options().dtype(dt));
  const int64_t n = out.numel();
  if (n == 0) return out;
  AT_DISPATCH_SWITCH(dt, "box_area",
      AT_DISPATCH_CASE_FLOATING_TYPES([&] { area_loop<scalar_t>(b.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), n); })
      AT_DISPATCH_CASE(at::kInt, [&] { area_loop<scalar_t>(b.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), n); })
      AT_DISPATCH_CASE(at::kLong, [&] { area_loop<scalar_t>(b.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), n); }));
  return out;
}

enum class Fmt { kXYXY, kXYWH, kCXCYWH };

Fmt parse_fmt(const char* arg, std::string_view s) {
  std::string low(s);
  for (auto& c : low) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (low == "xyxy") return Fmt::kXYXY;
  if (low == "xywh") return Fmt::kXYWH;
  if (low == "cxcywh") return Fmt::kCXCYWH;
  TORCH_CHECK_VALUE(false, "detseg.box_convert: ", arg, " must be one of 'xyxy', 'xywh', 'cxcywh', got '", s, "'");
}

// Integer wrap-around like torch's integer ops (small types are promoted by C++ and
// truncated back, as torch stores them).
template <typename T>
T wrap_add(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<decltype(+a)>;
    return static_cast<T>(U(a) + U(b));
  } else {
    return a + b;
  }
}
template <typename T>
T wrap_sub(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<decltype(+a)>;
    return static_cast<T>(U(a) - U(b));
  } else {
    return a - b;
  }
}

// Same-dtype conversion, each operation rounded to T as the reference's tensor ops do
// (c10::Half / BFloat16 arithmetic rounds after every operation).
template <typename T>
void convert_same(const T* in, T* o, int64_t n, Fmt fi, Fmt fo) {
  at::parallel_for(0, n, 1 << 13, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const T a = in[4 * i], b = in[4 * i + 1], c = in[4 * i + 2], d = in[4 * i + 3];
      T x1, y1, x2, y2;
      if (fi == Fmt::kXYWH) {
        x1 = a, y1 = b, x2 = wrap_add(a, c), y2 = wrap_add(b, d);
      } else if (fi == Fmt::kCXCYWH) {
        if constexpr (std::is_integral_v<T>) {
          TORCH_INTERNAL_ASSERT(false, "integer cxcywh is converted in floating point");
        } else {
          x1 = a - T(0.5) * c, y1 = b - T(0.5) * d, x2 = a + T(0.5) * c, y2 = b + T(0.5) * d;
        }
      } else {
        x1 = a, y1 = b, x2 = c, y2 = d;
      }
      T* r = o + 4 * i;
      if (fo == Fmt::kXYXY) {
        r[0] = x1, r[1] = y1, r[2] = x2, r[3] = y2;
      } else if (fo == Fmt::kXYWH) {
        r[0] = x1, r[1] = y1, r[2] = wrap_sub(x2, x1), r[3] = wrap_sub(y2, y1);
      } else {
        if constexpr (std::is_integral_v<T>) {
          TORCH_INTERNAL_ASSERT(false, "integer cxcywh is converted in floating point");
        } else {
          r[0] = (x1 + x2) / T(2), r[1] = (y1 + y2) / T(2), r[2] = x2 - x1, r[3] = y2 - y1;
        }
      }
    }
  });
}

// Integer xyxy/xywh -> float cxcywh: sums and sides in the integer type, then the true
// division in the floating dtype, as `(x1 + x2) / 2` and torch.stack's promotion do.
template <typename I, typename F>
void convert_int_to_cxcywh(const I* in, F* o, int64_t n, Fmt fi) {
  at::parallel_for(0, n, 1 << 13, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const I a = in[4 * i], b = in[4 * i + 1], c = in[4 * i + 2], d = in[4 * i + 3];
      I x1 = a, y1 = b, x2 = c, y2 = d;
      if (fi == Fmt::kXYWH) x2 = wrap_add(a, c), y2 = wrap_add(b, d);
      F* r = o + 4 * i;
      r[0] = F(wrap_add(x1, x2)) / F(2);
      r[1] = F(wrap_add(y1, y2)) / F(2);
      r[2] = F(wrap_sub(x2, x1));
      r[3] = F(wrap_sub(y2, y1));
    }
  });
}

at::Tensor box_convert_cpu(const at::Tensor& boxes, c10::string_view in_fmt, c10::string_view out_fmt) {
  checks::boxes_last4("box_convert", "boxes", boxes);
  const Fmt fi = parse_fmt("in_fmt", in_fmt);
  const Fmt fo = parse_fmt("out_fmt", out_fmt);
  if (fi == fo) return boxes.clone();
  at::Tensor b = boxes;
  const bool integral = !at::isFloatingType(boxes.scalar_type());
  const auto fdt = c10::typeMetaToScalarType(c10::get_default_dtype());
  if (integral && fi == Fmt::kCXCYWH) b = b.to(fdt);  // `a - 0.5 * c` is floating already
  b = b.contiguous();
  const int64_t n = b.numel() / 4;
  if (integral && fo == Fmt::kCXCYWH && fi != Fmt::kCXCYWH) {
    at::Tensor out = at::empty(boxes.sizes(), boxes.options().dtype(fdt));
    if (n == 0) return out;
    AT_DISPATCH_INTEGRAL_TYPES(b.scalar_type(), "box_convert", [&] {
      using I = scalar_t;
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, fdt, "box_convert", [&] {
        convert_int_to_cxcywh<I, scalar_t>(b.const_data_ptr<I>(), out.mutable_data_ptr<scalar_t>(), n, fi);
      });
    });
    return out;
  }
  at::Tensor out = at::empty(b.sizes(), b.options());
  if (n == 0) return out;
  AT_DISPATCH_ALL_TYPES_AND2(at::kHalf, at::kBFloat16, b.scalar_type(), "box_convert", [&] {
    convert_same<scalar_t>(b.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), n, fi, fo);
  });
  return out;
}

at::Tensor clip_boxes_to_image_cpu(const at::Tensor& boxes, int64_t height, int64_t width) {
  checks::boxes_last4("clip_boxes_to_image", "boxes", boxes);
  const at::Tensor b = boxes.contiguous();
  at::Tensor out = at::empty(b.sizes(), b.options());
  const int64_t n = b.numel() / 4;
  if (n == 0) return out;
  AT_DISPATCH_ALL_TYPES_AND2(at::kHalf, at::kBFloat16, b.scalar_type(), "clip_boxes_to_image", [&] {
    // torch.clamp: bounds in the op-math type (float for half), NaN passes, and
    // min(max(x, 0), hi) gives hi when hi < 0. Integer bounds must fit the dtype, as in torch.
    using M = at::opmath_type<scalar_t>;
    const M hx = c10::checked_convert<M, int64_t>(width, c10::toString(b.scalar_type()));
    const M hy = c10::checked_convert<M, int64_t>(height, c10::toString(b.scalar_type()));
    const scalar_t* p = b.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, n, 1 << 13, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        for (int k = 0; k < 4; ++k) {
          const M x = static_cast<M>(p[4 * i + k]);
          const M hi = (k & 1) ? hy : hx;
          M r = x;
          if (!(x != x)) r = std::min(std::max(x, M(0)), hi);
          o[4 * i + k] = static_cast<scalar_t>(r);
        }
      }
    });
  });
  return out;
}

at::Tensor remove_small_boxes_cpu(const at::Tensor& boxes, double min_size) {
  checks::boxes_n4("remove_small_boxes", "boxes", boxes);
  const at::Tensor b = boxes.contiguous();
  const int64_t n = b.size(0);
  std::vector<int64_t> keep;
  AT_DISPATCH_ALL_TYPES_AND2(at::kHalf, at::kBFloat16, b.scalar_type(), "remove_small_boxes", [&] {
    // `w >= min_size`: the side in the box dtype, min_size cast to that dtype (to the
    // default float dtype, side included, for integer boxes), as tensor-scalar comparisons do.
    using C = std::conditional_t<std::is_integral_v<scalar_t>, float, scalar_t>;
    const C ms = static_cast<C>(min_size);
    const scalar_t* p = b.const_data_ptr<scalar_t>();
    for (int64_t i = 0; i < n; ++i) {
      const C w = static_cast<C>(wrap_sub(p[4 * i + 2], p[4 * i]));
      const C h = static_cast<C>(wrap_sub(p[4 * i + 3], p[4 * i + 1]));
      if (w >= ms && h >= ms) keep.push_back(i);
    }
  });
  at::Tensor out = at::empty({static_cast<int64_t>(keep.size())}, b.options().dtype(at::kLong));
  std::copy(keep.begin(), keep.end(), out.mutable_data_ptr<int64_t>());
  return out;
}

// ---------------------------------------------------------------- IoU matrix

// boxes [..., 4] -> contiguous boxes in the compute dtype (half/bfloat16 widened first).
at::Tensor widen(const at::Tensor& t) {
  return t.to(compute_dtype(t.scalar_type())).contiguous();
}

at::Tensor box_iou_matrix_cpu(const at::Tensor& boxes1, const at::Tensor& boxes2, c10::string_view kind_s, double eps) {
  checks::iou_matrix(boxes1, boxes2);
  const IouKind kind = checks::iou_kind("box_iou_matrix", kind_s);
  const bool batched = boxes1.dim() == 3;
  const int64_t B = batched ? boxes1.size(0) : 1;
  const int64_t n = boxes1.size(-2), m = boxes2.size(-2);
  const auto dt = compute_dtype(boxes1.scalar_type());
  std::vector<int64_t> shape;
  if (batched) shape.push_back(B);
  shape.push_back(n);
  shape.push_back(m);
  at::Tensor out = empty_output(shape, dt);
  if (out.numel() == 0) return out;
  const at::Tensor b1 = widen(boxes1), b2 = widen(boxes2);
  AT_DISPATCH_FLOATING_TYPES(dt, "box_iou_matrix", [&] {
    using T = scalar_t;
    const T* pa = b1.const_data_ptr<T>();
    const T* pb = b2.const_data_ptr<T>();
    const bool ciou = kind == IouKind::kCIoU;
    // boxes2 as columns x1, y1, x2, y2 (, atan) per batch: unit-stride vector loads. With
    // few rows per batch the copy (a write and re-read of all of boxes2, into freshly
    // faulted memory) would cost more than the IoU itself: the vector loop then splits
    // the xyxy rows into columns in registers instead. Left uninitialised: every element
    // is written below. CIoU's angles are taken once per box (N + M atans, not N * M).
    const bool rows_aos = n <= kAosMaxRows;
    const int64_t cols = rows_aos ? (ciou ? 1 : 0) : (ciou ? 5 : 4);
    std::unique_ptr<T[]> soa(new T[static_cast<size_t>(B * cols * m)]);
    std::vector<T> a_atan(ciou ? static_cast<size_t>(B * n) : 0);
    if (cols > 0) {
      at::parallel_for(0, B * m, 1 << 12, [&](int64_t q0, int64_t q1) {
        for (int64_t q = q0; q < q1; ++q) {
          const int64_t bi = q / m, j = q % m;
          T* s = soa.get() + bi * cols * m;
          const Box<T> box = load_box(pb + q * 4);
          if (!rows_aos) s[j] = box.x1, s[m + j] = box.y1, s[2 * m + j] = box.x2, s[3 * m + j] = box.y2;
          if (ciou) s[(cols - 1) * m + j] = box_aspect_atan(box);
        }
      });
    }
    if (ciou) {
      at::parallel_for(0, B * n, 1 << 12, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) a_atan[r] = box_aspect_atan(load_box(pa + r * 4));
      });
    }
    IouMatrixArgs<T> args;
    args.a = pa;
    args.a_atan = ciou ? a_atan.data() : nullptr;
    args.b_aos = rows_aos ? pb : nullptr;
    args.b_soa = soa.get();
    args.cols = cols;
    args.out = out.mutable_data_ptr<T>();
    args.n = n;
    args.m = m;
    args.chunk = 4096;  // a multiple of every vector width (DEFAULT: up to 16 lanes)
    args.n_chunks = (m + args.chunk - 1) / args.chunk;
    args.eps = static_cast<T>(eps);
    args.kind = kind;
    const int64_t tasks = B * n * args.n_chunks;
    at::parallel_for(0, tasks, grain_for(std::min(m, args.chunk)), [&](int64_t t0, int64_t t1) {
      DETSEG_ISA_CALL(iou_matrix_tasks, args, t0, t1);
    });
  });
  return out;
}

// What the IoU backward kernels read and write, in the compute type T: boxes1, boxes2 and grad
// (widened, contiguous), the two gradients, eps.
template <typename T>
struct PairGradPtrs {
  const T* pa;
  const T* pb;
  const T* pg;
  T* o1;
  T* o2;
  T e;
};

template <typename T>
PairGradPtrs<T> pair_grad_ptrs(const at::Tensor& b1, const at::Tensor& b2, const at::Tensor& gr, at::Tensor& g1,
                               at::Tensor& g2, double eps) {
  return {b1.const_data_ptr<T>(), b2.const_data_ptr<T>(), gr.const_data_ptr<T>(), g1.mutable_data_ptr<T>(),
          g2.mutable_data_ptr<T>(), static_cast<T>(eps)};
}

// Gradients: pass 1 gives each row i of boxes1 its sum over j in order, pass 2 each column j
// of boxes2 its sum over i in order. No atomics and no thread-dependent order: bitwise
// identical for any thread count. Each pass re-evaluates pair_iou_backward and keeps one side.
std::tuple<at::Tensor, at::Tensor> box_iou_matrix_backward_cpu(const at::Tensor& grad, const at::Tensor& boxes1,
                                                               const at::Tensor& boxes2, c10::string_view kind_s,
                                                               double eps) {
  const IouKind kind = checks::iou_matrix_backward(grad, boxes1, boxes2, kind_s);
  const int64_t B = boxes1.dim() == 3 ? boxes1.size(0) : 1;
  const int64_t n = boxes1.size(-2), m = boxes2.size(-2);
  const auto dt = compute_dtype(boxes1.scalar_type());
  at::Tensor g1 = at::zeros(boxes1.sizes(), boxes1.options().dtype(dt));
  at::Tensor g2 = at::zeros(boxes2.sizes(), boxes2.options().dtype(dt));
  if (B * n * m != 0) {
    const at::Tensor b1 = widen(boxes1), b2 = widen(boxes2);
    const at::Tensor gr = grad.to(dt).contiguous();
    AT_DISPATCH_FLOATING_TYPES(dt, "_box_iou_matrix_backward", [&] {
      using T = scalar_t;
      const auto [pa, pb, pg, o1, o2, e] = pair_grad_ptrs<T>(b1, b2, gr, g1, g2, eps);
      // CIoU's angles once per box (else each pass would take 2 atans per pair).
      const bool ciou = kind == IouKind::kCIoU;
      std::vector<T> at1(ciou ? B * n : 0), at2(ciou ? B * m : 0);
      if (ciou) {
        at::parallel_for(0, B * n, 1 << 12, [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r) at1[r] = box_aspect_atan(load_box(pa + r * 4));
        });
        at::parallel_for(0, B * m, 1 << 12, [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r) at2[r] = box_aspect_atan(load_box(pb + r * 4));
        });
      }
      const auto atan1 = [&](int64_t r) { return ciou ? at1[r] : T(0); };
      const auto atan2 = [&](int64_t q) { return ciou ? at2[q] : T(0); };
      dispatch_kind(kind, [&](auto kc) {
        constexpr IouKind K = decltype(kc)::value;
        at::parallel_for(0, B * n, grain_for(m), [&](int64_t r0, int64_t r1) {
          for (int64_t r = r0; r < r1; ++r) {
            const int64_t bi = r / n;
            const Box<T> a = load_box(pa + r * 4);
            const T ta = atan1(r);
            T ga[4] = {T(0), T(0), T(0), T(0)};
            for (int64_t j = 0; j < m; ++j) {
              T unused[4] = {T(0), T(0), T(0), T(0)};
              const int64_t q = bi * m + j;
              pair_iou_backward<K, IouForm::kMatrix>(a, load_box(pb + q * 4), e, ta, atan2(q), pg[r * m + j], ga, unused);
            }
            for (int k = 0; k < 4; ++k) o1[r * 4 + k] = ga[k];
          }
        });
        // Columns in blocks so that each step reads one contiguous piece of a grad row.
        constexpr int64_t kBlock = 16;
        const int64_t nblk = (m + kBlock - 1) / kBlock;
        at::parallel_for(0, B * nblk, grain_for(n * kBlock), [&](int64_t t0, int64_t t1) {
          for (int64_t t = t0; t < t1; ++t) {
            const int64_t bi = t / nblk;
            const int64_t j0 = (t % nblk) * kBlock;
            const int64_t j1 = std::min(m, j0 + kBlock);
            T gb[kBlock][4] = {};
            Box<T> bb[kBlock];
            T tb[kBlock];
            for (int64_t j = j0; j < j1; ++j) bb[j - j0] = load_box(pb + (bi * m + j) * 4), tb[j - j0] = atan2(bi * m + j);
            for (int64_t i = 0; i < n; ++i) {
              const int64_t r = bi * n + i;
              const Box<T> a = load_box(pa + r * 4);
              const T ta = atan1(r);
              for (int64_t j = j0; j < j1; ++j) {
                T unused[4] = {T(0), T(0), T(0), T(0)};
                pair_iou_backward<K, IouForm::kMatrix>(a, bb[j - j0], e, ta, tb[j - j0], pg[r * m + j], unused, gb[j - j0]);
              }
            }
            for (int64_t j = j0; j < j1; ++j)
              for (int k = 0; k < 4; ++k) o2[(bi * m + j) * 4 + k] = gb[j - j0][k];
          }
        });
      });
    });
  }
  return {g1.to(boxes1.scalar_type()), g2.to(boxes2.scalar_type())};
}

// ---------------------------------------------------------------- IoU losses (aligned pairs)

at::Tensor box_iou_loss_cpu(const at::Tensor& boxes1, const at::Tensor& boxes2, c10::string_view kind_s, double eps) {
  checks::iou_loss(boxes1, boxes2);
  const IouKind kind = checks::iou_kind("box_iou_loss", kind_s);
  const int64_t n = boxes1.size(0);
  at::Tensor out = at::empty({n}, boxes1.options());
  if (n == 0) return out;
  const at::Tensor b1 = widen(boxes1), b2 = widen(boxes2);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, boxes1.scalar_type(), "box_iou_loss", [&] {
    using O = scalar_t;
    using T = std::conditional_t<std::is_same_v<O, double>, double, float>;
    const T* pa = b1.const_data_ptr<T>();
    const T* pb = b2.const_data_ptr<T>();
    O* po = out.mutable_data_ptr<O>();
    const T e = static_cast<T>(eps);
    dispatch_kind(kind, [&](auto kc) {
      constexpr IouKind K = decltype(kc)::value;
      at::parallel_for(0, n, 1 << 12, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i)
          po[i] = static_cast<O>(T(1) - pair_iou<K, IouForm::kLoss>(load_box(pa + 4 * i), load_box(pb + 4 * i), e));
      });
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> box_iou_loss_backward_cpu(const at::Tensor& grad, const at::Tensor& boxes1,
                                                             const at::Tensor& boxes2, c10::string_view kind_s,
                                                             double eps) {
  const IouKind kind = checks::iou_loss_backward(grad, boxes1, boxes2, kind_s);
  const int64_t n = boxes1.size(0);
  const auto dt = compute_dtype(boxes1.scalar_type());
  at::Tensor g1 = at::empty({n, 4}, boxes1.options().dtype(dt));
  at::Tensor g2 = at::empty({n, 4}, boxes2.options().dtype(dt));
  if (n != 0) {
    const at::Tensor b1 = widen(boxes1), b2 = widen(boxes2);
    const at::Tensor gr = grad.to(dt).contiguous();
    AT_DISPATCH_FLOATING_TYPES(dt, "_box_iou_loss_backward", [&] {
      using T = scalar_t;
      const auto [pa, pb, pg, o1, o2, e] = pair_grad_ptrs<T>(b1, b2, gr, g1, g2, eps);
      dispatch_kind(kind, [&](auto kc) {
        constexpr IouKind K = decltype(kc)::value;
        at::parallel_for(0, n, 1 << 11, [&](int64_t i0, int64_t i1) {
          for (int64_t i = i0; i < i1; ++i) {
            T ga[4] = {T(0), T(0), T(0), T(0)}, gb[4] = {T(0), T(0), T(0), T(0)};
            // loss = 1 - value: negating g is exact, so this is -(d value) bit for bit.
            pair_iou_backward<K, IouForm::kLoss>(load_box(pa + 4 * i), load_box(pb + 4 * i), e, -pg[i], ga, gb);
            for (int k = 0; k < 4; ++k) o1[4 * i + k] = ga[k], o2[4 * i + k] = gb[k];
          }
        });
      });
    });
  }
  return {g1.to(boxes1.scalar_type()), g2.to(boxes2.scalar_type())};
}

}  // namespace
}  // namespace detseg::cpu

TORCH_LIBRARY_IMPL(detseg, CPU, m) {
  m.impl("box_area", &detseg::cpu::box_area_cpu);
  m.impl("box_convert", &detseg::cpu::box_convert_cpu);
  m.impl("clip_boxes_to_image", &detseg::cpu::clip_boxes_to_image_cpu);
  m.impl("remove_small_boxes", &detseg::cpu::remove_small_boxes_cpu);
  m.impl("box_iou_matrix", &detseg::cpu::box_iou_matrix_cpu);
  m.impl("_box_iou_matrix_backward", &detseg::cpu::box_iou_matrix_backward_cpu);
  m.impl("box_iou_loss", &detseg::cpu::box_iou_loss_cpu);
  m.impl("_box_iou_loss_backward", &detseg::cpu::box_iou_loss_backward_cpu);
}
