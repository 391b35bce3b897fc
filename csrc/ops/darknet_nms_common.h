// mish::darknet_nms: argument checks and output allocation shared by the CPU and CUDA implementations
// (torch_mish/ops.py repeats the checks in the fake kernel, with the same messages).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <cmath>
#include <limits>
#include <cstdio>
#include <string>
#include <string_view>
#include <tuple>

#include "../kernels/darknet_nms_math.h"
#include "mish_common.h"

namespace mish::ops {

using NmsOutputs = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

inline nms::NmsKind parse_nms_kind(std::string_view kind) {
  if (kind == "default") return nms::NmsKind::kDefault;
  if (kind == "greedynms") return nms::NmsKind::kGreedy;
  if (kind == "diounms") return nms::NmsKind::kDiou;
  TORCH_CHECK_VALUE(false, "darknet_nms: unknown kind '" + std::string(kind) +
                               "'; expected 'default', 'greedynms' or 'diounms' (darknet's [yolo] nms_kind)");
}

// 0.25, 2, nan: how the user wrote the number, near enough (std::to_string would give 2.000000).
inline std::string number_str(double v) {
  char text[32];  // %g as Python's checks print the value; no iostreams in the message path
  std::snprintf(text, sizeof(text), "%g", v);
  return text;
}

// Checks every argument (messages name the argument, the value and what is expected) and returns
// the kernel parameters. Thresholds and beta become float32, as darknet holds them.
inline nms::NmsParams check_nms_args(const at::Tensor& rows, double conf_thresh, double iou_thresh, int64_t max_det,
                                     std::string_view kind, double beta, double net_width, double net_height) {
  const std::string op = "darknet_nms: ";
  const auto s = rows.scalar_type();
  TORCH_CHECK_TYPE(s == at::kFloat || s == at::kHalf || s == at::kBFloat16 || s == at::kDouble,
                   op + "expected 'rows' to be float32, float16, bfloat16 or float64, got " + dtype_name(s));
  TORCH_CHECK_VALUE(rows.dim() == 3 && rows.size(2) >= 6,
                    op +
                        "expected 'rows' of shape (N, R, 5 + classes) with at least one class (darknet rows: cx, "
                        "cy, w, h, objectness, class scores), got shape " +
                        shape_str(rows));
  TORCH_CHECK_VALUE(rows.size(1) < std::numeric_limits<int32_t>::max() - 256 &&
                        rows.size(0) * (rows.size(2) - 5) < std::numeric_limits<int32_t>::max(),
                    op + "'rows' of shape " + shape_str(rows) +
                        " is too large: R must be below 2^31 - 256 and N * classes below 2^31");
  TORCH_CHECK_VALUE(conf_thresh >= 0 && conf_thresh <= 1,
                    op + "conf_thresh must be in [0, 1], got " + number_str(conf_thresh));
  TORCH_CHECK_VALUE(iou_thresh >= 0 && iou_thresh <= 1,
                    op + "iou_thresh must be in [0, 1], got " + number_str(iou_thresh));
  TORCH_CHECK_VALUE(max_det >= 1 && max_det <= std::numeric_limits<int32_t>::max(),
                    op + "max_det must be an integer of at least 1 (and below 2^31), got " + std::to_string(max_det));
  const nms::NmsKind k = parse_nms_kind(kind);
  TORCH_CHECK_VALUE(std::isfinite(beta) && beta >= 0, op + "beta must be finite and >= 0, got " + number_str(beta));
  TORCH_CHECK_VALUE(std::isfinite(net_width) && net_width > 0 && std::isfinite(net_height) && net_height > 0,
                    op + "net_width and net_height must be finite and > 0, got " + number_str(net_width) + " and " +
                        number_str(net_height));
  return {static_cast<float>(conf_thresh), static_cast<float>(iou_thresh), static_cast<int32_t>(max_det), k,
          static_cast<float>(beta),        static_cast<float>(net_width),  static_cast<float>(net_height)};
}

// Zero-filled outputs on rows' device: num_dets (N, 1) int32, det_boxes (N, K, 4) float32,
// det_scores (N, K) float32, det_classes (N, K) int32.
inline NmsOutputs nms_outputs(const at::Tensor& rows, int64_t max_det, bool zeroed) {
  const int64_t n = rows.size(0);
  const auto f = rows.options().dtype(at::kFloat);
  const auto i = rows.options().dtype(at::kInt);
  if (zeroed) {
    return {at::zeros({n, 1}, i), at::zeros({n, max_det, 4}, f), at::zeros({n, max_det}, f),
            at::zeros({n, max_det}, i)};
  }
  return {at::empty({n, 1}, i), at::empty({n, max_det, 4}, f), at::empty({n, max_det}, f), at::empty({n, max_det}, i)};
}

}  // namespace mish::ops
