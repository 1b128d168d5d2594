"""Triton kernels (CUDA tensors; CPU tensors under TRITON_INTERPRET=1, set before import).
Functions carry the internal op names and signatures of csrc/ops.cpp, so that
detseg._backend dispatches `getattr(detseg.triton, op)(*args)`."""

import triton  # noqa: F401  -- ImportError here marks the backend unavailable

from .boxes import box_area, box_convert, clip_boxes_to_image, remove_small_boxes  # noqa: F401
from .iou import _box_iou_loss_backward, _box_iou_matrix_backward, box_iou_loss, box_iou_matrix  # noqa: F401
from .nms import batched_nms, nms  # noqa: F401
from .conv import _conv_transpose2d_backward, _max_unpool2d_backward, conv_transpose2d, max_unpool2d  # noqa: F401,E402
