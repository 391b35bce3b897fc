"""--nms and detect: what each deploy path can do with a torch_mish.darknet.Detector (the model followed by
darknet's thresholds and NMS, four outputs; sources.load wraps it) and its NMS kind."""

from __future__ import annotations

from typing import Any

from torch_mish.cli.options import NmsOptions, UsageError

# The Detector's outputs (torch_mish.darknet.OUTPUT_NAMES), without importing torch.
OUTPUT_NAMES = ("num_dets", "det_boxes", "det_scores", "det_classes")


def report_fields(model: Any) -> dict[str, Any]:
    """The Detector's settings, for a command's report."""
    return {
        "conf": model.conf_thresh,
        "iou": model.iou_thresh,
        "max_det": model.max_det,
        "kind": model.nms_kind,
        "beta_nms": model.beta_nms,
        "classes": model.classes,
        "outputs": list(OUTPUT_NAMES),
    }


def kind_text(model: Any, nms: NmsOptions) -> str:
    """The Detector's NMS kind as the command line gave it, or as the cfg names it."""
    if nms.kind:
        return f"--nms-kind {model.nms_kind}"
    return f"nms_kind={model.nms_kind} (the cfg's; --nms-kind changes it)"


def onnx_note(model: Any) -> str | None:
    """What an ONNX file with this Detector can run in, where that is not onnxruntime."""
    if model.nms_kind == "default":
        return None
    return (
        f"note: nms_kind {model.nms_kind} is written as a torch_mish::DarknetNMS node: TensorRT's ONNX parser "
        "builds it with torch_mish's plugin library, onnxruntime cannot run this file "
        "(--nms-kind default writes the standard NonMaxSuppression, IoU)"
    )


def check_tensorrt(model: Any, nms: NmsOptions, build_engine: bool) -> None:
    """Refuse, in one line, a DIoU kind where TensorRT cannot add plugin layers (TensorRT-RTX): exit 2
    (UsageError) where --nms-kind default would do instead, 1 (RuntimeError) where this host cannot
    build its INMSLayer either."""
    import tensorrt as trt

    from torch_mish.tensorrt.support import can_add_plugin_layers, nms_engine_unavailable_reason

    if model.nms_kind == "default" or can_add_plugin_layers():
        return
    problem = (
        f"{kind_text(model, nms)} lowers to the DarknetNMS plugin layer, and {trt.__name__} {trt.__version__} "
        "cannot add plugin layers to a network"
    )
    if build_engine and nms_engine_unavailable_reason():
        raise RuntimeError(
            f"{problem}; nor can it build --nms-kind default's INMSLayer on this host: build the engine with "
            "TensorRT and torch_mish's plugin library (torch-mish export --nms writes the ONNX file for it)"
        )
    raise UsageError(
        f"{problem}; --nms-kind default converts here (TensorRT's INMSLayer: IoU, its detections can differ "
        f"from darknet's {model.nms_kind})"
    )


def check_engine_build(layer_types: dict[str, int]) -> None:
    """Refuse, in one line (exit 1: nothing on the command line changes it), a network with an NMS layer
    where TensorRT has no implementation of it (TensorRT-RTX in CPU-only mode)."""
    from torch_mish.tensorrt.support import nms_engine_unavailable_reason

    if "NMS" in layer_types and (reason := nms_engine_unavailable_reason()):
        raise RuntimeError(
            f"{reason}: the network converts (torch-mish inspect shows it), the engine builds where TensorRT "
            "has the layer (an ONNX file from torch-mish export --nms carries it there)"
        )
