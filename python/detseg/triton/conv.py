"""Triton transposed convolution and max unpooling: the gather formulation of
csrc/include/detseg/conv_transpose.h (output o takes tap t from input (o + pad - t * dil) / stride
when that divides and lands in [0, in)). One lane per output element, loops over the group's
input channels and the kernel taps; float16 / bfloat16 accumulate in float32. The backward
gathers too (one lane per input / weight / bias element): no atomics, deterministic.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..ops import _checks
from ._utils import compute_dtype, interpreted, launch


@triton.jit
def _tap_source(o, t, n_in, stride, pad, dil):
    """detseg::conv_transpose_tap_source: (input index, lands?)."""
    u = o + pad - t * dil
    i = u // stride
    ok = (u >= 0) & (u - i * stride == 0) & (i < n_in)
    return i, ok


@triton.jit
def _flat_block(total, BLOCK: tl.constexpr):
    """This program's int64 flat offsets and their in-range mask."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    return offs, offs < total


@triton.jit
def _unravel4(offs, D1, D2, D3):
    """Flat offsets into a contiguous [D0, D1, D2, D3] -> (i0, i1, i2, i3)."""
    return offs // (D3 * D2 * D1), (offs // (D3 * D2)) % D1, (offs // D3) % D2, offs % D3


@triton.jit
def _acc_zeros(ptr, BLOCK: tl.constexpr):
    """The accumulator: float64 for float64 data, float32 otherwise."""
    return tl.zeros([BLOCK], dtype=tl.float32) if ptr.dtype.element_ty != tl.float64 else tl.zeros([BLOCK],
                                                                                                   dtype=tl.float64)


@triton.jit
def _forward_kernel(x_ptr, w_ptr, b_ptr, out_ptr, total, CIN, H, W, COUT, CIG, COG, KH, KW, SH, SW, PH, PW, DH, DW,
                    HO, WO, HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr):
    offs, m = _flat_block(total, BLOCK)
    n, c, oy, ox = _unravel4(offs, COUT, HO, WO)
    gi = c // COG
    co = c % COG
    acc = _acc_zeros(x_ptr, BLOCK)
    if HAS_BIAS:
        acc += tl.load(b_ptr + c, mask=m, other=0.0).to(acc.dtype)
    for ky in range(0, KH):
        iy, oky = _tap_source(oy, ky, H, SH, PH, DH)
        for kx in range(0, KW):
            ix, okx = _tap_source(ox, kx, W, SW, PW, DW)
            ok = m & oky & okx
            for ci in range(0, CIG):
                cin = gi * CIG + ci
                xv = tl.load(x_ptr + ((n * CIN + cin) * H + iy) * W + ix, mask=ok, other=0.0)
                wv = tl.load(w_ptr + ((cin * COG + co) * KH + ky) * KW + kx, mask=ok, other=0.0)
                acc += xv.to(acc.dtype) * wv.to(acc.dtype)
    tl.store(out_ptr + offs, acc.to(out_ptr.dtype.element_ty), mask=m)


@triton.jit
def _grad_input_kernel(g_ptr, w_ptr, gin_ptr, total, CIN, H, W, COUT, CIG, COG, KH, KW, SH, SW, PH, PW, DH, DW,
                       HO, WO, BLOCK: tl.constexpr):
    offs, m = _flat_block(total, BLOCK)
    n, ci, iy, ix = _unravel4(offs, CIN, H, W)
    gi = ci // CIG
    acc = _acc_zeros(g_ptr, BLOCK)
    for ky in range(0, KH):
        oy = iy * SH - PH + ky * DH
        for kx in range(0, KW):
            ox = ix * SW - PW + kx * DW
            ok = m & (oy >= 0) & (oy < HO) & (ox >= 0) & (ox < WO)
            for co in range(0, COG):
                gv = tl.load(g_ptr + ((n * COUT + gi * COG + co) * HO + oy) * WO + ox, mask=ok, other=0.0)
                wv = tl.load(w_ptr + ((ci * COG + co) * KH + ky) * KW + kx, mask=ok, other=0.0)
                acc += gv.to(acc.dtype) * wv.to(acc.dtype)
    tl.store(gin_ptr + offs, acc.to(gin_ptr.dtype.element_ty), mask=m)


