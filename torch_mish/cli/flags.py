"""The flags of the command line: each subcommand's parser, made from its module's docstring
(``add_command``) and the flags of the option groups it takes (``add_model_args``, ``add_nms_args``, ...),
so that two commands taking the same options declare them once. ``torch_mish.cli.options`` turns what
they parse into typed options."""

from __future__ import annotations

import argparse
import sys
import typing
from collections.abc import Callable
from typing import Any

from torch_mish.cli.options import DTYPES, NMS_KINDS, PROG

PACKAGED = "yolov4.cfg, yolov4-csp.cfg, yolov4x-mish.cfg, yolov4-p5.cfg, yolov4-tiny.cfg"
SRC_HELP = (
    f"a darknet .cfg (a path, or a cfg shipped with torch_mish: {PACKAGED}), a .pt2 ExportedProgram, "
    "or module:factory (a function returning an nn.Module)"
)
CFG_HELP = f"a darknet .cfg: a path, or a cfg shipped with torch_mish ({PACKAGED})"


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= low."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value

    return parse


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default where there is one (not None or False) and the help text does not already say it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def add_command(
    subparsers: Any, run: Callable[..., dict[str, Any]], *, sources: str = "", cfg_only: bool = False
) -> argparse.ArgumentParser:
    """The parser of the subcommand whose ``run(options, console)`` is given, named after run's module
    and bound to the dataclass that run's ``options`` is annotated with. Its texts are that module's
    docstring: "``torch-mish NAME``: HELP." (its line in the list), the description's paragraphs, and
    "example: ARGS" last. The positional ``src`` takes models, and ``sources`` more; with ``cfg_only``
    (train, val), darknet cfgs only."""
    module = sys.modules[run.__module__]
    name = module.__name__.rsplit(".", 1)[-1]
    head, *description, example = (" ".join(p.split()) for p in (module.__doc__ or "").strip().split("\n\n"))
    if not head.startswith(f"``{PROG} {name}``: ") or not example.startswith("example: ") or not description:
        raise ValueError(f"{module.__name__}: its docstring is not a command's help (see flags.add_command)")
    parser = subparsers.add_parser(
        name,
        help=head.split(": ", 1)[1].removesuffix("."),
        description="\n\n".join(description) + f"\n\nexample:\n  {PROG} {name} {example.removeprefix('example: ')}",
        formatter_class=HelpFormatter,
    )
    parser.set_defaults(run=run, options=typing.get_type_hints(run)["options"])
    parser.add_argument("src", metavar="CFG" if cfg_only else "src", help=CFG_HELP if cfg_only else SRC_HELP + sources)
    return parser


def add_model_args(
    p: argparse.ArgumentParser,
    batch_help: str | None,
    *,
    engine: bool = False,
    nms: bool = False,
    weights: str = "darknet .weights for a .cfg source (random weights without it)",
) -> None:
    """The flags of ModelOptions (--batch unless ``batch_help`` is None); with ``nms``, --nms and its
    thresholds; with ``engine``, EngineOptions' and an engine's precision too."""
    p.add_argument("--weights", help=weights)
    p.add_argument("--image-size", help="input H or HxW (default: the cfg's [net] size, the .pt2's, else 640)")
    if batch_help is not None:
        p.add_argument("--batch", help=f"{batch_help} (default: the .pt2's, else 1)")
    if nms:
        add_nms_args(p)
    if not engine:
        return
    p.add_argument(
        "--fp16",
        action="store_true",
        help="float16 engine: engines are strongly typed, so the model and its inputs are converted to float16 "
        "(an .onnx source must already be float16: torch-mish export --dtype float16)",
    )
    p.add_argument("--bf16", action="store_true", help="bfloat16 engine (the model and its inputs are converted)")
    add_lowering_arg(p, "Mish in TensorRT (model sources; default: $TORCH_MISH_TRT_LOWERING, else native)")
    p.add_argument("--workspace", type=int_at_least(1), metavar="MiB", help="TensorRT workspace limit")
    p.add_argument("--minShapes", dest="min_shapes", help="trtexec spelling: input:NxCxHxW (with opt and max)")
    p.add_argument("--optShapes", dest="opt_shapes", help="trtexec spelling")
    p.add_argument("--maxShapes", dest="max_shapes", help="trtexec spelling")


def add_nms_args(
    p: argparse.ArgumentParser, *, flag: bool = True, conf: str = "0.25, darknet's", iou: str = "0.45, darknet's"
) -> None:
    """The flags of NmsOptions (ModelOptions.detections); with ``flag``, --nms, which they then go with
    (without it, as for detect, the model is always in a Detector). ``conf``, ``iou``: their defaults, as
    the help states them."""
    with_nms = "with --nms; " if flag else ""
    if flag:
        p.add_argument(
            "--nms",
            action="store_true",
            help="the model followed by darknet's thresholds and NMS (torch_mish.darknet.Detector): four outputs "
            "num_dets, det_boxes, det_scores, det_classes",
        )
    p.add_argument("--conf", type=float, help=f"confidence threshold ({with_nms}default {conf})")
    p.add_argument("--iou", type=float, help=f"NMS threshold ({with_nms}default {iou})")
    p.add_argument("--max-det", type=int_at_least(1), help=f"detections kept per image ({with_nms}default 300)")
    p.add_argument(
        "--nms-kind",
        choices=NMS_KINDS,
        help=f"NMS criterion: IoU, or darknet's DIoU ones ({with_nms}default: the cfg's [yolo] nms_kind)",
    )
    p.add_argument("--beta-nms", type=float, help=f"diounms's exponent ({with_nms}default: the cfg's beta_nms)")


def add_dtype_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="the model's and its input's dtype")


def add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: a GPU where there is one")


def add_data_arg(p: argparse.ArgumentParser, split: str) -> None:
    """--data obj.data: a dataset in darknet's format (torch_mish.darknet.data), its ``split`` list used."""
    p.add_argument(
        "--data",
        required=True,
        metavar="obj.data",
        help=f"darknet's dataset file: classes=, train=, valid=, names= (its {split} list is used)",
    )


def add_lowering_arg(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--lowering", choices=("native", "plugin"), help=help_text)


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout (messages go to stderr)")
    p.add_argument("-q", "--quiet", action="store_true", help="no messages or progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="library logs, tracebacks, the layer table")
