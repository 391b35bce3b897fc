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

// A box's edges and area, each rounded as darknet's overlap() and box_iou() round them. The IoU of
// one box against many (a candidate against the survivors) computes them once per box.
struct Edges {
  float left, top, right, bottom, area;
};

DARKNET_NMS_HD Edges edges(RelBox b) {
  const float hw = mul_rn(b.w, 0.5f), hh = mul_rn(b.h, 0.5f);
  return {sub_rn(b.x, hw), sub_rn(b.y, hh), add_rn(b.x, hw), add_rn(b.y, hh), mul_rn(b.w, b.h)};
}

// darknet's box_iou: the overlap on each axis is min(right) - max(left) (a's edge on the left of each
// comparison, as darknet's overlap() has it, so NaNs resolve the same way); no intersection when either
// overlap is negative; 0 when the intersection or the union is 0.
DARKNET_NMS_HD float iou(const Edges& a, const Edges& b) {
  const float w = sub_rn(a.right < b.right ? a.right : b.right, a.left > b.left ? a.left : b.left);
  const float h = sub_rn(a.bottom < b.bottom ? a.bottom : b.bottom, a.top > b.top ? a.top : b.top);
  if (w < 0 || h < 0) return 0;
  const float i = mul_rn(w, h);
  const float u = sub_rn(add_rn(a.area, b.area), i);
  if (i == 0 || u == 0) return 0;
  return div_rn(i, u);
}

DARKNET_NMS_HD float iou(RelBox a, RelBox b) { return iou(edges(a), edges(b)); }

// The DIoU kinds' test for a pair whose IoU `i` already exceeds `thresh`: whether IoU - (d/c)^exponent
// does too. The criterion is IoU - u with u >= 0, and float subtraction of u >= 0 never rounds above
// IoU, so only pairs with IoU > thresh can pass it: callers test the IoU first (cheap, and the only
// test kDefault needs) and call this for those pairs alone, with the same decisions as evaluating
// the whole criterion for every pair.
DARKNET_NMS_HD bool diou_exceeds(RelBox a, RelBox b, float i, float thresh, double exponent) {
  const Edges ea = edges(a), eb = edges(b);
  const float cw = sub_rn(fmax_(ea.right, eb.right), fmin_(ea.left, eb.left));
  const float ch = sub_rn(fmax_(ea.bottom, eb.bottom), fmin_(ea.top, eb.top));
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

// Whether box `a`, kept, suppresses box `b` (scored below it in the same class): the kind's criterion
// exceeds `thresh`.
DARKNET_NMS_HD bool suppresses(NmsKind kind, RelBox a, RelBox b, float thresh, double exponent) {
  const float i = iou(a, b);
  if (!(i > thresh)) return false;
  return kind == NmsKind::kDefault || diou_exceeds(a, b, i, thresh, exponent);
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
