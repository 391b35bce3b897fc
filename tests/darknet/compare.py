"""Run a cfg through torch_mish.darknet and through the NumPy reference on the same random weights
and input, and compare every layer's output and the network output."""

from __future__ import annotations

from pathlib import Path

import darknet_ref
import numpy as np
import torch

from torch_mish.darknet import Darknet


def net(width: int = 16, height: int = 16, channels: int = 3) -> str:
    return f"[net]\nwidth={width}\nheight={height}\nchannels={channels}\n\n"


def numpy_rng(gen: torch.Generator) -> np.random.Generator:
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=gen)))


def build_with_random_weights(cfg: str, gen: torch.Generator, tmp_path: Path) -> tuple[Darknet, bytes]:
    model = Darknet(cfg)
    weights = darknet_ref.random_weights(cfg, numpy_rng(gen))
    path = tmp_path / "random.weights"
    path.write_bytes(weights)
    model.load_darknet_weights(path)
    return model, weights


def compare(
    cfg: str,
    gen: torch.Generator,
    tmp_path: Path,
    size: tuple[int, int] | None = None,
    batch: int = 2,
    scale: float = 1.0,
) -> tuple[Darknet, dict[int, torch.Tensor]]:
    """Eval-mode float64 comparison of each layer output and the final output. Returns the model
    and the captured layer outputs."""
    model, weights = build_with_random_weights(cfg, gen, tmp_path)
    model = model.double().eval()
    h, w = size or (model.height, model.width)
    x = (torch.rand(batch, model.channels, h, w, generator=gen, dtype=torch.float64) * 2 - 1) * scale
    captured: dict[int, torch.Tensor] = {}
    hooks = [
        layer.register_forward_hook(lambda m, args, out: captured.__setitem__(m.index, out)) for layer in model.layers
    ]
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for hook in hooks:
            hook.remove()
    ref_outs, ref_final = darknet_ref.forward(cfg, weights, x.numpy())
    for i, got in captured.items():
        expected = ref_outs[i]
        assert got.shape == expected.shape, (
            f"layer {i} ({model.layers[i].where}): {tuple(got.shape)} vs {expected.shape}"
        )
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-7, atol=1e-9, err_msg=f"layer {i}")
    assert out.shape == ref_final.shape, f"output {tuple(out.shape)} vs {ref_final.shape}"
    np.testing.assert_allclose(out.numpy(), ref_final, rtol=1e-7, atol=1e-9, err_msg="network output")
    return model, captured
