"""The per-ISA builds (DEFAULT / AVX2 / AVX512, chosen at run time from ATEN_CPU_CAPABILITY)
give bitwise identical results, equal to the reference. Each ISA runs in its own process:
torch fixes its CPU capability at start-up."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import _backends as B
from detseg import reference as R
from tolerances import assert_bitwise, assert_close

ROOT = Path(__file__).resolve().parents[1]
ISAS = {"default": "DEFAULT", "avx2": "AVX2", "avx512": "AVX512"}

SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import torch
    import detseg
    sys.path.insert(0, {tests!r})
    import _data as D
    out = {{"isa": detseg.build_info()["cpu_isa"], "capability": torch.backends.cpu.get_cpu_capability()}}
    for dt in (torch.float32, torch.float64, torch.float16):
        # 37 x 29 + a batch: SIMD bodies and scalar tails both run
        a = D.clustered_boxes(37, 1, clusters=5, jitter=6).to(dt).requires_grad_()
        b = torch.cat([D.clustered_boxes(25, 2, clusters=5, jitter=6), D.zero_area_boxes(4, 3)]).to(dt).requires_grad_()
        for kind, fn in (("iou", detseg.box_iou), ("giou", detseg.generalized_box_iou),
                         ("diou", detseg.distance_box_iou), ("ciou", detseg.complete_box_iou)):
            m = fn(a, b, backend="cpp")
            # numpy, not torch.randn: ATen's normal_ has an AVX2 path with other bits
            g = torch.from_numpy(np.random.default_rng(5).standard_normal(tuple(m.shape))).to(m.dtype)
            ga, gb = torch.autograd.grad(m, (a, b), g)
            out[f"{{kind}}-{{dt}}"] = m.detach()
            out[f"{{kind}}-{{dt}}-grad"] = (ga, gb)
            out[f"{{kind}}-{{dt}}-batched"] = fn(a.detach()[:36].reshape(3, 12, 4), b.detach()[:27].reshape(3, 9, 4),
                                                backend="cpp")
        for kind, fn in (("giou", detseg.generalized_box_iou_loss), ("diou", detseg.distance_box_iou_loss),
                         ("ciou", detseg.complete_box_iou_loss)):
            l = fn(a[:29], b, backend="cpp")
            out[f"loss-{{kind}}-{{dt}}"] = l.detach()
            out[f"loss-{{kind}}-{{dt}}-grad"] = torch.autograd.grad(l.sum(), (a, b))
        for sc in ("clustered", "ties"):
            bx, s = D.nms_scenario(sc, dt)
            out[f"nms-{{sc}}-{{dt}}"] = detseg.nms(bx, s, 0.5, backend="cpp")
            out[f"batched-{{sc}}-{{dt}}"] = detseg.batched_nms(bx, s, torch.arange(1500) % 7, 0.5, backend="cpp")
        out[f"area-{{dt}}"] = detseg.box_area(a.detach(), backend="cpp")
        out[f"convert-{{dt}}"] = detseg.box_convert(a.detach(), "xyxy", "cxcywh", backend="cpp")
    torch.save(out, sys.argv[1])
""")


@pytest.fixture(scope="module")
def per_isa(tmp_path_factory):
    B.require("cpp")
    top = torch.backends.cpu.get_cpu_capability()
    isas = {"DEFAULT": ["default"], "AVX2": ["default", "avx2"]}.get(top, list(ISAS))
    if len(isas) < 2:
        pytest.skip(f"this CPU has only the {top} path")
    d = tmp_path_factory.mktemp("isa")
    script = d / "parity.py"
    script.write_text(SCRIPT.format(tests=str(ROOT / "tests")))
    results = {}
    procs = {}
    for isa in isas:
        env = B.subprocess_env(ATEN_CPU_CAPABILITY=isa, OMP_NUM_THREADS="1")
        procs[isa] = subprocess.Popen([sys.executable, str(script), str(d / f"{isa}.pt")], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for isa, p in procs.items():
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, f"{isa} run failed:\n{err[-3000:]}"
        results[isa] = torch.load(d / f"{isa}.pt")
    return results


def test_each_isa_was_selected(per_isa):
    for isa, res in per_isa.items():
        assert res["isa"] == ISAS[isa], (isa, res["isa"])


def _flat(v):
    return list(v) if isinstance(v, tuple) else [v]


def _others(per_isa):
    return [isa for isa in per_isa if isa != "default"]


def _mismatches(per_isa, keys):
    base = per_isa["default"]
    bad = []
    for isa in _others(per_isa):
        for key in keys:
            for x, y in zip(_flat(base[key]), _flat(per_isa[isa][key])):
                try:
                    assert_bitwise(x, y)
                except AssertionError as e:
                    bad.append(f"{key} DEFAULT vs {isa.upper()}: {e}")
    return bad


def _keys(per_isa, pred):
    return [k for k in per_isa["default"] if k not in ("isa", "capability") and pred(k)]


def test_forward_and_nms_bitwise_identical_across_isas(per_isa):
    for isa in _others(per_isa):
        assert set(per_isa[isa]) == set(per_isa["default"])
    keys = _keys(per_isa, lambda k: not k.endswith("-grad"))
    bad = _mismatches(per_isa, keys)
    assert not bad, "\n".join(bad)


def test_gradients_across_isas_close(per_isa):
    keys = _keys(per_isa, lambda k: k.endswith("-grad"))
    for isa in _others(per_isa):
        for key in keys:
            for x, y in zip(_flat(per_isa["default"][key]), _flat(per_isa[isa][key])):
                assert_close(y, x.double(), what="grad")


def test_gradients_bitwise_across_isas(per_isa):
    keys = _keys(per_isa, lambda k: k.endswith("-grad"))
    bad = _mismatches(per_isa, keys)
    assert not bad, "\n".join(bad)


def test_isa_results_equal_reference(per_isa):
    import _data as D
    for isa, res in per_isa.items():
        for dt in (torch.float32, torch.float64, torch.float16):
            a = D.clustered_boxes(37, 1, clusters=5, jitter=6).to(dt)
            b = torch.cat([D.clustered_boxes(25, 2, clusters=5, jitter=6), D.zero_area_boxes(4, 3)]).to(dt)
            for kind in ("iou", "giou", "diou", "ciou"):
                eps = 1e-7 if kind in ("diou", "ciou") else 0.0
                assert_close(res[f"{kind}-{dt}"], R.box_iou_matrix(a.double(), b.double(), kind, eps))
            for sc in ("clustered", "ties"):
                bx, s = D.nms_scenario(sc, dt)
                assert res[f"nms-{sc}-{dt}"].tolist() == R.nms(bx, s, 0.5).tolist(), (isa, sc, dt)
                assert res[f"batched-{sc}-{dt}"].tolist() == R.batched_nms(bx, s, torch.arange(1500) % 7, 0.5).tolist()
