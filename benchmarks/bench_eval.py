"""pytest-benchmark over the COCO evaluation and RLE encode workloads x providers (detseg,
pycocotools, faster-coco-eval, hotcoco). Same inputs and timed regions as `detseg bench`.

    pytest benchmarks/bench_eval.py --benchmark-enable [--bench-mode full] [--bench-threads 1]
"""

from __future__ import annotations

from workloads import bench_module

bench_module(globals(), "coco_eval", "rle_encode")
