"""Triton box utilities: box_area, box_convert, clip_boxes_to_image, remove_small_boxes.
Each mirrors detseg.reference op for op (same dtypes, same roundings); the first three are
differentiable (backward kernels below)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..ops import _checks
from ._utils import compact, compute_dtype, elementwise_block, launch, round_to, rows4, store_as, tl_dtype

_FMTS = {"xyxy": 0, "xywh": 1, "cxcywh": 2}


# ================================================================ box utilities

@triton.jit
def _load4(b_ptr, rows, s0, s1, m):
    p = b_ptr + rows * s0
    return (tl.load(p, mask=m, other=0), tl.load(p + s1, mask=m, other=0),
            tl.load(p + 2 * s1, mask=m, other=0), tl.load(p + 3 * s1, mask=m, other=0))


@triton.jit
def _box_area_kernel(b_ptr, s0, s1, out_ptr, R, CT: tl.constexpr, BLOCK: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = rows < R
    x1, y1, x2, y2 = _load4(b_ptr, rows, s0, s1, m)
    x1, y1, x2, y2 = x1.to(CT), y1.to(CT), x2.to(CT), y2.to(CT)
    tl.store(out_ptr + rows, (x2 - x1) * (y2 - y1), mask=m)


@triton.jit
def _box_area_bwd_kernel(g_ptr, b_ptr, s0, s1, out_ptr, R, CT: tl.constexpr, BLOCK: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = rows < R
    x1, y1, x2, y2 = _load4(b_ptr, rows, s0, s1, m)
    x1, y1, x2, y2 = x1.to(CT), y1.to(CT), x2.to(CT), y2.to(CT)
    g = tl.load(g_ptr + rows, mask=m, other=0).to(CT)
    gh = g * (y2 - y1)
    gw = g * (x2 - x1)
    p = out_ptr + rows * 4
    store_as(p, -gh, m)
    store_as(p + 1, -gw, m)
    store_as(p + 2, gh, m)
    store_as(p + 3, gw, m)


def _box_area(boxes: torch.Tensor) -> torch.Tensor:
    if boxes.is_floating_point():
        out_dt = compute_dtype(boxes)
    else:
        out_dt = boxes.dtype if boxes.dtype in (torch.int32, torch.int64) else torch.int32
    b = rows4(boxes)
    r = b.shape[0]
    out = torch.empty(r, dtype=out_dt, device=boxes.device)
    if r:
        block = elementwise_block(b, r)
        launch(_box_area_kernel, (triton.cdiv(r, block),), b, b.stride(0), b.stride(1), out, r,
               CT=tl_dtype(out_dt), BLOCK=block)
    return out.reshape(boxes.shape[:-1])


class _BoxArea(torch.autograd.Function):
    @staticmethod
    def forward(ctx, boxes):
        ctx.save_for_backward(boxes)
        return _box_area(boxes)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (boxes,) = ctx.saved_tensors
        b = rows4(boxes)
        g = grad.reshape(-1)
        r = b.shape[0]
        out = torch.empty((r, 4), dtype=boxes.dtype, device=boxes.device)
        if r:
            block = elementwise_block(b, r)
            launch(_box_area_bwd_kernel, (triton.cdiv(r, block),), g, b, b.stride(0), b.stride(1), out, r,
                   CT=tl_dtype(compute_dtype(boxes)), BLOCK=block)
        return out.reshape(boxes.shape)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Tensor[..., 4] xyxy -> Tensor[...]: float32 for float16/bfloat16/float32, float64 for
    float64, int32/int64 kept, smaller integers give int32 (as the reference)."""
    _checks.boxes_last4("box_area", "boxes", boxes)
    return _BoxArea.apply(boxes) if boxes.is_floating_point() else _box_area(boxes)


