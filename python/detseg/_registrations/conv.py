"""Registrations for transposed convolution and max unpooling (schemas in csrc/ops.cpp).

No autocast kernels: float16 / bfloat16 run natively (accumulated in float32, output in the
input dtype).
"""

from __future__ import annotations

import torch

from ..ops import _checks

lib = "detseg::"


def _fmt(t: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if _checks.roi_channels_last(t) else torch.contiguous_format


# ---------------------------------------------------------------- fake kernels

def _conv_fake(op, input, weight, bias, stride, padding, output_padding, groups, dilation):
    ho, wo = _checks.conv_transpose2d(op, input, weight, bias, stride, padding, output_padding, groups, dilation)
    shape = (input.shape[0], weight.shape[1] * groups, ho, wo)
    return torch.empty(shape, dtype=input.dtype, device=input.device, memory_format=_fmt(input))


@torch.library.register_fake(lib + "conv_transpose2d")
def _conv_transpose2d_fake(input, weight, bias, stride, padding, output_padding, groups, dilation):
    return _conv_fake("conv_transpose2d", input, weight, bias, stride, padding, output_padding, groups, dilation)


@torch.library.register_fake(lib + "_conv_transpose2d_path")
def _conv_transpose2d_path_fake(input, weight, bias, stride, padding, output_padding, groups, dilation, path):
    return _conv_fake("_conv_transpose2d_path", input, weight, bias, stride, padding, output_padding, groups,
                      dilation)


@torch.library.register_fake(lib + "_conv_transpose2d_backward")
def _conv_transpose2d_backward_fake(grad, input, weight, stride, padding, output_padding, groups, dilation,
                                    output_mask):
    _checks.conv_transpose2d_backward(grad, input, weight, stride, padding, output_padding, groups, dilation)
    gin = torch.empty(input.shape, dtype=input.dtype, device=input.device, memory_format=_fmt(input)) \
        if output_mask[0] else input.new_empty(0)
    # grad_weight follows the input's layout (ATen's rule: channels-last input, channels-last grad_weight).
    gw = torch.empty(weight.shape, dtype=weight.dtype, device=weight.device, memory_format=_fmt(input)) \
        if output_mask[1] else weight.new_empty(0)
    gb = weight.new_empty(weight.shape[1] * groups) if output_mask[2] else weight.new_empty(0)
    return gin, gw, gb


@torch.library.register_fake(lib + "max_unpool2d")
def _max_unpool2d_fake(input, indices, output_size):
    _checks.max_unpool2d("max_unpool2d", input, indices, output_size)
    return input.new_empty((input.shape[0], input.shape[1], *output_size))


@torch.library.register_fake(lib + "_max_unpool2d_backward")
def _max_unpool2d_backward_fake(grad, indices, output_size):
    _checks.max_unpool2d_grad("_max_unpool2d_backward", grad, indices, output_size)
    return grad.new_empty(indices.shape)


# ---------------------------------------------------------------- autograd
# The backward ops are kernels of their own (deterministic on CPU); they are differentiable
# only once (no double backward).

def _conv_setup(ctx, inputs, output):
    input, weight, bias = inputs[:3]
    ctx.save_for_backward(input, weight)
    ctx.args = tuple(inputs[3:8])
    ctx.has_bias = bias is not None


def _conv_backward(ctx, grad):
    input, weight = ctx.saved_tensors
    mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
    # grad in the input's layout: the kernel runs channels-last inputs natively.
    gin, gw, gb = torch.ops.detseg._conv_transpose2d_backward(grad.contiguous(memory_format=_fmt(input)), input,
                                                              weight, *ctx.args, mask)
    return (gin if mask[0] else None, gw if mask[1] else None, gb if mask[2] else None) + (None,) * 5


def _unpool_setup(ctx, inputs, output):
    _, indices, output_size = inputs
    ctx.save_for_backward(indices)
    ctx.output_size = output_size


def _unpool_backward(ctx, grad):
    (indices,) = ctx.saved_tensors
    return torch.ops.detseg._max_unpool2d_backward(grad, indices, ctx.output_size), None, None


torch.library.register_autograd(lib + "conv_transpose2d", _conv_backward, setup_context=_conv_setup)
torch.library.register_autograd(lib + "max_unpool2d", _unpool_backward, setup_context=_unpool_setup)
