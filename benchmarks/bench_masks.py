"""pytest-benchmark over the mask family's canonical workloads x providers (confusion matrix of
label maps, dense mask IoU, mask pasting). Same inputs and timed regions as `detseg bench`.

    pytest benchmarks/bench_masks.py --benchmark-enable [--bench-mode full] [--bench-threads 1]
"""

from __future__ import annotations

from workloads import bench_module

bench_module(globals(), "confusion_matrix", "mask_iou", "paste_masks_in_image")
