"""``torch-mish``: from a darknet cfg, an exported program or an ONNX file to a deployable engine.

Subcommands (``torch-mish SUBCOMMAND --help`` for each, with an example):

  export   a darknet .cfg, a .pt2 ExportedProgram or module:factory -> .onnx or .pt2
  build    any of those, or an .onnx file -> a TensorRT engine and a JSON report
  inspect  converter coverage, Mish layers and the TensorRT network's layers; an engine's layers
  triton   a Triton model repository (config.pbtxt + model.plan)
  bench    latency and throughput: PyTorch eager, torch.compile, TensorRT where it can run
  detect   images -> the same images with boxes and labels drawn, and COCO results (detections.json)
  train    a darknet cfg trained on a dataset in darknet's format -> checkpoints and darknet .weights
  val      COCO mAP@[.5:.95] and mAP@.5 of trained weights (the model, an ONNX file or an engine)

Everything goes through torch_mish's public API (torch_mish.darknet with its train and evaluate,
torch_mish.onnx, torch_mish.tensorrt.inspect and .network) and TensorRT's own runtime. Exit status: 0 done, 2 a usage
or input error (the message says how to fix it), 1 any other failure, 130 interrupted, 143 terminated.
Outputs are written to a temporary file next to the target and renamed into place, so a failed,
interrupted or terminated run leaves nothing behind (train keeps the checkpoints it has written:
--resume goes on from them).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from torch_mish.cli import bench, build, detect, export, flags, inspect, options, train, triton, val
from torch_mish.cli.console import first_line, quiet_libraries
from torch_mish.cli.outputs import Terminated, sigterm_unwinds
from torch_mish.cli.sources import import_scope

# One module per subcommand, in the order of the help. To add one (detect, say), write torch_mish/cli/detect.py
# with, as export.py has them:
#   - a docstring add_command reads as its help: "``torch-mish detect``: HELP.", the description, "example: ARGS";
#   - a frozen dataclass of its options: the groups it takes (ModelOptions, EngineOptions) and its own flags,
#     each field named by its flag's argparse dest (output_file() for an output file);
#   - register(subparsers) -> its parser: flags.add_command(subparsers, run), then its flags and groups' flags;
#   - run(options, console) -> the --json result: it loads the source (sources.load), calls the library, writes
#     through outputs.atomic, raises options.UsageError for what the user can fix;
# and list it here. Tests go in tests/cli/test_detect.py.
COMMANDS = (export, build, inspect, triton, bench, detect, train, val)
PROG = options.PROG


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=(__doc__ or "").replace("``", ""), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    subparsers = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    for command in COMMANDS:
        flags.add_common(command.register(subparsers))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    invocation = options.parse(build_parser(), argv)  # exits 2 with argparse's message on a malformed line
    verbose = invocation.console.verbose
    where = f"{PROG} {invocation.command}"
    try:
        with quiet_libraries(verbose), import_scope(), sigterm_unwinds():
            result = invocation.run(invocation.bind(), invocation.console)
    except Exception as exc:
        if not is_input_error(exc):
            return failure(where, exc, verbose)
        print(f"{where}: error: {first_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{where}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"{where}: terminated", file=sys.stderr)
        return 143
    if invocation.console.json:
        print(json.dumps(result, indent=1, default=str))
    return 0


def is_input_error(exc: Exception) -> bool:
    """A usage or input error (exit 2): the command's own, or the plugin library missing for what was asked."""
    plugin = sys.modules.get("torch_mish.tensorrt.plugin")
    return isinstance(exc, options.UsageError) or bool(plugin and isinstance(exc, plugin.PluginUnavailableError))


def failure(where: str, exc: BaseException, verbose: bool) -> int:
    """One line on stderr, exit 1; --verbose adds the traceback."""
    if verbose:
        import traceback

        traceback.print_exception(exc)
    hint = "" if verbose else " (rerun with --verbose for details)"
    print(f"{where}: error: {first_line(exc)}{hint}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
