"""Mask ops: confusion_matrix, mask_iou, masks_to_boxes, paste_masks_in_image (C++ CPU and
reference), against independent oracles (torch.bincount, float64 matmul, pycocotools)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import _backends as B
import detseg
from tolerances import assert_bitwise, assert_close

TARGETS = B.targets(["cpp", "reference"])
LABEL_DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64]


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _labels(shape, c, seed, dtype=torch.int64):
    """Blobby label maps (runs of one class, as segmentations) with 10% noise: pred, target."""
    g = _gen(seed)
    t = torch.randint(0, c, shape, generator=g)
    if len(shape) >= 2 and shape[-1] >= 4:
        t = t.reshape(-1, shape[-1])
        t[:, 1::2] = t[:, ::2][:, : t[:, 1::2].shape[1]]  # pairs of equal labels along rows
        t = t.reshape(shape)
    p = torch.where(torch.rand(shape, generator=g) < 0.1, torch.randint(0, c, shape, generator=g), t)
    return p.to(dtype), t.to(dtype)


def _oracle(pred, target, c, ignore=None):
    p, t = pred.reshape(-1).long(), target.reshape(-1).long()
    keep = torch.ones_like(t, dtype=torch.bool) if ignore is None else t != ignore
    ok = keep & (p >= 0) & (p < c) & (t >= 0) & (t < c)
    cm = torch.bincount(t[ok] * c + p[ok], minlength=c * c).reshape(c, c)
    return cm, int((keep & ~ok).sum())


# ---------------------------------------------------------------- confusion_matrix

SHAPES = [(0,), (1,), (7, 13), (3, 33, 17), (2, 130, 257)]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", LABEL_DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("c", [1, 6, 21, 300])
def test_confusion_matrix_matches_bincount(target, dtype, shape, c):
    backend, device = target
    if dtype == torch.int8 and c > 127:
        c = 127
    p, t = _labels(shape, c, seed=c, dtype=dtype)
    cm = detseg.confusion_matrix(p.to(device), t.to(device), c, backend=backend)
    assert cm.dtype == torch.int64 and cm.shape == (c, c)
    assert torch.equal(cm.cpu(), _oracle(p, t, c)[0])


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", LABEL_DTYPES)
@pytest.mark.parametrize("ignore", [0, 3, 255, -1, 1000])
def test_confusion_matrix_ignore_and_invalid_count(target, dtype, ignore):
    backend, device = target
    g = _gen(1)
    # labels in [-2, 9) with C = 6: negative and too-large labels on both sides
    p = torch.randint(-2, 9, (4, 31, 29), generator=g)
    t = torch.randint(-2, 9, (4, 31, 29), generator=g)
    if dtype == torch.uint8:
        p, t = p.clamp(min=0), t.clamp(min=0)
        t[t == 8] = 255
    p, t = p.to(dtype), t.to(dtype)
    cm, bad = detseg.confusion_matrix(p.to(device), t.to(device), 6, ignore, invalid="count", backend=backend)
    cm, bad = cm.cpu(), bad.cpu()
    # a T can equal ignore_index only when T represents it
    info = torch.iinfo(dtype)
    eff = ignore if info.min <= ignore <= info.max else None
    ref_cm, ref_bad = _oracle(p, t, 6, eff)
    assert torch.equal(cm, ref_cm)
    assert bad.dtype == torch.int64 and bad.shape == () and int(bad) == ref_bad > 0


@pytest.mark.parametrize("target", TARGETS)
def test_confusion_matrix_per_image_and_out(target):
    backend, _ = target
    p, t = _labels((5, 23, 41), 9, seed=3)
    p[2, 0, 0] = 9  # invalid in image 2 only
    cm, bad = detseg.confusion_matrix(p, t, 9, 4, per_image=True, invalid="count", backend=backend)
    assert cm.shape == (5, 9, 9) and bad.shape == (5,)
    for b in range(5):
        ref, nbad = _oracle(p[b], t[b], 9, 4)
        assert torch.equal(cm[b], ref) and int(bad[b]) == nbad
    assert bad.tolist() == [0, 0, int(t[2, 0, 0] != 4), 0, 0]
    empty, nbad = detseg.confusion_matrix(p[:0], t[:0], 9, per_image=True, invalid="count", backend=backend)
    assert empty.shape == (0, 9, 9) and nbad.shape == (0,)
    total = torch.zeros(9, 9, dtype=torch.int64)
    p[2, 0, 0] = 0
    r1 = detseg.confusion_matrix(p[:2], t[:2], 9, out=total, backend=backend)
    r2 = detseg.confusion_matrix(p[2:], t[2:], 9, out=total, backend=backend)
    assert r1 is total and r2 is total
    assert torch.equal(total, _oracle(p, t, 9)[0])


@pytest.mark.parametrize("target", TARGETS)
def test_confusion_matrix_mixed_dtypes_bool_and_layout(target):
    backend, _ = target
    p, t = _labels((3, 40, 50), 7, seed=5)
    ref = _oracle(p, t, 7)[0]
    assert torch.equal(detseg.confusion_matrix(p.to(torch.uint8), t.to(torch.int32), 7, backend=backend), ref)
    # non-contiguous (transposed, sliced) inputs
    pt, tt = p.transpose(1, 2), t.transpose(1, 2)
    assert torch.equal(detseg.confusion_matrix(pt, tt, 7, backend=backend), ref)
    assert torch.equal(detseg.confusion_matrix(p[:, :, ::3], t[:, :, ::3], 7, backend=backend),
                       _oracle(p[:, :, ::3], t[:, :, ::3], 7)[0])
    pb, tb = p > 3, t > 3
    assert torch.equal(detseg.confusion_matrix(pb, tb, 2, backend=backend), _oracle(pb.long(), tb.long(), 2)[0])


@pytest.mark.parametrize("target", TARGETS)
def test_confusion_matrix_errors(target):
    backend, _ = target
    p, t = _labels((2, 5, 6), 4, seed=0)
    with pytest.raises(TypeError, match=r"detseg.confusion_matrix: pred must be an integer tensor"):
        detseg.confusion_matrix(p.float(), t, 4, backend=backend)
    with pytest.raises(ValueError, match=r"target must have the shape of pred"):
        detseg.confusion_matrix(p, t[:1], 4, backend=backend)
    with pytest.raises(ValueError, match=r"num_classes must be in \[1, 46340\], got 0"):
        detseg.confusion_matrix(p, t, 0, backend=backend)
    with pytest.raises(ValueError, match=r"invalid must be 'error' or 'count', got 'skip'"):
        detseg.confusion_matrix(p, t, 4, invalid="skip", backend=backend)
    with pytest.raises(ValueError, match=r"per_image=True needs a batch dimension"):
        detseg.confusion_matrix(p[0, 0, 0], t[0, 0, 0], 4, per_image=True, backend=backend)
    bad = p.clone()
    bad[1, 2, 3] = -1
    with pytest.raises(ValueError, match=r"labels must be in \[0, num_classes = 4\).*got pred -1 .* at flat index 45"):
        detseg.confusion_matrix(bad, t, 4, backend=backend)
    t2 = t.clone()
    t2[0, 0, 1] = 4
    with pytest.raises(ValueError, match=r"got pred \d+ and target 4 at flat index 1 "):
        detseg.confusion_matrix(p, t2, 4, backend=backend)
    # an ignored pixel is never invalid
    assert torch.equal(detseg.confusion_matrix(p, t2, 4, 4, backend=backend), _oracle(p, t2, 4, 4)[0])


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64])
def test_confusion_matrix_vs_hotcoco(target, dtype):
    hm = pytest.importorskip("hotcoco.metrics")
    backend, _ = target
    p, t = _labels((3, 40, 66), 12, seed=11, dtype=dtype)
    t[0, :3] = 11
    t[1, 5, :7] = 200  # ignored (hotcoco ignores in the ground truth only, as detseg)
    cm = detseg.confusion_matrix(p, t, 12, 200, backend=backend)
    ref = hm.pixel_confusion(t.numpy(), p.numpy(), 12, ignore_index=200)
    assert torch.equal(cm, torch.from_numpy(np.asarray(ref).astype(np.int64)))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64])
def test_confusion_matrix_threads_bitwise(dtype):
    B.require("cpp")
    p, t = _labels((4, 300, 301), 150, seed=9, dtype=dtype)

    def run():
        return detseg.confusion_matrix(p, t, 150, 7, invalid="count", backend="cpp")

    a, b = B.at_threads(1, run), B.at_threads(2, run)
    for x, y in zip(a, b):
        assert_bitwise(x, y)
    assert torch.equal(a[0], _oracle(p, t, 150, 7)[0])


# ---------------------------------------------------------------- mask_iou

def _blobs(n, h, w, seed, fill=0.3):
    """n masks of random rectangles and ellipses, some empty, some touching the border."""
    g = _gen(seed)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    out = torch.zeros(n, h, w, dtype=torch.bool)
    for i in range(n):
        r = torch.rand(5, generator=g).tolist()
        if r[4] < 0.1:
            continue  # empty
        cy, cx = r[0] * h, r[1] * w
        ry, rx = max(r[2] * h * fill, 0.5), max(r[3] * w * fill, 0.5)
        if r[4] < 0.5:
            out[i] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        else:
            out[i] = ((yy - cy).abs() <= ry) & ((xx - cx).abs() <= rx)
    return out


def _iou_oracle(m1, m2, crowd=None):
    hw = m1.shape[1] * m1.shape[2]
    a = m1.reshape(m1.shape[0], hw).double()
    b = m2.reshape(m2.shape[0], hw).double()
    inter = a @ b.T
    a1, a2 = a.sum(1), b.sum(1)
    den = a1[:, None] + a2[None] - inter
    if crowd is not None:
        den = torch.where(crowd[None], a1[:, None].expand_as(den), den)
    return torch.where(den > 0, inter / den.clamp(min=1), torch.zeros_like(inter))


MASK_SIZES = [(0, 3, 5, 7), (1, 1, 1, 1), (7, 5, 9, 70), (13, 33, 37, 129), (40, 25, 64, 128)]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8])
@pytest.mark.parametrize("size", MASK_SIZES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("crowd", [False, True])
def test_mask_iou(target, dtype, size, crowd):
    backend, device = target
    n, m, h, w = size
    m1, m2 = _blobs(n, h, w, 1), _blobs(m, h, w, 2)
    if n > 2 and m > 2:
        m2[0] = m1[1]  # identical pair: IoU 1
        m2[1] = False
    iscrowd = (torch.arange(m) % 3 == 0) if crowd else None
    out = detseg.mask_iou(m1.to(dtype).to(device), m2.to(dtype).to(device),
                          None if iscrowd is None else iscrowd.to(device), backend=backend).cpu()
    ref = _iou_oracle(m1, m2, iscrowd)
    assert out.dtype == torch.float32 and out.shape == (n, m)
    assert_close(out, ref)
    if n > 2 and m > 2 and not crowd:
        assert out[1, 0] == 1.0 or m1[1].sum() == 0
        assert bool((out[:, 1] == 0).all())


@pytest.mark.parametrize("target", TARGETS)
def test_mask_iou_layouts_and_pycocotools(target):
    backend, _ = target
    mask_util = pytest.importorskip("pycocotools.mask")
    m1, m2 = _blobs(9, 45, 77, 3), _blobs(6, 45, 77, 4)
    crowd = torch.tensor([True, False, False, True, False, False])
    out = detseg.mask_iou(m1.transpose(1, 2).contiguous().transpose(1, 2), m2, crowd, backend=backend)
    enc = lambda m: mask_util.encode(np.asfortranarray(m.permute(1, 2, 0).numpy().astype(np.uint8)))  # noqa: E731
    ref = mask_util.iou(enc(m1), enc(m2), crowd.numpy().astype(np.uint8).tolist())
    assert_close(out, torch.from_numpy(np.asarray(ref)))


@pytest.mark.parametrize("target", TARGETS)
def test_mask_iou_errors(target):
    backend, _ = target
    m = torch.zeros(2, 4, 5, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"detseg.mask_iou: masks1 must be a Tensor\[N, H, W\]"):
        detseg.mask_iou(m[0], m, backend=backend)
    with pytest.raises(TypeError, match=r"masks2 must be a bool or uint8 tensor, got (torch\.float32|Float)"):
        detseg.mask_iou(m, m.float(), backend=backend)
    with pytest.raises(ValueError, match=r"masks2 must have the height and width of masks1"):
        detseg.mask_iou(m, m[:, :3], backend=backend)
    with pytest.raises(ValueError, match=r"iscrowd must be a Tensor\[M\] with M = 2"):
        detseg.mask_iou(m, m, torch.zeros(3, dtype=torch.bool), backend=backend)
    with pytest.raises(TypeError, match=r"iscrowd must be a bool tensor, got"):
        detseg.mask_iou(m, m, torch.zeros(2), backend=backend)
    bad = m.clone()
    bad[1, 2, 3] = 7
    with pytest.raises(ValueError, match=r"masks2 must hold only 0 and 1, got the value 7"):
        detseg.mask_iou(m, bad, backend=backend)


def test_mask_iou_threads_bitwise():
    B.require("cpp")
    m1, m2 = _blobs(60, 96, 200, 5), _blobs(30, 96, 200, 6)
    a = B.at_threads(1, lambda: detseg.mask_iou(m1, m2, backend="cpp"))
    b = B.at_threads(2, lambda: detseg.mask_iou(m1, m2, backend="cpp"))
    assert_bitwise(a, b)


def test_every_isa():
    """The packing and confusion paths of each ISA build (one subprocess each, run together:
    the capability is read once per process)."""
    import subprocess
    import sys

    code = ("import torch, detseg\n"
            "g = torch.Generator().manual_seed(0)\n"
            "m1 = (torch.rand(5, 19, 133, generator=g) > 0.5).to(torch.uint8)\n"
            "m2 = torch.rand(4, 19, 133, generator=g) > 0.3\n"
            "a = detseg.mask_iou(m1, m2, backend='cpp'); b = detseg.mask_iou(m1, m2, backend='reference')\n"
            "assert torch.equal(a, b), (a - b).abs().max()\n"
            "assert torch.equal(detseg.masks_to_boxes(m1 * 3, backend='cpp'), detseg.masks_to_boxes(m1, "
            "backend='reference'))\n"
            "p = torch.randint(0, 9, (3, 50, 61), generator=g)\n"
            "for dt in (torch.uint8, torch.int16, torch.int32, torch.int64):\n"
            "    for ig in (2, None):\n"
            "        assert torch.equal(detseg.confusion_matrix(p.to(dt), p.flip(2).to(dt), 9, ig, backend='cpp'),\n"
            "                           detseg.confusion_matrix(p, p.flip(2), 9, ig, backend='reference'))\n"
            # Out-of-range labels, some equal to a valid class modulo 2^32 (the wide kernels' bins
            # are 32-bit lanes, their range test must use the label's own width), any group offset.
            "q = p.clone().reshape(-1); q[::7] = 2 ** 32 + 3; q[3::11] = -1; q[5::13] = 9; q[6::17] = -2 ** 40\n"
            "for dt in (torch.int32, torch.int64):\n"
            "    qq = q.to(dt)\n"
            "    for off in (0, 5):\n"
            "        a, b = qq[off:], p.reshape(-1).flip(0)[off:]\n"
            "        for x, y in ((a, b), (b, a)):\n"
            "            r = detseg.confusion_matrix(x, y, 9, 2, invalid='count', backend='cpp')\n"
            "            e = detseg.confusion_matrix(x, y, 9, 2, invalid='count', backend='reference')\n"
            "            assert torch.equal(r[0], e[0]) and torch.equal(r[1], e[1]), (dt, off)\n")
    B.require("cpp")
    procs = {isa: subprocess.Popen([sys.executable, "-c", code], env=B.subprocess_env(ATEN_CPU_CAPABILITY=isa),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for isa in ("default", "avx2", "avx512")}
    for isa, proc in procs.items():
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, f"{isa}: {err[-2000:]}"


# ---------------------------------------------------------------- masks_to_boxes

@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.int64, torch.float32])
def test_masks_to_boxes(target, dtype):
    backend, device = target
    m = _blobs(17, 31, 150, 7)
    m[3] = False
    m[4] = False
    m[4, 30, 149] = True  # one pixel in the corner: x1 == x2, y1 == y2
    src = m.to(dtype) * (2 if dtype != torch.bool else 1)
    out = detseg.masks_to_boxes(src.to(device), backend=backend).cpu()
    assert out.dtype == torch.float32 and out.shape == (17, 4)
    for i in range(17):
        nz = m[i].nonzero()
        ref = [0.0] * 4 if nz.numel() == 0 else [nz[:, 1].min(), nz[:, 0].min(), nz[:, 1].max(), nz[:, 0].max()]
        assert out[i].tolist() == [float(v) for v in ref]
    assert out[4].tolist() == [149.0, 30.0, 149.0, 30.0]
    assert detseg.masks_to_boxes(torch.zeros(0, 5, 5), backend=backend).shape == (0, 4)
    with pytest.raises(ValueError, match=r"detseg.masks_to_boxes: masks must be a Tensor\[N, H, W\]"):
        detseg.masks_to_boxes(m[0], backend=backend)


# ---------------------------------------------------------------- paste_masks_in_image

def _paste_inputs(n, m, h, w, seed):
    g = _gen(seed)
    masks = torch.rand(n, m, m, generator=g)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w, h]) * 1.2 - 0.1 * torch.tensor([w, h])
    wh = torch.rand(n, 2, generator=g) * torch.tensor([w, h]) * 0.6 + 0.5
    boxes = torch.cat([xy, xy + wh], 1)
    if n > 3:
        boxes[0] = torch.tensor([-20.0, -20.0, w + 20.0, h + 20.0])  # covers the image
        boxes[1] = torch.tensor([3.2, 4.7, 3.4, 4.9])  # tiny
        boxes[2] = torch.tensor([w + 5.0, h + 5.0, w + 30.0, h + 40.0])  # beyond the image
        boxes[3] = torch.tensor([float("nan"), 1.0, 5.0, 6.0])
    return masks, boxes


@pytest.mark.parametrize("convention", ["torchvision", "detectron2"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("size", [(0, 28, 10, 12), (1, 1, 7, 5), (9, 28, 53, 71), (6, 14, 40, 33)],
                         ids=lambda s: "x".join(map(str, s)))
def test_paste_cpp_vs_reference(convention, dtype, size):
    B.require("cpp")
    n, m, h, w = size
    masks, boxes = _paste_inputs(n, m, h, w, seed=n + m)
    masks = masks.to(dtype)
    for padding in (1, 0, 2) if convention == "torchvision" else (1,):
        a = detseg.paste_masks_in_image(masks[:, None], boxes, (h, w), padding, convention=convention, backend="cpp")
        r = detseg.paste_masks_in_image(masks[:, None], boxes, (h, w), padding, convention=convention,
                                        backend="reference")
        assert a.shape == (n, 1, h, w) and a.dtype == dtype
        assert_close(a, r.double())
        if n > 3:
            assert float(a[:, 0][3].abs().sum()) == 0.0  # NaN box: nothing pasted
            assert float(a[:, 0][2].abs().sum()) == 0.0  # beyond the image
            assert bool((a[:, 0][0] > 0).float().mean() > 0.9)  # covers the image
    tb = detseg.paste_masks_in_image(masks, boxes, (h, w), convention=convention, threshold=0.5, backend="cpp")
    tr = detseg.paste_masks_in_image(masks, boxes, (h, w), convention=convention, threshold=0.5, backend="reference")
    assert tb.dtype == torch.bool and tb.shape == (n, h, w)
    # thresholding near-equal floats may flip a handful of pixels exactly at 0.5
    assert int((tb != tr).sum()) <= max(2, tb.numel() // 10000)


def test_paste_detectron2_literal():
    """detectron2's _do_paste_mask written out over the whole image (no region restriction):
    pixel centres normalised into each box, grid_sample(align_corners=False), >= threshold."""
    B.require("cpp")
    masks, boxes = _paste_inputs(6, 28, 45, 57, 3)
    h, w = 45, 57
    x0, y0, x1, y1 = torch.split(boxes, 1, dim=1)  # each [N, 1]
    img_y = (torch.arange(h, dtype=torch.float32) + 0.5 - y0) / (y1 - y0) * 2 - 1
    img_x = (torch.arange(w, dtype=torch.float32) + 0.5 - x0) / (x1 - x0) * 2 - 1
    gx = img_x[:, None, :].expand(6, h, w)
    gy = img_y[:, :, None].expand(6, h, w)
    ref = torch.nn.functional.grid_sample(masks[:, None], torch.stack([gx, gy], dim=3), align_corners=False)[:, 0]
    ref = torch.nan_to_num(ref, nan=0.0)  # the NaN box (row 3): detseg pastes nothing
    out = detseg.paste_masks_in_image(masks, boxes, (h, w), convention="detectron2", backend="cpp")
    assert_close(out, ref.double())
    thr = detseg.paste_masks_in_image(masks, boxes, (h, w), convention="detectron2", threshold=0.5, backend="cpp")
    assert int((thr != (ref >= 0.5)).sum()) <= 2


@pytest.mark.cuda
@pytest.mark.parametrize("convention", ["torchvision", "detectron2"])
def test_paste_cuda_vs_cpu(convention):
    masks, boxes = _paste_inputs(9, 28, 53, 71, 37)
    for thr in (None, 0.5):
        a = detseg.paste_masks_in_image(masks.cuda(), boxes.cuda(), (53, 71), convention=convention, threshold=thr,
                                        backend="cpp").cpu()
        b = detseg.paste_masks_in_image(masks, boxes, (53, 71), convention=convention, threshold=thr, backend="cpp")
        if thr is None:
            assert_close(a, b.double())
        else:
            assert int((a != b).sum()) <= 2


def test_paste_torchvision_literal():
    """One mask pasted by hand with torchvision's algorithm (expand, int box, interpolate, clip)."""
    B.require("cpp")
    mask = torch.arange(16.0).reshape(1, 4, 4) / 16
    box = torch.tensor([[2.0, 3.0, 9.0, 7.0]])
    out = detseg.paste_masks_in_image(mask[:, None], box, (12, 14), backend="cpp")[0, 0]
    scale = 6 / 4
    xc, yc, wh, hh = 5.5, 5.0, 3.5 * scale, 2.0 * scale
    b = [int(xc - wh), int(yc - hh), int(xc + wh), int(yc + hh)]
    padded = torch.nn.functional.pad(mask[None], (1, 1, 1, 1))
    res = torch.nn.functional.interpolate(padded, size=(b[3] - b[1] + 1, b[2] - b[0] + 1), mode="bilinear",
                                          align_corners=False)[0, 0]
    ref = torch.zeros(12, 14)
    ref[b[1]:b[3] + 1, b[0]:b[2] + 1] = res
    assert_close(out, ref)


