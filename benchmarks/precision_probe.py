"""Where a trained darknet model's low-precision forward departs from float32, layer by layer.

    python benchmarks/precision_probe.py KEPT [--dtype float16] [--data obj.data]

KEPT is a folder written by ``bench_accuracy.py --keep`` (model.cfg, model_final.weights). The
model runs once in float32 and once in --dtype on 16 held-out images (--data's valid list, or a
fresh synthetic shapes set); each layer's largest float32 magnitude, largest difference and count of
non-finite low-precision values are printed, then how many rows clear darknet's mAP threshold (0.005)
in each precision. A diagnosis tool: it writes no results file.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch import Tensor, nn

from torch_mish.darknet import Darknet
from torch_mish.darknet.data import DarknetDataset, read_data_config
from torch_mish.darknet.shapes import make_shapes

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def layer_outputs(model: nn.Module, x: Tensor) -> tuple[dict[str, Tensor], Tensor]:
    """Each top-level layer's output (as float32) and the model's rows."""
    outputs: dict[str, Tensor] = {}
    hooks = [
        m.register_forward_hook(lambda _m, _i, o, name=name: outputs.__setitem__(name, o.detach().float()))
        for name, m in model.named_modules()
        if name.count(".") == 1
    ]
    try:
        with torch.no_grad():
            rows = model(x)
    finally:
        for h in hooks:
            h.remove()
    return outputs, (rows[0] if isinstance(rows, (list, tuple)) else rows).float()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kept", type=Path)
    p.add_argument("--dtype", choices=DTYPES, default="float16")
    p.add_argument("--data", type=Path, help="an obj.data (default: 32 fresh synthetic images)")
    p.add_argument("--images", type=int, default=16)
    args = p.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    data = args.data or make_shapes(tempfile.mkdtemp(), 1, 2 * args.images, 256, 7)
    model = Darknet((args.kept / "model.cfg").read_text())
    model.load_darknet_weights(args.kept / "model_final.weights")
    model = model.eval().to(device)
    dataset = DarknetDataset.from_data(read_data_config(data), "valid", model, augment=False)
    x = torch.stack([dataset[i].image for i in range(args.images)]).to(device).float()
    ref, ref_rows = layer_outputs(model, x)
    low, low_rows = layer_outputs(model.to(DTYPES[args.dtype]), x.to(DTYPES[args.dtype]))
    print(f"{'layer':12s} {'max |fp32|':>12s} {'max diff':>10s} {'relative':>9s} non-finite")
    for name, a in ref.items():
        b = low[name]
        scale, diff = a.abs().max().item(), (a - b).abs().max().item()
        nonfinite = int((~torch.isfinite(b)).sum())
        print(f"{name:12s} {scale:12.4g} {diff:10.3g} {diff / max(scale, 1e-12):9.3g} {nonfinite}")
    count = lambda rows: int((rows[..., 4] > 0.005).sum())  # noqa: E731
    print(f"rows with objectness > 0.005: float32 {count(ref_rows)}, {args.dtype} {count(low_rows)}")


if __name__ == "__main__":
    main()
