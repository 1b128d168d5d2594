"""Triton kernels (CUDA tensors; CPU tensors under TRITON_INTERPRET=1, set before import).
Functions carry the internal op names and signatures of csrc/ops.cpp."""

import triton  # noqa: F401  -- ImportError here marks the backend unavailable
