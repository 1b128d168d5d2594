// CUDA kernels of the box utilities: box_area, box_convert, clip_boxes_to_image,
// remove_small_boxes (the IoU family is in box_iou.cu). Semantics (dtypes, rounding, NaN)
// follow python/detseg/reference/boxes.py, the oracle.
//
// Rounding model for float16 / bfloat16 where the reference computes in the input dtype
// (box_convert, remove_small_boxes): every torch elementwise op evaluates in float32 and
// rounds to the tensor dtype, so the kernels do the same step by step (`rnd`). box_area
// widens first, as the reference does, and rounds once at the output.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/nonzero.h>
#include <c10/core/DefaultDtype.h>
#include <torch/library.h>

#include <cctype>
#include <string>
#include <string_view>
#include <type_traits>

#include "checks.h"
#include "cuda/boxes.cuh"
#include "cuda/launch.cuh"
#include "detseg/boxes.h"

namespace detseg::cuda {
namespace {

// Integer box arithmetic wraps like torch's integer tensors; going through the unsigned
// type makes the wrap defined behaviour instead of signed overflow.
template <typename I>
__device__ __forceinline__ I wrap_add(I a, I b) {
  using U = std::make_unsigned_t<I>;
  return static_cast<I>(static_cast<U>(static_cast<U>(a) + static_cast<U>(b)));
}
template <typename I>
__device__ __forceinline__ I wrap_sub(I a, I b) {
  using U = std::make_unsigned_t<I>;
  return static_cast<I>(static_cast<U>(static_cast<U>(a) - static_cast<U>(b)));
}
template <typename I>
__device__ __forceinline__ I wrap_mul(I a, I b) {
  using U = std::make_unsigned_t<I>;
  static_assert(sizeof(I) >= sizeof(int), "narrow unsigned types promote to int and could overflow");
  return static_cast<I>(static_cast<U>(static_cast<U>(a) * static_cast<U>(b)));
}

// ------------------------------------------------------------------ box_area

// Grid: grid-stride over the n boxes, one thread per box. Reads 4 values, writes 1.
template <typename scalar_t>
__global__ void box_area_float_kernel(const scalar_t* __restrict__ boxes, int64_t n,
                                      at::opmath_type<scalar_t>* __restrict__ out) {
  using acc_t = at::opmath_type<scalar_t>;
  grid_stride(n, [&](int64_t k) {
    const Box<acc_t> b = load_box<acc_t>(boxes + 4 * k);
    out[k] = box_area(b.x1, b.y1, b.x2, b.y2);
  });
}

template <typename index_t>
__global__ void box_area_int_kernel(const index_t* __restrict__ boxes, int64_t n, index_t* __restrict__ out) {
  grid_stride(n, [&](int64_t k) {
    const index_t* p = boxes + 4 * k;
    out[k] = wrap_mul(wrap_sub(p[2], p[0]), wrap_sub(p[3], p[1]));
  });
}

at::Tensor box_area_cuda(const at::Tensor& boxes) {
  checks::boxes_last4("box_area", "boxes", boxes);
  DeviceScope scope(boxes);
  at::Tensor b = boxes;
  const bool is_float = at::isFloatingType(b.scalar_type());
  // Integer boxes other than int32 / int64 are upcast to int32 (torchvision's _upcast).
  if (!is_float && b.scalar_type() != at::kInt && b.scalar_type() != at::kLong) b = b.to(at::kInt);
  b = b.contiguous();
  const auto out_type = is_float ? compute_type(b) : b.scalar_type();
  auto shape = b.sizes().vec();
  shape.pop_back();
  at::Tensor out = at::empty(shape, b.options().dtype(out_type));
  const int64_t n = out.numel();
  if (n == 0) return out;
  if (is_float) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b.scalar_type(), "detseg.box_area", [&] {
      box_area_float_kernel<scalar_t><<<grid_1d(n), kThreads, 0, scope.stream>>>(
          b.const_data_ptr<scalar_t>(), n, out.mutable_data_ptr<at::opmath_type<scalar_t>>());
      DETSEG_CUDA_LAUNCH_CHECK();
    });
  } else {
    AT_DISPATCH_INDEX_TYPES(b.scalar_type(), "detseg.box_area", [&] {
      box_area_int_kernel<index_t><<<grid_1d(n), kThreads, 0, scope.stream>>>(
          b.const_data_ptr<index_t>(), n, out.mutable_data_ptr<index_t>());
      DETSEG_CUDA_LAUNCH_CHECK();
    });
  }
  return out;
}