def test_paste_errors():
    masks, boxes = _paste_inputs(2, 5, 8, 8, 0)
    with pytest.raises(ValueError, match=r"convention must be 'torchvision' or 'detectron2', got 'mmdet'"):
        detseg.paste_masks_in_image(masks, boxes, (8, 8), convention="mmdet")
    with pytest.raises(ValueError, match=r"boxes must be a Tensor\[N, 4\] with N = 2"):
        detseg.paste_masks_in_image(masks, boxes[:1], (8, 8))
    with pytest.raises(TypeError, match=r"masks must be a floating-point tensor"):
        detseg.paste_masks_in_image(masks > 0.5, boxes, (8, 8))
    with pytest.raises(ValueError, match=r"padding must be >= 0, got -1"):
        detseg.paste_masks_in_image(masks, boxes, (8, 8), -1)


def test_paste_threads_bitwise():
    B.require("cpp")
    masks, boxes = _paste_inputs(20, 28, 120, 160, 4)
    for conv in ("torchvision", "detectron2"):
        fn = lambda: detseg.paste_masks_in_image(masks, boxes, (120, 160), convention=conv, backend="cpp")  # noqa: E731
        assert_bitwise(B.at_threads(1, fn), B.at_threads(2, fn))


# ---------------------------------------------------------------- opcheck / compile

