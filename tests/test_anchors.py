"""grid_anchors and yolo_decode on every backend against hand-computed grids; AnchorGenerator
(torchvision and detectron2 conventions) and DefaultBoxGenerator against torchvision's
published values; bad input; opcheck, torch.compile, gradcheck, thread determinism."""

from __future__ import annotations

import math

import pytest
import torch

import _backends as B
import _data as D
import detseg
from detseg import reference as R
from tolerances import assert_bitwise, assert_close

BASE = torch.tensor([[-23.0, -11.0, 23.0, 11.0], [-16.0, -16.0, 16.0, 16.0], [-11.0, -23.0, 11.0, 23.0]])


def _hand_grid(base, fh, fw, sh, sw, offset):
    """Python loops in float64: rows (y, x, a), base + ((offset + x) sw, (offset + y) sh)."""
    rows = []
    for y in range(fh):
        for x in range(fw):
            sx, sy = offset * sw + x * sw, offset * sh + y * sh
            for a in base.double().tolist():
                rows.append([a[0] + sx, a[1] + sy, a[2] + sx, a[3] + sy])
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 4)


GRIDS = [(0, 5), (1, 1), (7, 13), (17, 3)]


@pytest.mark.parametrize("grid", GRIDS, ids=[f"{h}x{w}" for h, w in GRIDS])
@pytest.mark.parametrize("stride,offset", [(8, 0.0), ((16, 12.5), 0.5), ((4, 32), 0.25)])
@pytest.mark.parametrize("dtype", D.DTYPES)
@pytest.mark.parametrize("target", B.targets())
def test_grid_anchors(target, dtype, stride, offset, grid):
    backend, device = target
    base = D.layout(BASE.to(dtype), "colslice" if grid[0] == 7 else "contiguous").to(device)
    out = detseg.grid_anchors(base, grid, stride, offset, backend=backend)
    sh, sw = stride if isinstance(stride, tuple) else (stride, stride)
    want = _hand_grid(BASE, *grid, sh, sw, offset)
    assert out.shape == want.shape and out.dtype == dtype
    if dtype in (torch.float32, torch.float64):
        torch.testing.assert_close(out.cpu().double(), want, rtol=0, atol=0)  # every value is exact
    else:
        assert_close(out, R.grid_anchors(BASE.to(dtype), *grid, float(sh), float(sw), offset))


@pytest.mark.parametrize("target", B.targets())
def test_grid_anchors_fractional_base(target):
    backend, device = target
    base = torch.tensor([[-22.627417, -11.313708, 22.627417, 11.313708]], dtype=torch.float64) + 0.1
    for dtype in (torch.float32, torch.float64):
        out = detseg.grid_anchors(base.to(dtype).to(device), (3, 4), (8, 8), 0.5, backend=backend)
        assert_close(out, R.grid_anchors(base.to(dtype), 3, 4, 8.0, 8.0, 0.5))


@pytest.mark.parametrize("dtype", D.DTYPES)
@pytest.mark.parametrize("target", B.targets())
def test_multilevel_grid_anchors(target, dtype):
    # AnchorGenerator's op: every level into one tensor, equal to the concatenated single levels
    backend, device = target
    op = B.internal("multilevel_grid_anchors", backend)
    bases = [BASE.to(dtype).to(device), (BASE[:2] * 2).to(dtype).to(device), BASE[:1].to(dtype).to(device)]
    hs, ws, shs, sws = [5, 0, 3], [7, 4, 2], [8.0, 16.0, 32.0], [8.0, 16.0, 12.5]
    out = op(bases, hs, ws, shs, sws, 0.5)
    want = torch.cat([R.grid_anchors(b.cpu(), h, w, sh, sw, 0.5) for b, h, w, sh, sw in zip(bases, hs, ws, shs, sws)])
    assert out.shape == (5 * 7 * 3 + 3 * 2, 4) and out.dtype == dtype
    torch.testing.assert_close(out.cpu(), want, rtol=0, atol=0)
    with pytest.raises(ValueError, match="detseg.multilevel_grid_anchors: base_anchors, feature_h, feature_w, stride_h "
                                         "and stride_w must each hold one entry per level"):
        op(bases, hs[:2], ws, shs, sws, 0.0)
    with pytest.raises(ValueError, match="detseg.multilevel_grid_anchors: stride_w must be a finite number > 0"):
        op(bases, hs, ws, shs, [8.0, 0.0, 1.0], 0.0)
    if dtype != torch.float64:
        with pytest.raises(TypeError, match="detseg.multilevel_grid_anchors: base_anchors must share one dtype"):
            op([bases[0], bases[1].double()], hs[:2], ws[:2], shs[:2], sws[:2], 0.0)


