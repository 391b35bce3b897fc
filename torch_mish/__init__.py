"""torch_mish: the Mish activation as a fused PyTorch custom operator (torch.ops.mish.*).

Importing the package registers the operators ``torch.ops.mish.mish``, ``mish_``,
``_mish_backward``, ``batch_norm_mish`` and ``_mish_backward_affine`` with the dispatcher (CPU, and CUDA
when built with it), their fake kernels and autograd, and ``darknet_nms`` (darknet's detection NMS,
``torch_mish.darknet.Detector``; no autograd).
"""

from torch_mish import _library  # noqa: F401 - loads _C first: everything below needs the ops registered
from torch_mish import ops as _ops  # noqa: F401 - fake kernels and autograd
from torch_mish._cpu_tensorrt import allow_tensorrt_without_gpu
from torch_mish._inductor import register_by_default as _register_inductor_decomposition
from torch_mish.convert import (
    FusedMish,
    computes_mish,
    convert_mish,
    fuse_batchnorm_mish,
    revert_mish,
    unfuse_batchnorm_mish,
)
from torch_mish.functional import mish
from torch_mish.nn import BatchNormMish, Mish
from torch_mish.onnx import register_exporters as _register_onnx_exporters

__all__ = [
    "BatchNormMish",
    "FusedMish",
    "Mish",
    "allow_tensorrt_without_gpu",
    "build_info",
    "computes_mish",
    "convert_mish",
    "fuse_batchnorm_mish",
    "has_cuda_kernels",
    "mish",
    "revert_mish",
    "unfuse_batchnorm_mish",
]
__version__ = "0.1.0"

_register_onnx_exporters()  # plain torch.onnx.export writes ONNX Mish for torch.ops.mish.mish
_register_inductor_decomposition()  # Inductor fuses torch.ops.mish.mish into neighbouring pointwise code


def build_info() -> dict[str, object]:
    """What this installation was built for (torch, CUDA, architectures, TensorRT plugin libraries)."""
    return _library.build_info()


def has_cuda_kernels() -> bool:
    """True when the CUDA kernels were compiled into this build."""
    return _library.has_cuda_kernels()