// ------------------------------------------------------------------ box_convert

enum Fmt : int { kXYXY = 0, kXYWH = 1, kCXCYWH = 2 };

Fmt parse_fmt(const char* arg, std::string_view s) {
  std::string low(s);
  for (auto& ch : low) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (low == "xyxy") return kXYXY;
  if (low == "xywh") return kXYWH;
  if (low == "cxcywh") return kCXCYWH;
  TORCH_CHECK_VALUE(false, "detseg.box_convert: ", arg, " must be one of 'xyxy', 'xywh', 'cxcywh', got '", s, "'");
}

// Floating boxes (and integer boxes converted to the default float dtype when the input is
// cxcywh). Each line is one torch op of the reference, rounded as torch rounds it.
// Grid: grid-stride over the n boxes, one thread per box.
template <typename scalar_t>
__global__ void box_convert_float_kernel(const scalar_t* __restrict__ in, int64_t n, int in_fmt, int out_fmt,
                                         scalar_t* __restrict__ out) {
  using acc_t = at::opmath_type<scalar_t>;
  grid_stride(n, [&](int64_t k) {
    const scalar_t* p = in + 4 * k;
    const acc_t a = static_cast<acc_t>(p[0]), b = static_cast<acc_t>(p[1]);
    const acc_t c = static_cast<acc_t>(p[2]), d = static_cast<acc_t>(p[3]);
    acc_t x1 = a, y1 = b, x2 = c, y2 = d;
    if (in_fmt == kXYWH) {
      x2 = rnd<scalar_t>(a + c);
      y2 = rnd<scalar_t>(b + d);
    } else if (in_fmt == kCXCYWH) {
      const acc_t hw = rnd<scalar_t>(acc_t(0.5) * c);
      const acc_t hh = rnd<scalar_t>(acc_t(0.5) * d);
      x1 = rnd<scalar_t>(a - hw);
      y1 = rnd<scalar_t>(b - hh);
      x2 = rnd<scalar_t>(a + hw);
      y2 = rnd<scalar_t>(b + hh);
    }
    acc_t o0 = x1, o1 = y1, o2 = x2, o3 = y2;
    if (out_fmt == kXYWH) {
      o2 = x2 - x1;
      o3 = y2 - y1;
    } else if (out_fmt == kCXCYWH) {
      o0 = rnd<scalar_t>(x1 + x2) / acc_t(2);
      o1 = rnd<scalar_t>(y1 + y2) / acc_t(2);
      o2 = x2 - x1;
      o3 = y2 - y1;
    }
    scalar_t* q = out + 4 * k;
    q[0] = static_cast<scalar_t>(o0);
    q[1] = static_cast<scalar_t>(o1);
    q[2] = static_cast<scalar_t>(o2);
    q[3] = static_cast<scalar_t>(o3);
  });
}

// Integer boxes between xyxy and xywh: stays in the integer dtype (wrapping, as torch).
template <typename I>
__global__ void box_convert_int_kernel(const I* __restrict__ in, int64_t n, int in_fmt, I* __restrict__ out) {
  grid_stride(n, [&](int64_t k) {
    const I* p = in + 4 * k;
    I* q = out + 4 * k;
    q[0] = p[0];
    q[1] = p[1];
    if (in_fmt == kXYWH) {  // -> xyxy
      q[2] = wrap_add(p[0], p[2]);
      q[3] = wrap_add(p[1], p[3]);
    } else {  // xyxy -> xywh
      q[2] = wrap_sub(p[2], p[0]);
      q[3] = wrap_sub(p[3], p[1]);
    }
  });
}

// Integer xyxy / xywh boxes to cxcywh in the float dtype F: sums and differences are
// integer ops (then converted), the halving is a float op, as in the reference.
template <typename I, typename F>
__global__ void box_convert_int_to_cxcywh_kernel(const I* __restrict__ in, int64_t n, int in_fmt,
                                                 F* __restrict__ out) {
  using acc_t = at::opmath_type<F>;
  grid_stride(n, [&](int64_t k) {
    const I* p = in + 4 * k;
    const I x1 = p[0], y1 = p[1];
    const I x2 = in_fmt == kXYWH ? wrap_add(p[0], p[2]) : p[2];
    const I y2 = in_fmt == kXYWH ? wrap_add(p[1], p[3]) : p[3];
    F* q = out + 4 * k;
    q[0] = static_cast<F>(static_cast<acc_t>(static_cast<F>(wrap_add(x1, x2))) / acc_t(2));
    q[1] = static_cast<F>(static_cast<acc_t>(static_cast<F>(wrap_add(y1, y2))) / acc_t(2));
    q[2] = static_cast<F>(wrap_sub(x2, x1));
    q[3] = static_cast<F>(wrap_sub(y2, y1));
  });
}

