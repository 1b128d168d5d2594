"""Argument checks of transposed convolution and max unpooling (twin of csrc/checks/conv.h)."""

from __future__ import annotations

import torch

from .common import *  # noqa: F401,F403

def _dt(dtype: torch.dtype) -> str:
    """torch's name of a dtype without the module ("float32"), as csrc/checks.h prints it."""
    return str(dtype).replace("torch.", "")


def conv_out_size(i: int, k: int, s: int, p: int, d: int, op_: int) -> int:
    """(in - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1 (detseg/conv_transpose.h)."""
    return (i - 1) * s - 2 * p + d * (k - 1) + op_ + 1


def conv_pair(op: str, arg: str, v) -> None:
    if len(v) != 2:
        fail(op, f"{arg} must be a pair (height, width), got {list(v)}")


def _like_input(op: str, arg: str, t: torch.Tensor, input: torch.Tensor) -> None:
    if t.dtype != input.dtype:
        fail(op, f"{arg} must have the dtype of input ({_dt(input.dtype)}), got {_dt(t.dtype)}", TypeError)
    if t.device != input.device:
        fail(op, f"{arg} must be on the device of input ({input.device}), got {t.device}")


def conv_transpose2d(op: str, input, weight, bias, stride, padding, output_padding, groups, dilation
                     ) -> tuple[int, int]:
    """The checks of conv_transpose2d; returns (H_out, W_out)."""
    tensor(op, "input", input)
    tensor(op, "weight", weight)
    if input.dim() != 4 or min(input.shape[1:]) <= 0:
        fail(op, f"input must be a Tensor[N, C_in, H, W] with C_in, H, W > 0 (N may be 0), got shape "
                 f"{list(input.shape)}")
    floating(op, "input", input)
    if weight.dim() != 4 or min(weight.shape[1:]) <= 0:
        fail(op, f"weight must be a Tensor[C_in, C_out / groups, kH, kW] with non-zero sizes, got shape "
                 f"{list(weight.shape)}")
    _like_input(op, "weight", weight, input)
    for arg, v in (("stride", stride), ("padding", padding), ("output_padding", output_padding),
                   ("dilation", dilation)):
        conv_pair(op, arg, v)
    stride, padding, output_padding, dilation = (list(v) for v in (stride, padding, output_padding, dilation))
    if min(stride) <= 0:
        fail(op, f"stride must be positive, got {stride}")
    if min(dilation) <= 0:
        fail(op, f"dilation must be positive, got {dilation}")
    if min(padding) < 0:
        fail(op, f"padding must be non-negative, got {padding}")
    if min(output_padding) < 0 or any(o >= s and o >= d for o, s, d in zip(output_padding, stride, dilation)):
        fail(op, f"output_padding must be non-negative and smaller than stride or dilation on each axis, got "
                 f"output_padding {output_padding} with stride {stride} and dilation {dilation}")
    if groups <= 0:
        fail(op, f"groups must be positive, got {groups}")
    cin = input.shape[1]
    if weight.shape[0] != cin:
        fail(op, f"weight.size(0) must equal the input channels {cin} (weight is Tensor[C_in, C_out / groups, kH, "
                 f"kW]), got weight of shape {list(weight.shape)}")
    if cin % groups != 0:
        fail(op, f"groups must divide the input channels {cin}, got groups = {groups}")
    if bias is not None:
        cout = weight.shape[1] * groups
        if bias.dim() != 1 or bias.shape[0] != cout:
            fail(op, f"bias must be a Tensor[C_out] with C_out = weight.size(1) * groups = {cout}, got shape "
                     f"{list(bias.shape)}")
        _like_input(op, "bias", bias, input)
    ho, wo = (conv_out_size(input.shape[2 + a], weight.shape[2 + a], stride[a], padding[a], dilation[a],
                            output_padding[a]) for a in range(2))
    if ho <= 0 or wo <= 0:
        fail(op, f"the output size ({ho}, {wo}) computed from input {list(input.shape[2:])}, kernel "
                 f"{list(weight.shape[2:])}, stride {stride}, padding {padding}, output_padding {output_padding} and "
                 f"dilation {dilation} must be positive: padding is too large")
    return ho, wo


def conv_transpose2d_backward(grad, input, weight, stride, padding, output_padding, groups, dilation
                              ) -> tuple[int, int]:
    op = "_conv_transpose2d_backward"
    ho, wo = conv_transpose2d(op, input, weight, None, stride, padding, output_padding, groups, dilation)
    cout = weight.shape[1] * groups
    want = [input.shape[0], cout, ho, wo]
    if list(grad.shape) != want:
        fail(op, f"grad must be a Tensor[{', '.join(map(str, want))}] (the output's shape), got shape "
                 f"{list(grad.shape)}")
    if grad.dtype != input.dtype:
        fail(op, f"grad must have the dtype of input ({_dt(input.dtype)}), got {_dt(grad.dtype)}", TypeError)
    return ho, wo


def max_unpool2d(op: str, input, indices, output_size) -> None:
    tensor(op, "input", input)
    tensor(op, "indices", indices)
    if input.dim() != 4:
        fail(op, f"input must be a Tensor[N, C, H, W], got shape {list(input.shape)}")
    floating(op, "input", input)
    if indices.shape != input.shape:
        fail(op, f"indices must have the shape of input {list(input.shape)}, got {list(indices.shape)}")
    if indices.dtype != torch.int64:
        fail(op, f"indices must be an int64 tensor, got {_dt(indices.dtype)}", TypeError)
    if indices.device != input.device:
        fail(op, f"indices must be on the device of input ({input.device}), got {indices.device}")
    conv_pair(op, "output_size", output_size)
    if min(output_size) <= 0:
        fail(op, f"output_size must be positive, got {list(output_size)}")


def max_unpool2d_grad(op: str, grad, indices, output_size) -> None:
    conv_pair(op, "output_size", output_size)
    if indices.dim() != 4:
        fail(op, f"indices must be a Tensor[N, C, H, W], got shape {list(indices.shape)}")
    if indices.dtype != torch.int64:
        fail(op, f"indices must be an int64 tensor, got {_dt(indices.dtype)}", TypeError)
    want = [indices.shape[0], indices.shape[1], *output_size]
    if list(grad.shape) != want:
        fail(op, f"grad must be a Tensor[{', '.join(map(str, want))}], got shape {list(grad.shape)}")
    floating(op, "grad", grad)
    if indices.device != grad.device:
        fail(op, f"indices must be on the device of grad ({grad.device}), got {indices.device}")


def max_unpool2d_indices(op: str, indices, plane: int) -> None:
    """Data check (one host sync): every index in [0, plane); names the first bad one in order."""
    if indices.numel() == 0:
        return
    bad = (indices < 0) | (indices >= plane)
    if bool(bad.any()):
        v = int(indices[bad][0])  # row-major order: plane by plane, as the C++ kernel reports
        fail(op, f"indices must hold positions in [0, output_size[0] * output_size[1] = {plane}), got {v}")
