"""``torch-mish``: from a darknet cfg, an exported program or an ONNX file to a deployable engine.

Subcommands (``torch-mish SUBCOMMAND --help`` for each, with an example):

  export   a darknet .cfg, a .pt2 ExportedProgram or module:factory -> .onnx or .pt2
  build    any of those, or an .onnx file -> a TensorRT engine and a JSON report
  inspect  converter coverage, Mish layers and the TensorRT network's layers; an engine's layers
  triton   a Triton model repository (config.pbtxt + model.plan)
  bench    latency and throughput: PyTorch eager, torch.compile, TensorRT where it can run

Everything goes through torch_mish's public API (torch_mish.darknet, torch_mish.onnx,
torch_mish.tensorrt.inspect) and TensorRT's own (ONNX parser, runtime). Exit status: 0 done, 2 a usage
or input error (the message says how to fix it), 1 any other failure. Outputs are written to a
temporary file next to the target and renamed into place, so a failed run leaves nothing behind.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_SUFFIXES = (".cfg", ".pt2")
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
DTYPES = ("float32", "float16", "bfloat16")
PROG = "torch-mish"


class UsageError(Exception):
    """A usage or input error: exit status 2, one line that says what is wrong and how to fix it."""


# --- console --------------------------------------------------------------------------------------


@dataclass
class Console:
    quiet: bool = False
    verbose: bool = False
    json: bool = False

    def info(self, message: str) -> None:
        """Human-readable output: stdout, or stderr when stdout carries JSON."""
        if not self.quiet:
            print(message, file=sys.stderr if self.json else sys.stdout, flush=True)

    def steps(self, names: Sequence[str]) -> Any:
        from tqdm import tqdm

        return tqdm(
            total=len(names),
            desc=names[0],
            disable=True if self.quiet else None,
            file=sys.stderr,
            leave=False,
            unit="step",
        )


@contextlib.contextmanager
def step_bar(console: Console, names: Sequence[str]) -> Iterator[Callable[[], None]]:
    """A tqdm bar over named steps; call the yielded function as each one finishes."""
    bar = console.steps(names)
    done = [0]

    def advance() -> None:
        done[0] += 1
        bar.update(1)
        if done[0] < len(names):
            bar.set_description(names[done[0]])

    try:
        yield advance
    finally:
        bar.close()


@contextlib.contextmanager
def quiet_libraries(verbose: bool) -> Iterator[None]:
    """Library logs and warnings off unless --verbose; restored on exit (main() may run in-process).
    Their error logs too: a failure is reported as one line by main(), with the details on --verbose."""
    level = logging.INFO if verbose else logging.CRITICAL
    loggers = [logging.getLogger(name) for name in ("torch", "torch_tensorrt", "onnxscript", "torch_mish")]
    saved = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(level)
    try:
        with warnings.catch_warnings():
            if not verbose:
                warnings.simplefilter("ignore")
            yield
    finally:
        for logger, old in zip(loggers, saved, strict=True):
            logger.setLevel(old)


@contextlib.contextmanager
def muted(console: Console) -> Iterator[None]:
    """Silence the chatter libraries print to stdout (torch.onnx's progress lines), unless --verbose."""
    if console.verbose:
        yield
        return
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        yield


# --- arguments ------------------------------------------------------------------------------------


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


BENCH_BACKENDS = ("eager", "compile", "tensorrt")


def bench_backends(text: str) -> list[str]:
    """An argparse type: comma-separated names from BENCH_BACKENDS."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in BENCH_BACKENDS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a comma-separated subset of {','.join(BENCH_BACKENDS)}")
    return names


def parse_batch(text: str) -> tuple[int, int, int]:
    """``N`` (static) or ``MIN:OPT:MAX`` (dynamic batch)."""
    parts = text.split(":")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise UsageError(f"--batch {text}: expected N or MIN:OPT:MAX, e.g. --batch 1:8:16") from None
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
        raise UsageError(f"--batch {text}: expected N or MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX, e.g. --batch 1:8:16")
    return values[0], values[1], values[2]


def parse_image_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
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


def batch_from_args(args: argparse.Namespace) -> tuple[int, int, int]:
    """--batch, or trtexec's --minShapes/--optShapes/--maxShapes (their first dimension; H and W too)."""
    shapes = [getattr(args, k, None) for k in ("min_shapes", "opt_shapes", "max_shapes")]
    if any(shapes):
        if args.batch is not None:
            raise UsageError("--batch and --minShapes/--optShapes/--maxShapes: give one or the other")
        if not all(shapes):
            missing = [f"--{k}Shapes" for k, given in zip(("min", "opt", "max"), shapes, strict=True) if not given]
            raise UsageError(f"--minShapes, --optShapes and --maxShapes go together: {', '.join(missing)} missing")
        parsed = [parse_trtexec_shapes(s) for s in shapes]
        if len({s[1:] for s in parsed}) != 1 or len(parsed[0]) != 4:
            raise UsageError(
                "--minShapes/--optShapes/--maxShapes: only the batch may differ (NxCxHxW), e.g. 1x3x640x640"
            )
        if args.image_size is None:
            args.image_size = f"{parsed[0][2]}x{parsed[0][3]}"
        return parse_batch(":".join(str(s[0]) for s in parsed))
    return parse_batch(args.batch or "1")


def requested_batch(args: argparse.Namespace) -> tuple[int, int, int] | None:
    """batch_from_args when --batch or trtexec's shapes were given, else None (the source decides)."""
    if getattr(args, "batch", None) is None and not any(
        getattr(args, k, None) for k in ("min_shapes", "opt_shapes", "max_shapes")
    ):
        return None
    return batch_from_args(args)


def format_batch(batch: tuple[int, int, int]) -> str:
    return str(batch[0]) if batch[0] == batch[2] else ":".join(map(str, batch))


def resolve_batch(source: Source, requested: tuple[int, int, int] | None, console: Console) -> tuple[int, int, int]:
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


# --- sources --------------------------------------------------------------------------------------


@dataclass
class Source:
    """A model to convert: the module, its input's channels and image size, and where it came from."""

    model: Any
    kind: str  # darknet | exported_program | factory
    name: str
    channels: int
    image_size: tuple[int, int]
    batch: tuple[int, int, int] | None = None  # an exported program's own (min, opt, max) batch


def is_factory(src: str) -> bool:
    return ":" in src and not Path(src).exists() and not src.endswith(MODEL_SUFFIXES + (".onnx",) + ENGINE_SUFFIXES)


def check_exists(src: str, hint: str = "give an existing path (or module:factory for a Python model)") -> Path:
    path = Path(src)
    if not path.exists():
        raise UsageError(f"{src}: no such file; {hint}")
    if not path.is_file():
        raise UsageError(f"{src}: not a file")
    return path


def load_source(src: str, args: argparse.Namespace, console: Console) -> Source:  # noqa: PLR0912 - one branch per source kind
    """A darknet cfg (a path, or a cfg name shipped with torch_mish), a .pt2 or module:factory."""
    import torch

    import torch_mish  # noqa: F401 - registers torch.ops.mish (a .pt2 needs it to load)

    image = parse_image_size(args.image_size)
    if is_factory(src):
        module_name, _, attr = src.partition(":")
        sys.path.insert(0, os.getcwd())
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise UsageError(f"{src}: cannot import {attr!r} from {module_name!r} ({exc}); check PYTHONPATH") from None
        finally:
            sys.path.pop(0)
        try:
            model = factory()
        except TypeError as exc:  # a class or function that needs arguments
            raise UsageError(f"{src}: {attr}() failed ({exc}); give a factory that takes no arguments") from None
        if not isinstance(model, torch.nn.Module):
            raise UsageError(f"{src}: the factory returned {type(model).__name__}, not an nn.Module")
        return Source(model.eval(), "factory", src, 3, image or (640, 640))

    from torch_mish.darknet import PACKAGED_CFGS, CfgError, Darknet, WeightsError, packaged_cfg

    if f"{src}.cfg" in PACKAGED_CFGS and not Path(src).exists():
        src = f"{src}.cfg"  # a packaged cfg by its bare name, as packaged_cfg() takes it
    if src.endswith(".cfg"):
        path = Path(src)
        if not path.exists() and Path(src).name == src and src in PACKAGED_CFGS:
            path = packaged_cfg(src)
        elif not path.exists():
            raise UsageError(
                f"{src}: no such file; give a cfg path or a packaged cfg name ({', '.join(PACKAGED_CFGS)})"
            )
        try:
            model = Darknet(path)
        except CfgError as exc:
            raise UsageError(f"{exc} (fix the cfg at that line)") from None
        weights = getattr(args, "weights", None)
        if weights:
            check_exists(weights, "give the path of the .weights file trained with this cfg")
            try:
                model.load_darknet_weights(weights)
            except WeightsError as exc:
                raise UsageError(f"{exc} (use the .weights file trained with this cfg)") from None
        else:
            console.info(f"note: no --weights: {path.name} has random weights")
        source = Source(model.eval(), "darknet", str(src), model.channels, image or (model.height, model.width))
        if image:
            check_image_size(model, image)
        return source
    if src.endswith(".pt2"):
        path = check_exists(src)
        try:
            program = torch.export.load(path)
        except Exception as exc:  # noqa: BLE001 - any failure to read is an input error
            raise UsageError(f"{src}: not a loadable torch.export program ({str(exc).splitlines()[0]})") from None
        placeholders = [n for n in program.graph.nodes if n.op == "placeholder" and n.name in _user_inputs(program)]
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
        return Source(program.module(), "exported_program", str(src), _hint(shape[1]), image or hw, batch)
    raise UsageError(f"{src}: unsupported source; give a darknet .cfg, a .pt2 ExportedProgram or module:factory")


def check_image_size(model: Any, image: tuple[int, int]) -> None:
    """A size the darknet model's strides do not divide fails here in one line, not deep inside an
    export or a build."""
    try:
        model.check_input_size(*image)
    except ValueError as exc:
        raise UsageError(f"--image-size {exc}") from None


def _user_inputs(program: Any) -> set[str]:
    return set(program.graph_signature.user_inputs)


def _batch_range(program: Any, dim: Any) -> tuple[int, int, int] | None:
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


def torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def example_input(source: Source, batch: tuple[int, int, int], dtype: Any) -> Any:
    import torch

    lo, opt, hi = batch
    # torch.export specializes a dimension traced at size 1; trace a dynamic batch at 2 or more.
    n = opt if lo == hi or opt >= 2 else min(2, hi)
    gen = torch.Generator().manual_seed(0)
    return torch.rand(n, source.channels, *source.image_size, generator=gen).to(dtype)


def dynamic_shapes(batch: tuple[int, int, int]) -> Any:
    import torch

    if batch[0] == batch[2]:
        return None
    return ({0: torch.export.Dim("batch", min=batch[0], max=batch[2])},)


# --- atomic outputs -------------------------------------------------------------------------------


def output_path(text: str, suffixes: Sequence[str], flag: str = "-o") -> Path:
    path = Path(text)
    if path.suffix.lower() not in suffixes:
        raise UsageError(f"{flag} {text}: the file name must end in {' or '.join(suffixes)}")
    if not path.parent.is_dir():
        raise UsageError(f"{flag} {text}: the directory {path.parent} does not exist; create it first")
    return path


@contextlib.contextmanager
def atomic(path: Path) -> Iterator[Path]:
    """A temporary path next to ``path`` (same suffix): renamed onto ``path`` on success, removed on failure."""
    import uuid

    tmp_path = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}"
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n")


