"""The command line, parsed once into typed options: the only module that sees argparse's Namespace.

A subcommand declares its options as a frozen dataclass whose fields are either option groups shared
by several commands (``ModelOptions``, ``EngineOptions``) or its own flags, named by their argparse
dest; ``output_file`` fields are checked paths, ``image_size_field`` ones parsed sizes. ``parse`` turns
the command line into an ``Invocation``: which command, its console, and its options (bound and
validated when asked, so that an invalid value is reported as that command's error). The parsers themselves are made in
``torch_mish.cli.flags``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch_mish.cli.console import Console

PROG = "torch-mish"
DTYPES = ("float32", "float16", "bfloat16")
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
NMS_KINDS = ("default", "greedynms", "diounms")  # torch_mish.ops.NMS_KINDS, without importing torch
Batch = tuple[int, int, int]  # (min, opt, max)


class UsageError(Exception):
    """A usage or input error: exit status 2, one line that says what is wrong and how to fix it."""


@dataclass(frozen=True)
class NmsOptions:
    """darknet's detection thresholds and NMS: the torch_mish.darknet.Detector a model is wrapped in."""

    conf: float
    iou: float
    max_det: int
    kind: str | None  # None: the cfg's (its last [yolo] section's nms_kind)
    beta: float | None  # None: the cfg's beta_nms


@dataclass(frozen=True)
class ModelOptions:
    """The model to load and the input it is exported or built for."""

    source: str
    weights: Path | None
    image_size: tuple[int, int] | None  # None: the source's own (a cfg's [net] size, a .pt2's), else 640
    batch: Batch | None  # None: the source's own (a .pt2's), else 1
    dtype: str  # one of DTYPES: the model's and its input's, so an engine's precision
    detections: NmsOptions | None = None  # --nms (detect: always): the model in a Detector


@dataclass(frozen=True)
class EngineOptions:
    lowering: str | None  # None: TORCH_MISH_TRT_LOWERING, else the library's default
    workspace_mib: int | None


@dataclass(frozen=True)
class Invocation:
    command: str
    console: Console
    run: Callable[[Any, Console], dict[str, Any]]
    bind: Callable[[], Any]  # the command's options; raises UsageError


def image_size_field() -> Any:
    """A dataclass field for a command's own --image-size (H or HxW): (height, width), or None."""
    return dataclasses.field(metadata={"parse": parse_image_size})


def output_file(*suffixes: str, flag: str = "-o") -> Any:
    """A dataclass field for an output file flag: a Path whose name ends in one of ``suffixes`` in an
    existing directory, or None where the flag was not given."""
    return dataclasses.field(metadata={"suffixes": suffixes, "flag": flag})


# --- from the command line to options -------------------------------------------------------------


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> Invocation:
    """The command line as an Invocation (argparse exits 2 with its message on a malformed one)."""
    flags = vars(parser.parse_args(argv))
    console = Console(quiet=flags["quiet"], verbose=flags["verbose"], json=flags["json"])
    return Invocation(flags["command"], console, flags["run"], lambda: bind(flags["options"], flags))


def bind(cls: type, flags: dict[str, Any]) -> Any:
    """An instance of the options dataclass ``cls``: groups built from their flags, output files
    checked, Path fields made paths, every other field the flag of its name."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if hints[f.name] in GROUPS:
            values[f.name] = GROUPS[hints[f.name]](flags)
        elif "suffixes" in f.metadata:
            text = flags[f.name]
            values[f.name] = None if text is None else output_path(text, f.metadata["suffixes"], f.metadata["flag"])
        elif "parse" in f.metadata:
            text = flags[f.name]
            values[f.name] = None if text is None else f.metadata["parse"](text)
        elif hints[f.name] is Path:
            values[f.name] = Path(flags[f.name])
        elif hints[f.name] == (Path | None):
            values[f.name] = None if flags[f.name] is None else Path(flags[f.name])
        else:
            values[f.name] = flags[f.name]
    return cls(**values)


def output_dir(path: Path, holds: str) -> Path:
    """-o DIR for a directory the command fills (created if missing): not a file, in an existing directory."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"-o {path}: not a directory; give the folder for {holds}")
    if not path.parent.is_dir():
        raise UsageError(f"-o {path}: the directory {path.parent} does not exist; create it first")
    return path


def output_path(text: str, suffixes: Sequence[str], flag: str) -> Path:
    path = Path(text)
    if path.suffix.lower() not in suffixes:
        raise UsageError(f"{flag} {text}: the file name must end in {' or '.join(suffixes)}")
    if not path.parent.is_dir():
        raise UsageError(f"{flag} {text}: the directory {path.parent} does not exist; create it first")
    return path


