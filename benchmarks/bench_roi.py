"""pytest-benchmark over the RoI family's canonical workloads x providers (roi_align box and
mask heads, roi_pool). Same inputs and timed regions as `detseg bench`.

    pytest benchmarks/bench_roi.py --benchmark-enable [--bench-mode full] [--bench-threads 1]
"""

from __future__ import annotations

from workloads import bench_module

bench_module(globals(), "roi_align", "roi_pool", "roi_align_train", "roi_pool_train")
