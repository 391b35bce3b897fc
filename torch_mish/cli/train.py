"""``torch-mish train``: train a darknet cfg on a dataset in darknet's format.

Train CFG on the train list of obj.data with darknet's loss ([yolo] sections), its SGD (momentum, decay) and
learning-rate rules (burn_in, policy, steps/scales), batch/subdivisions as gradient accumulation, darknet's
augmentations, BatchNorm-Mish fused (--no-fuse: kept apart) and --amp autocast
(torch_mish.darknet.train.train). The cfg's classes and filters are set to the data's classes.

Writes into DIR: NAME.cfg (the cfg trained), NAME_last.pt (model, optimizer, iteration: --resume takes it)
and NAME_last.weights every 100 iterations and at the end, NAME_final.weights (darknet .weights: darknet and
torch-mish val/export/build load them), NAME_ema.weights where the cfg sets ema_alpha. --weights starts
from darknet .weights (a backbone's, or an earlier run's: training goes on at the iteration its header
counts, unless --clear). With torchrun, one process per GPU (DistributedDataParallel): --batch is the
images of an iteration over all processes.

example: yolov4-tiny.cfg --data shapes/obj.data --epochs 30 --batch 64 --subdivisions 2 -o runs/tiny
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch_mish.cli import sources
from torch_mish.cli.console import Console, first_line
from torch_mish.cli.flags import add_command, add_data_arg, add_device_arg, int_at_least
from torch_mish.cli.options import UsageError, image_size_field, output_dir

AMP = {"bfloat16": "bf16", "float16": "fp16"}


@dataclass(frozen=True)
class TrainOptions:
    src: str
    data: Path
    output: Path  # the directory, created if missing
    weights: Path | None
    epochs: float | None
    max_batches: int | None
    batch: int | None
    subdivisions: int | None
    image_size: tuple[int, int] | None = image_size_field()
    device: str
    amp: str | None
    no_fuse: bool
    compile: bool
    workers: int
    seed: int
    resume: Path | None
    clear: bool


def register(subparsers: Any) -> Any:
    p = add_command(subparsers, run, cfg_only=True)
    add_data_arg(p, "train")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="where the cfg and checkpoints go")
    p.add_argument(
        "--weights",
        help="darknet .weights to start from; training goes on at the iteration its header counts (see --clear)",
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=float, help="passes over the train list (default: the cfg's max_batches)")
    length.add_argument("--max-batches", type=int_at_least(1), metavar="N", help="iterations (the cfg's max_batches)")
    p.add_argument("--batch", type=int_at_least(1), help="images per iteration (default: the cfg's [net] batch)")
    p.add_argument("--subdivisions", type=int_at_least(1), help="passes per iteration (default: the cfg's)")
    p.add_argument("--image-size", help="network input H or HxW (default: the cfg's [net] size)")
    add_device_arg(p)
    p.add_argument("--amp", choices=tuple(AMP), help="autocast to this dtype (float16 with gradient scaling)")
    p.add_argument(
        "--no-fuse", action="store_true", help="keep BatchNorm and Mish apart (torch_mish.fuse_batchnorm_mish)"
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--workers", type=int_at_least(0), default=2, help="data loading processes")
    p.add_argument("--seed", type=int, default=0, help="the image order's and augmentations' seed")
    p.add_argument("--resume", metavar="LAST.pt", help="go on from a NAME_last.pt of an earlier run")
    p.add_argument("--clear", action="store_true", help="with --weights: start at iteration 0 (darknet's -clear)")
    return p


def run(options: TrainOptions, console: Console) -> dict[str, Any]:
    from torch_mish.darknet import CfgError, Darknet, WeightsError
    from torch_mish.darknet.data import AugmentError, DataError
    from torch_mish.darknet.loss import LossOptionError
    from torch_mish.darknet.train import TrainOptionError, train

    name, cfg = sources.cfg_path(options.src)
    check_flags(options)
    out = output_dir(options.output, "the checkpoints")
    device = sources.resolve_device(options.device)
    if options.image_size is not None:  # the one size rule, before any data is read
        try:
            model = Darknet(cfg)
        except CfgError as exc:
            raise UsageError(f"{exc} (fix the cfg at that line)") from None
        sources.check_image_size(model, options.image_size)
    rank = int(os.environ.get("RANK", "0"))  # torchrun: process 0 shows the progress and the summary
    try:
        result = train(
            cfg,
            options.data,
            out,
            weights=options.weights,
            clear=options.clear,
            resume=options.resume,
            epochs=options.epochs,
            max_batches=options.max_batches,
            batch=options.batch,
            subdivisions=options.subdivisions,
            image_size=options.image_size,
            device=device,
            amp=AMP.get(options.amp or ""),
            fuse=not options.no_fuse,
            compile=options.compile,
            workers=options.workers,
            seed=options.seed,
            progress=not console.quiet,
        )
    except (CfgError, WeightsError, DataError, AugmentError, LossOptionError, TrainOptionError) as exc:
        raise UsageError(f"{first_line(exc)}") from None
    except ValueError as exc:  # the run's length or batch does not fit the cfg or the data
        message = first_line(exc)
        if message.startswith("nothing to train"):
            raise UsageError(f"{name}: its max_batches is 0; give --epochs or --max-batches") from None
        if "fewer than one iteration" in message or "is not divisible by subdivisions" in message:
            raise UsageError(f"{message}; change --batch or --subdivisions") from None
        raise
    last = result.history[-1] if result.history else None
    if rank == 0:
        loss = f", loss {last.loss:.4g}" if last is not None else ""
        console.info(
            f"trained {name}: {result.iterations} iterations, {result.seen} images in {result.seconds:.1f} s{loss}; "
            f"wrote {result.weights} and {result.checkpoint}"
        )
    return {
        "source": name,
        "cfg": str(result.cfg),
        "weights": str(result.weights),
        "checkpoint": str(result.checkpoint),
        "iterations": result.iterations,
        "steps": len(result.history),  # iterations this run (--resume and --weights go on from an earlier one)
        "seen": result.seen,
        "seconds": result.seconds,
        "loss": None if last is None else last.loss,
        "loss_parts": None
        if last is None
        else {"box": last.box, "objectness": last.objectness, "classes": last.classes},
        "device": device,
        "amp": options.amp,
        "fused": not options.no_fuse,
    }


def check_flags(options: TrainOptions) -> None:
    """Files that must exist, and flags that go together, before a model is built or an image read."""
    sources.check_exists(str(options.data), "give darknet's obj.data of the dataset (classes=, train=, names=)")
    if options.weights is not None:
        sources.check_exists(str(options.weights), "give the .weights file to start from")
    if options.resume is not None:
        sources.check_exists(str(options.resume), "give the NAME_last.pt of the run to go on with")
        if options.weights is not None:
            raise UsageError("--resume and --weights: a _last.pt holds the weights already; give one of them")
    if options.clear and options.weights is None:
        raise UsageError("--clear starts --weights at iteration 0; it goes with --weights")
    if options.epochs is not None and not options.epochs > 0:
        raise UsageError(f"--epochs {options.epochs:g}: a number of passes > 0, e.g. --epochs 30")
    if options.batch is not None and options.subdivisions is not None and options.batch % options.subdivisions:
        raise UsageError(
            f"--batch {options.batch} --subdivisions {options.subdivisions}: the batch must divide into the "
            "subdivisions"
        )
