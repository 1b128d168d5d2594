"""roi_pool forward: the channel-blocked NCHW float32 path (16-channel register transposes,
two interleaved max chains per bin, RoIs reordered top to bottom) against the reference and
the channels-last path, on data built for ties and NaNs, where the first-maximum rule of
detseg/roi_pool.h (pool_takes) decides the argmax."""

from __future__ import annotations

import textwrap

import pytest
import torch

import _backends
from detseg import reference as R


def tie_data(c, h, w, k, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 3, (2, c, h, w), generator=g).float()  # three values: ties everywhere
    x[0, min(1, c - 1), 3:7, 4:9] = float("nan")
    x[1, c - 1, h // 2, w // 2] = float("nan")
    x[0, 0, 5, 5] = -0.0
    b = torch.randint(0, 2, (k, 1), generator=g).float()
    xy = torch.rand(k, 2, generator=g) * (4 * max(h, w) + 40) - 10
    wh = torch.exp(torch.rand(k, 2, generator=g) * 5)
    rois = torch.cat([b, xy, xy + wh], 1)
    rois[0, 1] = float("nan")
    return x, rois


def run_all(x, rois, scale, ph, pw):
    return torch.ops.detseg.roi_pool(x, rois, scale, ph, pw)


@pytest.mark.parametrize("c", [1, 16, 19, 40])
@pytest.mark.parametrize("ph,pw", [(7, 7), (3, 5), (1, 1)])
@pytest.mark.parametrize("scale", [0.25, 1.0])
def test_blocked_nchw_path_matches_reference_and_channels_last(c, ph, pw, scale):
    x, rois = tie_data(c, 23, 37, 60, seed=c * 7 + ph)
    out, arg = run_all(x, rois, scale, ph, pw)
    ocl, acl = run_all(x.contiguous(memory_format=torch.channels_last), rois, scale, ph, pw)
    oref, aref = R.roi_pool(x.double(), rois.double(), scale, ph, pw)
    assert torch.equal(arg, aref), int((arg != aref).sum())
    assert torch.equal(arg, acl.contiguous())
    torch.testing.assert_close(out.double(), oref, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(out, ocl.contiguous(), rtol=0, atol=0, equal_nan=True)


def test_blocked_path_any_thread_count():
    x, rois = tie_data(40, 31, 29, 300, seed=3)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = run_all(x, rois, 0.5, 7, 7)
        torch.set_num_threads(2)
        b = run_all(x, rois, 0.5, 7, 7)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(a[1], b[1])
    assert torch.equal(a[0].nan_to_num(), b[0].nan_to_num()) and torch.equal(a[0].isnan(), b[0].isnan())


_SCRIPT = textwrap.dedent("""
    import sys
    import torch
    import detseg
    sys.path.insert(0, {tests!r})
    from test_roi_pool_paths import tie_data
    x, rois = tie_data(35, 19, 45, 200, seed=11)
    out, arg = torch.ops.detseg.roi_pool(x, rois, 0.5, 7, 7)
    torch.save((out.nan_to_num(-7.0), arg), sys.argv[1])
""")


def test_blocked_path_isa_builds_agree(tmp_path):
    isas = _backends.isas_here()
    if len(isas) < 2:
        pytest.skip("this CPU runs one ISA only")
    script = _SCRIPT.format(tests=str(_backends.__file__).rsplit("/", 1)[0])
    results = _backends.outputs_at_isas(script, tmp_path, "roi_pool", isas)
    for out, arg in results[1:]:
        assert torch.equal(arg, results[0][1])
        assert torch.equal(out, results[0][0])
