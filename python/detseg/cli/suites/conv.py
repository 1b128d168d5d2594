"""Benchmark suite of the transposed convolution (issue 5): U-Net up-steps, the Mask R-CNN mask
head, FCN-32s's upsampling and a 3x3 stride-2 decoder layer, forward ("conv_transpose2d") and
forward + backward ("conv_transpose2d_train"). Peers: ATen on NCHW and on channels-last copies
(the conversion is outside the timing), OpenVINO's ConvolutionBackpropData."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..providers import PROVIDERS, Context, Prepared, Provider, Unavailable, _as_tensor, detseg_op, impl, register
from ..workloads import Workload, register as register_workload

FWD, TRAIN = "conv_transpose2d", "conv_transpose2d_train"
ARGS = ("input", "weight", "bias", "stride", "padding", "output_padding")


def _inputs(shape, cout, k, s, p, op):
    def make(rng):
        n, cin, h, w = shape
        x = torch.from_numpy(rng.standard_normal(shape, dtype=np.float32))
        wt = torch.from_numpy(rng.standard_normal((cin, cout, k, k), dtype=np.float32)) / math.sqrt(cin * k * k / s / s)
        b = torch.from_numpy(rng.standard_normal(cout, dtype=np.float32))
        return {"input": x, "weight": wt, "bias": b, "stride": s, "padding": p, "output_padding": op}
    return make


def gflop(shape, cout, k) -> float:
    """Multiply-adds x 2 of the scatter (every input pixel times every tap), in GFLOP."""
    n, cin, h, w = shape
    return 2.0 * n * cin * h * w * cout * k * k / 1e9


WORKLOADS = {
    "unet/512x32x32->256": ((8, 512, 32, 32), 256, 2, 2, 0, 0, "U-Net up-step, kernel 2 stride 2"),
    "unet/128x128x128->64": ((8, 128, 128, 128), 64, 2, 2, 0, 0, "U-Net up-step, kernel 2 stride 2"),
    "maskrcnn/256x14x14->256": ((100, 256, 14, 14), 256, 2, 2, 0, 0, "Mask R-CNN mask head, 100 RoIs, k2 s2"),
    "fcn32s/21x16x16->21": ((1, 21, 16, 16), 21, 64, 32, 16, 0, "FCN-32s upsampling, kernel 64 stride 32 pad 16"),
    "decoder3x3/256x64x64->128": ((8, 256, 64, 64), 128, 3, 2, 1, 1, "3x3 stride 2 pad 1 output_padding 1"),
}

for _name, (_shape, _cout, _k, _s, _p, _op, _desc) in WORKLOADS.items():
    _params = {"input": "x".join(map(str, _shape)), "c_out": _cout, "kernel": _k, "stride": _s, "padding": _p,
               "output_padding": _op, "gflop": round(gflop(_shape, _cout, _k), 3)}
    register_workload(Workload(f"conv_transpose2d/{_name}", FWD, _inputs(_shape, _cout, _k, _s, _p, _op), _params,
                               description=_desc))
    register_workload(Workload(f"conv_transpose2d_train/{_name}", TRAIN, _inputs(_shape, _cout, _k, _s, _p, _op),
                               _params, modes=("full",) if "fcn" not in _name and "mask" not in _name
                               else ("quick", "full"),
                               description=_desc + "; forward + backward (input, weight, bias gradients)"))

# Forward: every detseg backend through detseg.ops.conv_transpose2d.
detseg_op(FWD, ARGS)


def _train_step(fn, x, w, b, kw):
    """One forward + backward with all three gradients; returns the forward output."""
    x.grad = w.grad = b.grad = None
    out = fn(x, w, b, **kw)
    out.backward(torch.ones_like(out))
    return out


def _train_inputs(inputs: dict, channels_last: bool = False):
    x = inputs["input"].clone()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return (x.requires_grad_(), inputs["weight"].clone().requires_grad_(), inputs["bias"].clone().requires_grad_(),
            {k: inputs[k] for k in ("stride", "padding", "output_padding")})


def _detseg_train(backend: str):
    def prepare(inputs: dict, ctx: Context, op: str) -> Prepared:
        import detseg

        x, w, b, kw = _train_inputs(inputs)
        fn = lambda *a, **k: detseg.ops.conv_transpose2d(*a, **k, backend=backend)  # noqa: E731
        return Prepared(lambda: _train_step(fn, x, w, b, kw), lambda out: _as_tensor(out))
    return prepare


PROVIDERS["detseg-cpp"].impls[TRAIN] = _detseg_train("cpp")
PROVIDERS["detseg-reference"].impls[TRAIN] = _detseg_train("reference")


# ------------------------------------------------------------------ ATen

register(Provider(
    "aten", "peer", lambda: torch.__version__,
    "torch.nn.functional.conv_transpose2d on the NCHW tensors (torch.set_num_threads(threads)); train rows: "
    "forward + backward of all three gradients"))
register(Provider(
    "aten-cl", "peer", lambda: torch.__version__,
    "torch.nn.functional.conv_transpose2d on channels-last copies of the inputs (conversion outside the "
    "timing; ATen's best case)"))


def _aten(channels_last: bool):
    def prepare(inputs: dict, ctx: Context, op: str) -> Prepared:
        F = torch.nn.functional
        if op == TRAIN:
            x, w, b, kw = _train_inputs(inputs, channels_last)
            return Prepared(lambda: _train_step(F.conv_transpose2d, x, w, b, kw), _as_tensor)
        x = inputs["input"].contiguous(memory_format=torch.channels_last) if channels_last else inputs["input"]
        w, b = inputs["weight"], inputs["bias"]
        kw = {k: inputs[k] for k in ("stride", "padding", "output_padding")}
        return Prepared(lambda: F.conv_transpose2d(x, w, b, **kw), _as_tensor)
    return prepare


for _prov, _cl in (("aten", False), ("aten-cl", True)):
    for _op in (FWD, TRAIN):
        PROVIDERS[_prov].impls[_op] = _aten(_cl)


# ------------------------------------------------------------------ OpenVINO

@impl("openvino", FWD)
def _openvino_deconv(inputs: dict, ctx: Context, op: str) -> Prepared:
    import openvino as ov
    import openvino.opset1 as ops1

    x, w, b = (inputs[k].numpy() for k in ("input", "weight", "bias"))
    s, p, op_ = inputs["stride"], inputs["padding"], inputs["output_padding"]
    if op_ and op_ >= s:
        raise Unavailable("output_padding must be smaller than stride")
    px = ops1.parameter(list(x.shape), np.float32, name="x")
    node = ops1.convolution_backprop_data(px, ops1.constant(w), [s, s], pads_begin=[p, p], pads_end=[p, p],
                                          dilations=[1, 1], output_padding=[op_, op_])
    node = ops1.add(node, ops1.constant(b.reshape(1, -1, 1, 1)))
    model = ov.Model([node.output(0)], [px], "deconv")
    compiled = ov.Core().compile_model(model, "CPU", {
        "INFERENCE_NUM_THREADS": ctx.threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    return Prepared(lambda: request.infer({0: x}, share_inputs=True)[0], _as_tensor)


# ------------------------------------------------------------------ the matrix-rate floor
# torch.mm of the forward's GEMM, [C_out * k * k, C_in] x [C_in, N * H * W] (the same multiply-
# adds as the scatter): the machine's matrix rate on these shapes, for GFLOP/s comparisons.

def _mm_inputs(shape, cout, k):
    def make(rng):
        n, cin, h, w = shape
        return {"a": torch.from_numpy(rng.standard_normal((cout * k * k, cin), dtype=np.float32)),
                "b": torch.from_numpy(rng.standard_normal((cin, n * h * w), dtype=np.float32))}
    return make


for _name, (_shape, _cout, _k, *_rest) in WORKLOADS.items():
    register_workload(Workload(f"floor/conv_mm/{_name}", "conv_mm", _mm_inputs(_shape, _cout, _k),
                               {"gflop": round(gflop(_shape, _cout, _k), 3)},
                               description="torch.mm with the multiply-adds of the conv_transpose2d row"))


@impl("torch", "conv_mm")
def _torch_conv_mm(inputs: dict, ctx: Context, op: str) -> Prepared:
    a, b = inputs["a"], inputs["b"]
    return Prepared(lambda: torch.mm(a, b), None)