# ---------------------------------------------------------------- AnchorGenerator

def test_torchvision_base_anchors():
    # SEMANTICS c.9: size 32, ratios (0.5, 1, 2) -> rounded [-23, -11, 23, 11], [-16, ...], [-11, -23, 11, 23]
    ag = detseg.AnchorGenerator(sizes=((32,),), aspect_ratios=((0.5, 1.0, 2.0),))
    torch.testing.assert_close(ag.cell_anchors[0], BASE, rtol=0, atol=0)
    # ratios outer, sizes inner
    ag2 = detseg.AnchorGenerator(sizes=((32, 64),), aspect_ratios=((0.5, 2.0),))
    torch.testing.assert_close(ag2.cell_anchors[0], torch.tensor(
        [[-23.0, -11, 23, 11], [-45, -23, 45, 23], [-11, -23, 11, 23], [-23, -45, 23, 45]]), rtol=0, atol=0)
    assert ag2.num_anchors_per_location() == [4]


@pytest.mark.parametrize("backend", B.CPU_BACKENDS)
def test_torchvision_anchor_generator_published(backend):
    # torchvision's test_anchor_generator: 15 x 15 images, one 3 x 3 level, size 10, ratio 1
    images = detseg.ImageList(torch.randn(2, 3, 15, 15), [(15, 15), (15, 15)])
    ag = detseg.AnchorGenerator(((10,),), ((1,),), backend=backend)
    anchors = ag(images, [torch.rand(2, 8, 3, 3)])
    want = torch.tensor([[-5.0, -5.0, 5.0, 5.0], [0.0, -5.0, 10.0, 5.0], [5.0, -5.0, 15.0, 5.0],
                         [-5.0, 0.0, 5.0, 10.0], [0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0],
                         [-5.0, 5.0, 5.0, 15.0], [0.0, 5.0, 10.0, 15.0], [5.0, 5.0, 15.0, 15.0]])
    assert len(anchors) == 2
    for a in anchors:
        torch.testing.assert_close(a, want, rtol=0, atol=0)


