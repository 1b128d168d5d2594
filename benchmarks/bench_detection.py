"""pytest-benchmark over the detection post-processing family's canonical workloads x
providers: anchors and box decoding (detseg/cli/suites/anchors.py), multi-class NMS and
soft-NMS (registered by their own suite). Same inputs and timed regions as `detseg bench`.

    pytest benchmarks/bench_detection.py --benchmark-enable [--bench-mode full] [--bench-threads 1]
"""

from __future__ import annotations

from workloads import bench_module

bench_module(globals(), "grid_anchors", "decode_boxes", "multiclass_nms", "soft_nms")