@triton.jit
def _box_convert_kernel(b_ptr, s0, s1, out_ptr, R, IN: tl.constexpr, OUT: tl.constexpr,
                        IS_INT: tl.constexpr, FT: tl.constexpr, DT: tl.constexpr, BLOCK: tl.constexpr):
    # Mirrors the reference op by op. Floating inputs: each op computed in FT (float32 or
    # float64) and rounded to the storage dtype DT, as one torch op on a half tensor does.
    # Integer inputs: integer ops in the native dtype (same wrap-around), and the ops that
    # torch turns into floating point (0.5 * c, (x1 + x2) / 2) in the default float FT.
    rows = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = rows < R
    a, b, c, d = _load4(b_ptr, rows, s0, s1, m)
    if not IS_INT:
        a, b, c, d = a.to(FT), b.to(FT), c.to(FT), d.to(FT)
    if IN == 1:  # xywh
        x1 = a
        y1 = b
        x2 = round_to(a + c, DT)
        y2 = round_to(b + d, DT)
    elif IN == 2:  # cxcywh
        if IS_INT:
            a, b, c, d = a.to(FT), b.to(FT), c.to(FT), d.to(FT)
        hw = round_to(0.5 * c, DT)
        hh = round_to(0.5 * d, DT)
        x1 = round_to(a - hw, DT)
        y1 = round_to(b - hh, DT)
        x2 = round_to(a + hw, DT)
        y2 = round_to(b + hh, DT)
    else:
        x1 = a
        y1 = b
        x2 = c
        y2 = d
    if OUT == 0:
        o0, o1, o2, o3 = x1, y1, x2, y2
    elif OUT == 1:
        o0 = x1
        o1 = y1
        o2 = round_to(x2 - x1, DT)
        o3 = round_to(y2 - y1, DT)
    else:
        sx = x1 + x2
        sy = y1 + y2
        if IS_INT:
            sx = sx.to(FT)
            sy = sy.to(FT)
        o0 = round_to(round_to(sx, DT) * 0.5, DT)
        o1 = round_to(round_to(sy, DT) * 0.5, DT)
        o2 = round_to(x2 - x1, DT)
        o3 = round_to(y2 - y1, DT)
    p = out_ptr + rows * 4
    store_as(p, o0, m)
    store_as(p + 1, o1, m)
    store_as(p + 2, o2, m)
    store_as(p + 3, o3, m)


@triton.jit
def _box_convert_bwd_kernel(g_ptr, out_ptr, R, IN: tl.constexpr, OUT: tl.constexpr, CT: tl.constexpr,
                            BLOCK: tl.constexpr):
    # Transposed Jacobians of the two linear maps (in -> xyxy -> out), computed in CT.
    rows = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = rows < R
    g0, g1, g2, g3 = _load4(g_ptr, rows, 4, 1, m)
    g0, g1, g2, g3 = g0.to(CT), g1.to(CT), g2.to(CT), g3.to(CT)
    if OUT == 0:
        gx1, gy1, gx2, gy2 = g0, g1, g2, g3
    elif OUT == 1:
        gx1 = g0 - g2
        gy1 = g1 - g3
        gx2 = g2
        gy2 = g3
    else:
        gx1 = g0 * 0.5 - g2
        gy1 = g1 * 0.5 - g3
        gx2 = g0 * 0.5 + g2
        gy2 = g1 * 0.5 + g3
    if IN == 0:
        o0, o1, o2, o3 = gx1, gy1, gx2, gy2
    elif IN == 1:
        o0 = gx1 + gx2
        o1 = gy1 + gy2
        o2 = gx2
        o3 = gy2
    else:
        o0 = gx1 + gx2
        o1 = gy1 + gy2
        o2 = (gx2 - gx1) * 0.5
        o3 = (gy2 - gy1) * 0.5
    p = out_ptr + rows * 4
    store_as(p, o0, m)
    store_as(p + 1, o1, m)
    store_as(p + 2, o2, m)
    store_as(p + 3, o3, m)


