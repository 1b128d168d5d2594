"""The IoU family: box_iou / generalized / distance / complete matrices and the three paired
losses, on every backend against detseg.reference in float64; autograd (gradcheck and equality
with autograd through the reference, ties included)."""

from __future__ import annotations

import math

import pytest
import torch

import _backends as B
import _data as D
import detseg
from detseg import reference as R
from tolerances import assert_close, tol

KINDS = ["iou", "giou", "diou", "ciou"]
MATRIX = {"iou": detseg.box_iou, "giou": detseg.generalized_box_iou,
          "diou": detseg.distance_box_iou, "ciou": detseg.complete_box_iou}
LOSS = {"giou": detseg.generalized_box_iou_loss, "diou": detseg.distance_box_iou_loss,
        "ciou": detseg.complete_box_iou_loss}
EPS = 1e-7
ALL_DTYPES = D.DTYPES + [torch.int64, torch.int32, torch.uint8]


def _eps(kind):
    return EPS if kind in ("diou", "ciou") else 0.0


def _matrix(kind, b1, b2, backend, **kw):
    return MATRIX[kind](b1, b2, backend=backend, **kw)


def _oracle(kind, b1, b2):
    return R.box_iou_matrix(b1.double().cpu(), b2.double().cpu(), kind, _eps(kind))


def _out_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _pair(n, m, seed):
    # overlapping boxes (scale 60, sides up to 30) so every term of every kind is exercised
    return D.random_boxes(n, seed, scale=60.0), D.random_boxes(m, seed + 1, scale=60.0)


# ---------------------------------------------------------------- matrices

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("target,n,dtype,lay", B.matrix(ALL_DTYPES, D.LAYOUTS))
def test_iou_matrix(kind, target, n, dtype, lay):
    backend, device = target
    m = n // 2 + 3 if n else 0
    a, b = (D.cast(t, dtype) for t in _pair(n, m, n))
    out = _matrix(kind, D.layout(a, lay).to(device), D.layout(b, lay).to(device), backend)
    assert out.dtype == _out_dtype(dtype) and out.shape == (n, m) and out.device.type == device
    assert_close(out, _oracle(kind, a, b))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("target", B.targets())
@pytest.mark.parametrize("n,m", [(0, 5), (5, 0), (1, 1), (1, 7), (7, 1)])
def test_iou_matrix_edge_sizes(kind, target, n, m):
    backend, device = target
    a, b = _pair(n, m, 11)
    out = _matrix(kind, a.float().to(device), b.float().to(device), backend)
    assert out.shape == (n, m) and out.dtype == torch.float32
    assert_close(out, _oracle(kind, a.float(), b.float()))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("target", B.targets())
@pytest.mark.parametrize("shape1,shape2", [((3, 7, 4), (3, 5, 4)), ((2, 1, 6, 4), (3, 4, 4)),
                                           ((1, 5, 4), (4, 2, 4)), ((2, 0, 4), (2, 3, 4)), ((5, 4), (2, 3, 4))])
def test_iou_matrix_batched(kind, target, shape1, shape2):
    backend, device = target
    a = D.random_boxes(math.prod(shape1[:-1]), 21, scale=60.0).reshape(shape1)
    b = D.random_boxes(math.prod(shape2[:-1]), 22, scale=60.0).reshape(shape2)
    out = _matrix(kind, a.float().to(device), b.float().to(device), backend)
    lead = torch.broadcast_shapes(shape1[:-2], shape2[:-2])
    assert out.shape == (*lead, shape1[-2], shape2[-2])
    # oracle: one 2-D reference call per broadcast batch element
    bsz = math.prod(lead)
    ea = a.expand(*lead, *shape1[-2:]).reshape(bsz, *shape1[-2:])
    eb = b.expand(*lead, *shape2[-2:]).reshape(bsz, *shape2[-2:])
    expected = torch.stack([_oracle(kind, x.float(), y.float()) for x, y in zip(ea, eb)])
    assert_close(out.reshape(bsz, shape1[-2], shape2[-2]), expected)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("target", B.targets())