def test_fpn_levels_and_strides():
    # 5 FPN levels on an 800 x 1088 image: stride = image // feature per axis, levels concatenated
    sizes = ((32,), (64,), (128,), (256,), (512,))
    ag = detseg.AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * 5)
    feats = [torch.zeros(1, 1, 800 // s, 1088 // s) for s in (4, 8, 16, 32, 64)]
    (a,) = ag(torch.zeros(1, 3, 800, 1088), feats)
    counts = [f.shape[-2] * f.shape[-1] * 3 for f in feats]
    assert a.shape == (sum(counts), 4)
    start = 0
    for lvl, (f, s) in enumerate(zip(feats, (4, 8, 16, 32, 64))):
        h, w = f.shape[-2:]
        if h * w < 5000:
            want = _hand_grid(ag.cell_anchors[lvl], h, w, 800 // h, 1088 // w, 0.0).float()
        else:  # the Python loops would take seconds: the reference, itself checked against them above
            want = R.grid_anchors(ag.cell_anchors[lvl], h, w, float(800 // h), float(1088 // w), 0.0)
        torch.testing.assert_close(a[start:start + counts[lvl]], want, rtol=0, atol=0)
        start += counts[lvl]
    # float64 and float16 feature maps give anchors in their dtype
    (a64,) = ag(torch.zeros(1, 3, 800, 1088), [f.double() for f in feats])
    assert a64.dtype == torch.float64 and torch.equal(a64.float(), a)


def test_detectron2_convention():
    ag = detseg.AnchorGenerator(((32, 64),), ((0.5, 1.0),), convention="detectron2", offset=0.5, strides=[8])
    w = math.sqrt(32 ** 2 / 0.5)
    want_base = torch.tensor([[-w / 2, -0.5 * w / 2, w / 2, 0.5 * w / 2], [-16, -16, 16, 16],
                              [-math.sqrt(64 ** 2 / 0.5) / 2, -0.5 * math.sqrt(64 ** 2 / 0.5) / 2,
                               math.sqrt(64 ** 2 / 0.5) / 2, 0.5 * math.sqrt(64 ** 2 / 0.5) / 2], [-32, -32, 32, 32]])
    torch.testing.assert_close(ag.cell_anchors[0], want_base.float(), rtol=0, atol=0)  # sizes outer, no rounding
    (a,) = ag(torch.zeros(1, 3, 40, 48), [torch.zeros(1, 1, 5, 6)])
    torch.testing.assert_close(a, _hand_grid(ag.cell_anchors[0], 5, 6, 8, 8, 0.5).float())
    assert a[1].tolist() == [-12.0, -12.0, 20.0, 20.0]  # centre (4, 4) = offset * stride


def test_default_box_generator_published():
    # torchvision's test_defaultbox_generator
    images = detseg.ImageList(torch.zeros(2, 3, 15, 15), [(15, 15), (15, 15)])
    gen = detseg.DefaultBoxGenerator([[2]])
    dboxes = gen(images, [torch.zeros(2, 8, 1, 1)])
    want = torch.tensor([[6.3750, 6.3750, 8.6250, 8.6250], [4.7443, 4.7443, 10.2557, 10.2557],
                         [5.9090, 6.7045, 9.0910, 8.2955], [6.7045, 5.9090, 8.2955, 9.0910]])
    assert len(dboxes) == 2 and dboxes[0].shape == (4, 4)
    torch.testing.assert_close(dboxes[0], want, rtol=1e-5, atol=1e-4)
    assert gen.num_anchors_per_location() == [4]


def test_default_box_generator_steps_clip_and_scales():
    gen = detseg.DefaultBoxGenerator([[2], [2, 3]], steps=[8, 16], clip=False)
    assert gen.scales == pytest.approx([0.15, 0.9, 1.0])
    (d,) = gen(torch.zeros(1, 3, 64, 32), [torch.zeros(1, 1, 8, 4), torch.zeros(1, 1, 4, 2)])
    assert d.shape == (8 * 4 * 4 + 4 * 2 * 6, 4)
    # level 0, location (0, 0): centre (0.5 * 8, 0.5 * 8) px, square s_0 = 0.15 of (32, 64)
    torch.testing.assert_close(d[0], torch.tensor([4 - 0.075 * 32, 4 - 0.075 * 64, 4 + 0.075 * 32, 4 + 0.075 * 64]))
    # clip=True clamps (w, h) to [0, 1] before the conversion: the s' = sqrt(0.9) box of level 1 is
    # < 1 anyway, the (w, h) = (0.9 sqrt 3, ...) box is clamped to width 1
    clipped = detseg.DefaultBoxGenerator([[2], [2, 3]], steps=[8, 16], clip=True)
    (c,) = clipped(torch.zeros(1, 3, 64, 32), [torch.zeros(1, 1, 8, 4), torch.zeros(1, 1, 4, 2)])
    lvl1 = c[8 * 4 * 4:].reshape(-1, 6, 4)
    assert float((lvl1[0, 4, 2] - lvl1[0, 4, 0])) == pytest.approx(32.0)
    gen3 = detseg.DefaultBoxGenerator([[2]], scales=[0.2, 0.4])
    assert gen3.scales == [0.2, 0.4]


# ---------------------------------------------------------------- yolo_decode

def _hand_yolo(pred, anchors, sh, sw):
    n, h, w, _ = pred.shape
    out = torch.empty(n, h, w, anchors.shape[0], 5, dtype=torch.float64)
    sig = lambda v: 1.0 / (1.0 + math.exp(-v))  # noqa: E731
    p = pred.double()
    for i in range(n):
        for y in range(h):
            for x in range(w):
                for b, (aw, ah) in enumerate(anchors.double().tolist()):
                    tx, ty, tw, th, to = p[i, y, x, 5 * b:5 * b + 5].tolist()
                    cx, cy = (sig(tx) + x) * sw, (sig(ty) + y) * sh
                    bw, bh = aw * math.exp(tw), ah * math.exp(th)
                    out[i, y, x, b] = torch.tensor([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2, sig(to)],
                                                   dtype=torch.float64)
    return out


@pytest.mark.parametrize("shape", [(0, 3, 3), (1, 1, 1), (2, 5, 7)], ids=["empty", "1x1", "2x5x7"])
@pytest.mark.parametrize("dtype", D.DTYPES)
@pytest.mark.parametrize("target", B.targets())
def test_yolo_decode(target, dtype, shape):
    backend, device = target
    anchors = torch.tensor([[10.0, 13.0], [16.0, 30.0], [33.0, 23.0]])
    n, h, w = shape
    nchw = torch.randn(n, 3 * 5 + 4, h, w, generator=D.gen(3), dtype=torch.float64).to(dtype)
    pred = nchw.permute(0, 2, 3, 1)  # the head's channels-last view: non-contiguous
    out = detseg.yolo_decode(pred.to(device), anchors.to(device), (8, 16), backend=backend)
    assert out.shape == (n, h, w, 3, 5) and out.dtype == dtype
    want = _hand_yolo(pred, anchors, 8, 16)
    if dtype in (torch.float32, torch.float64):
        assert_close(out, want, **({"rtol": 1e-5, "atol": 1e-4} if dtype == torch.float32 else {}))
    else:
        assert_close(out, R.yolo_decode(pred, anchors, 8.0, 16.0))


@pytest.mark.parametrize("target", B.targets())
def test_yolo_decode_nonfinite(target):
    backend, device = target
    pred = torch.zeros(1, 1, 2, 6)
    pred[0, 0, 0, 2] = 1000.0       # exp overflow: infinite width, no clamp
    pred[0, 0, 1, 0] = math.nan     # NaN tx: x coordinates NaN
    pred[0, 0, 1, 4] = -math.inf    # objectness 0
    out = detseg.yolo_decode(pred.to(device), torch.tensor([[4.0, 4.0]], device=device), 2, backend=backend).cpu()
    assert out[0, 0, 0, 0, 0] == -math.inf and out[0, 0, 0, 0, 2] == math.inf
    assert torch.isnan(out[0, 0, 1, 0, 0::2][:2]).all() and not torch.isnan(out[0, 0, 1, 0, 1::2][:2]).any()
    assert out[0, 0, 1, 0, 4] == 0
    torch.testing.assert_close(out[0, 0, 0, 0, 1::2][:2], torch.tensor([-1.0, 3.0]))  # cy = 0.5 * 2, h = 4


# ---------------------------------------------------------------- bad input

def test_bad_input():
    with pytest.raises(ValueError, match="detseg.AnchorGenerator: sizes must be finite numbers > 0"):
        detseg.AnchorGenerator(((32, 0),), ((1.0,),))
    with pytest.raises(ValueError, match="detseg.AnchorGenerator: aspect_ratios must be finite numbers > 0"):
        detseg.AnchorGenerator(((32,),), ((-1.0,),))
    with pytest.raises(ValueError, match="detseg.AnchorGenerator: sizes and aspect_ratios must have one entry"):
        detseg.AnchorGenerator(((32,), (64,)), ((1.0,), (1.0,), (2.0,)))
    with pytest.raises(ValueError, match="detseg.AnchorGenerator: convention must be one of"):
        detseg.AnchorGenerator(convention="mmdet")
    ag = detseg.AnchorGenerator(((32,),), ((1.0,),))
    with pytest.raises(ValueError, match=r"detseg.AnchorGenerator: feature map 0 \(20x8\) must be non-empty and no "
                                         r"larger than the image \(16x16\)"):
        ag(torch.zeros(1, 3, 16, 16), [torch.zeros(1, 1, 20, 8)])
    with pytest.raises(ValueError, match="detseg.AnchorGenerator: got 2 feature maps for 1 levels"):
        ag(torch.zeros(1, 3, 16, 16), [torch.zeros(1, 1, 2, 2)] * 2)
    with pytest.raises(ValueError, match="detseg.DefaultBoxGenerator: aspect_ratios and steps must have the same"):
        detseg.DefaultBoxGenerator([[2], [3]], steps=[8])
    with pytest.raises(ValueError, match="detseg.DefaultBoxGenerator: aspect_ratios must be finite numbers > 0"):
        detseg.DefaultBoxGenerator([[0]])
    with pytest.raises(ValueError, match="detseg.DefaultBoxGenerator: scales must be 2 finite numbers"):
        detseg.DefaultBoxGenerator([[2]], scales=[0.2])


@pytest.mark.parametrize("backend", B.CPU_BACKENDS)
def test_op_errors(backend):
    with pytest.raises(ValueError, match="detseg.grid_anchors: stride_w must be a finite number > 0, got 0"):
        detseg.grid_anchors(BASE, (2, 2), (8, 0), backend=backend)
    with pytest.raises(ValueError, match=r"detseg.grid_anchors: feature_h and feature_w must be in \[0, 2\^24\]"):
        detseg.grid_anchors(BASE, (-1, 2), 8, backend=backend)
    with pytest.raises(ValueError, match=r"detseg.grid_anchors: base_anchors must be a Tensor\[N, 4\]"):
        detseg.grid_anchors(BASE[:, :3], (2, 2), 8, backend=backend)
    with pytest.raises(TypeError, match="detseg.grid_anchors: base_anchors must be a floating-point tensor"):
        detseg.grid_anchors(BASE.long(), (2, 2), 8, backend=backend)
    with pytest.raises(ValueError, match="detseg.grid_anchors: offset must be a finite number"):
        detseg.grid_anchors(BASE, (2, 2), 8, math.nan, backend=backend)
    an = torch.ones(3, 2)
    with pytest.raises(ValueError, match=r"detseg.yolo_decode: pred must be a Tensor\[N, H, W, B \* 5 \+ C\] with "
                                         r"B = 3"):
        detseg.yolo_decode(torch.zeros(1, 2, 2, 14), an, 8, backend=backend)
    with pytest.raises(ValueError, match=r"detseg.yolo_decode: anchors must be a Tensor\[B, 2\]"):
        detseg.yolo_decode(torch.zeros(1, 2, 2, 15), torch.ones(3), 8, backend=backend)
    with pytest.raises(ValueError, match="detseg.yolo_decode: stride_h must be a finite number > 0"):
        detseg.yolo_decode(torch.zeros(1, 2, 2, 15), an, (-8, 8), backend=backend)


# ---------------------------------------------------------------- opcheck / compile / autograd / threads

SAMPLES = [
    ("grid_anchors", (BASE, 3, 4, 8.0, 8.0, 0.0)),
    ("grid_anchors", (BASE.double(), 2, 5, 16.0, 12.5, 0.5)),
    ("grid_anchors", (BASE.half(), 0, 5, 8.0, 8.0, 0.0)),
    ("multilevel_grid_anchors", ([BASE, BASE[:1] * 3], [3, 2], [4, 5], [8.0, 16.0], [8.0, 12.0], 0.5)),
    ("yolo_decode", (torch.randn(2, 3, 4, 13), torch.tensor([[10.0, 13.0], [16.0, 30.0]]), 8.0, 8.0)),
    ("yolo_decode", (torch.randn(1, 2, 2, 10, dtype=torch.float64, requires_grad=True),
                     torch.tensor([[10.0, 13.0], [16.0, 30.0]], dtype=torch.float64), 8.0, 4.0)),
]


@pytest.mark.parametrize("op,args", SAMPLES)
def test_opcheck(op, args):
    B.opcheck(op, args)


@B.fresh_dynamo()
def test_compile_anchor_generator():
    B.require("cpp")
    ag = detseg.AnchorGenerator(((32,), (64,)), ((0.5, 1.0, 2.0),) * 2, backend="cpp")
    anchors = torch.tensor([[10.0, 13.0], [16.0, 30.0]])

    def f(images, f1, f2, pred):
        return ag(images, [f1, f2])[0], detseg.yolo_decode(pred, anchors, 8, backend="cpp")

    args = (torch.zeros(1, 3, 64, 64), torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 4, 4), torch.randn(1, 3, 3, 12))
    got = torch.compile(f, fullgraph=True, backend="aot_eager")(*args)
    for g, w in zip(got, f(*args)):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


def test_yolo_avx512_cell_path_equals_avx2(tmp_path):
    # AVX-512 decodes one cell's anchors per vector (3 at a time), AVX2 lanes over cells; both
    # use SLEEF's exp, so they must agree bit for bit, for any anchor count (partial groups),
    # non-finite and overflowing predictions included.
    B.require("cpp")
    code = (
        "import sys, torch, detseg\n"
        "g = torch.Generator().manual_seed(2)\n"
        "out = []\n"
        "for nb in (1, 2, 3, 4, 7):\n"
        "    p = torch.randn(2, 5, 7, 5 * nb + 3, generator=g) * 4\n"
        "    p[0, 1, 2, 2] = 100.0; p[0, 1, 3, 0] = float('nan'); p[1, 0, 0, 3] = -float('inf')\n"
        "    an = torch.rand(nb, 2, generator=g) * 300 + 1\n"
        "    out.append(detseg.yolo_decode(p, an, (8, 16), backend='cpp'))\n"
        "    out.append(detseg.yolo_decode(p[:, :, 1:], an, 8, backend='cpp'))\n"
        "torch.save(out, sys.argv[1])\n")
    outs = B.outputs_at_isas(code, tmp_path, "yolo")
    for x, y in zip(*outs):
        assert_bitwise(x, y)
    assert any(bool(torch.isinf(x).any()) for x in outs[0]) and any(bool(torch.isnan(x).any()) for x in outs[0])


def test_anchor_generator_cached_arguments_follow_changes():
    # forward caches the op's arguments per (image, feature map shapes, dtype, device) in eager
    # mode; shapes, dtypes and edits of the public attributes must each give a fresh result
    B.require("cpp")
    ag = detseg.AnchorGenerator(((32,), (64,)), ((0.5, 1.0, 2.0),) * 2, backend="cpp")
    img, f1, f2 = torch.zeros(1, 3, 64, 64), torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 4, 4)

    def want():
        return torch.cat([R.grid_anchors(b, f.shape[-2], f.shape[-1], 64.0 / f.shape[-2], 64.0 / f.shape[-1],
                                         ag.offset) for b, f in zip(ag.cell_anchors, (f1, f2))])

    a = ag(img, [f1, f2])[0]
    torch.testing.assert_close(a, want(), rtol=0, atol=0)
    assert_bitwise(ag(img, [f1, f2])[0], a)  # the cached path
    assert ag(img, [f1.double(), f2.double()])[0].dtype == torch.float64
    assert ag(img, [torch.zeros(1, 1, 16, 16), f2])[0].shape[0] == (16 * 16 + 4 * 4) * 3
    with torch.no_grad():
        ag.cell_anchors[0].add_(1.0)  # in place: the tensor's version changes
    b = ag(img, [f1, f2])[0]
    torch.testing.assert_close(b, want(), rtol=0, atol=0)
    assert not torch.equal(a, b)
    ag.offset = 0.5
    torch.testing.assert_close(ag(img, [f1, f2])[0], want(), rtol=0, atol=0)
    with pytest.raises(ValueError, match="detseg.AnchorGenerator: feature map 0"):
        ag(img, [torch.zeros(1, 1, 80, 80), f2])


@pytest.mark.parametrize("backend", B.CPU_BACKENDS)
def test_yolo_gradcheck(backend):
    pred = torch.randn(1, 1, 2, 11, dtype=torch.float64, generator=D.gen(5)).requires_grad_()
    anchors = torch.tensor([[10.0, 13.0], [16.0, 30.0]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, a: detseg.yolo_decode(p, a, (8, 4), backend=backend), (pred, anchors))


def test_threads_bitwise():
    B.require("cpp")
    pred = torch.randn(2, 52, 52, 3 * 5 + 80, generator=D.gen(7))
    anchors = torch.tensor([[10.0, 13.0], [16.0, 30.0], [33.0, 23.0]])

    def run():
        return (detseg.grid_anchors(BASE, (200, 272), 4, 0.5, backend="cpp"),
                torch.ops.detseg.multilevel_grid_anchors([BASE, BASE.double()[:2].float()], [100, 51],
                                                         [136, 67], [8.0, 16.0], [8.0, 16.0], 0.0),
                detseg.yolo_decode(pred, anchors, 8, backend="cpp"))

    for x, y in zip(B.at_threads(1, run), B.at_threads(2, run)):
        assert_bitwise(x, y)
