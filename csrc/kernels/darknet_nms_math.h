// Darknet's NMS criteria, written once for the CPU op, the CUDA kernels and the TensorRT plugin.
//
// darknet (src/box.c) decides in float32, one rounding per operation, in the order its source
// writes them, on boxes in "relative" units: centre and size divided by the network input's width
// and height (get_yolo_box). These functions take such boxes and repeat that arithmetic:
//   overlap on one axis   right - left, left = max(x1 - w1/2, x2 - w2/2), right = min(x1 + w1/2, ...)
//   intersection          ow * oh, 0 when either overlap is negative
//   IoU                   I / (wa*ha + wb*hb - I), 0 when I or the union is 0
//   DIoU term (d/c)^e     d = dx^2 + dy^2 (centres), c = cw^2 + ch^2 (the enclosing box), c = 0: none;
//                         pow in double, rounded to float (darknet's float u = pow(d / c, e))
// nvcc would fuse a*b + c into one FMA (one rounding instead of two) and decide differently from
// the CPU near the threshold, so device code spells each operation with a round-to-nearest
// intrinsic, which the compiler never fuses. (x/2 and x*0.5 are the same correctly rounded value.)
// pow is the one function that is not correctly rounded everywhere: the CPU's and the GPU's double
// pow can differ in the last double bit, which changes the float result only when the exact value
// lies within that bit of a float rounding boundary (about 2^-29 of evaluations).
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define DARKNET_NMS_HD __host__ __device__ __forceinline__
#else
#define DARKNET_NMS_HD inline
#endif

