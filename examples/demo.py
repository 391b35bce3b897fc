"""torch_mish end to end on a darknet YOLO detector: the main job.

A darknet cfg (default: yolov4-csp, 112 Mish layers; optional trained --weights) is built with
torch_mish.darknet, trained a few steps on synthetic data, checked against nn.Mish on the same
weights, exported (torch.export, and plain torch.onnx.export run in onnxruntime), and lowered to
TensorRT in both lowerings: compiled and run where a TensorRT runtime can run engines, otherwise built
into engines on the CPU with what is installed (TensorRT-RTX), saying exactly what was skipped and
why. Artifacts and summary.json go to --out.

    python examples/demo.py                                  # CPU: yolov4-csp at 128x128
    python examples/demo.py --cfg yolov4-tiny --image-size 256
    python examples/demo.py --device cuda --dtype bfloat16 --steps 20 --weights yolov4-csp.weights
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import logging
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import torch_mish
from torch_mish._timing import median, time_calls
from torch_mish.darknet import PACKAGED_CFGS, Darknet, packaged_cfg

CPU_IMAGE_SIZE = 128  # on a CPU the demo runs small; on a GPU at the cfg's own size


def progress(items: Iterable[Any], total: int, desc: str) -> Iterable[Any]:
    if importlib.util.find_spec("tqdm") is not None:
        from tqdm import tqdm

        return tqdm(items, total=total, desc=desc, file=sys.stdout, dynamic_ncols=True)
    return items


def step(title: str) -> None:
    print(f"\n==> {title}", flush=True)


def timed(fn: Callable[[], Any], device: str, repeats: int = 10) -> tuple[Any, float]:
    out = fn()
    return out, median(time_calls(fn, device, iters=repeats))


def max_error(got: Any, expected: Any) -> float:
    got = got if isinstance(got, (list, tuple)) else [got]
    expected = expected if isinstance(expected, (list, tuple)) else [expected]
    return max(
        (torch.as_tensor(g).double().cpu() - torch.as_tensor(e).double().cpu()).abs().max().item()
        for g, e in zip(got, expected, strict=True)
    )


class Summary:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(
        self, path: str, where: str, status: str, ms: float | None = None, err: float | None = None, note: str = ""
    ) -> None:
        self.rows.append(
            {"path": path, "where": where, "status": status, "latency_ms": ms, "max_abs_err": err, "note": note}
        )
        print(
            f"    {path}: {status}"
            + (f", {ms:.2f} ms" if ms is not None else "")
            + (f", max |err| {err:.2e}" if err is not None else "")
            + (f" — {note}" if note else ""),
            flush=True,
        )

    def table(self) -> str:
        head = f"{'path':<34}{'where':<10}{'status':<18}{'ms':>9}{'max|err|':>11}  note"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            ms = f"{r['latency_ms']:.2f}" if r["latency_ms"] is not None else "-"
            err = f"{r['max_abs_err']:.2e}" if r["max_abs_err"] is not None else "-"
            lines.append(f"{r['path']:<34}{r['where']:<10}{r['status']:<18}{ms:>9}{err:>11}  {r['note']}")
        return "\n".join(lines)


def train(model: nn.Module, args: argparse.Namespace, image: int) -> list[float]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    gen = torch.Generator(device=args.device).manual_seed(0)
    autocast = torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.device == "cuda")
    losses = []
    model.train()
    for _ in progress(range(args.steps), args.steps, "training"):
        x = torch.randn(args.batch, 3, image, image, device=args.device, generator=gen)
        with autocast:
            outputs = model(x)
            loss = sum(F.mse_loss(o.float(), torch.zeros_like(o, dtype=torch.float32)) for o in outputs)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def tensorrt_part(
    model: nn.Module, x: torch.Tensor, args: argparse.Namespace, out: Path, summary: Summary, expected: Any
) -> None:
    if importlib.util.find_spec("torch_tensorrt") is None:
        for lowering in args.lowerings:
            summary.add(f"TensorRT ({lowering})", "-", "skipped", note="torch-tensorrt is not installed")
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
    batch = x.shape[0]
    spec = torch_tensorrt.Input(
        min_shape=(1, *x.shape[1:]),
        opt_shape=tuple(x.shape),
        max_shape=(max(batch, 2) * 2, *x.shape[1:]),
        dtype=x.dtype,
    )
    for lowering in args.lowerings:
        name = f"TensorRT ({lowering})"
        try:
            if reason is None:
                compiled = mt.compile(model, [x], lowering=lowering)
                got, ms = timed(lambda c=compiled: c(x), args.device)
                mt.save(compiled, out / f"yolo_trt_{lowering}.ep", [x])
                summary.add(
                    name, "GPU", "ran", ms, max_error(got, expected), f"{flavour}; saved yolo_trt_{lowering}.ep"
                )
                continue
            try:
                report = mt.inspect.dry_run(model, spec, out / f"dryrun_{lowering}.txt", lowering=lowering)
            except mt.PluginUnavailableError as exc:
                summary.add(
                    name,
                    "cpu",
                    "unsupported here",
                    note=f"{flavour}: {exc.reason.splitlines()[0]} Use --lowering native.",
                )
                continue
            if not report.fully_converted:
                summary.add(
                    name, "cpu", "FAILED", note=f"{report.coverage:.0f}% of ops convert, {report.engines} engines"
                )
                continue
            engine = report.network.build_serialized_engine()
            (out / f"yolo_{lowering}.engine").write_bytes(engine)
            ((shapes,),) = [list(p.values()) for p in report.network.profiles()] or [[None]]
            profile = f"batch {shapes[0][0]}/{shapes[1][0]}/{shapes[2][0]} (min/opt/max)" if shapes else "static"
            summary.add(
                name,
                "cpu",
                "built",
                note=(
                    f"{len(engine) / 2**20:.1f} MB engine ({flavour}), {report.coverage:.0f}% of {report.total_ops} "
                    f"ops, {report.mish_ops} Mish, 1 engine, profile {profile}; not run: {reason}"
                ),
            )
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            summary.add(name, "-", "FAILED", note=str(exc).splitlines()[0])


def checked_model(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[Path, Darknet, int]:
    """The cfg, its model and the image size, or bad input stopped in one line before anything is written."""
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here; use --device cpu")
    if args.batch < 1 or args.steps < 0:
        parser.error("--batch must be >= 1 and --steps >= 0")
    torch.manual_seed(0)  # the same random weights on every run
    try:
        cfg = Path(args.cfg) if Path(args.cfg).is_file() else packaged_cfg(args.cfg)
        model = Darknet(cfg)
    except (ValueError, OSError) as exc:  # CfgError is a ValueError
        parser.error(f"--cfg {args.cfg}: {exc}")
    image = args.image_size or (max(model.height, model.width) if args.device == "cuda" else CPU_IMAGE_SIZE)
    try:
        model.check_input_size(image, image)
    except ValueError as exc:
        parser.error(f"--image-size {exc}")
    return cfg, model, image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "float16", "bfloat16"],
        help="inference dtype for the comparisons and TensorRT (training uses bf16 autocast on GPU)",
    )
    parser.add_argument(
        "--cfg",
        default="yolov4-csp",
        help=f"a darknet .cfg path or a packaged one ({', '.join(c.removesuffix('.cfg') for c in PACKAGED_CFGS)})",
    )
    parser.add_argument("--weights", type=Path, help="darknet .weights for the cfg (default: random initialization)")
    parser.add_argument(
        "--image-size",
        type=int,
        help=f"square input size, a multiple of 32 (default: the cfg's on GPU, {CPU_IMAGE_SIZE} on CPU)",
    )
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="training steps")
    parser.add_argument("--lowering", default="both", choices=["native", "plugin", "both"])
    parser.add_argument("--checkpoint", type=Path, help="load weights (state_dict) instead of random init")
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    args = parser.parse_args()
    args.lowerings = ["native", "plugin"] if args.lowering == "both" else [args.lowering]
    cfg, model, image = checked_model(parser, args)
    dtype = getattr(torch, args.dtype)
    args.out.mkdir(parents=True, exist_ok=True)
    for stale in ("summary.json", "yolo.pt2", "yolo.onnx", "checkpoint.pt", "*.engine", "dryrun_*.txt", "*.ep"):
        for path in args.out.glob(stale):  # a failed step must not leave a previous run's file behind
            path.unlink()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    summary = Summary()
    t0 = time.perf_counter()
    print(
        f"torch_mish {torch_mish.__version__} | torch {torch.__version__} | device {args.device}"
        + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else "")
        + f" | cfg {cfg.name} | out {args.out}"
    )

    step(f"1/6 build {cfg.name} with torch_mish.darknet" + (f", load {args.weights}" if args.weights else ""))
    if args.weights:
        model.load_darknet_weights(args.weights)
    if args.checkpoint:
        model.load_state_dict(torch.load(args.checkpoint, map_location="cpu"))
    convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    n_mish = sum(isinstance(m, torch_mish.Mish) for m in model.modules())
    model = model.to(args.device)
    print(
        f"    {convs} convolutions, {n_mish} torch_mish.Mish layers, {len(model.yolo_layers)} [yolo] heads;"
        f" image {image}"
    )

    step(f"2/6 train {args.steps} steps on synthetic data" + (" (bf16 autocast)" if args.device == "cuda" else ""))
    losses = train(model, args, image)
    if losses:  # random inputs and all-zero targets: this checks that training runs, it learns nothing
        print(
            f"    loss {losses[0]:.5f} at step 1, {losses[-1]:.5f} at step {len(losses)} (random images, all-zero "
            "targets: this checks that forward, backward and the optimizer step run; it trains no detector)"
        )
    else:
        print("    (no steps)")
    torch.save(model.state_dict(), args.out / "checkpoint.pt")

    step("3/6 torch_mish against nn.Mish on the same weights (eval)")
    model.eval().to(dtype)
    reference = torch_mish.revert_mish(copy.deepcopy(model))
    x = torch.randn(args.batch, 3, image, image, device=args.device, dtype=dtype)
    with torch.no_grad():
        expected, ms_ref = timed(lambda: reference(x), args.device)
        got, ms_ours = timed(lambda: model(x), args.device)
    summary.add("PyTorch eager, nn.Mish", args.device, "ran", ms_ref, 0.0, "reference")
    summary.add("PyTorch eager, torch_mish", args.device, "ran", ms_ours, max_error(got, expected))

    step("4/6 torch.export (keeps torch.ops.mish.mish), save, reload, run")
    batch_dim = torch.export.Dim("batch", min=1, max=64)
    ep = torch.export.export(model, (x,), dynamic_shapes=({0: batch_dim},))
    n_ops = sum(n.target == torch.ops.mish.mish.default for n in ep.graph.nodes)
    torch.export.save(ep, args.out / "yolo.pt2")
    loaded = torch.export.load(args.out / "yolo.pt2").module()
    with torch.no_grad():
        out_ep, ms_ep = timed(lambda: loaded(x), args.device)
    summary.add(
        "torch.export (reloaded)",
        args.device,
        "ran",
        ms_ep,
        max_error(out_ep, expected),
        f"{n_ops} torch.ops.mish.mish nodes; yolo.pt2",
    )

    step("5/6 ONNX (standard Mish op) in onnxruntime")
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnxscript"):
        import onnxruntime as ort

        cpu_model = copy.deepcopy(model).float().cpu()
        x_cpu = x.float().cpu()
        onnx_path = args.out / "yolo.onnx"
        try:
            # Plain torch.onnx.export: importing torch_mish registered the op with it.
            torch.onnx.export(
                cpu_model, (x_cpu,), onnx_path, dynamic_shapes=({0: batch_dim},), external_data=False, verbose=False
            )
            session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
            feed = {session.get_inputs()[0].name: x_cpu.numpy()}
            with torch.no_grad():
                ref_cpu = cpu_model(x_cpu)
            out_ort, ms_ort = timed(lambda: session.run(None, feed), "cpu", repeats=3)
            summary.add(
                "ONNX in onnxruntime",
                "cpu",
                "ran",
                ms_ort,
                max_error(out_ort, ref_cpu),
                "yolo.onnx (vs PyTorch fp32 on CPU)",
            )
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            summary.add("ONNX in onnxruntime", "cpu", "FAILED", note=str(exc).splitlines()[0])
    else:
        summary.add("ONNX in onnxruntime", "-", "skipped", note="onnxruntime/onnxscript not installed")

    step("6/6 TensorRT: " + ", ".join(args.lowerings) + " lowering")
    tensorrt_part(model, x, args, args.out, summary, expected)

    print(f"\nSummary ({time.perf_counter() - t0:.0f} s; artifacts in {args.out}):\n")
    print(summary.table())
    (args.out / "summary.json").write_text(
        json.dumps(
            {"args": {k: str(v) for k, v in vars(args).items()}, "losses": losses, "rows": summary.rows}, indent=1
        )
    )
    if any(r["status"] == "FAILED" for r in summary.rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