@pytest.mark.parametrize("fmt", ["xyxy", "xywh", "cxcywh"])
def test_iou_matrix_fmt(kind, target, fmt):
    backend, device = target
    a, b = _pair(9, 8, 31)
    af, bf = R.box_convert(a, "xyxy", fmt), R.box_convert(b, "xyxy", fmt)
    out = _matrix(kind, af.to(device), bf.to(device), backend, fmt=fmt)
    assert_close(out, _oracle(kind, a, b), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("target", B.targets())
def test_iou_matrix_mixed_dtypes_promote(target):
    backend, device = target
    a, b = _pair(5, 4, 3)
    out = detseg.box_iou(a.float().to(device), b.to(device), backend=backend)
    assert out.dtype == torch.float64
    assert_close(out, _oracle("iou", a.float(), b))
    out = detseg.box_iou(a.half().to(device), b.to(torch.int32).to(device), backend=backend)
    assert out.dtype == torch.float32


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("target", B.targets())
def test_iou_matrix_known_values(kind, target):
    backend, device = target
    a = torch.tensor([[0.0, 0, 2, 2]], device=device)
    b = torch.tensor([[1.0, 1, 3, 3], [0, 0, 2, 2], [4, 0, 6, 2]], device=device)
    out = _matrix(kind, a, b, backend).cpu()[0]
    iou = torch.tensor([1 / 7, 1.0, 0.0])
    if kind == "iou":
        expected = iou
    elif kind == "giou":
        expected = iou - torch.tensor([(9 - 7) / 9, 0.0, (12 - 8) / 12])
    else:
        # centre distance^2 / (enclosing diagonal^2 + eps); the sides' ratios are all 1, so v = 0
        expected = iou - torch.tensor([2 / (18 + EPS), 0.0, 16 / (40 + EPS)])
    assert_close(out, expected.float())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("target", B.targets())
def test_iou_matrix_degenerate(kind, target):
    # zero-area and non-finite boxes: the value is whatever the formula gives (no eps in the
    # matrix form: two disjoint zero-area boxes are 0/0 = NaN, as torchvision), never a crash
    backend, device = target
    a = D.zero_area_boxes(23, 4)
    b = torch.cat([D.zero_area_boxes(9, 5), D.nonfinite_boxes(8, 6)])
    for dt in (torch.float64, torch.float32):
        out = _matrix(kind, a.to(dt).to(device), b.to(dt).to(device), backend)
        assert_close(out, _oracle(kind, a.to(dt), b.to(dt)))
    pts = torch.tensor([[1.0, 1, 1, 1], [5, 5, 5, 5]], device=device)
    assert bool(torch.isnan(_matrix("iou", pts, pts, backend)).all())


# ---------------------------------------------------------------- losses

@pytest.mark.parametrize("kind", list(LOSS))
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("target,n,dtype,lay", B.matrix(ALL_DTYPES, ["contiguous", "colslice", "transposed"]))
def test_iou_loss(kind, reduction, target, n, dtype, lay):
    backend, device = target
    a, b = (D.cast(t, dtype) for t in _pair(n, n, 100 + n))
    out = LOSS[kind](D.layout(a, lay).to(device), D.layout(b, lay).to(device), reduction=reduction, backend=backend)
    per_pair = R.box_iou_loss(a.double(), b.double(), kind, EPS)
    loss_dtype = dtype if dtype.is_floating_point else torch.float32
    assert out.dtype == loss_dtype and out.device.type == device
    if reduction == "none":
        assert out.shape == (n,)
        assert_close(out, per_pair)
    else:
        assert out.shape == ()
        expected = per_pair.sum() if reduction == "sum" else (per_pair.mean() if n else torch.zeros((), dtype=torch.float64))
        # each per-pair loss carries its own rounding: a sum may gather n of them
        t = tol(out.dtype)
        assert_close(out, expected, rtol=t["rtol"], atol=t["atol"] * (max(n, 1) if reduction == "sum" else 1))


@pytest.mark.parametrize("kind", list(LOSS))
@pytest.mark.parametrize("target", B.targets())
def test_iou_loss_empty_and_broadcast(kind, target):
    backend, device = target
    empty = torch.zeros(0, 4, device=device)
    assert LOSS[kind](empty, empty, reduction="none", backend=backend).shape == (0,)
    assert LOSS[kind](empty, empty, reduction="sum", backend=backend).item() == 0.0
    mean = LOSS[kind](empty, empty, reduction="mean", backend=backend)
    assert mean.shape == () and mean.item() == 0.0  # not NaN: torchvision's empty-mean guard
    a = D.random_boxes(12, 7, scale=40).reshape(3, 4, 4)
    b = D.random_boxes(4, 8, scale=40)
    out = LOSS[kind](a.to(device), b.to(device), backend=backend)
    assert out.shape == (3, 4)
    assert_close(out, R.box_iou_loss(a.reshape(-1, 4), b.repeat(3, 1), kind, EPS).reshape(3, 4))


@pytest.mark.parametrize("kind", list(LOSS))
@pytest.mark.parametrize("target", B.targets())
def test_iou_loss_degenerate(kind, target):
    # loss form: eps in the denominators, so a zero box against itself has IoU 0, GIoU/DIoU/CIoU
    # penalties 0 and loss exactly 1 (pytorch/vision#7746); inverted boxes stay finite
    backend, device = target
    z = torch.tensor([[3.0, 3, 3, 3], [0, 0, 0, 0]], device=device)
    out = LOSS[kind](z, z, backend=backend)
    if kind == "ciou":  # the aspect-ratio term atan(w / h) is atan(0 / 0): NaN, as torchvision
        assert bool(torch.isnan(out).all())
    else:
        assert_close(out, torch.ones(2))
    a, b = D.zero_area_boxes(17, 1), D.zero_area_boxes(17, 2).flip(0)
    out = LOSS[kind](a.to(device), b.to(device), backend=backend)
    assert_close(out, R.box_iou_loss(a, b, kind, EPS))


@pytest.mark.parametrize("kind", list(LOSS))
@pytest.mark.parametrize("target", B.targets())
def test_iou_loss_identical_boxes_is_zero(kind, target):
    backend, device = target
    a = D.random_boxes(9, 4)
    assert_close(LOSS[kind](a.to(device), a.to(device), backend=backend), torch.zeros(9, dtype=torch.float64),
                 atol=1e-6, rtol=0)


# ---------------------------------------------------------------- autograd

def _grad_inputs(n, m, seed):
    # continuous random boxes: no ties between coordinates, so every min/max/clamp is smooth
    a, b = D.random_boxes(n, seed, scale=20.0, min_wh=2.0), D.random_boxes(m, seed + 1, scale=20.0, min_wh=2.0)
    return a.requires_grad_(True), b.requires_grad_(True)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("target", B.targets())
def test_iou_matrix_gradcheck(kind, target):
    backend, device = target
    a, b = _grad_inputs(4, 3, 40)
    if kind == "ciou":
        # CIoU's alpha is detached by definition (torchvision), so its analytic gradient is not
        # the numerical one unless v = 0: equal aspect ratios (here squares) make alpha * v
        # vanish to 4th order. The aspect-ratio term's backward is checked against autograd
        # through the reference in test_iou_matrix_grad_matches_reference.
        a, b = (t.detach().clone() for t in (a, b))
        a[:, 3] = a[:, 1] + (a[:, 2] - a[:, 0])
        b[:, 3] = b[:, 1] + (b[:, 2] - b[:, 0])
        a.requires_grad_(), b.requires_grad_()
    a, b = a.detach().to(device).requires_grad_(), b.detach().to(device).requires_grad_()
    # the Triton interpreter pays per call: random-projection (fast) mode there
    fast = backend == "triton"
    assert torch.autograd.gradcheck(lambda x, y: _matrix(kind, x, y, backend), (a, b), eps=1e-6, atol=1e-7,
                                    fast_mode=fast)
    ab, bb = a.detach().reshape(2, 2, 4).requires_grad_(), b.detach()[:2].reshape(1, 2, 4).expand(2, 2, 4).clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x, y: _matrix(kind, x, y, backend), (ab, bb), eps=1e-6, atol=1e-7,
                                    fast_mode=fast)


