"""encode_boxes / decode_boxes (+ the linear coder) on every backend against detseg.reference
(torchvision's BoxCoder / BoxLinearCoder term for term): backend x dtype x layout x size,
round trips, the clamp, NaN, the list API of BoxCoder, errors, opcheck, torch.compile,
gradcheck and thread-count determinism."""

from __future__ import annotations

import math

import pytest
import torch

import _backends as B
import _data as D
import detseg
from detseg import reference as R
from tolerances import assert_bitwise, assert_close

CLIP = math.log(1000.0 / 16)
WEIGHTS = [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]


def _anchors(n, seed=0):
    return D.random_boxes(n, seed, scale=100.0, min_wh=4.0, max_wh=60.0)


def _targets(anchors, seed=1):
    """Ground truths near the anchors (deltas of order 1), float64."""
    g = D.gen(seed)
    n = anchors.shape[0]
    wh = anchors[:, 2:] - anchors[:, :2]
    ctr = anchors[:, :2] + 0.5 * wh + (torch.rand(n, 2, generator=g, dtype=torch.float64) - 0.5) * wh
    wh2 = wh * torch.exp((torch.rand(n, 2, generator=g, dtype=torch.float64) - 0.5) * 1.5)
    return torch.cat([ctr - 0.5 * wh2, ctr + 0.5 * wh2], dim=1)


def _deltas(n, k=1, seed=2):
    return (torch.rand(n, 4 * k, generator=D.gen(seed), dtype=torch.float64) - 0.5) * 3


def _oracle_tol(dtype):
    # float64 oracle on the same rounded inputs: float32 loses ~ulp(coordinate) / side in dx.
    if dtype == torch.float64:
        return {"rtol": 1e-10, "atol": 1e-10}
    if dtype == torch.float32:
        return {"rtol": 1e-5, "atol": 2e-5}
    return {}


# ---------------------------------------------------------------- encode

@pytest.mark.parametrize("weights", WEIGHTS, ids=["w1", "w10"])
@pytest.mark.parametrize("target,n,dtype,lay", B.matrix(D.DTYPES, D.LAYOUTS))
def test_encode_matrix(target, n, dtype, lay, weights):
    backend, device = target
    an = _anchors(n).to(dtype)
    gt = _targets(an.double()).to(dtype)
    out = detseg.encode_boxes(D.layout(gt, lay).to(device), D.layout(an, lay).to(device), weights, backend=backend)
    assert out.shape == (n, 4) and out.dtype == dtype and out.device.type == device
    assert_close(out, R.encode_boxes(gt, an, list(weights)))
    assert_close(out, R.encode_boxes(gt.double(), an.double(), list(weights)), **_oracle_tol(dtype))


def test_encode_known_values():
    # anchor [0, 0, 10, 10] (centre 5, 5), target [2, 1, 10, 13] (centre 6, 7, size 8 x 12)
    an = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    gt = torch.tensor([[2.0, 1.0, 10.0, 13.0]])
    for backend in B.CPU_BACKENDS:
        out = detseg.encode_boxes(gt, an, (10, 10, 5, 5), backend=backend)
        want = torch.tensor([[10 * 1 / 10, 10 * 2 / 10, 5 * math.log(0.8), 5 * math.log(1.2)]])
        torch.testing.assert_close(out, want)


# ---------------------------------------------------------------- decode

@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("target,n,dtype,lay", B.matrix(D.DTYPES, D.LAYOUTS))
def test_decode_matrix(target, n, dtype, lay, k):
    backend, device = target
    weights = WEIGHTS[k % 2]
    codes = _deltas(n, k).to(dtype)
    an = _anchors(n).to(dtype)
    out = detseg.decode_boxes(D.layout(codes, lay).to(device), D.layout(an, lay).to(device), weights, CLIP,
                              backend=backend)
    assert out.shape == (n, 4 * k) and out.dtype == dtype and out.device.type == device
    assert_close(out, R.decode_boxes(codes, an, list(weights), CLIP))
    assert_close(out, R.decode_boxes(codes.double(), an.double(), list(weights), CLIP), **_oracle_tol(dtype))