@triton.jit
def _grad_weight_kernel(g_ptr, x_ptr, gw_ptr, total, N, CIN, H, W, COUT, CIG, COG, KH, KW, SH, SW, PH, PW, DH, DW,
                        HO, WO, BLOCK: tl.constexpr):
    offs, m = _flat_block(total, BLOCK)
    ci, co, ky, kx = _unravel4(offs, COG, KH, KW)
    c = (ci // CIG) * COG + co
    acc = _acc_zeros(g_ptr, BLOCK)
    for n in range(0, N):
        for iy in range(0, H):
            oy = iy * SH - PH + ky * DH
            for ix in range(0, W):
                ox = ix * SW - PW + kx * DW
                ok = m & (oy >= 0) & (oy < HO) & (ox >= 0) & (ox < WO)
                xv = tl.load(x_ptr + ((n * CIN + ci) * H + iy) * W + ix, mask=ok, other=0.0)
                gv = tl.load(g_ptr + ((n * COUT + c) * HO + oy) * WO + ox, mask=ok, other=0.0)
                acc += xv.to(acc.dtype) * gv.to(acc.dtype)
    tl.store(gw_ptr + offs, acc.to(gw_ptr.dtype.element_ty), mask=m)


def _geom(input, weight, groups, hw):
    n, cin, h, w = input.shape
    return (cin, h, w, weight.shape[1] * groups, cin // groups, weight.shape[1], weight.shape[2], weight.shape[3])


def _block(t: torch.Tensor) -> int:
    return 4096 if interpreted(t) else 256


def conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups, dilation):
    """``Tensor[N, C_in, H, W]`` x ``Tensor[C_in, C_out / groups, kH, kW]`` -> ``Tensor[N, C_out, H_out,
    W_out]`` (as torch.ops.detseg.conv_transpose2d)."""
    return _ConvTranspose.apply(input, weight, bias, tuple(stride), tuple(padding), tuple(output_padding),
                                int(groups), tuple(dilation))


def _forward(input, weight, bias, stride, padding, output_padding, groups, dilation):
    ho, wo = _checks.conv_transpose2d("conv_transpose2d", input, weight, bias, stride, padding, output_padding,
                                      groups, dilation)
    x, w = input.contiguous(), weight.contiguous()
    out = torch.empty((x.shape[0], weight.shape[1] * groups, ho, wo), dtype=input.dtype, device=input.device)
    if out.numel():
        blk = _block(out)
        launch(_forward_kernel, (triton.cdiv(out.numel(), blk),), x, w, bias.contiguous() if bias is not None else w,
               out, out.numel(), *_geom(input, weight, groups, (ho, wo)), *stride, *padding, *dilation, ho, wo,
               HAS_BIAS=bias is not None, BLOCK=blk)
    return out.contiguous(memory_format=torch.channels_last) if _checks.roi_channels_last(input) else out


def _conv_transpose2d_backward(grad, input, weight, stride, padding, output_padding, groups, dilation, output_mask):
    ho, wo = _checks.conv_transpose2d_backward(grad, input, weight, stride, padding, output_padding, groups,
                                               dilation)
    g, x, w = grad.contiguous(), input.contiguous(), weight.contiguous()
    geom = _geom(input, weight, groups, (ho, wo))
    tail = (*stride, *padding, *dilation, ho, wo)
    gin = gw = gb = input.new_empty(0)
    if output_mask[0]:
        gin = torch.empty_like(x)
        if gin.numel():
            blk = _block(gin)
            launch(_grad_input_kernel, (triton.cdiv(gin.numel(), blk),), g, w, gin, gin.numel(), *geom, *tail,
                   BLOCK=blk)
        if _checks.roi_channels_last(input):
            gin = gin.contiguous(memory_format=torch.channels_last)
    if output_mask[1]:
        gw = torch.empty_like(w)
        blk = _block(gw)
        launch(_grad_weight_kernel, (triton.cdiv(gw.numel(), blk),), g, x, gw, gw.numel(), x.shape[0], *geom, *tail,
               BLOCK=blk)
        if _checks.roi_channels_last(input):  # ATen's layout (and the C++ kernels')
            gw = gw.contiguous(memory_format=torch.channels_last)
    if output_mask[2]:
        gb = g.to(compute_dtype(g)).sum(dim=(0, 2, 3)).to(grad.dtype)
    return gin, gw, gb


class _ConvTranspose(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, weight, bias, stride, padding, output_padding, groups, dilation):
        ctx.save_for_backward(input, weight)
        ctx.args = (stride, padding, output_padding, groups, dilation)
        ctx.has_bias = bias is not None
        return _forward(input, weight, bias, stride, padding, output_padding, groups, dilation)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        input, weight = ctx.saved_tensors
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
        gin, gw, gb = _conv_transpose2d_backward(grad, input, weight, *ctx.args, mask)
        return (gin if mask[0] else None, gw if mask[1] else None, gb if mask[2] else None) + (None,) * 5


# ------------------------------------------------------------------ max_unpool2d
# Two passes, as the CUDA kernel: winner[plane, j] = 1 + the last input position naming j (an
# atomic max, so duplicates resolve like the CPU loop), then a gather. The index check is done
# on the host first (one sync), with the reference's words.

@triton.jit
def _unpool_winner_kernel(idx_ptr, win_ptr, total, IN_PLANE, OUT_PLANE, BLOCK: tl.constexpr):
    offs, m = _flat_block(total, BLOCK)
    j = tl.load(idx_ptr + offs, mask=m, other=0)
    tl.atomic_max(win_ptr + (offs // IN_PLANE) * OUT_PLANE + j, offs % IN_PLANE + 1, mask=m)


@triton.jit
def _unpool_gather_kernel(x_ptr, win_ptr, out_ptr, total, IN_PLANE, OUT_PLANE, BLOCK: tl.constexpr):
    offs, m = _flat_block(total, BLOCK)
    w = tl.load(win_ptr + offs, mask=m, other=0)
    v = tl.load(x_ptr + (offs // OUT_PLANE) * IN_PLANE + w - 1, mask=m & (w > 0), other=0.0)
    tl.store(out_ptr + offs, v, mask=m)


@triton.jit
def _unpool_backward_kernel(g_ptr, idx_ptr, gin_ptr, total, IN_PLANE, OUT_PLANE, BLOCK: tl.constexpr):
    offs, m = _flat_block(total, BLOCK)
    j = tl.load(idx_ptr + offs, mask=m, other=0)
    tl.store(gin_ptr + offs, tl.load(g_ptr + (offs // IN_PLANE) * OUT_PLANE + j, mask=m, other=0.0), mask=m)


def _unpool_forward(input, indices, output_size):
    op = "max_unpool2d"
    _checks.max_unpool2d(op, input, indices, output_size)
    oh, ow = output_size
    _checks.max_unpool2d_indices(op, indices, oh * ow)
    n, c, h, w = input.shape
    out = input.new_empty((n, c, oh, ow))
    if out.numel() == 0:
        return out
    x, idx = input.contiguous(), indices.contiguous()
    win = torch.zeros(out.shape, dtype=torch.int64, device=input.device)
    blk = _block(out)
    if idx.numel():
        launch(_unpool_winner_kernel, (triton.cdiv(idx.numel(), blk),), idx, win, idx.numel(), h * w, oh * ow,
               BLOCK=blk)
    launch(_unpool_gather_kernel, (triton.cdiv(out.numel(), blk),), x, win, out, out.numel(), h * w, oh * ow,
           BLOCK=blk)
    return out


def _max_unpool2d_backward(grad, indices, output_size):
    op = "_max_unpool2d_backward"
    _checks.max_unpool2d_grad(op, grad, indices, output_size)
    _checks.max_unpool2d_indices(op, indices, output_size[0] * output_size[1])
    gin = grad.new_empty(indices.shape)
    if gin.numel():
        blk = _block(gin)
        launch(_unpool_backward_kernel, (triton.cdiv(gin.numel(), blk),), grad.contiguous(), indices.contiguous(), gin,
               gin.numel(), indices.shape[2] * indices.shape[3], output_size[0] * output_size[1], BLOCK=blk)
    return gin


class _MaxUnpool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, indices, output_size):
        ctx.save_for_backward(indices)
        ctx.size = list(output_size)
        return _unpool_forward(input, indices, output_size)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (indices,) = ctx.saved_tensors
        return _max_unpool2d_backward(grad, indices, ctx.size), None, None


def max_unpool2d(input, indices, output_size):
    """``Tensor[N, C, H, W]`` + int64 indices -> ``Tensor[N, C, H_out, W_out]`` (as torch.ops.detseg.max_unpool2d)."""
    return _MaxUnpool.apply(input, indices, tuple(output_size))