# --- export ---------------------------------------------------------------------------------------


def count_onnx_mish(path: Path) -> dict[str, int]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    nodes = list(model.graph.node) + [n for f in model.functions for n in f.node]
    return {
        "Mish": sum(n.op_type == "Mish" for n in model.graph.node),
        "TorchMish": sum(n.op_type == "TorchMish" for n in model.graph.node),
        "Softplus": sum(n.op_type == "Softplus" for n in model.graph.node),  # Mish below opset 18
        "nodes": len(nodes),
    }


def onnx_tensor_names(model: Any, x: Any) -> dict[str, list[str]]:
    """input_names and output_names for torch.onnx.export: the names torch-tensorrt gives an engine
    built from the model (input, output0, ...), so an engine built from the ONNX file binds alike. The
    outputs are counted on fake tensors (shapes only); a model that cannot run on them keeps the
    exporter's output names."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils import _pytree

    try:
        with FakeTensorMode(allow_non_fake_inputs=True), torch.no_grad():
            outputs = _pytree.tree_leaves(model(torch.empty(x.shape, dtype=x.dtype, device=x.device)))
    except Exception:  # noqa: BLE001 - exported all the same, with the exporter's output names
        return {"input_names": ["input"]}
    return {"input_names": ["input"], "output_names": [f"output{i}" for i in range(len(outputs))]}


def uses_torchscript_exporter(args: argparse.Namespace) -> bool:
    """Below ONNX Mish's opset the TorchScript exporter: torch's dynamo exporter writes 18+."""
    import torch_mish.onnx

    return args.opset is not None and args.opset < torch_mish.onnx.MISH_OPSET


def check_export_args(args: argparse.Namespace, out: Path) -> None:
    """Flags that do not fit the output's format, and the ONNX packages an .onnx output needs."""
    if args.plugin and out.suffix != ".onnx":
        raise UsageError("--plugin writes TorchMish nodes into an ONNX file: use -o NAME.onnx")
    if args.opset is not None and out.suffix != ".onnx":
        raise UsageError(f"--opset is for ONNX output (-o NAME.onnx), not {out.suffix}")
    if out.suffix == ".onnx":
        # The dynamo exporter (opset 18+) needs onnxscript; both exporters' files are read back with onnx.
        needed = ("onnx",) if uses_torchscript_exporter(args) else ("onnx", "onnxscript")
        missing = [name for name in needed if importlib.util.find_spec(name) is None]
        if missing:
            raise RuntimeError(
                f"ONNX export needs {' and '.join(missing)}, not installed here: pip install 'torch_mish[onnx]'"
            )