@pytest.mark.parametrize("target", B.targets())
def test_decode_boxes_cast_to_codes_dtype(target):
    # torchvision: boxes.to(rel_codes.dtype) before any arithmetic
    backend, device = target
    codes = _deltas(9).half()
    an = _anchors(9) + 0.3  # float64, not representable in half
    out = detseg.decode_boxes(codes.to(device), an.to(device), backend=backend)
    assert out.dtype == torch.float16
    assert_close(out, R.decode_boxes(codes, an.half(), [1.0] * 4, CLIP))


@pytest.mark.parametrize("weights", WEIGHTS, ids=["w1", "w10"])
@pytest.mark.parametrize("target", B.targets())
def test_round_trip(target, weights):
    backend, device = target
    an = _anchors(101, 5).to(device)
    gt = _targets(an.cpu(), 6).to(device)
    for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-3)):
        d = detseg.encode_boxes(gt.to(dtype), an.to(dtype), weights, backend=backend)
        back = detseg.decode_boxes(d, an.to(dtype), weights, CLIP, backend=backend)
        torch.testing.assert_close(back.double(), gt.double(), rtol=0, atol=tol)


@pytest.mark.parametrize("target", B.targets())
def test_decode_clamp_and_nonfinite(target):
    backend, device = target
    an = torch.tensor([[0.0, 0.0, 16.0, 16.0]] * 6, device=device)
    codes = torch.tensor([[0, 0, 100.0, 0],          # dw clamped at log(1000 / 16): width 1000
                          [0, 0, math.inf, -math.inf],  # +inf clamped, -inf -> zero height
                          [0, 0, CLIP, 0],           # exactly at the clip: unchanged
                          [math.nan, 0, 0, 0],       # NaN dx: x coordinates NaN
                          [0, 0, math.nan, 0],       # NaN dw passes the clamp: x coordinates NaN
                          [0, 0, -100.0, 0]], device=device)
    out = detseg.decode_boxes(codes, an, (1, 1, 1, 1), CLIP, backend=backend).cpu().double()
    w = out[:, 2] - out[:, 0]
    h = out[:, 3] - out[:, 1]
    torch.testing.assert_close(w[:3], torch.tensor([1000.0, 1000.0, 1000.0], dtype=torch.float64), rtol=1e-5,
                               atol=0)
    assert h[1] == 0 and out[1, 1] == 8 and out[1, 3] == 8
    assert torch.isnan(out[3, 0::2]).all() and not torch.isnan(out[3, 1::2]).any()
    assert torch.isnan(out[4, 0::2]).all() and not torch.isnan(out[4, 1::2]).any()
    assert w[5] >= 0 and w[5] < 1e-30
    # no clamp at all: inf clip lets exp overflow to an infinite width
    big = detseg.decode_boxes(codes[:1], an[:1], (1, 1, 1, 1), math.inf, backend=backend).cpu()
    assert big[0, 0] == -math.inf and big[0, 2] == math.inf


# ---------------------------------------------------------------- BoxCoder / BoxLinearCoder API

