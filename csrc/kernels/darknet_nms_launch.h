// Framework-free entry point of darknet's NMS on the GPU: raw pointers, sizes, a caller-provided
// workspace, a stream. The torch op (csrc/ops/darknet_nms_cuda.cpp) and the TensorRT plugin both call
// it, so both run the same kernels. Nothing here depends on libtorch or TensorRT.
//
// Input: `rows`, dense (batch, num_rows, 5 + classes) of `dtype` (float32, float16, bfloat16 or
// float64): per row cx, cy, w, h (input units, e.g. pixels), objectness, `classes` class
// probabilities -- what torch_mish.darknet.Darknet returns in eval mode. Values are converted to
// float32 and every comparison is made in float32 (float64 input is rounded to float32 first).
//
// Semantics (darknet's detector test on an input at the network size; see darknet_nms_math.h):
//  1. A row is a candidate when objectness > conf_thresh; its score for class c is
//     objectness * prob_c (float32), counted when > conf_thresh.
//  2. Per image and class, greedy suppression in score order: take the best remaining (score
//     descending, then lower row), keep it, drop every remaining box it suppresses by `kind`'s
//     criterion > iou_thresh, on boxes divided by (net_width, net_height).
//  3. Every kept (row, class) is a detection (a row can carry several classes); the max_det best
//     per image (score descending, then lower row, then lower class) are written.
// Only max_det survivors per class can reach the output, so a class stops after max_det of them.
//
// Outputs, dense, all written by the launch (nothing to clear first), K = max_det:
//   num_dets    (batch, 1) int32    detections written for the image, <= K
//   det_boxes   (batch, K, 4) float x1, y1, x2, y2 = cx -+ w/2, cy -+ h/2 in input units, not clipped
//   det_scores  (batch, K) float
//   det_classes (batch, K) int32
// Rows i >= num_dets of an image are all zero. det_boxes must be 16-byte aligned (written as float4).
//
// Workspace: at least darknet_nms_workspace_size(batch, num_rows, classes, max_det) bytes (0 for sizes
// outside the limits below), any alignment, not shared with a concurrent launch; its contents need
// no initialization and are garbage afterwards. About 4 * batch * classes * (num_rows + 6 * max_det)
// + 16 * batch * num_rows bytes: 131 MB for yolov4 at 608 (22,743 rows, 80 classes), batch 16.
//
// Asynchronous on `stream`: no host synchronization, no allocation, so a launch can be captured in a
// CUDA graph. Returns cudaErrorInvalidValue for arguments outside the limits below (checked before
// anything is launched), else the launch error (cudaGetLastError).
// Limits: batch >= 0, num_rows >= 0, classes >= 1, 1 <= max_det < 2^31, num_rows < 2^31 - 256,
// batch * classes < 2^31; net_width and net_height > 0.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "darknet_nms_math.h"
#include "mish_launch.h"

namespace mish::nms {

// NmsParams: darknet_nms_math.h.
size_t darknet_nms_workspace_size(int64_t batch, int64_t num_rows, int64_t classes, int64_t max_det);

cudaError_t launch_darknet_nms(DType dtype, const void* rows, int64_t batch, int64_t num_rows, int64_t classes,
                               const NmsParams& params, int32_t* num_dets, float* det_boxes, float* det_scores,
                               int32_t* det_classes, void* workspace, size_t workspace_bytes, cudaStream_t stream);

}  // namespace mish::nms