def cmd_export(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    out = output_path(args.output, (".onnx", ".pt2"))
    requested = requested_batch(args)
    check_export_args(args, out)
    with step_bar(console, ["load", "export"]) as advance:
        source = load_source(args.src, args, console)
        batch = resolve_batch(source, requested, console)
        dtype = torch_dtype(args.dtype)
        model = source.model.to(dtype)
        x = example_input(source, batch, dtype)
        advance()
        import torch

        result: dict[str, Any] = {
            "source": source.name,
            "source_kind": source.kind,
            "output": str(out),
            "format": out.suffix[1:],
            "dtype": args.dtype,
            "input_shape": [list(x.shape[1:])],
            "batch": {"min": batch[0], "opt": batch[1], "max": batch[2]},
        }
        with atomic(out) as tmp:
            if out.suffix == ".pt2":
                from torch_mish.ops import count_mish_nodes

                program = torch.export.export(model, (x,), dynamic_shapes=dynamic_shapes(batch))
                torch.export.save(program, tmp)
                result["mish_nodes"], result["aten_mish_nodes"] = count_mish_nodes(program.graph)
            else:
                import torch_mish.onnx

                names = onnx_tensor_names(model, x)
                kwargs: dict[str, Any] = {"external_data": False, "dynamic_shapes": dynamic_shapes(batch), **names}
                legacy = uses_torchscript_exporter(args)
                if legacy:
                    if args.plugin:
                        raise UsageError(f"--plugin needs --opset {torch_mish.onnx.MISH_OPSET} or above")
                    dynamic = {"input": {0: "batch"}} if batch[0] != batch[2] else None
                    kwargs = {"dynamo": False, "dynamic_axes": dynamic, **names}
                if args.opset is not None:
                    kwargs["opset_version"] = args.opset
                try:
                    # The TorchScript exporter logs its whole graph to stderr from C++ when it fails.
                    with muted(console), muted_fds(console, skip=not legacy):
                        torch_mish.onnx.export(model, (x,), tmp, plugin=args.plugin, **kwargs)
                except ValueError as exc:
                    raise UsageError(f"{exc}") from None
                except Exception as exc:
                    if not legacy:
                        raise
                    reason = str(exc).strip().split("\n")[0][:300]  # its message carries the whole graph
                    raise UsageError(f"--opset {args.opset}: torch.onnx's exporter failed: {reason}") from None
                result["opset"] = args.opset
                counts = count_onnx_mish(tmp)
                if args.plugin:
                    result["mish_nodes"], result["mish_as"] = (
                        counts["TorchMish"],
                        "torch_mish::TorchMish (TensorRT plugin)",
                    )
                elif counts["Mish"] or not counts["Softplus"]:
                    result["mish_nodes"], result["mish_as"] = counts["Mish"], "ONNX Mish"
                else:  # opset < 18: no ONNX Mish
                    result["mish_nodes"], result["mish_as"] = counts["Softplus"], "Mul(x, Tanh(Softplus(x)))"
            advance()
    result["bytes"] = out.stat().st_size
    mish = f"{result['mish_nodes']} Mish"
    if result.get("aten_mish_nodes"):  # nn.Mish / F.mish in a .pt2: aten.mish, not torch_mish's op
        mish = f"{result['mish_nodes']} torch.ops.mish.mish and {result['aten_mish_nodes']} aten.mish"
    console.info(f"wrote {out} ({result['bytes'] / 2**20:.1f} MiB, {mish}) from {source.name}")
    return result


# --- TensorRT helpers -----------------------------------------------------------------------------


@contextlib.contextmanager
def silent_fds(console: Console) -> Iterator[None]:
    """Mute file descriptors 1 and 2 (what C++ libraries print at import), unless --verbose."""
    with muted_fds(console, skip="torch_mish.tensorrt" in sys.modules):
        yield


@contextlib.contextmanager
def muted_fds(console: Console, skip: bool = False) -> Iterator[None]:
    """Mute file descriptors 1 and 2 (what C++ code prints), unless --verbose or `skip`."""
    if console.verbose or skip:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def import_tensorrt(console: Console) -> tuple[Any, Any]:
    """(torch_mish.tensorrt, tensorrt): the first registers the converters and the plugin library and
    aliases tensorrt_rtx to tensorrt where torch-tensorrt-rtx is installed."""
    try:
        with silent_fds(console):
            import torch_mish.tensorrt as mt
    except ImportError as exc:
        raise RuntimeError(str(exc).splitlines()[0]) from None
    import tensorrt as trt

    return mt, trt


def runtime_note(mt: Any, trt: Any) -> str | None:
    reason = mt.engine_runtime_unavailable_reason()
    if reason is None:
        return None
    if trt.__name__.startswith("tensorrt_rtx"):
        return f"built for the RTX runtime, not run here: {reason}"
    return f"not run here: {reason}"


def dtype_name(trt_dtype: Any) -> str:
    return str(trt_dtype).rsplit(".", 1)[-1]


def network_io(network: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    def io(t: Any) -> dict[str, Any]:
        return {"name": t.name, "shape": list(t.shape), "dtype": dtype_name(t.dtype)}

    return (
        [io(network.get_input(i)) for i in range(network.num_inputs)],
        [io(network.get_output(i)) for i in range(network.num_outputs)],
    )


def layer_table(network: Any) -> list[dict[str, Any]]:
    rows = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        out = layer.get_output(0) if layer.num_outputs else None
        rows.append(
            {
                "index": i,
                "name": layer.name,
                "type": dtype_name(layer.type),
                "output_shape": list(out.shape) if out is not None else None,
                "output_dtype": dtype_name(out.dtype) if out is not None else None,
            }
        )
    return rows


def layer_types(network: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in layer_table(network):
        counts[row["type"]] = counts.get(row["type"], 0) + 1
    return counts


def precisions(network: Any) -> list[str]:
    """The dtypes of the network's tensors, read back (strongly typed: what the engine computes in)."""
    found = {row["output_dtype"] for row in layer_table(network) if row["output_dtype"]}
    return sorted(found & {"FLOAT", "HALF", "BF16", "FP8", "INT8", "FP4"})


def precision_of(args: argparse.Namespace) -> str:
    if getattr(args, "fp16", False) and getattr(args, "bf16", False):
        raise UsageError("--fp16 and --bf16 together: engines are strongly typed, pick one precision")
    if getattr(args, "fp16", False):
        return "float16"
    if getattr(args, "bf16", False):
        return "bfloat16"
    return getattr(args, "dtype", None) or "float32"


@dataclass
class Built:
    """A network built (and, when asked, an engine) with what the report needs."""

    network: Any
    keep: Any  # owner of the network (BuiltNetwork or the parser objects)
    report: dict[str, Any]
    engine: bytes | None
    timing_cache: bytes | None = None


def build_from_model(
    src: str, args: argparse.Namespace, console: Console, *, engine: bool, advance: Callable[[], None]
) -> Built:
    requested = requested_batch(args)
    precision = precision_of(args)
    mt, trt = import_tensorrt(console)
    import torch_tensorrt

    source = load_source(src, args, console)
    batch = resolve_batch(source, requested, console)  # as --image-size defaults to the program's size
    dtype = torch_dtype(precision)
    model = source.model.to(dtype)
    shape = (source.channels, *source.image_size)
    spec = torch_tensorrt.Input(
        min_shape=(batch[0], *shape), opt_shape=(batch[1], *shape), max_shape=(batch[2], *shape), dtype=dtype
    )
    settings: dict[str, Any] = {}
    if getattr(args, "workspace", None):
        settings["workspace_size"] = int(args.workspace) * 2**20
    lowering = getattr(args, "lowering", None) or "native"
    advance()
    start = time.perf_counter()
    try:
        with muted(console):
            coverage = mt.inspect.dry_run(model, spec, lowering=lowering, **settings)
    except mt.PluginUnavailableError as exc:
        raise UsageError(
            f"--lowering {lowering} cannot be built with {trt.__name__} {trt.__version__}: "
            f"{exc.reason.splitlines()[0]} Use --lowering native."
        ) from None
    advance()
    if not coverage.fully_converted:
        raise RuntimeError(
            f"{coverage.supported_ops} of {coverage.total_ops} ops convert ({coverage.coverage:.1f}%) into "
            f"{coverage.engines} TensorRT engines; run `torch-mish inspect {src}` for the unsupported ops"
        )
    network = coverage.network
    data = network.build_serialized_engine(timing_cache=read_timing_cache(args)) if engine else None
    advance()
    inputs, outputs = network_io(network.network)
    report: dict[str, Any] = {
        "source": source.name,
        "source_kind": source.kind,
        "coverage": {
            "total_ops": coverage.total_ops,
            "supported_ops": coverage.supported_ops,
            "percent": coverage.coverage,
            "trt_engines": coverage.engines,
            "fully_converted": coverage.fully_converted,
        },
        "mish": {"count": coverage.mish_ops, "lowering": coverage.lowering},
        "aten_mish": coverage.aten_mish_ops,  # nn.Mish / F.mish: torch-tensorrt's own decomposition
        "layers": network.network.num_layers,
        "layer_types": network.layer_types(),
        "precision": precision,
        "precisions": precisions(network.network),
        "strongly_typed": True,
        "inputs": inputs,
        "outputs": outputs,
        "profiles": profiles_json(network.profiles()),
        "tensorrt": {"module": trt.__name__, "version": trt.__version__},
        "build_seconds": round(time.perf_counter() - start, 3),
        "plugin_library": plugin_library(mt) if coverage.lowering == "plugin" and coverage.mish_ops else None,
        "runtime": runtime_note(mt, trt),
        "dry_run_text": coverage.text if getattr(args, "show_dry_run", False) else None,
    }
    return Built(network.network, network, report, data, network.timing_cache)


def read_timing_cache(args: argparse.Namespace) -> bytes | None:
    """--timing-cache: the file's bytes, b"" for a file not there yet (TensorRT starts an empty cache,
    as trtexec --timingCacheFile does), None without the flag."""
    if not getattr(args, "timing_cache", None):
        return None
    path = Path(args.timing_cache)
    return path.read_bytes() if path.is_file() else b""


def plugin_library(mt: Any) -> str | None:
    try:
        return str(mt.plugin_library_path())
    except mt.PluginUnavailableError:
        return None


def profiles_json(profiles: list[dict[str, tuple[tuple[int, ...], ...]]]) -> list[dict[str, Any]]:
    return [
        {name: {"min": list(s[0]), "opt": list(s[1]), "max": list(s[2])} for name, s in p.items()} for p in profiles
    ]


def build_from_onnx(  # noqa: PLR0912 - input checks, one message each
    src: str, args: argparse.Namespace, console: Console, *, engine: bool, advance: Callable[[], None]
) -> Built:
    path = check_exists(src)
    batch = batch_from_args(args)
    precision = precision_of(args)
    image = parse_image_size(args.image_size)
    if getattr(args, "lowering", None):
        raise UsageError(
            "--lowering applies to model sources; an ONNX file's Mish lowering is fixed at export "
            "(torch-mish export --plugin for TorchMish nodes)"
        )
    mt, trt = import_tensorrt(console)
    counts = count_onnx_mish(path)
    if counts["TorchMish"]:
        mt.load_plugin()  # raises PluginUnavailableError: exit 2 with its message
    logger = trt.Logger(trt.Logger.VERBOSE if console.verbose else trt.Logger.ERROR)
    start = time.perf_counter()
    with mt.allow_tensorrt_without_gpu() if hasattr(mt, "allow_tensorrt_without_gpu") else contextlib.nullcontext():
        builder = trt.Builder(logger)
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(path.read_bytes(), str(path.parent)):
            errors = "; ".join(parser.get_error(i).desc() for i in range(parser.num_errors))
            if counts["TorchMish"]:
                raise UsageError(
                    f"{src}: {trt.__name__} {trt.__version__} cannot import the TorchMish plugin nodes ({errors}); "
                    "export without --plugin, or build with a TensorRT that supports plugins"
                )
            raise UsageError(f"{src}: TensorRT's ONNX parser refused the file: {errors}")
        advance()
        config = builder.create_builder_config()
        if getattr(args, "workspace", None):
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(args.workspace) * 2**20)
        cache_in = read_timing_cache(args)
        if cache_in is not None:
            # TensorRT's own timing cache: read if there, written back after the build (trtexec --timingCacheFile)
            config.set_timing_cache(config.create_timing_cache(cache_in), False)
        profile = builder.create_optimization_profile()
        dynamic = False
        for i in range(network.num_inputs):
            t = network.get_input(i)
            dims = list(t.shape)
            if dtype_name(t.dtype) != {"float32": "FLOAT", "float16": "HALF", "bfloat16": "BF16"}[precision]:
                raise UsageError(
                    f"{src}: the ONNX input {t.name} is {dtype_name(t.dtype)}; an engine is strongly typed, so "
                    f"{precision} needs an ONNX file exported in it (torch-mish export --dtype {precision})"
                )
            if -1 not in dims:
                continue
            dynamic = True
            shapes = []
            for n in batch:
                shape = [n if (j == 0 and d == -1) else d for j, d in enumerate(dims)]
                if -1 in shape[2:4] and image is not None:
                    shape[2], shape[3] = (
                        (image[0] if shape[2] == -1 else shape[2]),
                        (image[1] if shape[3] == -1 else shape[3]),
                    )
                if -1 in shape:
                    raise UsageError(f"{src}: input {t.name} has dynamic dims {dims}; give --image-size HxW")
                shapes.append(tuple(shape))
            profile.set_shape(t.name, *shapes)
        if dynamic:
            config.add_optimization_profile(profile)
        elif batch[0] != batch[2]:
            raise UsageError(f"{src}: the ONNX file has a static batch; export it with --batch MIN:OPT:MAX")
        data = builder.build_serialized_network(network, config) if engine else None
        if engine and data is None:
            raise RuntimeError("TensorRT build_serialized_network returned None (rerun with --verbose for its log)")
        advance()
    inputs, outputs = network_io(network)
    read_back = []
    if dynamic:
        read_back = [
            {
                network.get_input(i).name: dict(
                    zip(
                        ("min", "opt", "max"),
                        (list(s) for s in profile.get_shape(network.get_input(i).name)),
                        strict=True,
                    )
                )
                for i in range(network.num_inputs)
                if -1 in list(network.get_input(i).shape)
            }
        ]
    report = {
        "source": str(src),
        "source_kind": "onnx",
        "coverage": {"onnx_nodes": counts["nodes"], "parsed": True, "percent": 100.0, "trt_engines": 1},
        "mish": {
            "count": counts["Mish"] + counts["TorchMish"] or counts["Softplus"],
            "lowering": "plugin"
            if counts["TorchMish"]
            else "native (ONNX Mish, imported by the parser)"
            if counts["Mish"]
            else "native (Softplus, Tanh, Mul in the ONNX file)",
        },
        "layers": network.num_layers,
        "layer_types": layer_types(network),
        "precision": precision,
        "precisions": precisions(network),
        "strongly_typed": True,
        "inputs": inputs,
        "outputs": outputs,
        "profiles": read_back,
        "tensorrt": {"module": trt.__name__, "version": trt.__version__},
        "build_seconds": round(time.perf_counter() - start, 3),
        "plugin_library": plugin_library(mt) if counts["TorchMish"] else None,
        "runtime": runtime_note(mt, trt),
    }
    cache_bytes = bytes(config.get_timing_cache().serialize()) if cache_in is not None else None
    return Built(network, (builder, parser, config), report, bytes(data) if data is not None else None, cache_bytes)


def build_any(src: str, args: argparse.Namespace, console: Console, *, engine: bool) -> Built:
    names = ["load", "convert", "build engine" if engine else "network"]
    with step_bar(console, names) as advance:
        if src.endswith(".onnx"):
            return build_from_onnx(src, args, console, engine=engine, advance=advance)
        if src.endswith(ENGINE_SUFFIXES):
            raise UsageError(f"{src}: already an engine; give a .cfg, .pt2, .onnx or module:factory")
        return build_from_model(src, args, console, engine=engine, advance=advance)


def cmd_build(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    out = output_path(args.output, ENGINE_SUFFIXES, "-o/--saveEngine")
    report_path = output_path(args.report, (".json",), "--report") if args.report else None
    cache_path = output_path(args.timing_cache, (".bin", ".cache"), "--timing-cache") if args.timing_cache else None
    built = build_any(args.src, args, console, engine=True)
    assert built.engine is not None
    report = {**built.report, "engine": str(out), "engine_bytes": len(built.engine)}
    if cache_path is not None:
        report["timing_cache"] = str(cache_path)
    report = {k: v for k, v in report.items() if v is not None or k in ("runtime", "plugin_library")}
    with atomic(out) as tmp:
        tmp.write_bytes(built.engine)
        if report_path is not None:
            write_json(report_path, report)
        if cache_path is not None and built.timing_cache is not None:
            with atomic(cache_path) as cache_tmp:
                cache_tmp.write_bytes(built.timing_cache)
    summarize_build(report, console)
    return report


def mish_summary(report: dict[str, Any]) -> str:
    """torch_mish's Mish calls with their lowering, and nn.Mish / F.mish calls apart: the lowering
    does not apply to those (torch-tensorrt decomposes aten.mish into the same three layers)."""
    count, aten = report["mish"]["count"], report.get("aten_mish", 0)
    parts = [f"{count} Mish ({report['mish']['lowering']})"] if count else []
    parts += [f"{aten} aten.mish (nn.Mish / F.mish, torch-tensorrt's decomposition)"] if aten else []
    return " and ".join(parts) or "no Mish"


def summarize_build(report: dict[str, Any], console: Console) -> None:
    profile = report["profiles"][0] if report["profiles"] else None
    batch = "static"
    if profile:
        s = next(iter(profile.values()))
        batch = f"batch {s['min'][0]}/{s['opt'][0]}/{s['max'][0]} (min/opt/max)"
    mish = mish_summary(report)
    console.info(
        f"wrote {report['engine']} ({report['engine_bytes'] / 2**20:.1f} MiB, {report['tensorrt']['module']} "
        f"{report['tensorrt']['version']}, {report['build_seconds']:.1f} s): {report['coverage']['percent']:.0f}% "
        f"converted, {mish}, {report['layers']} layers, {report['precision']}, {batch}"
    )
    if report.get("plugin_library"):
        console.info(f"load the plugin library at run time: {report['plugin_library']}")
    if report.get("runtime"):
        console.info(report["runtime"])


# --- inspect --------------------------------------------------------------------------------------


def cmd_inspect(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    if args.src.endswith(ENGINE_SUFFIXES):
        return inspect_engine(args, console)
    built = build_any(args.src, args, console, engine=False)
    report = {**built.report, "layer_table": layer_table(built.network)}
    c = report["coverage"]
    console.info(f"{report['source']}: {c['percent']:.1f}% of ops convert, {c['trt_engines']} TensorRT engine(s)")
    if report.get("dry_run_text"):
        console.info(report["dry_run_text"].rstrip())
    console.info(f"Mish: {mish_summary(report)}")
    console.info(
        f"network: {report['layers']} layers: " + ", ".join(f"{k} {v}" for k, v in report["layer_types"].items())
    )
    if console.verbose:
        for row in report["layer_table"]:
            console.info(f"  {row['index']:>5} {row['type']:<14} {row['output_dtype'] or '-':<6} {row['name']}")
    for key in ("inputs", "outputs"):
        for t in report[key]:
            console.info(f"{key[:-1]} {t['name']}: {t['shape']} {t['dtype']}")
    return report


def inspect_engine(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    path = check_exists(args.src)
    mt, trt = import_tensorrt(console)
    reason = mt.engine_runtime_unavailable_reason()
    if reason is not None:
        raise RuntimeError(
            f"cannot inspect {path} here: {reason}; run on a machine with one, or inspect the source "
            "(torch-mish inspect model.cfg|.pt2|.onnx)"
        )
    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
    engine = runtime.deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        raise UsageError(f"{path}: not an engine this TensorRT ({trt.__version__}) can load; rebuild it here")
    info = json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
    console.info(json.dumps(info, indent=1))
    return {"engine": str(path), "inspector": info}


# --- triton ---------------------------------------------------------------------------------------

TRITON_TYPES = {
    "FLOAT": "TYPE_FP32",
    "HALF": "TYPE_FP16",
    "BF16": "TYPE_BF16",
    "INT32": "TYPE_INT32",
    "INT64": "TYPE_INT64",
    "INT8": "TYPE_INT8",
    "BOOL": "TYPE_BOOL",
    "UINT8": "TYPE_UINT8",
}


def triton_config(name: str, report: dict[str, Any]) -> str:
    profile = report["profiles"][0] if report["profiles"] else {}
    # Triton batches along a dynamic first dimension only; a static engine gets max_batch_size 0.
    dynamic = bool(profile) and all(t["shape"][0] == -1 for t in report["inputs"])
    max_batch = max(s["max"][0] for s in profile.values()) if dynamic else 0
    lines = []
    if report.get("plugin_library"):
        lines += [
            "# The engine has torch_mish TorchMish plugin layers: load the plugin library into Triton, either",
            f"#   LD_PRELOAD={report['plugin_library']} tritonserver ...",
            f"#   tritonserver --backend-config=tensorrt,plugins={report['plugin_library']} ...",
        ]
    lines += [f'name: "{name}"', 'platform: "tensorrt_plan"', f"max_batch_size: {max_batch}"]
    for key, tensors in (("input", report["inputs"]), ("output", report["outputs"])):
        lines.append(f"{key} [")
        for i, t in enumerate(tensors):
            dims = t["shape"][1:] if dynamic else t["shape"]
            dtype = TRITON_TYPES.get(t["dtype"], "TYPE_" + t["dtype"])
            comma = "," if i + 1 < len(tensors) else ""
            lines.append(f'  {{ name: "{t["name"]}" data_type: {dtype} dims: [ {", ".join(map(str, dims))} ] }}{comma}')
        lines.append("]")
    if dynamic:
        opt = min(s["opt"][0] for s in profile.values())
        lines.append(f"dynamic_batching {{ preferred_batch_size: [ {opt} ] }}")
    return "\n".join(lines) + "\n"


def cmd_triton(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    repo = Path(args.output)
    if not repo.is_dir():
        raise UsageError(f"-o {repo}: no such directory; create the model repository first (mkdir -p {repo})")
    name = args.name
    if not name or "/" in name or name.startswith("."):
        raise UsageError(f"--name {name!r}: give a plain model name, e.g. --name yolov4")
    target = repo / name
    if target.exists() and not args.force:
        raise UsageError(f"{target} exists; remove it or pass --force to replace it")
    built = build_any(args.src, args, console, engine=True)
    assert built.engine is not None
    report = {**built.report, "engine": str(target / "1" / "model.plan"), "engine_bytes": len(built.engine)}
    config = triton_config(name, report)
    stage = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=repo))
    try:
        (stage / "1").mkdir()
        (stage / "1" / "model.plan").write_bytes(built.engine)
        (stage / "config.pbtxt").write_text(config)
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{name}.old.", dir=repo))
            os.replace(target, old / name)
        os.replace(stage, target)
        if old is not None:
            shutil.rmtree(old)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    console.info(f"wrote {target}/config.pbtxt and {target}/1/model.plan")
    if report.get("plugin_library"):
        console.info(
            f"plugin lowering: start Triton with LD_PRELOAD={report['plugin_library']} "
            f"or --backend-config=tensorrt,plugins={report['plugin_library']}"
        )
    if report.get("runtime"):
        console.info(report["runtime"])
    return {**report, "repository": str(repo), "config": config}


# --- bench ----------------------------------------------------------------------------------------


def measure(fn: Callable[[], Any], iters: int, warmup: int, cuda: bool, console: Console, desc: str) -> list[float]:
    """Per-iteration latency in ms: CUDA events on a GPU, time.perf_counter on the CPU."""
    import torch
    from tqdm import tqdm

    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize()
    times = []
    for _ in tqdm(range(iters), desc=desc, disable=True if console.quiet else None, file=sys.stderr, leave=False):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def stats(times: list[float], batch: int) -> dict[str, float]:
    ordered = sorted(times)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]

    median = statistics.median(ordered)
    return {
        "median_ms": median,
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "throughput_per_s": batch * 1e3 / median,
    }


def cmd_bench(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    import torch

    if args.src.endswith(ENGINE_SUFFIXES):
        check_exists(args.src)
        mt, _ = import_tensorrt(console)
        reason = mt.engine_runtime_unavailable_reason()
        raise RuntimeError(
            f"cannot run the engine {args.src} here: {reason or 'engine files are benchmarked by trtexec'}; "
            "bench its source (.cfg/.pt2/module:factory) for the PyTorch and TensorRT rows"
        )
    if args.src.endswith(".onnx"):
        raise UsageError(f"{args.src}: bench takes a model source (.cfg, .pt2, module:factory)")
    requested = requested_batch(args)
    if requested and requested[0] != requested[2]:
        raise UsageError("bench runs one batch size: --batch N")
    cuda = torch.cuda.is_available() and args.device != "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device here; drop --device or use --device cpu")
    device = "cuda" if cuda else "cpu"
    iters = args.iters or (100 if cuda else 5)
    warmup = args.warmup if args.warmup is not None else (10 if cuda else 1)
    source = load_source(args.src, args, console)
    batch = resolve_batch(source, requested, console)
    batch = (batch[1],) * 3  # a program's range: bench its example batch
    dtype = torch_dtype(args.dtype)
    model = source.model.to(device=device, dtype=dtype)
    x = example_input(source, batch, dtype).to(device)
    timer = "CUDA events" if cuda else "time.perf_counter (CPU)"
    console.info(
        f"{source.name} on {device}, batch {batch[0]}, {args.dtype}, {iters} iterations after {warmup} warm-up; "
        f"timed with {timer}"
    )
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    with torch.inference_mode():
        rows.append(
            {
                "backend": "PyTorch eager",
                **stats(measure(lambda: model(x), iters, warmup, cuda, console, "eager"), batch[0]),
            }
        )
    if "compile" in args.backends:
        compiled = torch.compile(model)
        with torch.inference_mode():
            # the first call compiles: it is warm-up, not measured
            rows.append(
                {
                    "backend": "torch.compile",
                    **stats(
                        measure(lambda: compiled(x), iters, max(warmup, 1), cuda, console, "torch.compile"), batch[0]
                    ),
                }
            )
    if "tensorrt" in args.backends:
        try:
            mt, trt = import_tensorrt(console)
            reason = mt.engine_runtime_unavailable_reason()
        except (ImportError, RuntimeError) as exc:
            reason = str(exc).splitlines()[0]
        if reason is None:
            trt_model = mt.compile(model, [x], lowering=args.lowering or "native")
            with torch.inference_mode():
                times = measure(lambda: trt_model(x), iters, warmup, cuda, console, "TensorRT")
            rows.append(
                {"backend": f"TensorRT ({args.lowering or 'native'}, {trt.__version__})", **stats(times, batch[0])}
            )
        else:
            skipped.append({"backend": "TensorRT", "reason": reason})
    console.info(f"{'backend':<28}{'median ms':>11}{'p90 ms':>10}{'p99 ms':>10}{'img/s':>10}")
    for r in rows:
        console.info(
            f"{r['backend']:<28}{r['median_ms']:>11.2f}{r['p90_ms']:>10.2f}{r['p99_ms']:>10.2f}{r['throughput_per_s']:>10.1f}"
        )
    for s in skipped:
        console.info(f"{s['backend']}: not run: {s['reason']}")
    return {
        "source": source.name,
        "device": device,
        "timer": timer,
        "batch": batch[0],
        "dtype": args.dtype,
        "iters": iters,
        "warmup": warmup,
        "rows": rows,
        "skipped": skipped,
    }


# --- parser ---------------------------------------------------------------------------------------


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default where there is one (not None or False) and the help text does not already say it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


SRC_HELP = (
    "a darknet .cfg (a path, or a cfg shipped with torch_mish: yolov4.cfg, yolov4-csp.cfg, yolov4x-mish.cfg, "
    "yolov4-p5.cfg, yolov4-tiny.cfg), a .pt2 ExportedProgram, or module:factory (a function returning an nn.Module)"
)


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout (messages go to stderr)")
    p.add_argument("-q", "--quiet", action="store_true", help="no messages or progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="library logs, tracebacks, the layer table")


def add_model_args(p: argparse.ArgumentParser, batch_help: str) -> None:
    p.add_argument("--weights", help="darknet .weights for a .cfg source (random weights without it)")
    p.add_argument("--image-size", help="input H or HxW (default: the cfg's [net] size, the .pt2's, else 640)")
    p.add_argument("--batch", help=f"{batch_help} (default: the .pt2's, else 1)")


def add_trt_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fp16",
        action="store_true",
        help="float16 engine: engines are strongly typed, so the model and its inputs are converted to float16 "
        "(an .onnx source must already be float16: torch-mish export --dtype float16)",
    )
    p.add_argument("--bf16", action="store_true", help="bfloat16 engine (the model and its inputs are converted)")
    p.add_argument("--lowering", choices=("native", "plugin"), help="Mish in TensorRT (model sources; default native)")
    p.add_argument("--workspace", type=int, metavar="MiB", help="TensorRT workspace limit")
    p.add_argument("--minShapes", dest="min_shapes", help="trtexec spelling: input:NxCxHxW (with opt and max)")
    p.add_argument("--optShapes", dest="opt_shapes", help="trtexec spelling")
    p.add_argument("--maxShapes", dest="max_shapes", help="trtexec spelling")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=(__doc__ or "").replace("``", ""), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
    sub.required = True

    p = sub.add_parser(
        "export",
        help="a model to ONNX or .pt2",
        formatter_class=HelpFormatter,
        description="Export a model to ONNX (standard Mish op, or TorchMish plugin nodes with --plugin) or to a "
        ".pt2 ExportedProgram.\n\nexample:\n  torch-mish export yolov4-csp.cfg --weights yolov4-csp.weights "
        "--image-size 512 --batch 1:8:16 -o yolov4-csp.onnx",
    )
    p.add_argument("src", help=SRC_HELP)
    p.add_argument("-o", "--output", required=True, help="OUT.onnx or OUT.pt2")
    add_model_args(p, "N, or MIN:OPT:MAX for a dynamic batch dimension")
    p.add_argument("--opset", type=int, help="ONNX opset (18+: ONNX Mish; below: Mul(x, Tanh(Softplus(x))))")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="convert the model and input to this dtype")
    p.add_argument("--plugin", action="store_true", help="ONNX with torch_mish::TorchMish nodes (TensorRT plugin)")
    add_common(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "build",
        help="a TensorRT engine and a JSON report",
        formatter_class=HelpFormatter,
        description="Build a TensorRT engine (strongly typed) from a model or an .onnx file, with a JSON report: "
        "coverage, Mish count and lowering, layers by type, precisions, the optimization profile read back, "
        "TensorRT version, build time, plugin library. On a host without a GPU, TensorRT-RTX builds the engine "
        "for the RTX runtime (not run here).\n\nexample:\n  torch-mish build yolov4-csp.cfg --weights "
        "yolov4-csp.weights --fp16 --batch 1:8:16 -o yolov4-csp.engine --report report.json",
    )
    p.add_argument("src", help=SRC_HELP + ", or an .onnx file (TensorRT's ONNX parser)")
    p.add_argument("-o", "--output", "--saveEngine", dest="output", required=True, help="engine file (.engine/.plan)")
    p.add_argument("--report", help="write the build report (JSON) here")
    p.add_argument(
        "--timing-cache",
        "--timingCacheFile",
        dest="timing_cache",
        help="TensorRT timing cache file (.bin/.cache), read if present and written back after the build",
    )
    add_model_args(p, "N, or MIN:OPT:MAX: the optimization profile's batch sizes")
    add_trt_args(p)
    add_common(p)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser(
        "inspect",
        help="coverage, Mish layers and the TensorRT network",
        formatter_class=HelpFormatter,
        description="Converter coverage and graph split (torch-tensorrt's dry run), Mish count and the TensorRT "
        "network's layers (-v: the whole table); for an engine file, TensorRT's engine inspector where a runtime "
        "exists.\n\nexample:\n  torch-mish inspect yolov4-csp.cfg --image-size 512 --lowering native -v",
    )
    p.add_argument("src", help=SRC_HELP + ", an .onnx file, or an engine (.engine/.plan)")
    p.add_argument("--show-dry-run", action="store_true", help="print torch-tensorrt's dry-run report")
    add_model_args(p, "N, or MIN:OPT:MAX")
    add_trt_args(p)
    add_common(p)
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser(
        "triton",
        help="a Triton model repository",
        formatter_class=HelpFormatter,
        description="Write a Triton model repository entry: NAME/config.pbtxt (platform tensorrt_plan, "
        "max_batch_size and dynamic batching from the profile, inputs and outputs read from the built network) and "
        "NAME/1/model.plan.\n\nexample:\n  torch-mish triton yolov4-csp.cfg --weights yolov4-csp.weights --fp16 "
        "--batch 1:8:16 -o model_repository --name yolov4-csp",
    )
    p.add_argument("src", help=SRC_HELP + ", or an .onnx file")
    p.add_argument("-o", "--output", required=True, help="the model repository (an existing directory)")
    p.add_argument("--name", required=True, help="the model's name in the repository")
    p.add_argument("--force", action="store_true", help="replace an existing NAME/")
    add_model_args(p, "N, or MIN:OPT:MAX (max_batch_size = MAX, preferred batch = OPT)")
    add_trt_args(p)
    add_common(p)
    p.set_defaults(func=cmd_triton)

    p = sub.add_parser(
        "bench",
        help="latency and throughput",
        formatter_class=HelpFormatter,
        description="Latency (median, p90, p99) and throughput of PyTorch eager, torch.compile and, where a "
        "TensorRT runtime can run engines, TensorRT. On a GPU: CUDA events after warm-up; on the CPU: "
        "time.perf_counter (few iterations by default).\n\nexample:\n  torch-mish bench yolov4-csp.cfg "
        "--image-size 512 --batch 8 --dtype float16 --iters 200",
    )
    p.add_argument("src", help=SRC_HELP)
    add_model_args(p, "N")
    p.add_argument("--dtype", choices=DTYPES, default="float32")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--iters", type=int_at_least(1), help="measured iterations (default 100 on a GPU, 5 on the CPU)")
    p.add_argument("--warmup", type=int_at_least(0), help="warm-up iterations (default 10 on a GPU, 1 on the CPU)")
    p.add_argument(
        "--backends",
        type=bench_backends,
        default="eager,compile,tensorrt",
        help="comma-separated: eager (always), compile, tensorrt",
    )
    p.add_argument("--lowering", choices=("native", "plugin"), help="Mish lowering for the TensorRT row")
    add_common(p)
    p.set_defaults(func=cmd_bench)
    return parser


def failure(where: str, exc: BaseException, verbose: bool) -> int:
    """One line on stderr, exit 1; --verbose adds the traceback."""
    if verbose:
        import traceback

        traceback.print_exception(exc)
    text = str(exc).strip().splitlines()
    hint = "" if verbose else " (rerun with --verbose for details)"
    print(f"{where}: error: {text[0] if text else type(exc).__name__}{hint}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 with argparse's message on a usage error
    console = Console(quiet=args.quiet, verbose=args.verbose, json=args.json)
    where = f"{PROG} {args.command}"
    try:
        with quiet_libraries(args.verbose):
            result = args.func(args, console)
    except Exception as exc:
        plugin = sys.modules.get("torch_mish.tensorrt.plugin")
        if not isinstance(exc, UsageError) and not (plugin and isinstance(exc, plugin.PluginUnavailableError)):
            return failure(where, exc, args.verbose)
        print(f"{where}: error: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{where}: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