def test_box_coder_list_api():
    coder = detseg.BoxCoder((10.0, 10.0, 5.0, 5.0))
    a1, a2 = _anchors(5, 1).float(), _anchors(7, 2).float()
    g1, g2 = _targets(a1.double(), 3).float(), _targets(a2.double(), 4).float()
    t1, t2 = coder.encode([g1, g2], [a1, a2])
    assert t1.shape == (5, 4) and t2.shape == (7, 4)
    codes = torch.cat([t1, t2])
    dec = coder.decode(torch.cat([codes, codes], dim=1), [a1, a2])
    assert dec.shape == (12, 2, 4)
    torch.testing.assert_close(dec[:, 0], torch.cat([g1, g2]), rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(dec[:, 1], dec[:, 0], rtol=0, atol=0)
    assert coder.decode(torch.zeros(0, 4), [torch.zeros(0, 4)]).shape == (0, 4)  # torchvision skips the reshape
    with pytest.raises(TypeError, match="detseg.BoxCoder.decode: boxes must be a list"):
        coder.decode(codes, torch.cat([a1, a2]))


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("target", B.targets())
@pytest.mark.parametrize("dtype", D.DTYPES)
def test_linear_coder(target, normalize, dtype):
    backend, device = target
    coder = detseg.BoxLinearCoder(normalize, backend=backend)
    an = _anchors(33, 7).to(dtype)
    gt = _targets(an.double(), 8).to(dtype)
    enc = coder.encode(D.layout(an, "colslice").to(device), gt.to(device))
    assert enc.dtype == dtype
    assert_close(enc, R.linear_encode_boxes(an, gt, normalize))
    dec = coder.decode(enc, an.to(device))
    assert_close(dec, R.linear_decode_boxes(enc.cpu(), an, normalize))
    if dtype == torch.float64:
        torch.testing.assert_close(dec.cpu(), gt)
    # torchvision's BoxLinearCoder works on [..., 4] and broadcasts
    e3 = coder.encode(an.reshape(3, 11, 4).to(device), gt.reshape(3, 11, 4).to(device))
    assert e3.shape == (3, 11, 4)
    assert_close(e3.reshape(33, 4), enc.cpu())
    assert coder.encode_single is not None and coder.decode_single is not None


def test_linear_known_values():
    an = torch.tensor([[0.0, 0.0, 10.0, 20.0]])  # centre (5, 10), size 10 x 20
    gt = torch.tensor([[1.0, 2.0, 8.0, 30.0]])
    for backend in B.CPU_BACKENDS:
        enc = detseg.BoxLinearCoder(True, backend=backend).encode(an, gt)
        torch.testing.assert_close(enc, torch.tensor([[0.4, 0.4, 0.3, 1.0]]))
        enc = detseg.BoxLinearCoder(False, backend=backend).encode(an, gt)
        torch.testing.assert_close(enc, torch.tensor([[4.0, 8.0, 3.0, 20.0]]))


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("backend", ["cpp", "reference"])
def test_bad_inputs(backend):
    a = _anchors(4).float()
    with pytest.raises(ValueError, match="detseg.decode_boxes: weights must hold 4 numbers"):
        detseg.decode_boxes(a, a, (1, 1, 1), backend=backend)
    with pytest.raises(ValueError, match="detseg.decode_boxes: weights must be finite and non-zero"):
        detseg.decode_boxes(a, a, (1, 1, 0, 1), backend=backend)
    with pytest.raises(ValueError, match="detseg.encode_boxes: weights must be finite and non-zero"):
        detseg.encode_boxes(a, a, (1, math.nan, 1, 1), backend=backend)
    with pytest.raises(ValueError, match="detseg.decode_boxes: rel_codes must be a Tensor\\[N, 4 \\* K\\]"):
        detseg.decode_boxes(a[:, :3], a, backend=backend)
    with pytest.raises(ValueError, match="detseg.decode_boxes: boxes must be a Tensor\\[N, 4\\] with N = 4"):
        detseg.decode_boxes(a, a[:3], backend=backend)
    with pytest.raises(ValueError, match="detseg.encode_boxes: proposals must be a Tensor\\[N, 4\\] with N = 4"):
        detseg.encode_boxes(a, a[:2], backend=backend)
    with pytest.raises(ValueError, match="detseg.decode_boxes: bbox_xform_clip must be a number"):
        detseg.decode_boxes(a, a, (1, 1, 1, 1), math.nan, backend=backend)
    with pytest.raises(ValueError, match="detseg.linear_decode_boxes: rel_codes and boxes do not broadcast|"
                                         "detseg.linear_decode_boxes: rel_codes .* do not broadcast"):
        detseg.BoxLinearCoder(backend=backend).decode(a, a[:3])


@pytest.mark.parametrize("backend", ["cpp", "reference"])
def test_internal_op_errors(backend):
    f = B.internal("decode_boxes", backend)
    a = _anchors(4).float()
    with pytest.raises(TypeError, match="detseg.decode_boxes: rel_codes must be a floating-point tensor"):
        f(a.long(), a, [1.0] * 4, CLIP)
    e = B.internal("encode_boxes", backend)
    with pytest.raises(TypeError, match="detseg.encode_boxes: proposals must have the dtype of reference_boxes"):
        e(a, a.double(), [1.0] * 4)


# ---------------------------------------------------------------- autograd

@pytest.mark.parametrize("target", B.targets())
def test_decode_gradcheck(target):
    backend, device = target
    codes = _deltas(6, 2, 3).to(device).requires_grad_()
    an = _anchors(6, 4).to(device).requires_grad_()
    codes.data[0, 2] = 9.0  # above the clip: no gradient through dw
    # the Triton interpreter pays per call: random-projection (fast) mode there
    fast = backend == "triton"
    fn = lambda d, b: detseg.decode_boxes(d, b, (10.0, 10.0, 5.0, 5.0), 1.5, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (codes, an), eps=1e-6, atol=1e-7, fast_mode=fast)
    lin = lambda d, b: detseg.BoxLinearCoder(True, backend=backend).decode(d, b)  # noqa: E731
    ld, la = _deltas(5, 1, 5).to(device).requires_grad_(), _anchors(5, 6).to(device).requires_grad_()
    assert torch.autograd.gradcheck(lin, (ld, la), eps=1e-6, atol=1e-7, fast_mode=fast)


@pytest.mark.parametrize("target", B.targets(["cpp", "triton"]))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_decode_backward_matches_reference(target, dtype):
    # the kernels' hand-written backward (detseg::decode_box_backward) against autograd through
    # the reference, clamped (dw, dh above the clip), NaN and infinite deltas included
    backend, device = target
    codes = _deltas(257, 3, 7)
    codes[3, 2], codes[4, 7], codes[5, 1], codes[6, 10] = 9.0, 9.0, math.nan, math.inf
    codes = codes.to(dtype)
    an = _anchors(257, 8).float()
    g = torch.randn(257, 12, generator=D.gen(9)).to(dtype)
    out = []
    for bk, dev in ((backend, device), ("reference", "cpu")):
        c, a = codes.to(dev).requires_grad_(), an.to(dev).requires_grad_()
        y = detseg.decode_boxes(c, a, (10.0, 10.0, 5.0, 5.0), backend=bk)
        out.append(torch.autograd.grad(y, (c, a), g.to(dev)))
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {}
    for x, y in zip(*out):
        assert x.dtype == y.dtype and x.device.type == device
        assert_close(x, y.double(), what="grad", **tol)


# ---------------------------------------------------------------- opcheck / compile / threads

def _opcheck_samples():
    a7, g7 = _anchors(7).float(), _targets(_anchors(7)).float()
    yield "encode_boxes", (g7, a7, [10.0, 10.0, 5.0, 5.0])
    yield "encode_boxes", (g7.half(), a7.half(), [1.0, 1.0, 1.0, 1.0])
    yield "decode_boxes", (_deltas(7, 2).float(), a7, [1.0, 1.0, 1.0, 1.0], CLIP)
    yield "decode_boxes", (_deltas(7).requires_grad_(), _anchors(7).requires_grad_(), [10.0, 10.0, 5.0, 5.0], CLIP)
    yield "decode_boxes", (torch.zeros(0, 4), torch.zeros(0, 4), [1.0] * 4, CLIP)
    yield "_decode_boxes_backward", (torch.randn(7, 8), _deltas(7, 2).float(), a7, [1.0] * 4, CLIP)
    yield "linear_encode_boxes", (a7, g7, True)
    yield "linear_decode_boxes", (_deltas(7).requires_grad_(), _anchors(7).requires_grad_(), False)


@pytest.mark.parametrize("op,args", list(_opcheck_samples()))
def test_opcheck(op, args):
    B.opcheck(op, args)


@B.fresh_dynamo()
def test_compile_decode_with_backward():
    B.require("cpp")
    coder = detseg.BoxCoder((10.0, 10.0, 5.0, 5.0), backend="cpp")

    def f(d, a):
        return coder.decode_single(d, a).sum(), coder.encode_single(a + 1, a)

    d = _deltas(9, 2).float().requires_grad_()
    a = _anchors(9).float()
    got, enc = torch.compile(f, fullgraph=True, backend="aot_eager")(d, a)
    (gd,) = torch.autograd.grad(got, d)
    d2 = d.detach().requires_grad_()
    want, enc2 = f(d2, a)
    (wd,) = torch.autograd.grad(want, d2)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(gd, wd)
    torch.testing.assert_close(enc, enc2)


def test_threads_bitwise():
    B.require("cpp")
    codes = _deltas(60_000, 2, 11).float()
    an = _anchors(60_000, 12).float().requires_grad_()
    gt = _targets(an.detach().double(), 13).float()

    def run():
        c = codes.clone().requires_grad_()
        y = detseg.decode_boxes(c, an, (10.0, 10.0, 5.0, 5.0), backend="cpp")
        gc, ga = torch.autograd.grad(y.sum(), (c, an))
        return (y.detach(), gc, ga, detseg.encode_boxes(gt, an.detach(), backend="cpp"),
                detseg.BoxLinearCoder(backend="cpp").encode(an.detach(), gt))

    for x, y in zip(B.at_threads(1, run), B.at_threads(2, run)):
        assert_bitwise(x, y)


@pytest.mark.parametrize("isa", ["default", "avx2"])
def test_decode_vector_path_per_isa(isa):
    # the K = 1 float32 / float64 decode runs vector code compiled per ISA; force the others
    B.require("cpp")
    code = (
        "import math, torch, detseg\n"
        "from detseg import reference as R\n"
        "g = torch.Generator().manual_seed(0)\n"
        "for dt in (torch.float32, torch.float64):\n"
        "    d = ((torch.rand(37, 4, generator=g, dtype=torch.float64) - 0.5) * 3).to(dt)\n"
        "    d[3, 2] = 100.0; d[5, 0] = math.nan\n"
        "    b = (torch.rand(37, 4, generator=g, dtype=torch.float64) * 50).to(dt); b[:, 2:] += b[:, :2] + 1\n"
        "    got = detseg.decode_boxes(d, b, (10., 10., 5., 5.), backend='cpp')\n"
        "    want = R.decode_boxes(d, b, [10., 10., 5., 5.], math.log(1000. / 16))\n"
        "    tol = dict(rtol=1e-6, atol=1e-4) if dt == torch.float32 else dict(rtol=1e-13, atol=1e-10)\n"
        "    torch.testing.assert_close(got, want, equal_nan=True, **tol)\n"
        "print(detseg.build_info()['cpu_isa'])\n")
    assert B.run_at_isa(isa, code).strip() == isa.upper()


def test_decode_vector_exp_is_sleefs_on_avx2_and_avx512(tmp_path):
    # vec_math.h restates SLEEF's expf u10 inline (same operations, same bits): the AVX2 and
    # AVX512 builds, 8 and 16 lanes, must agree bit for bit over the whole exp range, tails
    # (n % 16 != 0) and non-finite values included.
    B.require("cpp")
    code = (
        "import sys, torch, detseg\n"
        "g = torch.Generator().manual_seed(1)\n"
        "s = torch.cat([torch.linspace(-110, 110, 100001), torch.tensor([float('nan'), float('inf'), "
        "-float('inf'), 100.0, 100.001, -104.0, -104.001, 88.72, 0.0, -0.0])])\n"
        "d = torch.stack([torch.randn(s.numel(), generator=g), torch.randn(s.numel(), generator=g), s, s.flip(0)], 1)\n"
        "b = torch.rand(s.numel(), 4, generator=g) * 50; b[:, 2:] += b[:, :2] + 1\n"
        "torch.save(detseg.decode_boxes(d, b, (1., 1., 1., 1.), float('inf'), backend='cpp'), sys.argv[1])\n")
    outs = B.outputs_at_isas(code, tmp_path, "decode")
    assert bool(torch.isinf(outs[0]).any()) and bool(torch.isnan(outs[0]).any())
    assert_bitwise(outs[0], outs[1])


try:
    from hypothesis import given
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    given = None

if given is not None:
    _coord = st.floats(-1e3, 1e3, allow_nan=False)
    _side = st.floats(1e-2, 1e3, allow_nan=False)

    @given(_coord, _coord, _side, _side, _coord, _coord, _side, _side,
           st.sampled_from(WEIGHTS), st.sampled_from(["cpp", "reference"]))
    def test_round_trip_property(ax, ay, aw, ah, gx, gy, gw, gh, weights, backend):
        # decode(encode(g, a), a) == g up to rounding, for any positive-size boxes (no clamp)
        an = torch.tensor([[ax, ay, ax + aw, ay + ah]], dtype=torch.float64)
        gt = torch.tensor([[gx, gy, gx + gw, gy + gh]], dtype=torch.float64)
        d = detseg.encode_boxes(gt, an, weights, backend=backend)
        back = detseg.decode_boxes(d, an, weights, math.inf, backend=backend)
        scale = float(torch.cat([an, gt]).abs().max()) + 1.0
        torch.testing.assert_close(back, gt, rtol=0, atol=1e-9 * scale)
        lin = detseg.BoxLinearCoder(True, backend=backend)
        torch.testing.assert_close(lin.decode(lin.encode(an, gt), an), gt, rtol=0, atol=1e-9 * scale)
