"""torch.library.opcheck on every torch.ops.detseg op (schema, autograd registration, fake
kernel, AOT dispatch) and torch.compile(fullgraph=True) smoke tests through the public API.
The compile tests use the aot_eager backend: dynamo + fake kernels + AOT autograd are what
detseg provides; inductor's C++ codegen would add ~20 s per test on this machine and test torch."""

from __future__ import annotations

import pytest
import torch

import _backends as B
import _data as D
import detseg

pytestmark = pytest.mark.usefixtures("_cpp_required")


@pytest.fixture
def _cpp_required():
    import _backends
    _backends.require("cpp")


def _boxes(n, seed, dtype=torch.float32, grad=False):
    return D.random_boxes(n, seed, scale=40.0).to(dtype).requires_grad_(grad)


def _samples():
    b7, b5 = _boxes(7, 1), _boxes(5, 2)
    s7 = D.distinct_scores(7, 1).float()
    yield "box_area", (b7,)
    yield "box_area", (_boxes(6, 3, torch.float64).reshape(2, 3, 4),)
    yield "box_area", (_boxes(7, 1, grad=True),)
    yield "box_convert", (b7, "xyxy", "cxcywh")
    yield "box_convert", (_boxes(7, 1, torch.float64, grad=True), "cxcywh", "xywh")
    yield "box_convert", (_boxes(4, 4, torch.float16), "xywh", "xyxy")
    yield "clip_boxes_to_image", (b7 - 10, 20, 30)
    yield "clip_boxes_to_image", ((_boxes(7, 1, torch.float64) - 10).requires_grad_(), 20, 30)
    yield "remove_small_boxes", (b7, 5.0)
    yield "remove_small_boxes", (torch.zeros(0, 4), 1.0)
    for kind in ("iou", "giou", "diou", "ciou"):
        eps = 1e-7 if kind in ("diou", "ciou") else 0.0
        yield "box_iou_matrix", (b7, b5, kind, eps)
        yield "box_iou_matrix", (_boxes(7, 1, torch.float64, True), _boxes(5, 2, torch.float64, True), kind, eps)
        yield "box_iou_matrix", (_boxes(6, 3, grad=True).reshape(2, 3, 4), _boxes(4, 4).reshape(2, 2, 4), kind, eps)
        yield "box_iou_matrix", (_boxes(3, 5, torch.float16), _boxes(2, 6, torch.float16), kind, eps)
        g = torch.randn(7, 5, dtype=torch.float64)
        yield "_box_iou_matrix_backward", (g, b7.double(), b5.double(), kind, eps)
        yield "_box_iou_matrix_backward", (g.float(), b7, b5, kind, eps)
        if kind != "iou":
            yield "box_iou_loss", (b7, _boxes(7, 8), kind, 1e-7)
            yield "box_iou_loss", (_boxes(7, 1, torch.float64, True), _boxes(7, 8, torch.float64, True), kind, 1e-7)
            yield "box_iou_loss", (_boxes(5, 1, torch.bfloat16), _boxes(5, 8, torch.bfloat16), kind, 1e-7)
            yield "_box_iou_loss_backward", (torch.randn(7, dtype=torch.float64), b7.double(),
                                             _boxes(7, 8, torch.float64), kind, 1e-7)
    yield "nms", (b7, s7, 0.5)
    yield "nms", (D.clustered_boxes(40, 3), D.tie_scores(40, 3), 0.3)
    yield "nms", (torch.zeros(0, 4), torch.zeros(0), 0.5)
    yield "nms", (_boxes(9, 9, torch.float16), D.distinct_scores(9, 9).half(), 0.5)
    yield "batched_nms", (D.clustered_boxes(40, 4), D.tie_scores(40, 4), torch.arange(40) % 3, 0.5)
    yield "batched_nms", (b7, s7, torch.zeros(7, dtype=torch.int32), 0.0)
    yield "batched_nms", (torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5)


SAMPLES = list(_samples())


@pytest.mark.parametrize("i", range(len(SAMPLES)), ids=[f"{op}-{i}" for i, (op, _) in enumerate(SAMPLES)])
def test_opcheck(i):
    op, args = SAMPLES[i]
    torch.library.opcheck(getattr(torch.ops.detseg, op).default, args)


def test_every_op_has_a_sample():
    import test_build
    assert set(test_build.OPS) <= {op for op, _ in SAMPLES}


# ---------------------------------------------------------------- torch.compile

@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_compile_box_iou():
    def f(a, b):
        return detseg.box_iou(a, b, backend="cpp") + detseg.generalized_box_iou(a, b, backend="cpp")

    a, b = _boxes(11, 1), _boxes(6, 2)
    got = torch.compile(f, fullgraph=True, backend="aot_eager")(a, b)
    torch.testing.assert_close(got, f(a, b), rtol=0, atol=0)


def test_compile_loss_with_backward():
    def f(a, b):
        return detseg.complete_box_iou_loss(a, b, reduction="mean", backend="cpp")

    a, b = _boxes(9, 1, torch.float64, True), _boxes(9, 2, torch.float64)
    got = torch.compile(f, fullgraph=True, backend="aot_eager")(a, b)
    (ga,) = torch.autograd.grad(got, a)
    a2 = a.detach().requires_grad_()
    want = f(a2, b)
    (wa,) = torch.autograd.grad(want, a2)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(ga, wa)


def test_compile_nms_data_dependent_size():
    def f(boxes, scores):
        keep = detseg.nms(boxes, scores, 0.5, backend="cpp")
        return boxes[keep], keep

    boxes, scores = D.clustered_boxes(60, 5).float(), D.distinct_scores(60, 5).float()
    got_boxes, got_keep = torch.compile(f, fullgraph=True, backend="aot_eager")(boxes, scores)
    want_boxes, want_keep = f(boxes, scores)
    assert got_keep.tolist() == want_keep.tolist() and 0 < len(want_keep) < 60
    torch.testing.assert_close(got_boxes, want_boxes)


def test_compile_batched_nms():
    def f(boxes, scores, idxs):
        return detseg.batched_nms(boxes, scores, idxs, 0.4, backend="cpp")

    boxes, scores = D.clustered_boxes(50, 6).float(), D.tie_scores(50, 6).float()
    idxs = torch.arange(50) % 4
    got = torch.compile(f, fullgraph=True, backend="aot_eager")(boxes, scores, idxs)
    assert got.tolist() == f(boxes, scores, idxs).tolist()


def test_compile_as_the_first_detseg_call(tmp_path):
    # a fresh process whose first detseg call is traced: nothing detseg reads lazily on the
    # first call (e.g. the compiled library's build_info) may be untraceable
    import subprocess
    import sys

    code = (
        "import torch, detseg\n"
        "f = torch.compile(lambda a, b: detseg.box_iou(a, b), fullgraph=True, backend='aot_eager')\n"
        "a = torch.tensor([[0., 0., 2., 2.]]); b = torch.tensor([[1., 1., 3., 3.]])\n"
        "print(float(f(a, b)[0, 0]))\n")
    env = B.subprocess_env()
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert abs(float(p.stdout.strip().splitlines()[-1]) - 1 / 7) < 1e-6
