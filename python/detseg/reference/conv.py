"""Pure-PyTorch transposed convolution and max unpooling: the oracle of the C++/CUDA/Triton kernels.

Independent of ATen's transposed convolution on purpose (parity with it must mean something):
the forward is a scatter over kernel taps, one matrix product per tap added into a strided
slice of the (uncropped) output, following the geometry of csrc/include/detseg/conv_transpose.h
(input i reaches output i * stride - padding + t * dilation through tap t). float64 inputs are
computed in float64, the other floating types in float32.
"""

from __future__ import annotations

import torch

from ..ops import _checks


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _full_extent(n: int, k: int, s: int, p: int, d: int, out: int) -> int:
    """Rows of the uncropped output: every tap's reach, and the cropped window [p, p + out)."""
    return max((n - 1) * s + (k - 1) * d + 1, p + out)


def _tap_slice(t: int, n: int, s: int, d: int) -> slice:
    """The uncropped output positions tap t of inputs 0..n-1 reaches."""
    return slice(t * d, t * d + (n - 1) * s + 1, s)


def conv_transpose2d(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride, padding,
                     output_padding, groups: int, dilation) -> torch.Tensor:
    """``input Tensor[N, C_in, H, W]``, ``weight Tensor[C_in, C_out / groups, kH, kW]``,
    ``bias Tensor[C_out]?`` -> ``Tensor[N, C_out, H_out, W_out]`` (torch.nn.functional.conv_transpose2d)."""
    ho, wo = _checks.conv_transpose2d("conv_transpose2d", input, weight, bias, stride, padding, output_padding,
                                      groups, dilation)
    ct = _compute_dtype(input.dtype)
    n, cin, h, w = input.shape
    _, cog, kh, kw = weight.shape
    g = groups
    x = input.to(ct).reshape(n, g, cin // g, h, w)
    wt = weight.to(ct).reshape(g, cin // g, cog, kh, kw)
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    full = x.new_zeros((n, g, cog, _full_extent(h, kh, sh, ph, dh, ho), _full_extent(w, kw, sw, pw, dw, wo)))
    for ky in range(kh):
        rows = _tap_slice(ky, h, sh, dh)
        for kx in range(kw):
            # [N, G, C_in/G, H, W] x [G, C_in/G, C_out/G] -> [N, G, C_out/G, H, W]
            full[:, :, :, rows, _tap_slice(kx, w, sw, dw)] += torch.einsum("ngchw,gcd->ngdhw", x, wt[..., ky, kx])
    out = full[:, :, :, ph:ph + ho, pw:pw + wo].reshape(n, g * cog, ho, wo)
    if bias is not None:
        out = out + bias.to(ct).view(1, -1, 1, 1)
    fmt = torch.channels_last if _checks.roi_channels_last(input) else torch.contiguous_format
    return out.to(input.dtype).contiguous(memory_format=fmt)


def _conv_transpose2d_backward(grad: torch.Tensor, input: torch.Tensor, weight: torch.Tensor, stride, padding,
                               output_padding, groups: int, dilation, output_mask):
    """-> (grad_input, grad_weight, grad_bias): the adjoint of the tap scatter (each tap's slice of
    the gradient gathered back); an entry whose output_mask is False is an empty Tensor[0]."""
    ho, wo = _checks.conv_transpose2d_backward(grad, input, weight, stride, padding, output_padding, groups,
                                               dilation)
    ct = _compute_dtype(input.dtype)
    n, cin, h, w = input.shape
    _, cog, kh, kw = weight.shape
    g = groups
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    x = input.to(ct).reshape(n, g, cin // g, h, w)
    wt = weight.to(ct).reshape(g, cin // g, cog, kh, kw)
    gfull = grad.new_zeros((n, g * cog, _full_extent(h, kh, sh, ph, dh, ho), _full_extent(w, kw, sw, pw, dw, wo)),
                           dtype=ct)
    gfull[:, :, ph:ph + ho, pw:pw + wo] = grad.to(ct)
    gfull = gfull.reshape(n, g, cog, *gfull.shape[2:])
    gin = torch.zeros_like(x) if output_mask[0] else None
    gw = torch.zeros_like(wt) if output_mask[1] else None
    for ky in range(kh):
        rows = _tap_slice(ky, h, sh, dh)
        for kx in range(kw):
            gs = gfull[:, :, :, rows, _tap_slice(kx, w, sw, dw)]  # [N, G, C_out/G, H, W]
            if gin is not None:
                gin += torch.einsum("ngdhw,gcd->ngchw", gs, wt[..., ky, kx])
            if gw is not None:
                gw[..., ky, kx] = torch.einsum("ngchw,ngdhw->gcd", x, gs)
    empty = input.new_empty(0)
    fmt = torch.channels_last if _checks.roi_channels_last(input) else torch.contiguous_format
    grad_input = gin.reshape(input.shape).to(input.dtype).contiguous(memory_format=fmt) if gin is not None else empty
    grad_weight = gw.reshape(weight.shape).to(weight.dtype) if gw is not None else empty
    grad_bias = grad.to(ct).sum(dim=(0, 2, 3)).to(input.dtype) if output_mask[2] else empty
    return grad_input, grad_weight, grad_bias


def _conv_transpose2d_path(input, weight, bias, stride, padding, output_padding, groups, dilation, path):
    """The reference has one path: every name computes the same scatter."""
    return conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups, dilation)


def _unpool_forward(input: torch.Tensor, indices: torch.Tensor, oh: int, ow: int) -> torch.Tensor:
    n, c, h, w = input.shape
    idx = indices.reshape(n, c, h * w)
    order = torch.arange(idx.shape[2], device=input.device).expand_as(idx)
    winner = torch.full((n, c, oh * ow), -1, dtype=torch.int64, device=input.device)
    winner.scatter_reduce_(2, idx, order, reduce="amax")
    vals = input.reshape(n, c, h * w).gather(2, winner.clamp(min=0))
    return torch.where(winner >= 0, vals, torch.zeros((), dtype=input.dtype, device=input.device)).reshape(
        n, c, oh, ow)


class _MaxUnpool2d(torch.autograd.Function):
    """The backward is the gather of _max_unpool2d_backward (as ATen and the C++ kernel), not
    autograd's derivative of the winner selection, so duplicate indices get the same gradient
    on every backend."""

    @staticmethod
    def forward(ctx, input, indices, oh, ow):
        ctx.save_for_backward(indices)
        ctx.size = (oh, ow)
        return _unpool_forward(input, indices, oh, ow)

    @staticmethod
    def backward(ctx, grad):
        (indices,) = ctx.saved_tensors
        return _max_unpool2d_backward(grad, indices, list(ctx.size)), None, None, None


def max_unpool2d(input: torch.Tensor, indices: torch.Tensor, output_size) -> torch.Tensor:
    """``input Tensor[N, C, H, W]``, ``indices`` int64 of its shape (flat positions in each
    ``H_out x W_out`` plane) -> ``Tensor[N, C, H_out, W_out]``, zero where no index points; where
    several inputs name one position, the last in row-major order wins (csrc/cpu/max_unpool.cpp)."""
    op = "max_unpool2d"
    _checks.max_unpool2d(op, input, indices, output_size)
    oh, ow = output_size
    _checks.max_unpool2d_indices(op, indices, oh * ow)
    return _MaxUnpool2d.apply(input, indices, oh, ow)


def _max_unpool2d_backward(grad: torch.Tensor, indices: torch.Tensor, output_size) -> torch.Tensor:
    """The gather: ``grad_input[n, c, i, j] = grad[n, c].flatten()[indices[n, c, i, j]]``."""
    op = "_max_unpool2d_backward"
    _checks.max_unpool2d_grad(op, grad, indices, output_size)
    _checks.max_unpool2d_indices(op, indices, output_size[0] * output_size[1])
    n, c, h, w = indices.shape
    oh, ow = output_size
    return grad.reshape(n, c, oh * ow).gather(2, indices.reshape(n, c, h * w)).reshape(indices.shape)
