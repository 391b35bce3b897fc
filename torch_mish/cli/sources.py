"""A source on the command line -> a model: a darknet cfg (a path or a packaged name), a .pt2
ExportedProgram, or module:factory; its input (channels, image size, batch) and an example of it."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import importlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch_mish.cli.console import Console, first_line
from torch_mish.cli.options import ENGINE_SUFFIXES, Batch, ModelOptions, NmsOptions, UsageError, format_batch

# The one name of the image input, in every ONNX file and engine the command writes: torch-tensorrt names an
# engine's input after the model's forward argument, so models are traced behind a forward(x).
INPUT_NAME = "x"


@dataclass
class Source:
    """A model to convert: the module, its input's channels and image size, and where it came from."""

    model: Any
    kind: str  # darknet | exported_program | factory
    name: str
    channels: int
    image_size: tuple[int, int]
    batch: Batch | None = None  # an exported program's own (min, opt, max) batch


def check_exists(src: str, hint: str = "give an existing path (or module:factory for a Python model)") -> Path:
    path = Path(src)
    if not path.exists():
        raise UsageError(f"{src}: no such file; {hint}")
    if not path.is_file():
        raise UsageError(f"{src}: not a file")
    return path


def load(options: ModelOptions, console: Console) -> Source:
    """The model of a darknet cfg (a path, or a cfg name shipped with torch_mish), a .pt2 or module:factory;
    with ``options.detections`` (--nms, detect), in a torch_mish.darknet.Detector."""
    source = _load(options, console)
    return source if options.detections is None else in_detector(source, options.detections)


def _load(options: ModelOptions, console: Console) -> Source:
    import torch_mish  # noqa: F401 - registers torch.ops.mish (a .pt2 needs it to load)

    src = options.source
    if options.weights is not None and not _looks_like_cfg(src):
        raise UsageError(f"--weights {options.weights}: darknet weights are for a .cfg source, not {src}")
    if _is_factory(src):
        return _factory(src, options.image_size)
    if _looks_like_cfg(src):
        return _darknet(src, options, console)
    if src.endswith(".pt2"):
        return _program(src, options.image_size)
    if not Path(src).exists() and not Path(src).suffix:
        raise UsageError(f"{src}: no such file; {_cfg_hint(src)}")
    raise UsageError(f"{src}: unsupported source; give a darknet .cfg, a .pt2 ExportedProgram or module:factory")


@contextlib.contextmanager
def import_scope() -> Iterator[None]:
    """sys.path as it was once the command ends: a module:factory source's folder stays importable while
    the command runs (the factory, or the model's forward, may import from it)."""
    saved = list(sys.path)
    try:
        yield
    finally:
        sys.path[:] = saved


def _is_factory(src: str) -> bool:
    known = (".cfg", ".pt2", ".onnx", *ENGINE_SUFFIXES)
    return ":" in src and not Path(src).exists() and not src.endswith(known)


def in_detector(source: Source, nms: NmsOptions) -> Source:
    """``source`` with its model in a Detector: darknet's thresholds and NMS, four outputs."""
    from torch_mish.darknet import Detector

    try:
        detector = Detector(source.model, nms.conf, nms.iou, nms.max_det, nms.kind, nms.beta)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{source.name}: {first_line(exc)}") from None
    if nms.beta is not None and detector.nms_kind != "diounms":
        raise UsageError(
            f"--beta-nms is diounms's exponent, and {source.name}'s NMS is {detector.nms_kind}: "
            "drop it or add --nms-kind diounms"
        )
    return dataclasses.replace(source, model=detector)


def _factory(src: str, image: tuple[int, int] | None) -> Source:
    import torch

    module_name, _, attr = src.partition(":")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
        factory = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"{src}: cannot import {attr!r} from {module_name!r} ({exc}); check PYTHONPATH") from None
    if getattr(module, "__file__", None):  # the folder its dotted name starts from, as for cwd above
        sys.path.insert(0, str(Path(module.__file__).resolve().parents[module_name.count(".")]))
    try:
        model = factory()
    except TypeError as exc:  # a class or function that needs arguments
        raise UsageError(f"{src}: {attr}() failed ({exc}); give a factory that takes no arguments") from None
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"{src}: the factory returned {type(model).__name__}, not an nn.Module")
    return Source(model.eval(), "factory", src, 3, image or (640, 640))


def _looks_like_cfg(src: str) -> bool:
    from torch_mish.darknet import PACKAGED_CFGS

    return src.endswith(".cfg") or (f"{src}.cfg" in PACKAGED_CFGS and not Path(src).exists())


def _cfg_hint(src: str) -> str:
    """What to give instead of a cfg name that is neither a file nor a packaged cfg: the closest packaged
    name first."""
    from torch_mish.darknet import PACKAGED_CFGS

    names = PACKAGED_CFGS if src.endswith(".cfg") else tuple(n.removesuffix(".cfg") for n in PACKAGED_CFGS)
    close = difflib.get_close_matches(src, names, n=1, cutoff=0.75) if Path(src).name == src else []
    guess = f"did you mean {close[0]}? " if close else ""
    return f"{guess}give a cfg path or a packaged cfg name ({', '.join(PACKAGED_CFGS)})"