def test_opcheck():
    B.require("cpp")
    p, t = _labels((2, 9, 11), 5, seed=0)
    ops = torch.ops.detseg
    torch.library.opcheck(ops.confusion_matrix.default, (p, t, 5, 2, True, "count"))
    torch.library.opcheck(ops.confusion_matrix.default, (p.to(torch.uint8), t.to(torch.uint8), 5))
    m1, m2 = _blobs(4, 9, 70, 0), _blobs(3, 9, 70, 1)
    torch.library.opcheck(ops.mask_iou.default, (m1, m2, torch.tensor([True, False, True])))
    torch.library.opcheck(ops.masks_to_boxes.default, (m1,))
    masks, boxes = _paste_inputs(4, 7, 20, 24, 0)
    torch.library.opcheck(ops.paste_masks_in_image.default, (masks, boxes, 20, 24, 1, "torchvision", None))
    torch.library.opcheck(ops.paste_masks_in_image.default, (masks, boxes, 20, 24, 1, "detectron2", 0.5))


def test_compile_smoke():
    B.require("cpp")
    p, t = _labels((2, 9, 11), 5, seed=0)
    m1, m2 = _blobs(4, 9, 70, 0), _blobs(3, 9, 70, 1)

    def f(p, t, m1, m2):
        cm = detseg.confusion_matrix(p, t, 5, backend="cpp")
        return cm.sum(0), detseg.mask_iou(m1, m2, backend="cpp"), detseg.masks_to_boxes(m1, backend="cpp")

    cf = torch.compile(f, fullgraph=True, backend="aot_eager")
    for a, b in zip(cf(p, t, m1, m2), f(p, t, m1, m2)):
        assert torch.equal(a, b)


