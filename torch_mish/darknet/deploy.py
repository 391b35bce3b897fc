"""One trained detector through every deploy path, each as a detect function for
:func:`torch_mish.darknet.evaluate.evaluate`: images in, the :class:`Detector`'s four outputs out.

Paths (``PATHS``): ``eager`` (the Detector itself), ``compile`` (``torch.compile``), ``export``
(``torch.export``'s program), ``aoti`` (an AOTInductor package, loaded back), ``onnx`` (the network
exported to ONNX and run by onnxruntime) and ``tensorrt`` (a TensorRT engine through
torch-tensorrt). The ONNX and file-based paths run the network there and darknet's NMS as
torch_mish's op on the result: onnxruntime has no kernel for the DIoU NMS node, and the op is what
the TensorRT plugin runs. A path that cannot run here raises :class:`PathUnavailable` with the reason.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from torch_mish.darknet.detector import OUTPUT_NAMES, Detector, darknet_nms

PATHS = ("eager", "compile", "export", "aoti", "onnx", "tensorrt")
DetectFn = Callable[[Tensor], tuple[Tensor, Tensor, Tensor, Tensor]]
MAX_BATCH = 64  # the exported program's and the packages' largest batch

__all__ = [
    "MAX_BATCH",
    "PATHS",
    "DetectFn",
    "PathUnavailable",
    "detect_fn",
    "engine_file_detector",
    "onnx_file_detector",
]


class PathUnavailable(RuntimeError):
    """This deploy path cannot run here (a missing library or runtime); the message says which."""


def _nms_on(detector: Detector, rows: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    d = detector
    return darknet_nms(
        rows, d.conf_thresh, d.iou_thresh, d.max_det, d.nms_kind, d.beta_nms, float(x.shape[-1]), float(x.shape[-2])
    )


def _as_input(fn: DetectFn, dtype: torch.dtype, device: torch.device) -> DetectFn:
    """The path's function taking images of any float dtype/device: cast to the model's first."""

    def call(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return fn(x.to(device=device, dtype=dtype))

    return call


def _model_dtype_device(detector: Detector) -> tuple[torch.dtype, torch.device]:
    p = next(detector.parameters())
    return p.dtype, p.device


def _batch_dim() -> Any:
    return torch.export.Dim("batch", min=1, max=MAX_BATCH)


def trained_detector(
    cfg: str, weights: str | Path, dtype: torch.dtype, device: torch.device | str, max_det: int = 300
) -> Detector:
    """A Detector of ``cfg`` (its text) with darknet ``.weights``, at darknet's mAP settings (its
    evaluation thresholds and the cfg's NMS: :func:`~torch_mish.darknet.evaluate.darknet_eval_settings`),
    in ``dtype`` on ``device``."""
    from torch_mish.darknet.evaluate import darknet_eval_settings
    from torch_mish.darknet.model import Darknet

    model = Darknet(cfg)
    model.load_darknet_weights(weights)
    settings = darknet_eval_settings(model)
    settings.pop("letterbox")  # the dataset's resizing, not the Detector's
    return Detector(model, max_det=max_det, **settings).to(device=device, dtype=dtype)


def detect_fn(path: str, detector: Detector, example: Tensor, workdir: str | Path) -> DetectFn:
    """The detect function of ``detector`` through ``path`` (one of ``PATHS``), for images shaped
    like ``example`` (any batch up to ``MAX_BATCH``). Files the path writes (the AOTInductor
    package, the ONNX file) go to ``workdir``. Raises PathUnavailable where the path cannot run."""
    if path not in PATHS:
        raise ValueError(f"deploy path {path!r}: one of {', '.join(PATHS)}")
    dtype, device = _model_dtype_device(detector)
    example = example.to(device=device, dtype=dtype)
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    fn: DetectFn
    if path == "eager":
        fn = detector
    elif path == "compile":
        torch._dynamo.mark_dynamic(example, 0)
        fn = torch.compile(detector, dynamic=None)
    elif path in ("export", "aoti"):
        program = torch.export.export(detector, (example,), dynamic_shapes=({0: _batch_dim()},))
        if path == "export":
            fn = program.module()
        else:
            from torch_mish.aoti import load_package

            package = torch._inductor.aoti_compile_and_package(program, package_path=str(work / "detector.pt2"))
            fn = load_package(package)
    elif path == "onnx":
        onnx_path = work / "network.onnx"
        _export_network_onnx(detector, example, onnx_path)
        return onnx_file_detector(onnx_path, detector, device)
    else:
        fn = _tensorrt_detector(detector, example)
    return _as_input(fn, dtype, device)


def _export_network_onnx(detector: Detector, example: Tensor, path: Path) -> None:
    """The network (rows out, no NMS) as ONNX, batch dynamic, input ``x``, output ``rows``."""
    from torch_mish import onnx

    for name in ("onnx", "onnxscript"):
        if importlib.util.find_spec(name) is None:
            raise PathUnavailable(f"ONNX export needs {name} (pip install onnx onnxscript)")
    onnx.export(
        detector.model,
        (example,),
        str(path),
        dynamo=True,
        input_names=["x"],
        output_names=["rows"],
        dynamic_shapes=({0: _batch_dim()},),
        external_data=False,
    )


def onnx_file_detector(path: str | Path, detector: Detector, device: torch.device | str = "cpu") -> DetectFn:
    """An ONNX file run by onnxruntime: one whose single output is darknet's rows (``torch-mish
    export`` without ``--nms``) gets ``detector``'s NMS as torch_mish's op; one with the four
    detection outputs (``--nms`` of the ``default`` kind) is used as it is. ``device``: where the
    outputs go (onnxruntime runs on the CPU unless its CUDA provider is installed)."""
    if importlib.util.find_spec("onnxruntime") is None:
        raise PathUnavailable("the onnx path needs onnxruntime (pip install onnxruntime)")
    import numpy as np
    import onnxruntime as ort

    available = ort.get_available_providers()
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    try:
        session = ort.InferenceSession(str(path), providers=providers)
    except Exception as exc:  # onnxruntime's errors name the node it has no kernel for
        raise PathUnavailable(f"onnxruntime cannot load {path}: {str(exc).splitlines()[0]}") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) not in (1, 4):
        raise ValueError(
            f"{path}: expected one input and one output (rows) or four (num_dets, det_boxes, det_scores, "
            f"det_classes), got {len(inputs)} inputs and {len(outputs)} outputs"
        )
    input_name = inputs[0].name
    output_names = _detections_first([o.name for o in outputs])
    np_dtype = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}.get(
        inputs[0].type
    )
    if np_dtype is None:
        raise PathUnavailable(f"{path}: input type {inputs[0].type} has no numpy type onnxruntime takes here")
    out_device = torch.device(device)

    def call(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        feed = x.detach().to("cpu", torch.float32).numpy().astype(np_dtype)
        results = [torch.from_numpy(np.ascontiguousarray(r)) for r in session.run(output_names, {input_name: feed})]
        if len(results) == 4:
            num, boxes, scores, classes = (r.to(out_device) for r in results)
            return num, boxes, scores, classes
        return _nms_on(detector, results[0].to(out_device), x)

    return call


def _detections_first(names: list[str]) -> list[str]:
    """Four outputs in the Detector's order where they carry its names (files may list them otherwise)."""
    return list(OUTPUT_NAMES) if sorted(names) == sorted(OUTPUT_NAMES) else names