def cfg_path(src: str) -> tuple[str, Path]:
    """A darknet cfg source -> (its name, its file): a path, or the name of a cfg shipped with torch_mish
    (with or without .cfg, as packaged_cfg() takes it). Anything else is a UsageError naming the choices."""
    from torch_mish.darknet import PACKAGED_CFGS, packaged_cfg

    path = Path(src)
    if path.exists() and not path.is_file():
        raise UsageError(f"{src}: not a file")
    if not path.exists():
        name = src if src.endswith(".cfg") else f"{src}.cfg"
        if path.name != src or name not in PACKAGED_CFGS:
            raise UsageError(f"{src}: no such file; {_cfg_hint(src)}")
        return name, packaged_cfg(name)
    if not _looks_like_cfg(src):
        raise UsageError(f"{src}: not a darknet .cfg; give a cfg path or a packaged cfg name")
    return src, path


def _darknet(src: str, options: ModelOptions, console: Console) -> Source:
    from torch_mish.darknet import CfgError, Darknet, WeightsError

    src, path = cfg_path(src)
    try:
        model = Darknet(path).eval()
    except CfgError as exc:
        raise UsageError(f"{exc} (fix the cfg at that line)") from None
    if options.weights is not None:
        check_exists(str(options.weights), "give the path of the .weights file trained with this cfg")
        try:
            model.load_darknet_weights(options.weights)
        except WeightsError as exc:
            raise UsageError(f"{exc} (use the .weights file trained with this cfg)") from None
    else:
        console.info(f"note: no --weights: {path.name} has random weights")
    if options.image_size is not None:
        check_image_size(model, options.image_size)
    return Source(model, "darknet", src, model.channels, options.image_size or (model.height, model.width))


def check_image_size(model: Any, size: tuple[int, int]) -> None:
    """A size the network cannot take fails here in one line, not deep inside an export, a build or training."""
    try:
        model.check_input_size(*size)
    except ValueError as exc:
        raise UsageError(f"--image-size {exc}") from None


def _program(src: str, image: tuple[int, int] | None) -> Source:
    import torch

    path = check_exists(src)
    try:
        program = torch.export.load(path)
    except Exception as exc:  # noqa: BLE001 - any failure to read is an input error
        raise UsageError(f"{src}: not a loadable torch.export program ({first_line(exc)})") from None
    user_inputs = set(program.graph_signature.user_inputs)
    placeholders = [n for n in program.graph.nodes if n.op == "placeholder" and n.name in user_inputs]
    if len(placeholders) != 1:
        raise UsageError(f"{src}: the program takes {len(placeholders)} inputs; torch-mish handles one image input")
    shape = placeholders[0].meta["val"].shape
    if len(shape) != 4:
        raise UsageError(f"{src}: the input has shape {tuple(shape)}; torch-mish handles NCHW images")
    hw = (_hint(shape[2]), _hint(shape[3]))
    static_hw = not any(isinstance(d, torch.SymInt) for d in shape[2:])
    if image and static_hw and image != hw:
        raise UsageError(
            f"--image-size {image[0]}x{image[1]}: {src} was exported for {hw[0]}x{hw[1]} images; "
            f"export it again from its source with --image-size {image[0]}x{image[1]}"
        )
    batch = _batch_range(program, shape[0])
    return Source(program.module(), "exported_program", src, _hint(shape[1]), image or hw, batch)


def _batch_range(program: Any, dim: Any) -> Batch | None:
    """(min, example, max) of the batch dimension: (n, n, n) if static, None if its range is unbounded."""
    import torch

    if not isinstance(dim, torch.SymInt):
        return (int(dim),) * 3
    bounds = program.range_constraints.get(dim.node.expr)
    if bounds is None or not bounds.upper.is_finite:
        return None
    return int(bounds.lower), _hint(dim), int(bounds.upper)


def _hint(dim: Any) -> int:
    import torch

    return int(dim.node.hint) if isinstance(dim, torch.SymInt) else int(dim)


def resolve_batch(source: Source, requested: Batch | None, console: Console) -> Batch:
    """The batch (min, opt, max) to use: what was asked for, else an exported program's own, else 1.
    A program only runs the batches it was exported for: asking for others is an input error here,
    not a guard failure deep inside torch.export."""
    own = source.batch
    if requested is None:
        if own is not None and own != (1, 1, 1):
            console.info(f"batch {format_batch(own)}: the program's own")
        return own or (1, 1, 1)
    if own is not None and (requested[0] < own[0] or requested[2] > own[2]):
        raise UsageError(
            f"--batch {format_batch(requested)}: {source.name} was exported for batch {format_batch(own)}; "
            f"export it again from its source with --batch {format_batch(requested)}"
        )
    return requested


def resolve_device(flag: str) -> str:
    """--device auto|cpu|cuda: "cuda" where asked for (an error without one) or available (auto), else "cpu"."""
    import torch

    if flag == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device here; drop --device or use --device cpu")
    return "cuda" if torch.cuda.is_available() and flag != "cpu" else "cpu"


def torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def example_input(source: Source, batch: Batch, dtype: Any) -> Any:
    import torch

    lo, opt, hi = batch
    # torch.export specializes a dimension traced at size 1; trace a dynamic batch at 2 or more.
    n = opt if lo == hi or opt >= 2 else min(2, hi)
    gen = torch.Generator().manual_seed(0)
    return torch.rand(n, source.channels, *source.image_size, generator=gen).to(dtype)


def dynamic_shapes(batch: Batch) -> Any:
    import torch

    if batch[0] == batch[2]:
        return None
    return ({0: torch.export.Dim("batch", min=batch[0], max=batch[2])},)


def with_named_input(model: Any) -> Any:
    """``model`` behind a forward whose argument is INPUT_NAME (what a traced program names its input)."""
    import torch

    class NamedInput(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> Any:
            return self.model(x)

    wrapper = NamedInput()
    wrapper.training = False  # itself only: a program's module refuses train()/eval(), the model keeps its mode
    return wrapper
