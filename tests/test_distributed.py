"""DistributedDataParallel training of the YOLO-style model with torch_mish: two ranks, each on half
of every batch, give the losses and weights of one process that accumulates the same two halves.

gloo on the CPU (runs in CI) and NCCL on two GPUs. Each rank's BatchNorm normalizes its own half, so
the single-process reference runs the halves as separate micro-batches with the loss halved, which
is what DDP's gradient averaging computes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel
from yolov4_csp import YOLOv4CSP

WORLD = 2
STEPS = 3
BATCH = 4  # per step, split across ranks
SIZE = 128  # the deepest feature maps stay 4x4, so BatchNorm's statistics are not ill-conditioned
WIDTH, DEPTH = 0.125, 0.34  # 115 convolutions' structure kept, channels and repeats shrunk
# NVLink multicast stays off on shared hosts (the device notes): set where missing, never overridden.
NO_NVLINK_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "NVSHMEM_DISABLE_NVLS": "1", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1"}


def _model(device: torch.device) -> YOLOv4CSP:
    torch.manual_seed(0)
    return YOLOv4CSP(width=WIDTH, depth=DEPTH).to(device)


def _batches() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(BATCH, 3, SIZE, SIZE, generator=g) for _ in range(STEPS)]


def _loss(outputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    return sum(o.float().square().mean() for o in outputs)


def _exact_math() -> None:
    """No TF32, and deterministic convolution algorithms: what remains between the runs is the order of
    the gradient sum (all-reduce against accumulation), a rounding difference."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def _rank_main(rank: int, backend: str, store: str, out: str) -> None:
    _exact_math()
    torch.set_num_threads(1)  # two ranks share the CPU
    # A file store: no port to race for. gloo connects its ranks over loopback.
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group(backend, init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        model = DistributedDataParallel(_model(device), device_ids=[rank] if device.type == "cuda" else None)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        losses = []
        for x in _batches():
            loss = _loss(model(x.chunk(WORLD)[rank].to(device)))
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            mean = loss.detach().clone()
            dist.all_reduce(mean)
            losses.append(mean.item() / WORLD)
        if rank == 0:
            weights = {k: v.detach().cpu() for k, v in model.module.state_dict().items()}
            torch.save({"losses": losses, "weights": weights}, out)
    finally:
        dist.destroy_process_group()


def _single_process(device: torch.device) -> tuple[list[float], dict[str, torch.Tensor]]:
    _exact_math()
    model = _model(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    losses = []
    for x in _batches():
        total = 0.0
        for half in x.chunk(WORLD):
            loss = _loss(model(half.to(device))) / WORLD
            loss.backward()
            total += loss.item()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(total)
    return losses, {k: v.detach().cpu() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    "backend",
    [
        "gloo",
        pytest.param(
            "nccl",
            marks=pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices (NCCL DDP)"),
        ),
    ],
)
def test_ddp_matches_single_process(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if backend == "nccl":
        for var, value in NO_NVLINK_MULTICAST.items():
            monkeypatch.setenv(var, os.environ.get(var, value))
    out = tmp_path / "rank0.pt"
    mp.spawn(_rank_main, args=(backend, str(tmp_path / "store"), str(out)), nprocs=WORLD, join=True)
    ddp = torch.load(out)
    device = torch.device("cuda", 0) if backend == "nccl" else torch.device("cpu")
    losses, weights = _single_process(device)
    print(json.dumps({"ddp": ddp["losses"], "single": losses}))
    initial = _model(torch.device("cpu")).state_dict()
    assert not torch.equal(weights["stem.0.conv.weight"], initial["stem.0.conv.weight"]), "the model did not train"
    torch.testing.assert_close(torch.tensor(ddp["losses"]), torch.tensor(losses), rtol=1e-4, atol=1e-6)
    for name, w in weights.items():
        if w.is_floating_point() and "running" not in name:  # DDP broadcasts rank 0's BN statistics
            torch.testing.assert_close(ddp["weights"][name], w, rtol=1e-4, atol=1e-5, msg=f"weight {name} differs")
