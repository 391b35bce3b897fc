// CUDA implementation of mish::darknet_nms: argument handling here, the kernels in
// csrc/kernels/darknet_nms_launch.cu (the launcher the TensorRT plugin calls too).
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <string_view>

#include "../kernels/darknet_nms_launch.h"
#include "darknet_nms_common.h"
#include "kernel_dtype.h"

namespace mish::ops {
namespace {

NmsOutputs darknet_nms_cuda(const at::Tensor& rows_in, double conf_thresh, double iou_thresh, int64_t max_det,
                            c10::string_view kind, double beta, double net_width, double net_height) {
  const nms::NmsParams p = check_nms_args(rows_in, conf_thresh, iou_thresh, max_det,
                                          std::string_view(kind.data(), kind.size()), beta, net_width, net_height);
  const c10::cuda::CUDAGuard guard(rows_in.device());
  const at::Tensor rows = rows_in.contiguous();
  NmsOutputs out = nms_outputs(rows, max_det, /*zeroed=*/false);  // the launch writes every element
  const int64_t batch = rows.size(0), num_rows = rows.size(1), classes = rows.size(2) - 5;
  const size_t bytes = nms::darknet_nms_workspace_size(batch, num_rows, classes, max_det);
  // From the caching allocator, on the current stream: no synchronization, and capturable.
  const at::Tensor workspace = at::empty({static_cast<int64_t>(bytes)}, rows.options().dtype(at::kByte));
  C10_CUDA_CHECK(nms::launch_darknet_nms(
      to_kernel_dtype(rows.scalar_type(), "darknet_nms"), rows.const_data_ptr(), batch, num_rows, classes, p,
      std::get<0>(out).mutable_data_ptr<int32_t>(), std::get<1>(out).mutable_data_ptr<float>(),
      std::get<2>(out).mutable_data_ptr<float>(), std::get<3>(out).mutable_data_ptr<int32_t>(),
      workspace.mutable_data_ptr(), bytes, c10::cuda::getCurrentCUDAStream()));
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(mish, CUDA, m) { m.impl("darknet_nms", &darknet_nms_cuda); }

}  // namespace mish::ops
