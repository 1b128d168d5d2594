"""RLE ops against pycocotools' mask API, byte for byte (hotcoco as a further oracle)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import _backends as B
import detseg
from detseg.ops import rle as R

mu = pytest.importorskip("pycocotools.mask")

BACKENDS = ["cpp", "reference"]


def _masks(seed: int, n: int, h: int, w: int, p: float = 0.3, blobs: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if not blobs:
        return rng.random((n, h, w)) < p
    m = np.zeros((n, h, w), bool)
    for i in range(n):
        for _ in range(3):
            y0, x0 = rng.integers(0, max(h, 1)), rng.integers(0, max(w, 1))
            m[i, y0:y0 + rng.integers(1, h + 1), x0:x0 + rng.integers(1, w + 1)] ^= True
    return m


def _ref_encode(m: np.ndarray) -> list[dict]:
    return mu.encode(np.asfortranarray(m.transpose(1, 2, 0).astype(np.uint8)))


CASES = [(3, 1, 1), (4, 37, 53), (5, 64, 64), (2, 127, 3), (3, 3, 131), (6, 200, 150)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n,h,w", CASES)
@pytest.mark.parametrize("blobs", [True, False])
def test_encode_matches_pycocotools(backend, n, h, w, blobs):
    m = _masks(n * h + w, n, h, w, blobs=blobs)
    m[0] = False
    if n > 1:
        m[1] = True
    ref = _ref_encode(m)
    for dtype in (torch.bool, torch.uint8):
        got = R.rle_encode(torch.from_numpy(m).to(dtype), backend=backend)
        assert [g["counts"] for g in got] == [r["counts"] for r in ref]
        assert [g["size"] for g in got] == [list(r["size"]) for r in ref]


@pytest.mark.parametrize("backend", BACKENDS)
def test_encode_layouts(backend):
    m = _masks(1, 4, 33, 47)
    ref = [r["counts"] for r in _ref_encode(m)]
    fortran = torch.from_numpy(np.asfortranarray(m.transpose(1, 2, 0))).permute(2, 0, 1)  # read in place
    assert fortran.stride(1) == 1
    padded = torch.zeros(4, 40, 60, dtype=torch.bool)
    padded[:, 3:36, 5:52] = torch.from_numpy(m)
    for t in (fortran, padded[:, 3:36, 5:52]):
        assert [g["counts"] for g in R.rle_encode(t, backend=backend)] == ref
    single = R.rle_encode(torch.from_numpy(m[0]), backend=backend)
    assert single["counts"] == ref[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_decode_area_bbox_roundtrip(backend):
    m = _masks(7, 5, 41, 29)
    m[2] = False
    ref = _ref_encode(m)
    dec = R.rle_decode(ref, backend=backend)
    assert dec.dtype == torch.bool and torch.equal(dec, torch.from_numpy(m))
    assert np.array_equal(dec.numpy().transpose(1, 2, 0), mu.decode(ref).astype(bool))
    assert np.array_equal(R.rle_area(ref, backend=backend).numpy(), mu.area(ref).astype(np.int64))
    assert np.array_equal(R.rle_to_bbox(ref, backend=backend).numpy(), mu.toBbox(ref))
    str_counts = [{"size": r["size"], "counts": r["counts"].decode()} for r in ref]
    assert torch.equal(R.rle_decode(str_counts, backend=backend), dec)
    assert torch.equal(R.rle_decode(ref[1], backend=backend), dec[1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_uncompressed_and_large_runs(backend):
    """Runs of every magnitude (multi-char codes, negative deltas) and odd run counts."""
    rng = np.random.default_rng(3)
    rles = []
    for _ in range(20):
        k = int(rng.integers(1, 12))
        runs = (rng.integers(0, 2 ** rng.integers(1, 31, k))).tolist()
        runs[1:] = [max(1, r) for r in runs[1:]]
        total = sum(runs)
        rles.append({"size": [1, total], "counts": runs})
    ref = [mu.frPyObjects(r, r["size"][0], r["size"][1]) for r in rles]
    counts, off, sizes = R.rles_to_runs(rles, backend=backend)
    got = R.runs_to_rles(counts, off, sizes, backend=backend)
    assert [g["counts"] for g in got] == [r["counts"] for r in ref]
    back, off2, _ = R.rles_to_runs(got, backend=backend)
    assert torch.equal(back, counts) and torch.equal(off2, off)
    assert np.array_equal(R.rle_area(ref, backend=backend).numpy(), mu.area(ref).astype(np.int64))
    assert np.array_equal(R.rle_to_bbox(ref, backend=backend).numpy(), mu.toBbox(ref))


@pytest.mark.parametrize("backend", BACKENDS)
def test_iou_matches_pycocotools(backend):
    m = _masks(11, 7, 30, 40)
    m[0] = False
    dt, gt = _ref_encode(m[:4]), _ref_encode(m[3:])
    other = _ref_encode(_masks(12, 2, 31, 40))  # another size: -1 where the boxes overlap
    for crowd in ([0, 0, 0, 0], [1, 0, 1, 0]):
        got = R.rle_iou(dt + other, gt, crowd, backend=backend).numpy()
        ref = mu.iou(dt + other, gt, crowd)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    assert R.rle_iou(dt, [], backend=backend).shape == (4, 0)


def test_polygons_match_pycocotools():
    rng = np.random.default_rng(0)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(5, 60, 2))
        polys = []
        for _ in range(int(rng.integers(1, 4))):
            n = int(rng.integers(3, 12))
            p = np.stack([rng.uniform(-3, w + 3, n), rng.uniform(-3, h + 3, n)], 1).reshape(-1)
            if rng.random() < 0.3:
                p = np.round(p)
            if rng.random() < 0.2:
                p[2:4] = p[0:2]  # a zero-length edge
            polys.append(p.tolist())
        ref = mu.merge(mu.frPyObjects(polys, h, w))
        assert R.rle_from_polygons(polys, h, w)["counts"] == ref["counts"]


def test_hotcoco_agrees():
    hm = pytest.importorskip("hotcoco.mask")
    m = _masks(5, 6, 50, 70)
    got = R.rle_encode(torch.from_numpy(m))
    ref = hm.encode(np.asfortranarray(m.transpose(1, 2, 0).astype(np.uint8)))
    assert [g["counts"] for g in got] == [bytes(r["counts"]) if not isinstance(r["counts"], str)
                                          else r["counts"].encode() for r in ref]


def test_thread_count_determinism():
    m = torch.from_numpy(_masks(9, 40, 64, 48))
    prev = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = torch.ops.detseg.rle_encode_string(m)
        torch.set_num_threads(2)
        b = torch.ops.detseg.rle_encode_string(m)
    finally:
        torch.set_num_threads(prev)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_inputs(backend):
    with pytest.raises(ValueError, match="binary"):
        R.rle_encode(torch.tensor([[[0, 2], [1, 0]]], dtype=torch.uint8), backend=backend)
    with pytest.raises(TypeError, match="bool or uint8"):
        R.rle_encode(torch.zeros(1, 2, 2), backend=backend)
    with pytest.raises(ValueError, match=r"Tensor\[N, H, W\]"):
        R.rle_encode(torch.zeros(2, dtype=torch.bool), backend=backend)
    with pytest.raises(ValueError, match="same size"):
        R.rle_decode([{"size": [2, 2], "counts": [4]}, {"size": [1, 4], "counts": [4]}], backend=backend)
    with pytest.raises(ValueError, match="sum past"):
        R.rle_decode({"size": [2, 2], "counts": [3, 3]}, backend=backend)
    with pytest.raises(TypeError, match="'size' and 'counts'"):
        R.rle_area([{"counts": b"1"}], backend=backend)
    with pytest.raises(ValueError, match="one entry per gt"):
        R.rle_iou([{"size": [1, 1], "counts": [1]}], [{"size": [1, 1], "counts": [1]}], [0, 1], backend=backend)


def test_empty_batch_and_exports():
    assert R.rle_encode(torch.zeros(0, 5, 5, dtype=torch.bool)) == []
    z = R.rle_encode(torch.zeros(2, 0, 3, dtype=torch.bool))
    assert [r["counts"] for r in z] == [r["counts"] for r in _ref_encode(np.zeros((2, 0, 3), bool))]
    assert detseg.ops.rle_encode is R.rle_encode


def test_opcheck_schemas():
    m = torch.from_numpy(_masks(2, 3, 9, 7))
    c, o = torch.ops.detseg.rle_encode(m)
    sizes = torch.tensor([[9, 7]] * 3)
    samples = [
        (torch.ops.detseg.rle_encode.default, (m,)),
        (torch.ops.detseg.rle_encode_string.default, (m,)),
        (torch.ops.detseg.rle_counts_to_string.default, (c, o)),
        (torch.ops.detseg.rle_decode.default, (c, o, 9, 7)),
        (torch.ops.detseg.rle_area.default, (c, o)),
        (torch.ops.detseg.rle_to_bbox.default, (c, o, sizes)),
        (torch.ops.detseg.rle_iou.default, (c, o, sizes, c, o, sizes, torch.tensor([0, 1, 0]))),
    ]
    # Data-dependent output sizes and CPU-only host code: no fake kernels, so the schema test only.
    for op, args in samples:
        torch.library.opcheck(op, args, test_utils=("test_schema",))


_SCAN_CHECK = r"""
import numpy as np, torch, detseg
from pycocotools import mask as mu
from detseg.ops import rle as R
rng = np.random.default_rng(0)
cases = []
for h, w in [(1, 1), (1, 700), (700, 1), (17, 19), (511, 3), (64, 4), (257, 2), (31, 33), (128, 9)]:
    a = np.zeros((6, h, w), bool)
    a[1] = True                                    # all ones
    a[2] = rng.random((h, w)) < 0.5                # a transition almost every pixel
    a[3, h // 2:, : max(w // 2, 1)] = True         # runs that cross column boundaries
    a[4].reshape(-1, order="F")[::64] = True       # transitions on vector boundaries
    a[5].reshape(-1, order="F")[-1] = True         # only the very last pixel
    cases.append(a)
for m in cases:
    ref = [r["counts"] for r in mu.encode(np.asfortranarray(m.transpose(1, 2, 0).astype(np.uint8)))]
    fortran = torch.from_numpy(np.asfortranarray(m.transpose(1, 2, 0))).permute(2, 0, 1)
    for t in (torch.from_numpy(m), fortran, fortran.to(torch.uint8)):
        assert [g["counts"] for g in R.rle_encode(t, backend="cpp")] == ref, (m.shape, t.stride())
    runs, off = R.rle_encode_runs(torch.from_numpy(m), backend="cpp")
    assert (runs >= 0).all() and int(runs.sum()) == m.size
# a non-binary byte is found wherever it is: first pixel, vector body, scalar tail
for n in (1, 63, 64, 65, 300, 1000):
    for at in sorted({0, n // 2, n - 1}):
        m = torch.zeros(1, n, 1, dtype=torch.uint8)
        m[0, at, 0] = 2 + at % 250
        try:
            R.rle_encode(m, backend="cpp")
        except ValueError as e:
            assert "binary" in str(e)
        else:
            raise AssertionError(f"no error for value at {at} of {n}")
print("ok")
"""


def test_scan_every_isa():
    """The transition scan of each ISA build (one subprocess each: the capability is read once
    per process) on edge cases, byte for byte against pycocotools."""
    import subprocess
    import sys

    procs = {isa: subprocess.Popen([sys.executable, "-c", _SCAN_CHECK], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True,
                                   env=B.subprocess_env(ATEN_CPU_CAPABILITY=isa, OMP_NUM_THREADS="1"))
             for isa in ("default", "avx2", "avx512")}
    for isa, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and out.strip() == "ok", f"{isa}: {err[-3000:]}"