at::Tensor box_convert_cuda(const at::Tensor& boxes, std::string_view in_fmt_s, std::string_view out_fmt_s) {
  checks::boxes_last4("box_convert", "boxes", boxes);
  const Fmt in_fmt = parse_fmt("in_fmt", in_fmt_s);
  const Fmt out_fmt = parse_fmt("out_fmt", out_fmt_s);
  if (in_fmt == out_fmt) return boxes.clone(at::MemoryFormat::Contiguous);
  DeviceScope scope(boxes);
  at::Tensor b = boxes.contiguous();
  const bool is_float = at::isFloatingType(b.scalar_type());
  const auto float_type = c10::get_default_dtype_as_scalartype();
  if (!is_float && in_fmt == kCXCYWH) {
    // Every reference op touches a float (0.5 * w) first: convert, then the float path.
    b = b.to(float_type);
  }
  const bool int_to_cxcywh = !at::isFloatingType(b.scalar_type()) && out_fmt == kCXCYWH;
  at::Tensor out = at::empty(b.sizes(), b.options().dtype(int_to_cxcywh ? float_type : b.scalar_type()));
  const int64_t n = out.numel() / 4;
  if (n == 0) return out;
  if (at::isFloatingType(b.scalar_type())) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b.scalar_type(), "detseg.box_convert", [&] {
      box_convert_float_kernel<scalar_t><<<grid_1d(n), kThreads, 0, scope.stream>>>(
          b.const_data_ptr<scalar_t>(), n, in_fmt, out_fmt, out.mutable_data_ptr<scalar_t>());
      DETSEG_CUDA_LAUNCH_CHECK();
    });
  } else if (int_to_cxcywh) {
    AT_DISPATCH_INTEGRAL_TYPES(b.scalar_type(), "detseg.box_convert", [&] {
      using I = scalar_t;
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, float_type, "detseg.box_convert", [&] {
        box_convert_int_to_cxcywh_kernel<I, scalar_t><<<grid_1d(n), kThreads, 0, scope.stream>>>(
            b.const_data_ptr<I>(), n, in_fmt, out.mutable_data_ptr<scalar_t>());
        DETSEG_CUDA_LAUNCH_CHECK();
      });
    });
  } else {
    AT_DISPATCH_INTEGRAL_TYPES(b.scalar_type(), "detseg.box_convert", [&] {
      box_convert_int_kernel<scalar_t><<<grid_1d(n), kThreads, 0, scope.stream>>>(
          b.const_data_ptr<scalar_t>(), n, in_fmt, out.mutable_data_ptr<scalar_t>());
      DETSEG_CUDA_LAUNCH_CHECK();
    });
  }
  return out;
}

// ------------------------------------------------------------------ clip_boxes_to_image

// torch.clamp(min=0, max=hi): NaN passes through; with hi < 0 every value becomes hi.
// Grid: grid-stride over the 4n coordinates; even ones are x, odd ones y.
template <typename scalar_t>
__global__ void clip_float_kernel(const scalar_t* __restrict__ in, int64_t n, scalar_t hi_x, scalar_t hi_y,
                                  scalar_t* __restrict__ out) {
  using acc_t = at::opmath_type<scalar_t>;
  grid_stride(n, [&](int64_t k) {
    const scalar_t v = in[k];
    const acc_t x = static_cast<acc_t>(v);
    if (x != x) {
      out[k] = v;
      return;
    }
    const scalar_t hi = (k & 1) ? hi_y : hi_x;
    const scalar_t lo = x < acc_t(0) ? scalar_t(0) : v;
    out[k] = static_cast<acc_t>(lo) > static_cast<acc_t>(hi) ? hi : lo;
  });
}