@pytest.mark.parametrize("kind", list(LOSS))
@pytest.mark.parametrize("target", B.targets())
def test_iou_loss_gradcheck(kind, target):
    backend, device = target
    a, b = _grad_inputs(6, 6, 50)
    if kind == "ciou":  # see test_iou_matrix_gradcheck
        a, b = (t.detach().clone() for t in (a, b))
        a[:, 3] = a[:, 1] + (a[:, 2] - a[:, 0])
        b[:, 3] = b[:, 1] + (b[:, 2] - b[:, 0])
        a.requires_grad_(), b.requires_grad_()
    a, b = a.detach().to(device).requires_grad_(), b.detach().to(device).requires_grad_()
    for red in ("none", "sum", "mean"):
        assert torch.autograd.gradcheck(lambda x, y: LOSS[kind](x, y, reduction=red, backend=backend), (a, b),
                                        eps=1e-6, atol=1e-7, fast_mode=backend == "triton")


def _grad_case(inputs: str, n: int, m: int, shared: int, seed: int, dtype, device):
    """Boxes Tensor[n, 4], Tensor[m, 4] requiring grad: "random"; "ties" (integer boxes, the
    first `shared` of b copied from a: shared edges, equal and touching boxes); "inverted"
    (x2 < x1 or y2 < y1 in some rows: negative areas, no NaN)."""
    if inputs == "random":
        a, b = _pair(n, m, seed)
    elif inputs == "ties":
        a = D.integer_boxes(n, seed + 1, scale=12, max_wh=8)
        b = torch.cat([a[:shared], D.integer_boxes(m - shared, seed + 2, scale=12, max_wh=8)])
    else:
        a, b = _pair(n, m, seed + 3)
        a[::3] = a[::3][:, [2, 1, 0, 3]]
        b[1::4] = b[1::4][:, [0, 3, 2, 1]]
    return a.to(dtype).to(device).requires_grad_(), b.to(dtype).to(device).requires_grad_()


