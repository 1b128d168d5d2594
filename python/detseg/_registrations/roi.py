"""Registrations for the RoI ops (schemas in csrc/ops.cpp).

No autocast kernels: float16 / bfloat16 run natively (accumulated in float32, output in the
input dtype), which gives the bits torchvision's cast-to-float32-and-back autocast gives,
without the copies; the autocast keys fall through to the kernels.
"""

from __future__ import annotations

import torch

from ..ops import _checks

lib = "detseg::"


def _fmt(t: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if _checks.roi_channels_last(t) else torch.contiguous_format


# ---------------------------------------------------------------- fake kernels

@torch.library.register_fake(lib + "roi_align")
def _roi_align_fake(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned,
                    pool_mode="avg"):
    _checks.roi_align(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned, pool_mode)
    shape = (rois.shape[0], input.shape[1], pooled_height, pooled_width)
    return torch.empty(shape, dtype=input.dtype, device=input.device, memory_format=_fmt(input))


def _backward_checks(op, grad, rois, spatial_scale, ph, pw, n, c, h, w):
    _checks.roi_rois(op, rois, grad, "grad")
    if min(n, c, h, w) < 0:
        _checks.fail(op, f"input sizes must be >= 0, got ({n}, {c}, {h}, {w})")
    if grad.dim() != 4 or tuple(grad.shape) != (rois.shape[0], c, ph, pw):
        _checks.fail(op, f"grad must be a Tensor[{rois.shape[0]}, {c}, {ph}, {pw}], got shape {list(grad.shape)}")
    _checks.floating(op, "grad", grad)
    _checks.roi_scale_size(op, spatial_scale, ph, pw)


@torch.library.register_fake(lib + "_roi_align_backward")
def _roi_align_backward_fake(grad, rois, spatial_scale, pooled_height, pooled_width, batch_size, channels, height,
                             width, sampling_ratio, aligned, pool_mode="avg", input=None):
    op = "_roi_align_backward"
    _backward_checks(op, grad, rois, spatial_scale, pooled_height, pooled_width, batch_size, channels, height, width)
    _checks.roi_sampling_ratio(op, sampling_ratio)
    _checks.roi_pool_mode(op, pool_mode)
    if pool_mode == "max" and input is None:
        _checks.fail(op, "input must be given for pool_mode 'max'")
    return torch.empty((batch_size, channels, height, width), dtype=grad.dtype, device=grad.device,
                       memory_format=_fmt(grad))


@torch.library.register_fake(lib + "roi_pool")
def _roi_pool_fake(input, rois, spatial_scale, pooled_height, pooled_width):
    _checks.roi_pool(input, rois, spatial_scale, pooled_height, pooled_width)
    shape = (rois.shape[0], input.shape[1], pooled_height, pooled_width)
    fmt = _fmt(input)
    out = torch.empty(shape, dtype=input.dtype, device=input.device, memory_format=fmt)
    arg = torch.empty(shape, dtype=torch.int64, device=input.device, memory_format=fmt)
    return out, arg


@torch.library.register_fake(lib + "_roi_pool_backward")
def _roi_pool_backward_fake(grad, rois, argmax, spatial_scale, pooled_height, pooled_width, batch_size, channels,
                            height, width):
    op = "_roi_pool_backward"
    _backward_checks(op, grad, rois, spatial_scale, pooled_height, pooled_width, batch_size, channels, height, width)
    if argmax.shape != grad.shape:
        _checks.fail(op, f"argmax must have the shape of grad {list(grad.shape)}, got {list(argmax.shape)}")
    if argmax.dtype != torch.int64:
        _checks.fail(op, f"argmax must be an int64 tensor, got {argmax.dtype}", TypeError)
    return torch.empty((batch_size, channels, height, width), dtype=grad.dtype, device=grad.device,
                       memory_format=_fmt(grad))


def _ps_fake(op, input, rois, spatial_scale, ph, pw):
    _checks.roi_args(op, input, rois, spatial_scale, ph, pw)
    _checks.ps_roi_channels(op, input.shape[1], ph, pw)
    shape = (rois.shape[0], input.shape[1] // (ph * pw), ph, pw)
    return (torch.empty(shape, dtype=input.dtype, device=input.device),
            torch.empty(shape, dtype=torch.int64, device=input.device))


@torch.library.register_fake(lib + "ps_roi_align")
def _ps_roi_align_fake(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio):
    _checks.roi_sampling_ratio("ps_roi_align", sampling_ratio)
    return _ps_fake("ps_roi_align", input, rois, spatial_scale, pooled_height, pooled_width)


@torch.library.register_fake(lib + "ps_roi_pool")
def _ps_roi_pool_fake(input, rois, spatial_scale, pooled_height, pooled_width):
    return _ps_fake("ps_roi_pool", input, rois, spatial_scale, pooled_height, pooled_width)


def _ps_backward_fake(op, grad, rois, channel_mapping, spatial_scale, ph, pw, n, c, h, w):
    _checks.ps_roi_channels(op, c, ph, pw)
    _backward_checks(op, grad, rois, spatial_scale, ph, pw, n, c // (ph * pw), h, w)
    if channel_mapping.shape != grad.shape:
        _checks.fail(op, f"channel_mapping must have the shape of grad {list(grad.shape)}, "
                         f"got {list(channel_mapping.shape)}")
    return torch.empty((n, c, h, w), dtype=grad.dtype, device=grad.device)


@torch.library.register_fake(lib + "_ps_roi_align_backward")
def _ps_roi_align_backward_fake(grad, rois, channel_mapping, spatial_scale, pooled_height, pooled_width,
                                sampling_ratio, batch_size, channels, height, width):
    return _ps_backward_fake("_ps_roi_align_backward", grad, rois, channel_mapping, spatial_scale, pooled_height,
                             pooled_width, batch_size, channels, height, width)


@torch.library.register_fake(lib + "_ps_roi_pool_backward")
def _ps_roi_pool_backward_fake(grad, rois, channel_mapping, spatial_scale, pooled_height, pooled_width, batch_size,
                               channels, height, width):
    return _ps_backward_fake("_ps_roi_pool_backward", grad, rois, channel_mapping, spatial_scale, pooled_height,
                             pooled_width, batch_size, channels, height, width)


# ---------------------------------------------------------------- autograd
# Boxes get no gradient (as torchvision). The backward ops are registered kernels of their
# own (deterministic on CPU); max mode recomputes its argmax sample from the saved input.

def _roi_align_setup(ctx, inputs, output):
    input, rois, spatial_scale, ph, pw, sampling_ratio, aligned = inputs[:7]
    pool_mode = inputs[7] if len(inputs) > 7 else "avg"
    ctx.save_for_backward(rois, input if pool_mode == "max" else None)
    ctx.args = (spatial_scale, ph, pw, sampling_ratio, aligned, pool_mode)
    ctx.in_shape = tuple(input.shape)


def _roi_align_backward(ctx, grad):
    rois, input = ctx.saved_tensors
    spatial_scale, ph, pw, sampling_ratio, aligned, pool_mode = ctx.args
    n, c, h, w = ctx.in_shape
    g = torch.ops.detseg._roi_align_backward(grad, rois, spatial_scale, ph, pw, n, c, h, w, sampling_ratio, aligned,
                                             pool_mode, input)
    return g, None, None, None, None, None, None, None


def _index_output_setup(ctx, inputs, output):
    # roi_pool (argmax) and the ps ops (channel map): the backward needs rois, the op's index
    # output and the scalar args after (input, rois).
    input, rois = inputs[:2]
    ctx.save_for_backward(rois, output[1])
    ctx.mark_non_differentiable(output[1])
    ctx.args = tuple(inputs[2:])
    ctx.in_shape = tuple(input.shape)


def _index_output_backward(name: str):
    # The backward op of roi_pool / ps_roi_* takes (grad, rois, index output, the forward's
    # scalar args in order, N, C, H, W); the forward's inputs past input get no gradient.
    def backward(ctx, grad, _grad_index):
        rois, index = ctx.saved_tensors
        g = getattr(torch.ops.detseg, name)(grad, rois, index, *ctx.args, *ctx.in_shape)
        return (g, None) + (None,) * len(ctx.args)

    return backward


torch.library.register_autograd(lib + "roi_align", _roi_align_backward, setup_context=_roi_align_setup)
torch.library.register_autograd(lib + "roi_pool", _index_output_backward("_roi_pool_backward"),
                                setup_context=_index_output_setup)
torch.library.register_autograd(lib + "ps_roi_align", _index_output_backward("_ps_roi_align_backward"),
                                setup_context=_index_output_setup)
torch.library.register_autograd(lib + "ps_roi_pool", _index_output_backward("_ps_roi_pool_backward"),
                                setup_context=_index_output_setup)
