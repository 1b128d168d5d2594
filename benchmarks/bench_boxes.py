"""pytest-benchmark over the box family's canonical workloads x providers (nms, batched_nms,
the IoU matrices, and the fresh-tensor floor). Same inputs and timed regions as `detseg bench`.

    pytest benchmarks/bench_boxes.py --benchmark-enable [--bench-mode full] [--bench-threads 1]
"""

from __future__ import annotations

from workloads import bench_module

bench_module(globals(), "nms", "batched_nms", "box_iou", "generalized_box_iou", "distance_box_iou",
             "complete_box_iou", "fill")
