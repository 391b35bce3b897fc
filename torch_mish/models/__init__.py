"""Reference models that use Mish (for tests, benchmarks and the demo)."""

from torch_mish.models.yolov4_csp import YOLOv4CSP, count_layers

__all__ = ["YOLOv4CSP", "count_layers"]