// Integers compare in int64 so that a bound beyond the dtype's range simply never binds.
template <typename I>
__global__ void clip_int_kernel(const I* __restrict__ in, int64_t n, int64_t hi_x, int64_t hi_y,
                                I* __restrict__ out) {
  grid_stride(n, [&](int64_t k) {
    int64_t v = static_cast<int64_t>(in[k]);
    const int64_t hi = (k & 1) ? hi_y : hi_x;
    v = v < 0 ? 0 : v;
    v = v > hi ? hi : v;
    out[k] = static_cast<I>(v);
  });
}

at::Tensor clip_boxes_to_image_cuda(const at::Tensor& boxes, int64_t height, int64_t width) {
  checks::boxes_last4("clip_boxes_to_image", "boxes", boxes);
  DeviceScope scope(boxes);
  const at::Tensor b = boxes.contiguous();
  at::Tensor out = at::empty(b.sizes(), b.options());
  const int64_t n = out.numel();
  if (n == 0) return like_input(out, boxes);
  if (at::isFloatingType(b.scalar_type())) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b.scalar_type(), "detseg.clip_boxes_to_image", [&] {
      // The bound is converted to the tensor dtype first, as torch.clamp does with a scalar.
      const auto hx = static_cast<scalar_t>(static_cast<at::opmath_type<scalar_t>>(width));
      const auto hy = static_cast<scalar_t>(static_cast<at::opmath_type<scalar_t>>(height));
      clip_float_kernel<scalar_t><<<grid_1d(n), kThreads, 0, scope.stream>>>(
          b.const_data_ptr<scalar_t>(), n, hx, hy, out.mutable_data_ptr<scalar_t>());
      DETSEG_CUDA_LAUNCH_CHECK();
    });
  } else {
    AT_DISPATCH_INTEGRAL_TYPES(b.scalar_type(), "detseg.clip_boxes_to_image", [&] {
      clip_int_kernel<scalar_t><<<grid_1d(n), kThreads, 0, scope.stream>>>(
          b.const_data_ptr<scalar_t>(), n, width, height, out.mutable_data_ptr<scalar_t>());
      DETSEG_CUDA_LAUNCH_CHECK();
    });
  }
  return like_input(out, boxes);
}

// ------------------------------------------------------------------ remove_small_boxes

// The reference computes w = x2 - x1 in the input dtype and compares with min_size cast
// to that dtype (a Python scalar takes the tensor's dtype). NaN sides fail the test.
// Grid: grid-stride over the n boxes; writes one bool per box, compacted by nonzero.
template <typename scalar_t>
__global__ void small_boxes_mask_kernel(const scalar_t* __restrict__ boxes, int64_t n, scalar_t min_size,
                                        bool* __restrict__ keep) {
  using acc_t = at::opmath_type<scalar_t>;
  grid_stride(n, [&](int64_t k) {
    const Box<acc_t> b = load_box<acc_t>(boxes + 4 * k);
    const acc_t ms = static_cast<acc_t>(min_size);
    const acc_t w = rnd<scalar_t>(b.x2 - b.x1);
    const acc_t h = rnd<scalar_t>(b.y2 - b.y1);
    keep[k] = w >= ms && h >= ms;
  });
}

at::Tensor remove_small_boxes_cuda(const at::Tensor& boxes, double min_size) {
  checks::boxes_n4("remove_small_boxes", "boxes", boxes);
  checks::floating("remove_small_boxes", "boxes", boxes);
  DeviceScope scope(boxes);
  const at::Tensor b = boxes.contiguous();
  const int64_t n = b.size(0);
  if (n == 0) return at::empty({0}, b.options().dtype(at::kLong));
  at::Tensor keep = at::empty({n}, b.options().dtype(at::kBool));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, b.scalar_type(), "detseg.remove_small_boxes", [&] {
    small_boxes_mask_kernel<scalar_t><<<grid_1d(n), kThreads, 0, scope.stream>>>(
        b.const_data_ptr<scalar_t>(), n, static_cast<scalar_t>(min_size), keep.mutable_data_ptr<bool>());
    DETSEG_CUDA_LAUNCH_CHECK();
  });
  // One device->host sync, for the output length.
  return at::nonzero(keep).view({-1});
}

}  // namespace
}  // namespace detseg::cuda

TORCH_LIBRARY_IMPL(detseg, CUDA, m) {
  m.impl("box_area", &detseg::cuda::box_area_cuda);
  m.impl("box_convert", &detseg::cuda::box_convert_cuda);
  m.impl("clip_boxes_to_image", &detseg::cuda::clip_boxes_to_image_cuda);
  m.impl("remove_small_boxes", &detseg::cuda::remove_small_boxes_cuda);
}
