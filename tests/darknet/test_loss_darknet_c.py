"""YoloLoss against darknet's own C code: every [yolo] section of the shipped cfgs, on random inputs and
truths, through darknet's forward in training mode (its libdarknet, built from an AlexeyAB/darknet
checkout with LIBSO=1 and named by TORCH_MISH_DARKNET_ROOT). The gradient YoloLoss gives each head is
minus darknet's delta, element for element; the loss value is the sum of the squared deltas.

The network is [net] with as many channels as the head has, a [maxpool] of size 1 and stride 8 (a
head at stride 8: it keeps every eighth pixel) and the [yolo] section, its classes set to 3."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from torch_mish.darknet import PACKAGED_CFGS, Darknet, YoloLoss, packaged_cfg

ROOT_ENV = "TORCH_MISH_DARKNET_ROOT"
NET, STRIDE, CLASSES, BATCH = 256, 8, 3, 2


def darknet_root() -> Path:
    root = os.environ.get(ROOT_ENV)
    if not root or not (Path(root) / "libdarknet.so").exists():
        pytest.skip(f"no darknet library: set {ROOT_ENV} to an AlexeyAB/darknet checkout built with LIBSO=1")
    return Path(root)


def build_harness(name: str, out_dir: Path) -> Path:
    """tests/darknet/c/NAME.c compiled into out_dir and linked with the libdarknet of
    TORCH_MISH_DARKNET_ROOT (the test skips without one)."""
    root = darknet_root()
    exe = out_dir / name
    source = Path(__file__).parent / "c" / f"{name}.c"
    cmd = ["gcc", "-O2", f"-I{root / 'include'}", f"-I{root / 'src'}", str(source), "-o", str(exe)]
    cmd += [f"-L{root}", "-ldarknet", "-lm", "-lpthread", f"-Wl,-rpath,{root}"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return exe


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_harness("yolo_delta", tmp_path_factory.mktemp("darknet"))


def yolo_sections() -> list:
    cases = []
    for cfg in PACKAGED_CFGS:
        text = packaged_cfg(cfg).read_text()
        sections = ["[" + s for s in re.split(r"(?m)^\s*\[", text) if s.startswith("yolo]")]
        cases += [pytest.param(cfg, i, s, id=f"{cfg.removesuffix('.cfg')}-yolo{i}") for i, s in enumerate(sections)]
    return cases


def network(section: str) -> tuple[str, int]:
    section = re.sub(r"(?m)^classes\s*=.*$", f"classes={CLASSES}", section)
    anchors = len(re.search(r"(?m)^mask\s*=\s*(.*)$", section).group(1).split(","))
    channels = anchors * (5 + CLASSES)
    net = f"[net]\nbatch={BATCH}\nsubdivisions=1\nwidth={NET}\nheight={NET}\nchannels={channels}\n"
    return f"{net}\n[maxpool]\nsize=1\nstride={STRIDE}\n\n{section}\n", channels


@pytest.mark.parametrize(("cfg", "index", "section"), yolo_sections())
def test_gradient_is_minus_darknets_delta(harness: Path, cfg: str, index: int, section: str, tmp_path: Path) -> None:
    text, channels = network(section)
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    x = torch.from_numpy((2 * rng.standard_normal((BATCH, channels, NET, NET))).astype(np.float32))
    model = Darknet(text).train()
    max_boxes = model.yolo_layers[0].train_options.get("max", "200").split("#")[0]
    truth = np.zeros((BATCH, int(max_boxes), 6), np.float32)
    rows = []
    for b in range(BATCH):
        for t in range(int(rng.integers(1, 12))):
            w, h = rng.uniform(0.02, 0.6, 2)
            cx, cy = rng.uniform(w / 2, 1 - w / 2), rng.uniform(h / 2, 1 - h / 2)
            c = int(rng.integers(0, CLASSES))
            truth[b, t] = (cx, cy, w, h, c, 0)
            rows.append((b, c, cx, cy, w, h))
    (tmp_path / "net.cfg").write_text(text)
    x.numpy().tofile(tmp_path / "x.f32")
    truth.tofile(tmp_path / "truth.f32")
    out = tmp_path / "delta.f32"
    run = subprocess.run(
        [str(harness), *(str(tmp_path / f) for f in ("net.cfg", "x.f32", "truth.f32")), str(out)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    delta = torch.from_numpy(np.fromfile(out, np.float32)).double()

    heads = model(x.requires_grad_(True))
    loss = YoloLoss(model)(heads, torch.tensor(rows, dtype=torch.float32))
    (grad,) = torch.autograd.grad(loss, heads)
    ours = -grad.permute(0, 1, 4, 2, 3).reshape(-1).double()  # darknet's layout: (N, A, 5 + C, H, W)
    assert int((delta != 0).sum()) > 1000, "darknet's delta is mostly zero: the case tests little"
    torch.testing.assert_close(ours, delta, rtol=1e-4, atol=1e-5, msg=f"{cfg} [yolo] #{index}")
    torch.testing.assert_close(loss.detach().double(), (delta**2).sum(), rtol=1e-4, atol=1e-3)
