"""Transposed convolution and max unpooling, torch.nn.functional-compatible, plus keyword-only
``backend=``; and FCN's bilinear initialisation of an upsampling kernel.

Differences from torch.nn.functional: none in values (float16 / bfloat16 accumulate in
float32 on every backend); max_unpool2d raises ValueError on an index outside its plane
(ATen raises RuntimeError) and, where two inputs name one position, the later one in
row-major order wins on every backend.
"""

from __future__ import annotations

import torch

from .. import _backend
from . import _checks

__all__ = ["conv_transpose2d", "max_unpool2d", "bilinear_upsampling_weight"]


def _pair(op: str, arg: str, v) -> list[int]:
    if isinstance(v, int) and not isinstance(v, bool):
        return [v, v]
    try:
        a, b = v
        return [int(a), int(b)]
    except (TypeError, ValueError):
        _checks.fail(op, f"{arg} must be an int or a pair (height, width), got {v!r}", TypeError)


def _batched(op: str, input: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Tensor[C, H, W] (unbatched, as torch.nn.functional accepts) -> Tensor[1, C, H, W]."""
    _checks.tensor(op, "input", input)
    if input.dim() == 3:
        return input.unsqueeze(0), True
    return input, False


def conv_transpose2d(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride=1,
                     padding=0, output_padding=0, groups: int = 1, dilation=1, *,
                     backend: str | None = None) -> torch.Tensor:
    """Transposed 2-d convolution ("deconvolution"), as ``torch.nn.functional.conv_transpose2d``.

    ``input Tensor[N, C_in, H, W]`` (or ``Tensor[C_in, H, W]``), ``weight Tensor[C_in, C_out / groups,
    kH, kW]``, ``bias Tensor[C_out]`` -> ``Tensor[N, C_out, H_out, W_out]`` with
    ``H_out = (H - 1) * stride - 2 * padding + dilation * (kH - 1) + output_padding + 1``, in input's
    dtype and memory format (channels-last in, channels-last out). Each input value scatters a
    weighted copy of the kernel into the output; overlaps sum.
    """
    op = "conv_transpose2d"
    x, unbatched = _batched(op, input)
    args = (_pair(op, "stride", stride), _pair(op, "padding", padding), _pair(op, "output_padding", output_padding),
            int(groups), _pair(op, "dilation", dilation))
    out = _backend.dispatch(op, backend, x.device, x, weight, bias, *args)
    return out.squeeze(0) if unbatched else out


def _unpool_size(op: str, input: torch.Tensor, kernel, stride, padding, output_size) -> list[int]:
    """torch.nn.functional.max_unpool2d's output size: the default from kernel / stride / padding,
    or `output_size` ((H, W) or with leading (N, C)) within one stride of it."""
    default = [(input.shape[2 + a] - 1) * stride[a] - 2 * padding[a] + kernel[a] for a in range(2)]
    if output_size is None:
        size = default
    else:
        size = [int(v) for v in output_size]
        if len(size) in (3, 4):
            size = size[-2:]
        if len(size) != 2:
            _checks.fail(op, f"output_size must be (H, W) or (N, C, H, W), got {list(output_size)}")
        for a in range(2):
            if not default[a] - stride[a] < size[a] < default[a] + stride[a]:
                _checks.fail(op, f"output_size must be within one stride of the default size {default} (between "
                                 f"{[d - s + 1 for d, s in zip(default, stride)]} and "
                                 f"{[d + s - 1 for d, s in zip(default, stride)]}), got {size}")
    if min(size) <= 0:
        _checks.fail(op, f"output_size must be positive, got {size}")
    return size


def max_unpool2d(input: torch.Tensor, indices: torch.Tensor, kernel_size, stride=None, padding=0,
                 output_size=None, *, backend: str | None = None) -> torch.Tensor:
    """SegNet unpooling, as ``torch.nn.functional.max_unpool2d``: ``input Tensor[N, C, H, W]`` (or
    ``Tensor[C, H, W]``) and the ``indices`` max_pool2d(return_indices=True) returned -> ``Tensor[N, C,
    H_out, W_out]`` holding each input value at its index, zero elsewhere."""
    op = "max_unpool2d"
    x, unbatched = _batched(op, input)
    _checks.tensor(op, "indices", indices)
    idx = indices.unsqueeze(0) if unbatched else indices
    if x.dim() != 4:
        _checks.fail(op, f"input must be a Tensor[N, C, H, W] or Tensor[C, H, W], got shape {list(input.shape)}")
    kernel = _pair(op, "kernel_size", kernel_size)
    stride = kernel if stride is None else _pair(op, "stride", stride)
    size = _unpool_size(op, x, kernel, stride, _pair(op, "padding", padding), output_size)
    out = _backend.dispatch(op, backend, x.device, x, idx, size)
    return out.squeeze(0) if unbatched else out


def bilinear_upsampling_weight(channels: int, factor: int, *, dtype: torch.dtype = torch.float32,
                               device=None) -> torch.Tensor:
    """FCN's fixed bilinear upsampling kernel (Long, Shelhamer & Darrell, surgery.py): ``Tensor[channels,
    channels, k, k]`` with ``k = 2 * factor - factor % 2``, the separable tent
    ``(1 - |i - c| / f) * (1 - |j - c| / f)`` (``f = (k + 1) // 2``, ``c = f - 1`` for odd k else
    ``f - 0.5``) on the diagonal (channel i -> channel i), zero elsewhere. With ``stride=factor``
    and ``padding=ceil((factor - 1) / 2)`` a transposed convolution with it upsamples by exactly
    `factor` with no checkerboard (Caffe's bilinear filler); FCN-32s uses kernel 64, stride 32 and
    crops instead."""
    if not (isinstance(channels, int) and channels > 0):
        _checks.fail("bilinear_upsampling_weight", f"channels must be a positive int, got {channels!r}")
    if not (isinstance(factor, int) and factor > 0):
        _checks.fail("bilinear_upsampling_weight", f"factor must be a positive int, got {factor!r}")
    k = 2 * factor - factor % 2
    f = (k + 1) // 2
    c = f - 1 if k % 2 == 1 else f - 0.5
    r = 1 - (torch.arange(k, dtype=torch.float64) - c).abs() / f
    filt = (r[:, None] * r[None, :]).to(dtype)
    w = torch.zeros((channels, channels, k, k), dtype=dtype, device=device)
    i = torch.arange(channels, device=device)
    w[i, i] = filt.to(device)
    return w
