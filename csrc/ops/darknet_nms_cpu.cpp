// CPU implementation of mish::darknet_nms: per (image, class) a heap in score order and a greedy
// walk that stops after max_det survivors, then a per-image merge. The criteria are the ones the
// CUDA kernels use (csrc/kernels/darknet_nms_math.h), evaluated in the same float32 order.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <string_view>
#include <vector>

#include "darknet_nms_common.h"

namespace mish::ops {
namespace {

struct Candidate {
  float score;
  int32_t row;
};

struct Detection {
  float score;
  int32_t row;
  int32_t cls;
};

template <typename T>
void darknet_nms_cpu_impl(const at::Tensor& rows, const nms::NmsParams& p, const NmsOutputs& out) {
  const int64_t n_images = rows.size(0), n_rows = rows.size(1), width = rows.size(2), n_classes = width - 5;
  const T* data = rows.const_data_ptr<T>();
  const auto value = [&](int64_t image, int64_t row, int64_t col) {
    return static_cast<float>(data[(image * n_rows + row) * width + col]);
  };
  const double exponent = nms::diou_exponent(p.kind, p.beta);
  const size_t max_det = static_cast<size_t>(p.max_det);

  // Relative boxes of every row, once.
  std::vector<nms::RelBox> boxes(static_cast<size_t>(n_images * n_rows));
  at::parallel_for(0, n_images * n_rows, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t image = i / n_rows, row = i % n_rows;
      boxes[i] = nms::relative_box(value(image, row, 0), value(image, row, 1), value(image, row, 2),
                                   value(image, row, 3), p.net_width, p.net_height);
    }
  });

  // Per (image, class): survivors in score order, at most max_det.
  std::vector<std::vector<Candidate>> kept(static_cast<size_t>(n_images * n_classes));
  at::parallel_for(0, n_images * n_classes, 1, [&](int64_t begin, int64_t end) {
    std::vector<Candidate> heap;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t image = task / n_classes, cls = task % n_classes;
      heap.clear();
      for (int64_t row = 0; row < n_rows; ++row) {
        const float objectness = value(image, row, 4);
        if (!(objectness > p.conf_thresh)) continue;
        const float score = nms::class_score(objectness, value(image, row, 5 + cls));
        if (score > p.conf_thresh) heap.push_back({score, static_cast<int32_t>(row)});
      }
      // A max-heap on the taking order: the top is the best remaining candidate.
      const auto after = [](const Candidate& a, const Candidate& b) {
        return nms::before(b.score, b.row, a.score, a.row);
      };
      std::make_heap(heap.begin(), heap.end(), after);
      std::vector<Candidate>& survivors = kept[task];
      const nms::RelBox* image_boxes = boxes.data() + image * n_rows;
      while (!heap.empty() && survivors.size() < max_det) {
        std::pop_heap(heap.begin(), heap.end(), after);
        const Candidate c = heap.back();
        heap.pop_back();
        const bool suppressed = std::any_of(survivors.begin(), survivors.end(), [&](const Candidate& s) {
          return nms::suppresses(p.kind, image_boxes[s.row], image_boxes[c.row], p.iou_thresh, exponent);
        });
        if (!suppressed) survivors.push_back(c);
      }
    }
  });

  // Per image: the max_det best survivors over all classes.
  int32_t* num_dets = std::get<0>(out).mutable_data_ptr<int32_t>();
  float* det_boxes = std::get<1>(out).mutable_data_ptr<float>();
  float* det_scores = std::get<2>(out).mutable_data_ptr<float>();
  int32_t* det_classes = std::get<3>(out).mutable_data_ptr<int32_t>();
  at::parallel_for(0, n_images, 1, [&](int64_t begin, int64_t end) {
    std::vector<Detection> all;
    for (int64_t image = begin; image < end; ++image) {
      all.clear();
      for (int64_t cls = 0; cls < n_classes; ++cls) {
        for (const Candidate& c : kept[image * n_classes + cls])
          all.push_back({c.score, c.row, static_cast<int32_t>(cls)});
      }
      const size_t count = std::min(all.size(), max_det);
      std::partial_sort(all.begin(), all.begin() + count, all.end(), [](const Detection& a, const Detection& b) {
        return nms::before(a.score, a.row, a.cls, b.score, b.row, b.cls);
      });
      num_dets[image] = static_cast<int32_t>(count);
      for (size_t k = 0; k < count; ++k) {
        const Detection& d = all[k];
        const float cx = value(image, d.row, 0), cy = value(image, d.row, 1);
        const float hw = nms::mul_rn(value(image, d.row, 2), 0.5f), hh = nms::mul_rn(value(image, d.row, 3), 0.5f);
        float* box = det_boxes + (image * p.max_det + static_cast<int64_t>(k)) * 4;
        box[0] = nms::sub_rn(cx, hw);
        box[1] = nms::sub_rn(cy, hh);
        box[2] = nms::add_rn(cx, hw);
        box[3] = nms::add_rn(cy, hh);
        det_scores[image * p.max_det + static_cast<int64_t>(k)] = d.score;
        det_classes[image * p.max_det + static_cast<int64_t>(k)] = d.cls;
      }
    }
  });
}

NmsOutputs darknet_nms_cpu(const at::Tensor& rows_in, double conf_thresh, double iou_thresh, int64_t max_det,
                           c10::string_view kind, double beta, double net_width, double net_height) {
  const nms::NmsParams p = check_nms_args(rows_in, conf_thresh, iou_thresh, max_det,
                                          std::string_view(kind.data(), kind.size()), beta, net_width, net_height);
  const at::Tensor rows = rows_in.contiguous();
  NmsOutputs out = nms_outputs(rows, max_det, /*zeroed=*/true);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, rows.scalar_type(), "darknet_nms_cpu",
                                  [&] { darknet_nms_cpu_impl<scalar_t>(rows, p, out); });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(mish, CPU, m) { m.impl("darknet_nms", &darknet_nms_cpu); }

}  // namespace mish::ops
