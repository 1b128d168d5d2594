"""Training-step RoI workloads: forward + backward (the input gradient) through autograd, on
the box- and mask-head inputs of the RoI family. No peer library has a RoI backward on the
CPU, so the comparison is detseg's C++ kernels against detseg's reference under autograd."""

from __future__ import annotations

import numpy as np
import torch

from .. import providers as P
from .. import workloads as W


def _train_inputs(head: tuple, sampling: int | None):
    make_fwd = W._roi_inputs(*head, sampling)

    def make(rng: np.random.Generator):
        d = make_fwd(rng)
        n, c = d["input"].shape[:2]
        k = d["boxes"].shape[0]
        d["grad"] = torch.from_numpy(rng.standard_normal((k, c, *d["output_size"]), dtype=np.float32))
        return d
    return make


OPS = {"roi_align_train": "roi_align", "roi_pool_train": "roi_pool"}

# Adaptive sampling is left out of the training rows: the reference's autograd takes 2-4 minutes
# per call there (measured 133 s / 271 s against detseg's 1.5 s / 0.8 s), which would dominate
# `detseg bench`.
W.register(W.Workload(
    "roi_align_train/box_head/sampling=2", "roi_align_train", _train_inputs(W._BOX_HEAD, 2),
    {"features": "2x256x200x272", "rois": 1000, "output": 7, "sampling_ratio": 2, "aligned": True},
    description="forward + backward (input gradient), box head"))
W.register(W.Workload(
    "roi_align_train/mask_head/sampling=2", "roi_align_train", _train_inputs(W._MASK_HEAD, 2),
    {"features": "2x256x100x136", "rois": 500, "output": 14, "sampling_ratio": 2, "aligned": True},
    modes=("full",), description="forward + backward (input gradient), mask head 14x14"))
W.register(W.Workload(
    "roi_pool_train/box_head", "roi_pool_train", _train_inputs(W._BOX_HEAD, None),
    {"features": "2x256x200x272", "rois": 1000, "output": 7},
    modes=("full",), description="forward + backward (input gradient), box head 7x7 max"))


def _train_prepare(backend: str):
    device = "cuda" if backend in ("triton", "cuda") else "cpu"
    api_backend = "cpp" if backend == "cuda" else backend

    def prepare(inputs: dict, ctx: P.Context, op: str) -> P.Prepared:
        import detseg

        fn = getattr(detseg.ops, OPS[op])
        x = inputs["input"].to(device)
        rois = inputs["boxes"].to(device)
        g = inputs["grad"].to(device)
        extra = (inputs["sampling_ratio"], inputs["aligned"]) if OPS[op] == "roi_align" else ()

        def run():
            xx = x.detach().requires_grad_()
            y = fn(xx, rois, inputs["output_size"], inputs["spatial_scale"], *extra, backend=api_backend)
            (gx,) = torch.autograd.grad(y, xx, g)
            if device == "cuda":
                torch.cuda.synchronize()
            return gx
        return P.Prepared(run, P._as_tensor)
    return prepare


for _op in OPS:
    for _b in P.DETSEG_BACKENDS:
        P.PROVIDERS[f"detseg-{_b}"].impls[_op] = _train_prepare(_b)
    P.DETSEG_ARGS[_op] = ("input", "boxes", "grad")  # marks the op as having a reference oracle


def _grad_agreement(result: torch.Tensor, ref: torch.Tensor) -> tuple[bool, str]:
    """Gradients are sums over RoIs in a different order than the reference's autograd: their
    error scales with the largest gradient, not with each (often near-zero) element."""
    if result.shape != ref.shape:
        return False, f"shape {list(result.shape)} != reference {list(ref.shape)}"
    err = (result.double() - ref.double()).abs().max().item() if ref.numel() else 0.0
    scale = ref.abs().max().item() if ref.numel() else 0.0
    return err <= 1e-5 + 1e-4 * scale, f"max |diff| {err:.2g} vs detseg.reference (max |grad| {scale:.2g})"


for _op in OPS:
    P.AGREEMENT[_op] = _grad_agreement