def _box_convert(boxes: torch.Tensor, in_fmt: str, out_fmt: str) -> torch.Tensor:
    if in_fmt == out_fmt:
        return boxes.clone()
    is_int = not boxes.is_floating_point()
    if is_int:
        ft = torch.get_default_dtype()
        out_dt = ft if "cxcywh" in (in_fmt, out_fmt) else boxes.dtype
        dt = out_dt
    else:
        ft = compute_dtype(boxes)
        out_dt = dt = boxes.dtype
    b = rows4(boxes)
    r = b.shape[0]
    out = torch.empty((r, 4), dtype=out_dt, device=boxes.device)
    if r:
        block = elementwise_block(b, r)
        launch(_box_convert_kernel, (triton.cdiv(r, block),), b, b.stride(0), b.stride(1), out, r,
               IN=_FMTS[in_fmt], OUT=_FMTS[out_fmt], IS_INT=is_int, FT=tl_dtype(ft), DT=tl_dtype(dt), BLOCK=block)
    return out.reshape(boxes.shape)


class _BoxConvert(torch.autograd.Function):
    @staticmethod
    def forward(ctx, boxes, in_fmt, out_fmt):
        ctx.fmts = (in_fmt, out_fmt)
        ctx.meta = (boxes.shape, boxes.dtype)
        return _box_convert(boxes, in_fmt, out_fmt)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        in_fmt, out_fmt = ctx.fmts
        shape, dtype = ctx.meta
        g = grad.reshape(-1, 4).contiguous()
        r = g.shape[0]
        out = torch.empty((r, 4), dtype=dtype, device=grad.device)
        if r:
            block = elementwise_block(g, r)
            ct = torch.float64 if dtype == torch.float64 else torch.float32
            launch(_box_convert_bwd_kernel, (triton.cdiv(r, block),), g, out, r, IN=_FMTS[in_fmt],
                   OUT=_FMTS[out_fmt], CT=tl_dtype(ct), BLOCK=block)
        return out.reshape(shape), None, None


def box_convert(boxes: torch.Tensor, in_fmt: str, out_fmt: str) -> torch.Tensor:
    """Tensor[..., 4] between 'xyxy', 'xywh' (top-left, size) and 'cxcywh' (centre, size).
    Same dtype out; integer boxes through 'cxcywh' give the default float dtype."""
    _checks.boxes_last4("box_convert", "boxes", boxes)
    in_fmt = _checks.fmt("box_convert", "in_fmt", in_fmt)
    out_fmt = _checks.fmt("box_convert", "out_fmt", out_fmt)
    if boxes.is_floating_point():
        return _BoxConvert.apply(boxes, in_fmt, out_fmt)
    return _box_convert(boxes, in_fmt, out_fmt)


