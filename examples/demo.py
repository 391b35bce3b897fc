"""torch_mish demo: a Conv-BN-Mish model run with the fused op and with nn.Mish, compared.

    python examples/demo.py [--device cpu|cuda] [--dtype float32|float16|bfloat16]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn

import torch_mish


def conv_bn_mish(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.Mish())


def build_model() -> nn.Sequential:
    return nn.Sequential(conv_bn_mish(3, 32), conv_bn_mish(32, 64), conv_bn_mish(64, 64), conv_bn_mish(64, 32))


def use_fused_mish(model: nn.Module) -> nn.Module:
    for name, child in model.named_children():
        if isinstance(child, nn.Mish):
            setattr(model, name, torch_mish.Mish(inplace=child.inplace))
        else:
            use_fused_mish(child)
    return model


def timed(model: nn.Module, x: torch.Tensor, repeats: int = 20) -> tuple[torch.Tensor, float]:
    with torch.no_grad():
        model(x)
        if x.is_cuda:
            torch.cuda.synchronize()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            y = model(x)
            if x.is_cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return y, sorted(times)[len(times) // 2] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--size", type=int, default=128, help="image size")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)

    torch.manual_seed(0)
    reference = build_model().to(args.device, dtype).eval()
    fused = use_fused_mish(copy.deepcopy(reference))
    x = torch.randn(4, 3, args.size, args.size, device=args.device, dtype=dtype)
    y_ref, t_ref = timed(reference, x)
    y_fused, t_fused = timed(fused, x)
    err = (y_fused.double() - y_ref.double()).abs().max().item()
    print(f"\ntorch_mish {torch_mish.__version__}, torch {torch.__version__}, device {args.device}, dtype {args.dtype}")
    print(f"{'path':<22}{'median ms':>10}{'max |err|':>12}")
    print(f"{'nn.Mish':<22}{t_ref:>10.3f}{'(reference)':>12}")
    print(f"{'torch_mish.Mish':<22}{t_fused:>10.3f}{err:>12.2e}")


if __name__ == "__main__":
    main()
