"""The RoI family's detseg ops and peers (onnxruntime RoiAlign / MaxRoiPool, OpenVINO ROIAlign /
ROIPooling); the workloads are in detseg/cli/workloads.py."""

from __future__ import annotations

import numpy as np
import torch

from ..providers import Context, Prepared, Unavailable, _as_tensor, _ort_session, detseg_op, impl, tensor_agreement

ROI_OPS = ("roi_align", "roi_pool")


def _roi_agreement(result: torch.Tensor, ref: torch.Tensor) -> tuple[bool, str]:
    """RoI outputs are averages of up to hundreds of bilinear samples whose summation order
    differs between libraries, so their error scales with the features, not with each (often
    near-zero) output: they get 1e-4 of the largest |reference| value."""
    atol = 1e-5
    if ref.numel():
        atol = max(atol, 1e-4 * ref.abs().nan_to_num(nan=0.0).max().item())
    return tensor_agreement(result, ref, atol)


detseg_op("roi_align", ("input", "boxes", "output_size", "spatial_scale", "sampling_ratio", "aligned"),
          agreement=_roi_agreement)
detseg_op("roi_pool", ("input", "boxes", "output_size", "spatial_scale"), agreement=_roi_agreement)


def _roi_arrays(inputs: dict):
    """features [N, C, H, W], rois [K, 5], and the [K, 4] boxes / [K] int64 batch indices split
    from them (outside the timing) for the peers that take them apart."""
    feats = inputs["input"].numpy()
    rois = inputs["boxes"].numpy()
    return feats, rois, np.ascontiguousarray(rois[:, 1:]), rois[:, 0].astype(np.int64)


@impl("onnxruntime", *ROI_OPS)
def _ort_roi(inputs: dict, ctx: Context, op: str) -> Prepared:
    import onnx
    import onnx.helper as oh

    feats, rois, boxes, bidx = _roi_arrays(inputs)
    ph, pw = inputs["output_size"]
    x = oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(feats.shape))
    y = oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    if op == "roi_align":
        if not inputs["aligned"]:
            raise Unavailable("only aligned=True workloads are mapped (coordinate_transformation_mode 'half_pixel')")
        node = oh.make_node("RoiAlign", ["x", "rois", "bidx"], ["y"], mode="avg", output_height=ph, output_width=pw,
                            sampling_ratio=max(int(inputs["sampling_ratio"]), 0),  # ORT's adaptive is 0
                            spatial_scale=float(inputs["spatial_scale"]),
                            coordinate_transformation_mode="half_pixel")
        ins = [x, oh.make_tensor_value_info("rois", onnx.TensorProto.FLOAT, [None, 4]),
               oh.make_tensor_value_info("bidx", onnx.TensorProto.INT64, [None])]
        feed = {"x": feats, "rois": boxes, "bidx": bidx}
    else:
        node = oh.make_node("MaxRoiPool", ["x", "rois"], ["y"], pooled_shape=[ph, pw],
                            spatial_scale=float(inputs["spatial_scale"]))
        ins = [x, oh.make_tensor_value_info("rois", onnx.TensorProto.FLOAT, [None, 5])]
        feed = {"x": feats, "rois": rois}
    model = oh.make_model(oh.make_graph([node], op, ins, [y]), opset_imports=[oh.make_opsetid("", 16)])
    model.ir_version = min(model.ir_version, 9)
    sess = _ort_session(model, ctx)
    return Prepared(lambda: sess.run(None, feed)[0], _as_tensor)


@impl("openvino", *ROI_OPS)
def _openvino_roi(inputs: dict, ctx: Context, op: str) -> Prepared:
    import openvino as ov
    import openvino.opset2 as ops2
    import openvino.opset9 as ops9

    feats, rois, boxes, bidx = _roi_arrays(inputs)
    ph, pw = inputs["output_size"]
    p_x = ops9.parameter(list(feats.shape), np.float32, name="x")
    if op == "roi_align":
        if not inputs["aligned"]:
            raise Unavailable("only aligned=True workloads are mapped (aligned_mode 'half_pixel_for_nn')")
        p_r = ops9.parameter([-1, 4], np.float32, name="rois")
        p_b = ops9.parameter([-1], np.int64, name="bidx")
        node = ops9.roi_align(p_x, p_r, p_b, ph, pw, max(int(inputs["sampling_ratio"]), 0),
                              float(inputs["spatial_scale"]), "avg", aligned_mode="half_pixel_for_nn")
        params, feed = [p_x, p_r, p_b], {0: feats, 1: boxes, 2: bidx}
    else:
        p_r = ops9.parameter([-1, 5], np.float32, name="rois")
        node = ops2.roi_pooling(p_x, p_r, [ph, pw], float(inputs["spatial_scale"]), "max")
        params, feed = [p_x, p_r], {0: feats, 1: rois}
    model = ov.Model([node.output(0)], params, op)
    # On CPUs with bf16 support the plugin otherwise runs ROIPooling in bf16 (outputs rounded to
    # 8 mantissa bits); every other provider computes in float32.
    compiled = ov.Core().compile_model(model, "CPU", {
        "INFERENCE_NUM_THREADS": ctx.threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    return Prepared(lambda: request.infer(feed, share_inputs=True)[0], _as_tensor)