@triton.jit
def _clip_kernel(b_ptr, s0, s1, out_ptr, R, height, width, CT: tl.constexpr, BLOCK: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = rows < R
    p = out_ptr + rows * 4
    for k in tl.static_range(4):
        x = tl.load(b_ptr + rows * s0 + k * s1, mask=m, other=0).to(CT)
        if k % 2 == 0:
            hi = width
        else:
            hi = height
        # torch.clamp(min=0, max=hi): NaN passes through, max wins if hi < 0.
        x = tl.where(x < 0, 0, x)
        x = tl.where(x > hi, hi, x)
        store_as(p + k, x.to(CT), m)


@triton.jit
def _clip_bwd_kernel(g_ptr, b_ptr, s0, s1, out_ptr, R, height, width, CT: tl.constexpr, BLOCK: tl.constexpr):
    # torch.clamp's gradient: passes where min <= x <= max (a NaN x gets none).
    rows = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = rows < R
    for k in tl.static_range(4):
        x = tl.load(b_ptr + rows * s0 + k * s1, mask=m, other=0).to(CT)
        g = tl.load(g_ptr + rows * 4 + k, mask=m, other=0)
        if k % 2 == 0:
            hi = width
        else:
            hi = height
        tl.store(out_ptr + rows * 4 + k, tl.where((x >= 0) & (x <= hi), g, 0).to(g.dtype), mask=m)


def _clip(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    b = rows4(boxes)
    r = b.shape[0]
    out = torch.empty((r, 4), dtype=boxes.dtype, device=boxes.device)
    if r:
        ct = compute_dtype(boxes) if boxes.is_floating_point() else torch.int64
        block = elementwise_block(b, r)
        launch(_clip_kernel, (triton.cdiv(r, block),), b, b.stride(0), b.stride(1), out, r, int(height), int(width),
               CT=tl_dtype(ct), BLOCK=block)
    return out.reshape(boxes.shape)


class _Clip(torch.autograd.Function):
    @staticmethod
    def forward(ctx, boxes, height, width):
        ctx.save_for_backward(boxes)
        ctx.hw = (height, width)
        return _clip(boxes, height, width)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (boxes,) = ctx.saved_tensors
        b = rows4(boxes)
        g = grad.reshape(-1, 4).contiguous()
        r = b.shape[0]
        out = torch.empty((r, 4), dtype=grad.dtype, device=grad.device)
        if r:
            block = elementwise_block(b, r)
            launch(_clip_bwd_kernel, (triton.cdiv(r, block),), g, b, b.stride(0), b.stride(1), out, r, *ctx.hw,
                   CT=tl_dtype(compute_dtype(boxes)), BLOCK=block)
        return out.reshape(boxes.shape), None, None


def clip_boxes_to_image(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Tensor[..., 4] xyxy clamped to x in [0, width], y in [0, height]; same dtype."""
    _checks.boxes_last4("clip_boxes_to_image", "boxes", boxes)
    if boxes.is_floating_point():
        return _Clip.apply(boxes, int(height), int(width))
    return _clip(boxes, int(height), int(width))


@triton.jit
def _small_kernel(b_ptr, s0, s1, min_ptr, flag_ptr, R, IS_INT: tl.constexpr, CT: tl.constexpr,
                  DT: tl.constexpr, BLOCK: tl.constexpr):
    # As the reference: sides computed in the boxes' dtype, compared with min_size rounded to
    # that dtype (torch's tensor-scalar comparison); integer sides compare in float.
    rows = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = rows < R
    x1, y1, x2, y2 = _load4(b_ptr, rows, s0, s1, m)
    ms = tl.load(min_ptr).to(CT)
    if IS_INT:
        w = (x2 - x1).to(CT)
        h = (y2 - y1).to(CT)
    else:
        w = round_to(x2.to(CT) - x1.to(CT), DT)
        h = round_to(y2.to(CT) - y1.to(CT), DT)
    keep = (w >= ms) & (h >= ms)
    tl.store(flag_ptr + rows, keep.to(tl.int8), mask=m)


def remove_small_boxes(boxes: torch.Tensor, min_size: float) -> torch.Tensor:
    """Tensor[N, 4] -> Tensor[K] int64: indices (increasing) of boxes whose sides are both
    >= min_size."""
    _checks.boxes_n4("remove_small_boxes", "boxes", boxes)
    n = boxes.shape[0]
    if n == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    is_int = not boxes.is_floating_point()
    ct = torch.get_default_dtype() if is_int else compute_dtype(boxes)
    min_t = torch.tensor([float(min_size)], dtype=ct if is_int else boxes.dtype, device=boxes.device)
    flags = torch.empty(n, dtype=torch.int8, device=boxes.device)
    block = elementwise_block(boxes, n)
    launch(_small_kernel, (triton.cdiv(n, block),), boxes, boxes.stride(0), boxes.stride(1), min_t, flags, n,
                                            IS_INT=is_int, CT=tl_dtype(ct),
                                            DT=tl_dtype(ct if is_int else boxes.dtype), BLOCK=block)
    return compact(flags, None)
