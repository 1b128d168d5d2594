// Argument checks of each op, shared by its CPU and CUDA kernels (host side). The Python
// backends (Triton, reference) and the fake kernels use python/detseg/ops/_checks/,
// which raises with the same words.
// One header per op family under csrc/checks/; this one includes them all.
#pragma once

#include "checks/common.h"
#include "checks/roi.h"
#include "checks/masks.h"
#include "checks/anchors.h"
#include "checks/postprocess.h"
#include "checks/conv.h"
#include "checks/coco.h"
