"""box_area, box_convert, clip_boxes_to_image, remove_small_boxes on every backend against
detseg.reference evaluated in float64 (backend x dtype x layout x size)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import _backends as B
import _data as D
import detseg
from detseg import reference as R
from tolerances import assert_close

ALL_DTYPES = D.DTYPES + D.INT_DTYPES
FORMATS = ["xyxy", "xywh", "cxcywh"]


def _boxes(n, dtype, lay, device, seed=0):
    base = D.cast(D.random_boxes(n, seed), dtype)  # the exact values the op sees
    return D.layout(base, lay).to(device), base


def _area_dtype(dtype):
    if dtype == torch.float64:
        return torch.float64
    if dtype.is_floating_point:
        return torch.float32
    return dtype if dtype in (torch.int32, torch.int64) else torch.int32


# ---------------------------------------------------------------- box_area

@pytest.mark.parametrize("target,n,dtype,lay", B.matrix(ALL_DTYPES, D.LAYOUTS))
def test_box_area(target, n, dtype, lay):
    backend, device = target
    boxes, base = _boxes(n, dtype, lay, device)
    out = detseg.box_area(boxes, backend=backend)
    assert out.shape == (n,) and out.device.type == device
    assert out.dtype == _area_dtype(dtype)
    assert_close(out, R.box_area(base.double()))


@pytest.mark.parametrize("target", B.targets())
@pytest.mark.parametrize("shape", [(0, 4), (2, 3, 4), (2, 0, 4), (4,), (1, 1, 5, 4)])
def test_box_area_leading_dims(target, shape):
    backend, device = target
    boxes = D.random_boxes(math.prod(shape[:-1]), 3).reshape(shape).float()
    out = detseg.box_area(boxes.to(device), backend=backend)
    assert out.shape == shape[:-1]
    assert_close(out, R.box_area(boxes.double()))


@pytest.mark.parametrize("target", B.targets())
def test_box_area_degenerate(target):
    # Areas are not clamped (torchvision): an inverted box has a negative area; NaN propagates.
    backend, device = target
    boxes = torch.tensor([[0, 0, 0, 5], [2, 2, 1, 4], [0, 0, math.inf, 1], [0, math.nan, 1, 1], [1, 1, 1, 1.0]])
    out = detseg.box_area(boxes.to(device), backend=backend).cpu()
    assert_close(out, torch.tensor([0.0, -2.0, math.inf, math.nan, 0.0]))


# ---------------------------------------------------------------- box_convert

CONVERT_DTYPES = D.DTYPES + [torch.int64, torch.int32]


@pytest.mark.parametrize("in_fmt,out_fmt", list(itertools.product(FORMATS, FORMATS)))
@pytest.mark.parametrize("target,n,dtype,lay", B.matrix(CONVERT_DTYPES, ["contiguous", "colslice", "transposed"],
                                                         sizes={k: [0, 7, 257] if k != "triton" else [0, 7, 33]
                                                                for k in B.SIZES}))
def test_box_convert(target, n, dtype, lay, in_fmt, out_fmt):
    backend, device = target
    boxes, base = _boxes(n, dtype, lay, device)
    out = detseg.box_convert(boxes, in_fmt, out_fmt, backend=backend)
    expected = R.box_convert(base.double(), in_fmt, out_fmt)
    assert out.shape == (n, 4)
    if dtype.is_floating_point:
        assert out.dtype == dtype
    else:  # integer boxes stay integer unless a centre (a half) is involved
        assert out.dtype == (dtype if "cxcywh" not in (in_fmt, out_fmt) or in_fmt == out_fmt
                             else torch.get_default_dtype())
    assert_close(out, expected)
    if in_fmt == out_fmt:
        assert out.data_ptr() != boxes.data_ptr() or n == 0, "identity conversion must not alias its input"


@pytest.mark.parametrize("target", B.targets())
@pytest.mark.parametrize("in_fmt,out_fmt", [(a, b) for a, b in itertools.product(FORMATS, FORMATS) if a != b])
def test_box_convert_round_trip(target, in_fmt, out_fmt):
    backend, device = target
    boxes = D.random_boxes(33, 5).to(device)
    there = detseg.box_convert(boxes, in_fmt, out_fmt, backend=backend)
    back = detseg.box_convert(there, out_fmt, in_fmt, backend=backend)
    assert_close(back, boxes.cpu(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("target", B.targets())
def test_box_convert_known_values(target):
    backend, device = target
    xyxy = torch.tensor([[10.0, 20.0, 30.0, 60.0]], device=device)
    assert_close(detseg.box_convert(xyxy, "xyxy", "xywh", backend=backend), torch.tensor([[10.0, 20, 20, 40]]))
    assert_close(detseg.box_convert(xyxy, "xyxy", "cxcywh", backend=backend), torch.tensor([[20.0, 40, 20, 40]]))
    batched = D.random_boxes(6, 1).reshape(2, 3, 4).to(device)
    out = detseg.box_convert(batched, "xyxy", "cxcywh", backend=backend)
    assert out.shape == (2, 3, 4)
    assert_close(out, R.box_convert(batched.cpu(), "xyxy", "cxcywh"))


@pytest.mark.parametrize("fmt", ["XYXY", "CxCyWh"])
def test_box_convert_format_case_insensitive(fmt):
    boxes = D.random_boxes(3)
    assert_close(detseg.box_convert(boxes, fmt, "xywh", backend="reference"),
                 R.box_convert(boxes, fmt.lower(), "xywh"))


# ---------------------------------------------------------------- clip_boxes_to_image

@pytest.mark.parametrize("target,n,dtype,lay", B.matrix(D.DTYPES + [torch.int64, torch.int32], D.LAYOUTS))
def test_clip_boxes_to_image(target, n, dtype, lay):
    backend, device = target
    base = D.cast(D.random_boxes(n, 2, scale=140.0) - 20.0, dtype) if dtype.is_floating_point or n == 0 \
        else D.cast(D.random_boxes(n, 2, scale=140.0) - 20.0, dtype)
    boxes = D.layout(base, lay).to(device)
    height, width = 90, 100
    out = detseg.clip_boxes_to_image(boxes, (height, width), backend=backend)
    assert out.dtype == dtype and out.shape == (n, 4)
    assert_close(out, R.clip_boxes_to_image(base.double(), height, width))
    if n:
        o = out.double().cpu()
        assert bool((o[:, 0::2] >= 0).all() and (o[:, 0::2] <= width).all())
        assert bool((o[:, 1::2] >= 0).all() and (o[:, 1::2] <= height).all())


@pytest.mark.parametrize("target", B.targets())
def test_clip_boxes_to_image_nonfinite_and_batched(target):
    backend, device = target
    boxes = torch.tensor([[-math.inf, -5.0, math.inf, 500.0], [math.nan, 1.0, 2.0, 3.0]], device=device)
    out = detseg.clip_boxes_to_image(boxes, (10, 20), backend=backend).cpu()
    # clamp maps +-inf to the bounds and keeps NaN (torch.clamp)
    assert_close(out, torch.tensor([[0.0, 0.0, 20.0, 10.0], [math.nan, 1.0, 2.0, 3.0]]))
    batched = (D.random_boxes(12, 4, scale=60) - 10).reshape(3, 4, 4).to(device)
    out = detseg.clip_boxes_to_image(batched, (32, 48), backend=backend)
    assert out.shape == (3, 4, 4)
    assert_close(out, R.clip_boxes_to_image(batched.cpu(), 32, 48))


# ---------------------------------------------------------------- remove_small_boxes

@pytest.mark.parametrize("target,n,dtype,lay", B.matrix(D.DTYPES + [torch.int64, torch.int32, torch.int16], D.LAYOUTS))
def test_remove_small_boxes(target, n, dtype, lay):
    backend, device = target
    # integer coordinates and a half-integer min_size: the decision is exact in every dtype
    base = D.cast(D.integer_boxes(n, 6, scale=200, max_wh=20), dtype)
    boxes = D.layout(base, lay).to(device)
    keep = detseg.remove_small_boxes(boxes, 9.5, backend=backend)
    assert keep.dtype == torch.int64 and keep.device.type == device
    torch.testing.assert_close(keep.cpu(), R.remove_small_boxes(base.double(), 9.5), rtol=0, atol=0)


@pytest.mark.parametrize("target", B.targets())
def test_remove_small_boxes_boundary(target):
    # a side exactly equal to min_size is kept (>=), as in torchvision; NaN sides are removed
    backend, device = target
    boxes = torch.tensor([[0, 0, 2, 2], [0, 0, 2, 1.999], [0, 0, 3, 2], [0, 0, math.nan, 5], [5, 5, 4, 9.0]])
    keep = detseg.remove_small_boxes(boxes.to(device), 2.0, backend=backend).cpu()
    assert keep.tolist() == [0, 2]
    assert detseg.remove_small_boxes(boxes.to(device), 0.0, backend=backend).cpu().tolist() == [0, 1, 2]
