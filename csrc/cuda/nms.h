// Host entry of the CUDA bitmask NMS (csrc/cuda/nms.cu) for other CUDA ops (multiclass_nms).
#pragma once

#include <ATen/core/Tensor.h>

namespace detseg::cuda {

// Greedy NMS within each group: boxes Tensor[M, 4] (CUDA; float64 computed in float64, any
// other dtype in float32), groups int64 Tensor[M]; the rows of a group are in priority order
// by row index. Returns keep flags, bool Tensor[M] by row. One device->host sync (the mask
// size). `op` names the caller in errors.
at::Tensor grouped_nms_keep(const at::Tensor& boxes, const at::Tensor& groups, double iou_threshold, const char* op);

}  // namespace detseg::cuda
