// The mish operator namespace: schemas, and the Python module whose import runs the registrations.
#include <Python.h>
#include <torch/library.h>

// _C is an empty module: importing it loads this library, which registers the operators with the
// dispatcher. No pybind11, so the ops stay visible to torch.compile and torch.export.
extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(mish, m) {
  m.def("mish(Tensor self) -> Tensor");
  // Mutates and returns nothing: a custom op that returns an alias of its input cannot be
  // functionalized, so torch.compile / torch.export would reject it. Python returns `self`.
  m.def("mish_(Tensor(a!) self) -> ()");
  m.def("_mish_backward(Tensor grad_output, Tensor self) -> Tensor");
  // grad_output * mish'((self - mean) * invstd * weight + bias), per channel (dim 1): batch_norm_mish's
  // backward, recomputing the BatchNorm output inside the kernel instead of storing it.
  m.def(
      "_mish_backward_affine(Tensor grad_output, Tensor self, Tensor mean, Tensor invstd, Tensor weight, Tensor bias) "
      "-> Tensor");
  // Training-mode BatchNorm (updating the running statistics) followed by Mish; its backward keeps
  // only `input` (see batch_norm_mish.cpp). torch_mish.BatchNormMish calls it.
  m.def(
      "batch_norm_mish(Tensor input, Tensor weight, Tensor bias, Tensor(a!) running_mean, Tensor(b!) running_var, "
      "float momentum, float eps) -> Tensor");
}