def model_options(flags: dict[str, Any]) -> ModelOptions:
    """--batch or trtexec's --minShapes/--optShapes/--maxShapes (their first dimension; H and W too),
    --image-size, and the dtype: --dtype, or an engine's --fp16/--bf16."""
    image_size = parse_image_size(flags["image_size"]) if flags["image_size"] is not None else None
    shapes = [flags.get(k) for k in ("min_shapes", "opt_shapes", "max_shapes")]
    batch = parse_batch(flags["batch"]) if flags.get("batch") is not None else None
    if any(shapes):
        if batch is not None:
            raise UsageError("--batch and --minShapes/--optShapes/--maxShapes: give one or the other")
        if not all(shapes):
            missing = [f"--{k}Shapes" for k, given in zip(("min", "opt", "max"), shapes, strict=True) if not given]
            raise UsageError(f"--minShapes, --optShapes and --maxShapes go together: {', '.join(missing)} missing")
        parsed = [parse_trtexec_shapes(s) for s in shapes]
        if len({s[1:] for s in parsed}) != 1 or len(parsed[0]) != 4:
            raise UsageError(
                "--minShapes/--optShapes/--maxShapes: only the batch may differ (NxCxHxW), e.g. 1x3x640x640"
            )
        image_size = image_size or (parsed[0][2], parsed[0][3])
        batch = parse_batch(":".join(str(s[0]) for s in parsed))
    if flags.get("fp16") and flags.get("bf16"):
        raise UsageError("--fp16 and --bf16 together: engines are strongly typed, pick one precision")
    dtype = "float16" if flags.get("fp16") else "bfloat16" if flags.get("bf16") else flags.get("dtype", "float32")
    weights = Path(flags["weights"]) if flags["weights"] else None
    detections = nms_options(flags) if "conf" in flags else None  # a command with the NMS flags
    return ModelOptions(flags["src"], weights, image_size, batch, dtype, detections)


def engine_options(flags: dict[str, Any]) -> EngineOptions:
    return EngineOptions(flags["lowering"], flags["workspace"])


def nms_options(flags: dict[str, Any]) -> NmsOptions | None:
    """--nms and its thresholds (None without --nms; detect has no --nms: always), checked here so that a
    bad value is one line."""
    enabled = flags.get("nms", True)
    given = {name: flags[name] for name in ("conf", "iou", "max_det", "nms_kind", "beta_nms")}
    if not enabled and any(v is not None for v in given.values()):
        named = ", ".join("--" + k.replace("_", "-") for k, v in given.items() if v is not None)
        raise UsageError(f"{named}: these set the detection NMS; add --nms")
    for name in ("conf", "iou"):
        value = given[name]
        if value is not None and not 0 <= value <= 1:
            raise UsageError(
                f"--{name} {value:g}: a threshold in [0, 1], e.g. --{name} {0.25 if name == 'conf' else 0.45}"
            )
    beta = given["beta_nms"]
    if beta is not None:
        if not (math.isfinite(beta) and beta >= 0):
            raise UsageError(f"--beta-nms {beta:g}: a finite exponent >= 0, e.g. --beta-nms 0.6")
        if given["nms_kind"] not in (None, "diounms"):
            raise UsageError(
                f"--beta-nms is diounms's exponent, not {given['nms_kind']}'s: drop it or use --nms-kind diounms"
            )
    if not enabled:
        return None
    return NmsOptions(
        conf=0.25 if given["conf"] is None else given["conf"],
        iou=0.45 if given["iou"] is None else given["iou"],
        max_det=300 if given["max_det"] is None else given["max_det"],
        kind=given["nms_kind"],
        beta=beta,
    )


GROUPS: dict[Any, Callable[[dict[str, Any]], Any]] = {ModelOptions: model_options, EngineOptions: engine_options}


def parse_batch(text: str) -> Batch:
    """``N`` (static) or ``MIN:OPT:MAX`` (dynamic batch)."""
    try:
        values = [int(p) for p in text.split(":")]
    except ValueError:
        raise UsageError(f"--batch {text}: expected N or MIN:OPT:MAX, e.g. --batch 1:8:16") from None
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
        raise UsageError(f"--batch {text}: expected N or MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX, e.g. --batch 1:8:16")
    return values[0], values[1], values[2]


def parse_image_size(text: str) -> tuple[int, int]:
    try:
        values = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise UsageError(f"--image-size {text}: expected H or HxW, e.g. --image-size 640 or 384x640") from None
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) < 1:
        raise UsageError(f"--image-size {text}: expected H or HxW with positive sizes, e.g. 384x640")
    return values[0], values[1]


def parse_trtexec_shapes(text: str) -> tuple[int, ...]:
    """trtexec's ``name:1x3x640x640`` (or a bare ``1x3x640x640``): the shape."""
    shape = text.rsplit(":", 1)[-1]
    try:
        return tuple(int(d) for d in shape.lower().split("x"))
    except ValueError:
        raise UsageError(f"shape {text}: expected input:NxCxHxW, e.g. --minShapes images:1x3x640x640") from None


def format_batch(batch: Batch) -> str:
    return str(batch[0]) if batch[0] == batch[2] else ":".join(map(str, batch))
