"""CPU results are bitwise identical for any thread count (CONTEXT.md): no order-dependent
reductions, no atomics. Sizes are large enough for at::parallel_for to split the work."""

from __future__ import annotations

import pytest
import torch

import _backends as B
import _data as D
import detseg
from tolerances import assert_bitwise

pytestmark = pytest.mark.usefixtures("_cpp")


@pytest.fixture
def _cpp():
    B.require("cpp")


def _both(fn):
    one = B.at_threads(1, fn)
    two = B.at_threads(2, fn)
    return one, two


@pytest.mark.parametrize("kind", ["iou", "giou", "diou", "ciou"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_iou_matrix_forward_backward_threads(kind, dtype):
    a = D.clustered_boxes(700, 1, clusters=8, jitter=8).to(dtype).requires_grad_()
    b = D.clustered_boxes(300, 2, clusters=8, jitter=8).to(dtype).requires_grad_()
    fn = {"iou": detseg.box_iou, "giou": detseg.generalized_box_iou, "diou": detseg.distance_box_iou,
          "ciou": detseg.complete_box_iou}[kind]
    g = torch.randn(700, 300, generator=D.gen(3)).to(torch.float64 if dtype == torch.float64 else torch.float32)

    def run():
        out = fn(a, b, backend="cpp")
        ga, gb = torch.autograd.grad(out, (a, b), g)
        return out.detach(), ga, gb

    one, two = _both(run)
    for x, y in zip(one, two):
        assert_bitwise(x, y)
    batched = lambda: fn(a.detach().reshape(7, 100, 4), b.detach()[:210].reshape(7, 30, 4), backend="cpp")  # noqa: E731
    assert_bitwise(*_both(batched))


@pytest.mark.parametrize("kind", ["giou", "diou", "ciou"])
def test_iou_loss_forward_backward_threads(kind):
    fn = {"giou": detseg.generalized_box_iou_loss, "diou": detseg.distance_box_iou_loss,
          "ciou": detseg.complete_box_iou_loss}[kind]
    a = D.random_boxes(50_000, 4, scale=60).float().requires_grad_()
    b = D.random_boxes(50_000, 5, scale=60).float().requires_grad_()

    def run():
        out = fn(a, b, backend="cpp")
        ga, gb = torch.autograd.grad(out.sum(), (a, b))
        return out.detach(), ga, gb

    for x, y in zip(*_both(run)):
        assert_bitwise(x, y)


@pytest.mark.parametrize("scenario", ["clustered", "ties"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nms_threads(scenario, dtype):
    if scenario == "clustered":
        boxes, scores = D.clustered_boxes(6000, 7, clusters=40, jitter=6), D.distinct_scores(6000, 7)
    else:
        boxes, scores = D.integer_boxes(6000, 8, scale=200, max_wh=30), D.tie_scores(6000, 8, levels=7)
    boxes, scores = boxes.to(dtype), scores.to(dtype)
    one, two = _both(lambda: detseg.nms(boxes, scores, 0.5, backend="cpp"))
    assert_bitwise(one, two)
    assert 0 < len(one) < 6000
    idxs = torch.randint(0, 30, (6000,), generator=D.gen(9))
    one, two = _both(lambda: detseg.batched_nms(boxes, scores, idxs, 0.5, backend="cpp"))
    assert_bitwise(one, two)


def test_box_utils_threads():
    b = D.random_boxes(200_000, 11, scale=500).float() - 50
    for fn in (lambda: detseg.box_area(b, backend="cpp"),
               lambda: detseg.box_convert(b, "xyxy", "cxcywh", backend="cpp"),
               lambda: detseg.clip_boxes_to_image(b, (300, 400), backend="cpp"),
               lambda: detseg.remove_small_boxes(b, 10.0, backend="cpp")):
        assert_bitwise(*_both(fn))


@pytest.mark.parametrize("classes", [2, 80])
def test_batched_nms_parallel_path_threads(classes):
    # above 32k boxes the CPU batched_nms runs classes in parallel
    boxes = D.clustered_boxes(40_000, 12, clusters=300, jitter=8).float()
    scores = D.tie_scores(40_000, 13, levels=20).float()
    idxs = torch.randint(0, classes, (40_000,), generator=D.gen(14))
    one, two = _both(lambda: detseg.batched_nms(boxes, scores, idxs, 0.5, backend="cpp"))
    assert_bitwise(one, two)
    assert 0 < len(one) < 40_000