def _tensorrt_detector(detector: Detector, example: Tensor) -> DetectFn:
    """The Detector compiled by torch-tensorrt into one engine (the NMS included), batch 1 to MAX_BATCH."""
    if importlib.util.find_spec("torch_tensorrt") is None:
        raise PathUnavailable("the tensorrt path needs torch-tensorrt and TensorRT (pip install torch-tensorrt)")
    import torch_mish.tensorrt as mt  # first: it makes torch_tensorrt importable on a GPU-less host

    reason = mt.engine_runtime_unavailable_reason()
    if reason is not None:
        raise PathUnavailable(reason)
    import torch_tensorrt

    shape = tuple(example.shape[1:])
    spec = torch_tensorrt.Input(
        min_shape=(1, *shape), opt_shape=tuple(example.shape), max_shape=(MAX_BATCH, *shape), dtype=example.dtype
    )
    return mt.compile(detector, spec)


def engine_file_detector(path: str | Path, detector: Detector) -> DetectFn:
    """A serialized TensorRT engine (``torch-mish build``) run by TensorRT's runtime on the GPU: one
    output (rows) gets ``detector``'s NMS as torch_mish's op; four are the detections."""
    if importlib.util.find_spec("tensorrt") is None and importlib.util.find_spec("tensorrt_rtx") is None:
        raise PathUnavailable("running an engine file needs TensorRT (pip install tensorrt)")
    import torch_mish.tensorrt as mt
    from torch_mish.tensorrt.plugin import load_plugin

    reason = mt.engine_runtime_unavailable_reason()
    if reason is not None:
        raise PathUnavailable(reason)
    load_plugin(missing_ok=True)  # an engine with torch_mish's plugin layers needs their creators
    return _EngineRunner(Path(path), detector)


class _EngineRunner:
    """One execution context of a deserialized engine; torch tensors as its buffers, the current stream."""

    def __init__(self, path: Path, detector: Detector) -> None:
        import tensorrt as trt

        self.detector = detector
        self.trt = trt
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise ValueError(f"{path}: TensorRT could not deserialize it (built by another TensorRT version?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == mode]
        self.outputs = _detections_first([n for n in names if self.engine.get_tensor_mode(n) != mode])
        if len(self.inputs) != 1 or len(self.outputs) not in (1, 4):
            raise ValueError(f"{path}: expected one input and one or four outputs, got {self.inputs} -> {self.outputs}")

    def _torch_dtype(self, name: str) -> torch.dtype:
        t = self.trt.DataType
        table = {t.FLOAT: torch.float32, t.HALF: torch.float16, t.BF16: torch.bfloat16, t.INT32: torch.int32}
        return table[self.engine.get_tensor_dtype(name)]

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        name = self.inputs[0]
        feed = x.to("cuda", self._torch_dtype(name)).contiguous()
        self.context.set_input_shape(name, tuple(feed.shape))
        self.context.set_tensor_address(name, feed.data_ptr())
        results = []
        for out in self.outputs:
            result = torch.empty(tuple(self.context.get_tensor_shape(out)), dtype=self._torch_dtype(out), device="cuda")
            self.context.set_tensor_address(out, result.data_ptr())
            results.append(result)
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT's execute_async_v3 failed (its log says why)")
        stream.synchronize()
        if len(results) == 4:
            num, boxes, scores, classes = results
            return num, boxes, scores, classes
        return _nms_on(self.detector, results[0], x)