# ---------------------------------------------------------------- Triton (interpreted on CPU: few, larger cases)

TRITON = B.targets(["triton"])


@pytest.mark.parametrize("target", TRITON)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int64])
@pytest.mark.parametrize("c", [6, 70])
def test_triton_confusion_matrix(target, dtype, c):
    backend, device = target
    p, t = _labels((3, 33, 17), c, seed=c, dtype=dtype)
    p[0, 0, :3] = 100  # invalid (> c) on a few pixels
    t[1, 1, :4] = 3  # ignored
    cm, bad = detseg.confusion_matrix(p.to(device), t.to(device), c, 3, invalid="count", backend=backend)
    ref, nbad = _oracle(p, t, c, 3)
    assert torch.equal(cm.cpu(), ref) and int(bad) == nbad
    per, pbad = detseg.confusion_matrix(p.to(device), t.to(device), c, 3, per_image=True, invalid="count",
                                        backend=backend)
    assert torch.equal(per.sum(0).cpu(), ref) and int(pbad.sum()) == nbad
    with pytest.raises(ValueError, match=r"labels must be in \[0, num_classes"):
        detseg.confusion_matrix(p.to(device), t.to(device), c, backend=backend)


@pytest.mark.parametrize("target", TRITON)
@pytest.mark.parametrize("crowd", [False, True])
def test_triton_mask_iou(target, crowd):
    backend, device = target
    m1, m2 = _blobs(13, 37, 129, 1).to(torch.uint8), _blobs(33, 37, 129, 2)
    iscrowd = (torch.arange(33) % 3 == 0) if crowd else None
    out = detseg.mask_iou(m1.to(device), m2.to(device), None if iscrowd is None else iscrowd.to(device),
                          backend=backend)
    assert_close(out.cpu(), _iou_oracle(m1.bool(), m2, iscrowd))