def _ref_grads(fn, a, b, g):
    x, y = a.detach().cpu().double().requires_grad_(), b.detach().cpu().double().requires_grad_()
    out = fn(x, y)
    return torch.autograd.grad(out, (x, y), g.cpu().double())


def _grads_match_reference(out, a, b, ref_fn, seed: int):
    """The gradients of `out` (computed from a, b) for a random upstream gradient equal, in the
    boxes' dtype, autograd's through `ref_fn` in float64."""
    g = torch.randn(out.shape, dtype=out.dtype, generator=D.gen(seed)).to(out.device)
    ga, gb = torch.autograd.grad(out, (a, b), g)
    ra, rb = _ref_grads(ref_fn, a, b, g)
    assert ga.dtype == a.dtype and gb.dtype == b.dtype
    assert_close(ga, ra, what="grad")
    assert_close(gb, rb, what="grad")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("target", B.targets(["cpp", "triton"]))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("inputs", ["random", "ties", "inverted"])
def test_iou_matrix_grad_matches_reference(kind, target, dtype, inputs):
    # "ties": integer boxes with shared edges, equal boxes and touching boxes; the kernels'
    # hand-written backward must pick torch's subgradients there too (boxes.h)
    backend, device = target
    a, b = _grad_case(inputs, 13, 9, 5, 60, dtype, device)
    _grads_match_reference(_matrix(kind, a, b, backend), a, b, lambda x, y: R.box_iou_matrix(x, y, kind, _eps(kind)), 1)


@pytest.mark.parametrize("kind", list(LOSS))
@pytest.mark.parametrize("target", B.targets(["cpp", "triton"]))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("inputs", ["random", "ties", "inverted"])
def test_iou_loss_grad_matches_reference(kind, target, dtype, inputs):
    backend, device = target
    a, b = _grad_case(inputs, 33, 33, 10, 70, dtype, device)
    _grads_match_reference(LOSS[kind](a, b, backend=backend), a, b, lambda x, y: R.box_iou_loss(x, y, kind, EPS), 2)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("target", B.targets(["cpp", "triton"]))
def test_iou_matrix_grad_half_inputs(kind, target):
    # float16 boxes: gradients come back in float16, computed in float32
    backend, device = target
    a, b = _pair(7, 5, 80)
    a16, b16 = a.half().to(device).requires_grad_(), b.half().to(device).requires_grad_()
    out = _matrix(kind, a16, b16, backend)
    g = torch.randn(out.shape, generator=D.gen(3)).to(device)
    ga, gb = torch.autograd.grad(out, (a16, b16), g)
    assert ga.dtype == torch.float16 and gb.dtype == torch.float16
    ra, rb = _ref_grads(lambda x, y: R.box_iou_matrix(x, y, kind, _eps(kind)), a16, b16, g)
    assert_close(ga, ra, what="grad")
    assert_close(gb, rb, what="grad")


@pytest.mark.parametrize("target", B.targets())
@pytest.mark.parametrize("op", ["box_area", "box_convert", "clip_boxes_to_image"])
def test_box_utils_gradcheck(target, op):
    backend, device = target
    x = (D.random_boxes(5, 90, scale=10.0) - 2.0).to(device).requires_grad_()
    fns = {"box_area": lambda t: detseg.box_area(t, backend=backend),
           "box_convert": lambda t: detseg.box_convert(t, "cxcywh", "xywh", backend=backend),
           "clip_boxes_to_image": lambda t: detseg.clip_boxes_to_image(t, (8, 9), backend=backend)}
    assert torch.autograd.gradcheck(fns[op], (x,), eps=1e-6, atol=1e-7, fast_mode=backend == "triton")


@pytest.mark.parametrize("target", B.targets(["cpp"]))
def test_autocast_runs_iou_and_nms_in_float32(target):
    # autocast must not move IoU values or NMS decisions to bfloat16 (registrations/boxes.py)
    backend, device = target
    a, b = _pair(20, 15, 5)
    a, b = a.float().to(device), b.float().to(device)
    scores = D.distinct_scores(20, 5).float().to(device)
    plain = detseg.distance_box_iou(a, b, backend=backend)
    keep = detseg.nms(a, scores, 0.3, backend=backend)
    with torch.autocast(device, dtype=torch.bfloat16):
        auto = detseg.distance_box_iou(a, b, backend=backend)
        auto_keep = detseg.nms(a, scores, 0.3, backend=backend)
    assert auto.dtype == torch.float32
    assert torch.equal(auto, plain)
    assert torch.equal(auto_keep, keep)
