"""pytest-benchmark over the transposed convolution's canonical workloads x providers (U-Net
up-steps, Mask R-CNN mask head, FCN-32s, 3x3 stride-2 decoder; forward and forward + backward).
Same inputs and timed regions as `detseg bench`.

    pytest benchmarks/bench_conv.py --benchmark-enable [--bench-mode full] [--bench-threads 1]
"""

from __future__ import annotations

from workloads import bench_module

bench_module(globals(), "conv_transpose2d", "conv_transpose2d_train")
