"""A detector trained for real, and its accuracy carried through every deploy path.

yolov4-tiny with its activations made Mish (torch_mish's op in every layer) is trained with darknet's
loss on the synthetic shapes set (torch_mish.darknet.shapes: drawn shapes with exact labels, seeded),
then its COCO mAP (pycocotools, darknet's evaluation thresholds and its cfg's NMS) is measured on the
held-out split through eager PyTorch, torch.compile, torch.export, AOTInductor, ONNX in onnxruntime
and a TensorRT engine (torch_mish.darknet.deploy), for float32, float16 and bfloat16 weights.

    python benchmarks/bench_accuracy.py [--iterations 6000] [--budget-s 540]   # a GPU, one gpu_run.sh call
    python benchmarks/bench_accuracy.py --quick                                # a CPU smoke run
    python benchmarks/bench_accuracy.py --paths eager --keep trained           # train, keep the model
    python benchmarks/bench_accuracy.py --trained trained                      # measure it, train nothing

The training length is --iterations, cut to what fits --train-budget-s at the speed measured on the
first iterations (the steps actually trained are in the results). Paths that cannot run here are rows
saying why; after --budget-s (the whole run) the remaining paths are rows saying so. Writes
benchmarks/results/{--out-name, default accuracy}.{csv,md,env.json}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
from common import commit, environment, markdown_table, write_table

from torch_mish.darknet import Darknet, packaged_cfg
from torch_mish.darknet import deploy as deploy_paths
from torch_mish.darknet.data import DarknetDataset, read_data_config
from torch_mish.darknet.evaluate import darknet_eval_settings, evaluate
from torch_mish.darknet.shapes import make_shapes
from torch_mish.darknet.train import short_run_net, train

TARGET_MAP50 = 0.90
TOLERANCE = 0.002  # each path's mAP against eager float32
COLUMNS = {
    "path": "path",
    "dtype": "dtype",
    "mAP@[.5:.95]": "map",
    "mAP@.5": "map50",
    "delta vs eager fp32": "delta_map",
    "status": "status",
}
COMPILE_COST = {"eager": 0, "export": 1, "onnx": 2, "tensorrt": 3, "compile": 4, "aoti": 5}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def mish_tiny_cfg() -> str:
    """yolov4-tiny with Mish where the cfg has leaky: the network this project is for."""
    return packaged_cfg("yolov4-tiny").read_text().replace("activation=leaky", "activation=mish")


def _shard(args: tuple[Path, int, int, int, int]) -> Path:
    root, n_train, n_val, size, seed = args
    return make_shapes(root, n_train, n_val, size, seed)


def make_dataset(root: Path, n_train: int, n_val: int, size: int, seed: int, shards: int) -> Path:
    """The shapes set drawn in ``shards`` processes (each its own seed), joined into one obj.data."""
    shards = max(1, min(shards, n_train, max(n_val, 1)))
    jobs = [
        (
            root / f"shard{i}",
            n_train // shards + (i < n_train % shards),
            n_val // shards + (i < n_val % shards),
            size,
            seed * 1000 + i,
        )
        for i in range(shards)
    ]
    with ProcessPoolExecutor(shards) as pool:
        datas = list(pool.map(_shard, jobs))
    for split in ("train", "valid"):
        lines = [
            str((d.parent / line).resolve()) for d in datas for line in (d.parent / f"{split}.txt").read_text().split()
        ]
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    (root / "obj.names").write_text((datas[0].parent / "obj.names").read_text())
    data = root / "obj.data"
    classes = read_data_config(datas[0]).classes
    data.write_text(
        f"classes = {classes}\ntrain = {root / 'train.txt'}\nvalid = {root / 'valid.txt'}\n"
        f"names = {root / 'obj.names'}\n"
    )
    return data


def train_detector(args: argparse.Namespace, data: Path, work: Path, device: str) -> dict[str, Any]:
    cfg = mish_tiny_cfg()
    common = dict(
        image_size=args.size, device=device, amp=args.amp, workers=args.workers, seed=args.seed, progress=not args.quick
    )
    iterations = args.iterations
    if args.probe_iterations and not args.quick:  # the speed, data loading included, on a short run
        ended: list[float] = []  # when each probe iteration ended; the first half warms up (workers, cuDNN)
        train(
            cfg,
            data,
            work / "probe",
            max_batches=args.probe_iterations,
            net_overrides=short_run_net(args.probe_iterations, args.batch),
            **(common | {"progress": lambda _stats: ended.append(time.perf_counter())}),
        )
        half = len(ended) // 2
        per_it = (ended[-1] - ended[half]) / max(1, len(ended) - 1 - half)
        fits = int(args.train_budget_s / per_it)
        print(f"probe: {per_it * 1e3:.0f} ms/iteration (data loading included): {fits} fit the training budget")
        iterations = max(args.probe_iterations, min(iterations, fits))
    result = train(
        cfg, data, work / "train", max_batches=iterations, net_overrides=short_run_net(iterations, args.batch), **common
    )
    return {
        "cfg": result.cfg,
        "weights": result.weights,
        "iterations": result.iterations,
        "seen": result.seen,
        "seconds": result.seconds,
        "batch": args.batch,
    }


def measure(
    args: argparse.Namespace,
    trained: dict[str, Any],
    data: Path,
    work: Path,
    device: str,
    deadline: float,
    save: Callable[[list[dict[str, Any]]], None],
) -> list[dict[str, Any]]:
    config = read_data_config(data)
    cfg = trained["cfg"].read_text()
    model = Darknet(cfg)  # the held-out set's size and resizing are the cfg's: one dataset for every row
    letterbox = darknet_eval_settings(model)["letterbox"]
    dataset = DarknetDataset.from_data(config, "valid", model, augment=False)
    example = torch.zeros(args.eval_batch, 3, model.height, model.width)
    rows: list[dict[str, Any]] = []
    reference: float | None = None
    # eager float32 (the reference) first, then the paths that compile least: a run cut by its budget
    # leaves out the slowest paths' rows, not whole dtypes
    runs = [(p, d) for p in args.paths.split(",") for d in args.dtypes.split(",")]
    runs.sort(key=lambda r: (r != ("eager", "float32"), COMPILE_COST.get(r[0], 0)))
    for path, dtype_name in runs:
        row: dict[str, Any] = {"path": path, "dtype": dtype_name}
        rows.append(row)
        if time.monotonic() > deadline:
            row["status"] = "not run: past the run's --budget-s"
            continue
        detector = deploy_paths.trained_detector(cfg, trained["weights"], DTYPES[dtype_name], device, args.max_det)
        started = time.perf_counter()
        try:
            detect = deploy_paths.detect_fn(path, detector, example, work / f"{path}_{dtype_name}")
            metrics = evaluate(detect, dataset, args.eval_batch, device, config.class_names(), args.workers)
        except deploy_paths.PathUnavailable as exc:
            row["status"] = f"not run: {exc}"
            continue
        except Exception as exc:  # one path failing is a row, not the end of the run
            traceback.print_exc()
            row["status"] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            continue
        row.update(
            map=round(metrics.map, 5),
            map50=round(metrics.map50, 5),
            images=metrics.images,
            detections=metrics.detections,
            letterbox=letterbox,
            seconds=round(time.perf_counter() - started, 1),
        )
        if path == "eager" and dtype_name == "float32":
            reference = metrics.map
        if reference is not None:
            row["delta_map"] = round(metrics.map - reference, 5)
            row["status"] = "ok" if abs(metrics.map - reference) <= TOLERANCE else f"outside {TOLERANCE}"
        print(json.dumps(row), flush=True)
        save(rows)  # after each row: a run cut short keeps what it measured
    return rows


def markdown(rows: list[dict[str, Any]], trained: dict[str, Any], args: argparse.Namespace) -> str:
    summary = (
        f"yolov4-tiny (Mish) trained {trained['iterations']} iterations of batch {trained['batch']} "
        f"({trained['seen']} images seen) in {trained['seconds']:.0f} s, {args.amp or 'float32'} autocast, "
        f"at {args.size}x{args.size} on {args.train} synthetic shapes images; evaluated on {args.valid} held-out "
        f"images (pycocotools, darknet's evaluation thresholds and its cfg's NMS). Target: mAP@.5 >= {TARGET_MAP50} "
        f"and every path within {TOLERANCE} mAP@[.5:.95] of eager float32."
    )
    return f"{summary}\n\n{markdown_table(rows, COLUMNS)}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a CPU smoke run: a few images and iterations")
    p.add_argument("--train", type=int, default=8000, help="training images")
    p.add_argument("--valid", type=int, default=500, help="held-out images")
    p.add_argument("--size", type=int, default=256, help="network input side (and the images' mean side)")
    p.add_argument("--iterations", type=int, default=6000, help="at most; --train-budget-s may cut them")
    p.add_argument("--probe-iterations", type=int, default=40)
    p.add_argument("--batch", type=int, default=32, help="images an iteration (more updates in the budget than 64)")
    p.add_argument("--amp", default="bf16", help="autocast for training: bf16, fp16, or '' for float32")
    p.add_argument("--train-budget-s", type=float, default=240.0)
    p.add_argument("--budget-s", type=float, default=540.0, help="the whole run, dataset and training included")
    p.add_argument("--paths", default=",".join(deploy_paths.PATHS))
    p.add_argument("--dtypes", default=",".join(DTYPES))
    p.add_argument("--eval-batch", type=int, default=32)
    p.add_argument("--max-det", type=int, default=300)
    p.add_argument("--workers", type=int, default=min(12, os.cpu_count() or 1))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-name", default="accuracy")
    p.add_argument("--keep", type=Path, help="copy the trained cfg and .weights (and training.json) into this folder")
    p.add_argument("--trained", type=Path, help="a --keep folder of an earlier run: measure it, train nothing")
    args = p.parse_args()
    deadline = time.monotonic() + args.budget_s
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.quick:
        args.train, args.valid, args.size, args.iterations, args.batch, args.amp = 16, 8, 64, 2, 4, ""
        args.paths, args.dtypes, args.eval_batch, args.workers = "eager,export,onnx", "float32", 4, 0
        args.out_name = args.out_name if args.out_name != "accuracy" else ""
    args.amp = args.amp or None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        data = make_dataset(work / "shapes", args.train, args.valid, args.size, args.seed, args.workers or 1)
        print(f"dataset: {args.train} + {args.valid} images in {time.perf_counter() - t0:.0f} s", flush=True)
        if args.trained:  # the same seed and --train/--valid/--size/--workers give the same held-out set
            trained = json.loads((args.trained / "training.json").read_text())
            trained.update(cfg=args.trained / "model.cfg", weights=args.trained / "model_final.weights")
        else:
            trained = train_detector(args, data, work, device)
        print(f"trained {trained['iterations']} iterations in {trained['seconds']:.0f} s", flush=True)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for f in (trained["cfg"], trained["weights"]):
                shutil.copy(f, args.keep / Path(f).name)
            info = {k: v for k, v in trained.items() if k not in ("cfg", "weights")}
            (args.keep / "training.json").write_text(json.dumps(info | {"commit": commit()}))
        save = results_writer(args, trained, device)
        rows = measure(args, trained, data, work, device, deadline, save)
    save(rows)
    print(markdown(rows, trained, args))


def results_writer(args: argparse.Namespace, trained: dict[str, Any], device: str) -> Callable[[list], None]:
    """Writes the results files (a GPU run, not --quick); a CPU or --quick run writes nothing."""
    if device == "cpu" or not args.out_name:
        print("(a CPU or --quick run: no results written)")
        return lambda rows: None
    env = environment()
    env.update(training=json.dumps({k: str(v) for k, v in trained.items() if k not in ("cfg", "weights")}))
    return lambda rows: write_table(args.out_name, rows, env, markdown(rows, trained, args))


if __name__ == "__main__":
    main()