@pytest.mark.parametrize("target", TRITON)
@pytest.mark.parametrize("dtype", [torch.bool, torch.float32])
def test_triton_masks_to_boxes(target, dtype):
    backend, device = target
    m = _blobs(9, 31, 70, 3)
    m[2] = False
    m[3] = False
    m[3, 30, 69] = True
    out = detseg.masks_to_boxes(m.to(dtype).to(device), backend=backend)
    assert torch.equal(out.cpu(), detseg.masks_to_boxes(m, backend="reference"))


@pytest.mark.parametrize("target", TRITON)
@pytest.mark.parametrize("convention", ["torchvision", "detectron2"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_triton_paste(target, convention, dtype):
    backend, device = target
    masks, boxes = _paste_inputs(9, 28, 53, 71, 37)
    masks = masks.to(dtype)
    out = detseg.paste_masks_in_image(masks[:, None].to(device), boxes.to(device), (53, 71), convention=convention,
                                      backend=backend)
    ref = detseg.paste_masks_in_image(masks[:, None], boxes, (53, 71), convention=convention, backend="reference")
    assert out.shape == (9, 1, 53, 71) and out.dtype == dtype
    assert_close(out.cpu(), ref.double())
    tb = detseg.paste_masks_in_image(masks.to(device), boxes.to(device), (53, 71), convention=convention,
                                     threshold=0.5, backend=backend)
    tr = detseg.paste_masks_in_image(masks, boxes, (53, 71), convention=convention, threshold=0.5,
                                     backend="reference")
    assert tb.dtype == torch.bool and int((tb.cpu() != tr).sum()) <= 2


# ---------------------------------------------------------------- properties

hyp = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")


@hyp.given(n=st.integers(0, 3000), c=st.integers(1, 70), lo=st.integers(-3, 0), extra=st.integers(0, 3),
           ignore=st.one_of(st.none(), st.integers(-2, 80)), dtype=st.sampled_from(LABEL_DTYPES),
           seed=st.integers(0, 2 ** 16))
def test_property_confusion_cpp_equals_reference(n, c, lo, extra, ignore, dtype, seed):
    B.require("cpp")
    g = _gen(seed)
    p = torch.randint(lo, c + extra, (n,), generator=g)
    t = torch.randint(lo, c + extra, (n,), generator=g)
    if dtype == torch.uint8:
        p, t = p.clamp(min=0), t.clamp(min=0)
    p, t = p.to(dtype), t.to(dtype)
    a = detseg.confusion_matrix(p, t, c, ignore, invalid="count", backend="cpp")
    r = detseg.confusion_matrix(p, t, c, ignore, invalid="count", backend="reference")
    assert torch.equal(a[0], r[0]) and torch.equal(a[1], r[1])
    assert int(a[0].sum()) + int(a[1]) <= n


@hyp.given(n=st.integers(0, 6), m=st.integers(0, 6), h=st.integers(1, 20), w=st.integers(1, 150),
           seed=st.integers(0, 2 ** 16))
def test_property_mask_iou_bounds_and_symmetry(n, m, h, w, seed):
    B.require("cpp")
    g = _gen(seed)
    m1 = torch.rand(n, h, w, generator=g) < torch.rand(n, 1, 1, generator=g)
    m2 = torch.rand(m, h, w, generator=g) < torch.rand(m, 1, 1, generator=g)
    a = detseg.mask_iou(m1, m2, backend="cpp")
    assert bool(((a >= 0) & (a <= 1)).all())
    assert torch.equal(a.T, detseg.mask_iou(m2, m1, backend="cpp"))
    assert_close(a, _iou_oracle(m1, m2))
