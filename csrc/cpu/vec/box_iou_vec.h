// Inner loop of box_iou_matrix, compiled once per ISA (csrc/cpu/vec/box_iou_vec.cpp) and
// called through DETSEG_ISA_CALL from csrc/cpu/boxes.cpp. Torch-free interface on purpose:
// the host side owns tensors, this side sees plain pointers.
#pragma once

#include <cstdint>

#include "cpu/isa.h"
#include "detseg/boxes.h"

namespace detseg::cpu {

// The work of one box_iou_matrix call, split into tasks = (row, column chunk) so that
// both tall ([120000, 20]) and wide ([1, 10^6]) matrices spread over threads. Every output
// element is computed independently, so the split never changes a bit of the result.
template <typename T>
struct IouMatrixArgs {
  const T* a;          // boxes1 [B * n, 4] xyxy, contiguous
  const T* a_atan;     // [B * n] box_aspect_atan of boxes1 (CIoU only, else null)
  const T* b_aos;      // boxes2 [B, m, 4] xyxy rows, or null: then read from b_soa
  const T* b_soa;      // boxes2 per batch as columns [B, cols, m]: x1, y1, x2, y2 (unless
                       // b_aos), then atan (CIoU only)
  int64_t cols;        // columns per batch in b_soa: 4 or 5, or 0 or 1 with b_aos
  T* out;              // [B * n, m]
  int64_t n, m;        // rows / columns per batch
  int64_t chunk;       // columns per task (a multiple of every vector width)
  int64_t n_chunks;    // ceil(m / chunk)
  T eps;
  IouKind kind;
};

}  // namespace detseg::cpu

// Computes the tasks [t0, t1): task t covers row t / n_chunks, chunk t % n_chunks.
DETSEG_ISA_DECLARE(void iou_matrix_tasks(const ::detseg::cpu::IouMatrixArgs<float>& p, int64_t t0, int64_t t1))
DETSEG_ISA_DECLARE(void iou_matrix_tasks(const ::detseg::cpu::IouMatrixArgs<double>& p, int64_t t0, int64_t t1))