namespace mish::nms {

// The [yolo] nms_kind values darknet's detector test honours (parser.c maps any other name to default).
enum class NmsKind : int32_t {
  kDefault = 0,  // do_nms_sort: IoU > t
  kGreedy = 1,   // diounms_sort with GREEDY_NMS: IoU - (d/c)^0.6 > t
  kDiou = 2,     // diounms_sort with DIOU_NMS:   IoU - (d/c)^beta_nms > t
};

// The exponent of the DIoU term: greedynms uses the double constant 0.6 (box_diou), diounms the cfg's
// beta_nms, which darknet stores as a float (box_diounms promotes it). Unused for kDefault.
DARKNET_NMS_HD double diou_exponent(NmsKind kind, float beta) { return kind == NmsKind::kGreedy ? 0.6 : double(beta); }

// What an NMS call is asked (the launcher's and the CPU op's parameters).
struct NmsParams {
  float conf_thresh;  // objectness and class score must exceed it
  float iou_thresh;   // a box suppresses where its criterion exceeds it
  int32_t max_det;    // K: detections per image
  NmsKind kind;
  float beta;        // kDiou's exponent (float, as darknet stores beta_nms); ignored by the other kinds
  float net_width;   // darknet compares boxes in units of the network input:
  float net_height;  // cx / net_width, cy / net_height, w / net_width, h / net_height
};

// Centre and size in darknet's relative units.
struct RelBox {
  float x, y, w, h;
};

DARKNET_NMS_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
DARKNET_NMS_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
DARKNET_NMS_HD float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
DARKNET_NMS_HD float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
DARKNET_NMS_HD double pow_(double a, double b) {
#if defined(__CUDA_ARCH__)
  return ::pow(a, b);
#else
  return std::pow(a, b);
#endif
}
DARKNET_NMS_HD float fmin_(float a, float b) {
#if defined(__CUDA_ARCH__)
  return ::fminf(a, b);
#else
  return std::fmin(a, b);
#endif
}
DARKNET_NMS_HD float fmax_(float a, float b) {
#if defined(__CUDA_ARCH__)
  return ::fmaxf(a, b);
#else
  return std::fmax(a, b);
#endif
}

// A detection's score for a class (get_yolo_detections: objectness * class probability, in float).
DARKNET_NMS_HD float class_score(float objectness, float prob) { return mul_rn(objectness, prob); }

// A box in input units (centre, size) -> relative units.
DARKNET_NMS_HD RelBox relative_box(float cx, float cy, float w, float h, float net_w, float net_h) {
  return {div_rn(cx, net_w), div_rn(cy, net_h), div_rn(w, net_w), div_rn(h, net_h)};
}

// The overlap of two intervals given by centre and size (darknet's overlap()).
DARKNET_NMS_HD float overlap(float c1, float s1, float c2, float s2) {
  const float l1 = sub_rn(c1, mul_rn(s1, 0.5f));
  const float l2 = sub_rn(c2, mul_rn(s2, 0.5f));
  const float left = l1 > l2 ? l1 : l2;
  const float r1 = add_rn(c1, mul_rn(s1, 0.5f));
  const float r2 = add_rn(c2, mul_rn(s2, 0.5f));
  const float right = r1 < r2 ? r1 : r2;
  return sub_rn(right, left);
}

DARKNET_NMS_HD float intersection(RelBox a, RelBox b) {
  const float w = overlap(a.x, a.w, b.x, b.w);
  const float h = overlap(a.y, a.h, b.y, b.h);
  if (w < 0 || h < 0) return 0;
  return mul_rn(w, h);
}

DARKNET_NMS_HD float iou(RelBox a, RelBox b) {
  const float i = intersection(a, b);
  const float u = sub_rn(add_rn(mul_rn(a.w, a.h), mul_rn(b.w, b.h)), i);
  if (i == 0 || u == 0) return 0;
  return div_rn(i, u);
}

// Whether box `a`, kept, suppresses box `b` (scored below it in the same class): the kind's criterion
// exceeds `thresh`. The DIoU criteria are IoU - u with u >= 0, and float subtraction of u >= 0 never
// rounds above IoU, so they exceed `thresh` only where the IoU does: the DIoU term (a double pow) is
// evaluated only for those pairs, with the same result as evaluating it always.
DARKNET_NMS_HD bool suppresses(NmsKind kind, RelBox a, RelBox b, float thresh, double exponent) {
  const float i = iou(a, b);
  if (!(i > thresh)) return false;
  if (kind == NmsKind::kDefault) return true;
  const float top = fmin_(sub_rn(a.y, mul_rn(a.h, 0.5f)), sub_rn(b.y, mul_rn(b.h, 0.5f)));
  const float bot = fmax_(add_rn(a.y, mul_rn(a.h, 0.5f)), add_rn(b.y, mul_rn(b.h, 0.5f)));
  const float left = fmin_(sub_rn(a.x, mul_rn(a.w, 0.5f)), sub_rn(b.x, mul_rn(b.w, 0.5f)));
  const float right = fmax_(add_rn(a.x, mul_rn(a.w, 0.5f)), add_rn(b.x, mul_rn(b.w, 0.5f)));
  const float cw = sub_rn(right, left);
  const float ch = sub_rn(bot, top);
  const float c = add_rn(mul_rn(cw, cw), mul_rn(ch, ch));
  if (c == 0) return true;  // the criterion is the IoU, already above thresh
  const float dx = sub_rn(a.x, b.x);
  const float dy = sub_rn(a.y, b.y);
  const float d = add_rn(mul_rn(dx, dx), mul_rn(dy, dy));
  const float ratio = div_rn(d, c);
#if defined(__CUDA_ARCH__)
  // The double pow dominates a DIoU test on the GPU. A single-precision pow is within ~1e-6 of
  // it, so where u is farther than kPowSlack from i - thresh the decision is already known (and
  // the same); only pairs within a hair of the threshold pay for the double. A NaN (0^0) falls
  // through to it.
  constexpr float kPowSlack = 1.0f / 4096;
  const float fast = __powf(ratio, static_cast<float>(exponent));
  const float room = sub_rn(i, thresh);
  if (fast < room - kPowSlack) return true;
  if (fast > room + kPowSlack) return false;
#endif
  const float u = static_cast<float>(pow_(static_cast<double>(ratio), exponent));
  return sub_rn(i, u) > thresh;
}

// The order detections are taken in, within a class and across classes: score descending, then the
// lower row (darknet's qsort leaves ties in an unspecified order; this fixes one), then the lower class.
DARKNET_NMS_HD bool before(float score_a, int32_t row_a, float score_b, int32_t row_b) {
  return score_a > score_b || (score_a == score_b && row_a < row_b);
}
DARKNET_NMS_HD bool before(float score_a, int32_t row_a, int32_t class_a, float score_b, int32_t row_b,
                           int32_t class_b) {
  return before(score_a, row_a, score_b, row_b) || (score_a == score_b && row_a == row_b && class_a < class_b);
}

}  // namespace mish::nms
