"""torch_mish end to end on a darknet YOLO detector: the main job.

A small detector, yolov4-tiny with Mish in every layer (torch_mish's op), is trained with darknet's
loss on a synthetic darknet-format dataset of drawn shapes with exact labels (torch_mish.darknet.shapes,
seeded); its COCO mAP on held-out images is measured with pycocotools (darknet's evaluation thresholds,
its cfg's DIoU NMS), then the mAP of the same weights through every deploy path: eager PyTorch,
torch.compile, torch.export, AOTInductor, ONNX in onnxruntime and a TensorRT engine
(torch_mish.darknet.deploy). Engines of the network are built in both Mish lowerings where no TensorRT
runtime can run them, saying exactly what was skipped and why. Artifacts and summary.json go to --out.

    python examples/demo.py                     # CPU: a tiny run (the mAP of a few iterations is low)
    python examples/demo.py --device cuda       # GPU: 256x256, minutes
    python examples/demo.py --iterations 2000 --train-images 8000 --dtype bfloat16
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from torch import nn

import torch_mish
from torch_mish.darknet import PACKAGED_CFGS, Darknet, deploy, packaged_cfg
from torch_mish.darknet.data import DarknetDataset, read_data_config
from torch_mish.darknet.evaluate import evaluate
from torch_mish.darknet.shapes import make_shapes
from torch_mish.darknet.train import short_run_net, train

# (image side, training images, held-out images, iterations, batch): a GPU trains for minutes, a CPU a little
GPU_RUN = (256, 2000, 200, 600, 64)
CPU_RUN = (96, 48, 16, 12, 8)


def step(title: str) -> None:
    print(f"\n==> {title}", flush=True)


class Summary:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(
        self, path: str, where: str, status: str, metrics: Any = None, delta: float | None = None, note: str = ""
    ) -> None:
        row = {
            "path": path,
            "where": where,
            "status": status,
            "map": None,
            "map50": None,
            "delta_map": delta,
            "note": note,
        }
        if metrics is not None:
            row.update(map=round(metrics.map, 4), map50=round(metrics.map50, 4))
        self.rows.append(row)
        shown = f", mAP@[.5:.95] {row['map']:.4f}, mAP@.5 {row['map50']:.4f}" if metrics is not None else ""
        print(f"    {path}: {status}{shown}" + (f" — {note}" if note else ""), flush=True)

    def table(self) -> str:
        head = f"{'path':<26}{'where':<7}{'status':<18}{'mAP':>8}{'mAP@.5':>8}{'delta':>9}  note"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            m, m50 = (f"{r[k]:.4f}" if r[k] is not None else "-" for k in ("map", "map50"))
            d = f"{r['delta_map']:+.4f}" if r["delta_map"] is not None else "-"
            lines.append(f"{r['path']:<26}{r['where']:<7}{r['status']:<18}{m:>8}{m50:>8}{d:>9}  {r['note']}")
        return "\n".join(lines)


def mish_cfg(cfg: Path) -> str:
    """The cfg with Mish where it has leaky: the activation this project is for."""
    return cfg.read_text().replace("activation=leaky", "activation=mish")


def tensorrt_part(model: nn.Module, x: torch.Tensor, args: argparse.Namespace, out: Path, summary: Summary) -> None:
    """The network (rows out) lowered in each Mish lowering: compiled where an engine can run, else built."""
    if importlib.util.find_spec("torch_tensorrt") is None:
        for lowering in args.lowerings:
            summary.add(f"TensorRT engine ({lowering})", "-", "skipped", note="torch-tensorrt is not installed")
        return
    # torch-tensorrt's import logs what it cannot use (modelopt's quantization ops) and torch's
    # deprecations it trips: nothing this demo uses, so only errors are shown.
    for name in ("torch_tensorrt", "torch._opaque_base", "torch._library.opaque_object"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import torch_mish.tensorrt as mt  # first: it imports torch_tensorrt on a GPU-less host too

    torch_tensorrt = importlib.import_module("torch_tensorrt")
    tensorrt = importlib.import_module("tensorrt")  # after torch_tensorrt, which may alias tensorrt_rtx to it
    reason = mt.engine_runtime_unavailable_reason()
    flavour = f"{tensorrt.__name__} {tensorrt.__version__}"
    spec = torch_tensorrt.Input(
        min_shape=(1, *x.shape[1:]), opt_shape=tuple(x.shape), max_shape=(2 * x.shape[0], *x.shape[1:]), dtype=x.dtype
    )
    for lowering in args.lowerings:
        name = f"TensorRT engine ({lowering})"
        try:
            if reason is None:
                compiled = mt.compile(model, spec, lowering=lowering)
                mt.save(compiled, out / f"yolo_trt_{lowering}.ep", [x])
                summary.add(name, "GPU", "compiled", note=f"{flavour}; yolo_trt_{lowering}.ep (mAP: the tensorrt row)")
                continue
            try:
                report = mt.inspect.dry_run(model, spec, out / f"dryrun_{lowering}.txt", lowering=lowering)
            except mt.PluginUnavailableError as exc:
                note = f"{flavour}: {exc.reason.splitlines()[0]} Use --lowering native."
                summary.add(name, "cpu", "unsupported here", note=note)
                continue
            if not report.fully_converted:
                note = f"{report.coverage:.0f}% of ops convert, {report.engines} engines"
                summary.add(name, "cpu", "FAILED", note=note)
                continue
            engine = report.network.build_serialized_engine()
            (out / f"yolo_{lowering}.engine").write_bytes(engine)
            ((shapes,),) = [list(p.values()) for p in report.network.profiles()] or [[None]]
            profile = f"batch {shapes[0][0]}/{shapes[1][0]}/{shapes[2][0]} (min/opt/max)" if shapes else "static"
            note = (
                f"{len(engine) / 2**20:.1f} MB engine ({flavour}), {report.coverage:.0f}% of {report.total_ops} "
                f"ops, {report.mish_ops} Mish, 1 engine, profile {profile}; not run: {reason}"
            )
            summary.add(name, "cpu", "built", note=note)
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            summary.add(name, "-", "FAILED", note=str(exc).splitlines()[0])


def checked_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[Path, int]:
    """The cfg and the image size, or bad input stopped in one line before anything is written."""
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here; use --device cpu")
    defaults = GPU_RUN if args.device == "cuda" else CPU_RUN
    for name, default in zip(
        ("image_size", "train_images", "valid_images", "iterations", "batch"), defaults, strict=True
    ):
        if getattr(args, name) is None:
            setattr(args, name, default)
    if min(args.batch, args.iterations, args.train_images, args.valid_images) < 1:
        parser.error("--batch, --iterations, --train-images and --valid-images must be >= 1")
    unknown = set(args.paths) - set(deploy.PATHS)
    if unknown:
        parser.error(f"--paths {','.join(sorted(unknown))}: choose from {','.join(deploy.PATHS)}")
    try:
        cfg = Path(args.cfg) if Path(args.cfg).is_file() else packaged_cfg(args.cfg)
        Darknet(cfg).check_input_size(args.image_size, args.image_size)
    except ValueError as exc:  # CfgError is a ValueError; so is the size check
        parser.error(f"--image-size {exc}" if "does not fit" in str(exc) else f"--cfg {args.cfg}: {exc}")
    except OSError as exc:
        parser.error(f"--cfg {args.cfg}: {exc}")
    return cfg, args.image_size


def deploy_part(args: argparse.Namespace, cfg: Path, weights: Path, data: Path, out: Path, summary: Summary) -> None:
    """The trained weights' mAP through each deploy path, against eager float32."""
    config = read_data_config(data)
    dtype = getattr(torch, args.dtype)
    runs = [("eager", torch.float32)] + [(p, dtype) for p in args.paths if (p, dtype) != ("eager", torch.float32)]
    reference: float | None = None
    model = Darknet(cfg.read_text())  # the held-out set at the cfg's size, resized as the cfg says
    dataset = DarknetDataset.from_data(config, "valid", model, augment=False)
    example = torch.zeros(args.batch, 3, model.height, model.width)
    for path, run_dtype in runs:
        detector = deploy.trained_detector(cfg.read_text(), weights, run_dtype, args.device)
        name = f"{path} ({str(run_dtype).removeprefix('torch.')})"
        try:
            fn = deploy.detect_fn(path, detector, example, out / "deploy" / f"{path}_{run_dtype}")
            metrics = evaluate(fn, dataset, args.batch, args.device, config.class_names())
        except deploy.PathUnavailable as exc:
            summary.add(name, "-", "not run here", note=str(exc))
            continue
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            summary.add(name, args.device, "FAILED", note=str(exc).splitlines()[0])
            continue
        delta = None if reference is None else metrics.map - reference
        summary.add(name, args.device, "ran", metrics, delta, f"{metrics.images} images")
        reference = metrics.map if reference is None else reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "float16", "bfloat16"],
        help="the weights' dtype on the deploy paths (training: bf16 autocast on a GPU)",
    )
    parser.add_argument(
        "--cfg",
        default="yolov4-tiny",
        help="a darknet .cfg path or a packaged one "
        f"({', '.join(c.removesuffix('.cfg') for c in PACKAGED_CFGS)}); its leaky layers become Mish",
    )
    parser.add_argument(
        "--image-size", type=int, help=f"square input size, a multiple of 32 (GPU {GPU_RUN[0]}, CPU {CPU_RUN[0]})"
    )
    parser.add_argument(
        "--train-images", type=int, help=f"synthetic training images (GPU {GPU_RUN[1]}, CPU {CPU_RUN[1]})"
    )
    parser.add_argument("--valid-images", type=int, help=f"held-out images (GPU {GPU_RUN[2]}, CPU {CPU_RUN[2]})")
    parser.add_argument("--iterations", type=int, help=f"training iterations (GPU {GPU_RUN[3]}, CPU {CPU_RUN[3]})")
    parser.add_argument("--batch", type=int, help=f"images per iteration (GPU {GPU_RUN[4]}, CPU {CPU_RUN[4]})")
    parser.add_argument(
        "--paths",
        type=lambda s: s.split(","),
        default=list(deploy.PATHS),
        help=f"deploy paths whose mAP is measured (default: all of {','.join(deploy.PATHS)})",
    )
    parser.add_argument("--lowering", default="both", choices=["native", "plugin", "both"])
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    args = parser.parse_args()
    args.lowerings = ["native", "plugin"] if args.lowering == "both" else [args.lowering]
    cfg, image = checked_args(parser, args)
    args.out.mkdir(parents=True, exist_ok=True)
    for stale in ("summary.json", "train", "*.engine", "dryrun_*.txt", "*.ep"):
        for path in args.out.glob(stale):  # a failed step must not leave a previous run's file behind
            if path.is_file():
                path.unlink()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    summary = Summary()
    t0 = time.perf_counter()
    print(
        f"torch_mish {torch_mish.__version__} | torch {torch.__version__} | device {args.device}"
        + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else "")
        + f" | cfg {cfg.name} with Mish | out {args.out}"
    )

    step(f"1/4 a synthetic darknet dataset: {args.train_images} + {args.valid_images} images of drawn shapes")
    data = make_shapes(args.out / "shapes", args.train_images, args.valid_images, image, seed=0)
    print(f"    {data}")

    amp = "bf16" if args.device == "cuda" else None
    step(
        f"2/4 train {args.iterations} iterations of {args.batch} images with darknet's loss"
        + (" (bf16 autocast)" if amp else "")
    )
    result = train(
        mish_cfg(cfg),
        data,
        args.out / "train",
        max_batches=args.iterations,
        image_size=image,
        device=args.device,
        amp=amp,
        workers=2,
        net_overrides=short_run_net(args.iterations, args.batch),
    )
    losses = [s.loss for s in result.history]
    print(
        f"    loss {losses[0]:.4g} at iteration 1, {losses[-1]:.4g} at {len(losses)}; {result.seconds:.0f} s;"
        f" weights {result.weights}"
    )
    if result.iterations < 300:  # what the mAP below can and cannot show
        print(
            f"    ({result.iterations} iterations train a detector only a little: its mAP is low; what the next step"
            " checks is that every deploy path gives the same mAP as eager. A GPU run trains for minutes.)"
        )

    step(f"3/4 mAP of the trained weights through every deploy path ({args.dtype}; eager float32 the reference)")
    deploy_part(args, result.cfg, result.weights, data, args.out, summary)

    step("4/4 TensorRT engines of the network: " + ", ".join(args.lowerings) + " lowering")
    model = Darknet(result.cfg.read_text())
    model.load_darknet_weights(result.weights)
    dtype = getattr(torch, args.dtype)
    model = model.eval().to(args.device, dtype)
    tensorrt_part(
        model, torch.zeros(args.batch, 3, image, image, device=args.device, dtype=dtype), args, args.out, summary
    )

    print(f"\nSummary ({time.perf_counter() - t0:.0f} s; artifacts in {args.out}):\n")
    print(summary.table())
    (args.out / "summary.json").write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "losses": losses,
                "iterations": result.iterations,
                "train_seconds": result.seconds,
                "rows": summary.rows,
            },
            indent=1,
        )
    )
    if any(r["status"] == "FAILED" for r in summary.rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
