"""The training library on the CPU: darknet's learning-rate formulas, its SGD update (a loop
written from update_convolutional_layer against Trainer), stopbackward, EMA, a few iterations
lowering the loss on synthetic shapes, .weights checkpoints that load back, resume continuing
at the same iteration and rate with the same weights as an uninterrupted run, and
DistributedDataParallel with gloo giving the single-process result."""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from torch_mish.darknet import Darknet, packaged_cfg
from torch_mish.darknet.data import DarknetDataset, collate
from torch_mish.darknet.loss import YoloLoss
from torch_mish.darknet.shapes import make_shapes
from torch_mish.darknet.train import Schedule, Trainer, TrainOptionError, edit_cfg, short_run_net, train

CLASSES = 5
pytestmark = pytest.mark.filterwarnings("ignore:.*repeated; darknet uses the first")


def tiny_cfg(net: str = "", layer1: str = "", classes: int = CLASSES) -> str:
    return f"""[net]
{net}
batch=8
subdivisions=2
width=64
height=64
channels=3
momentum=0.9
decay=0.0005
learning_rate=0.01
burn_in=3
max_batches=40
policy=steps
steps=30
scales=.1

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=mish

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=mish
{layer1}

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=leaky

[convolutional]
size=1
filters={3 * (5 + classes)}
activation=linear

[yolo]
mask=0,1,2
anchors=6,8, 14,12, 20,26
classes={classes}
num=3
iou_loss=ciou
iou_normalizer=0.07
ignore_thresh=.7
iou_thresh=0.213
jitter=.2
"""


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes(tmp_path_factory.mktemp("shapes"), n_train=16, n_val=4, size=64, seed=11, max_shapes=3)


def _batch(data: Path, n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    ds = DarknetDataset(data.parent / "train.txt", (64, 64), CLASSES)
    images, targets, _ = collate([ds[i] for i in range(n)])
    return images, targets


# ---------------------------------------------------------------------------------------------
# Learning rate


def test_schedule_steps_with_burn_in() -> None:
    s = Schedule.from_net(
        {"learning_rate": "0.01", "burn_in": "10", "policy": "steps", "steps": "20,30", "scales": ".1,.5"}
    )
    assert s.rate(0) == 0
    assert math.isclose(s.rate(5), 0.01 * (5 / 10) ** 4)  # power defaults to 4
    assert math.isclose(s.rate(9), 0.01 * 0.9**4)
    assert s.rate(10) == 0.01 and s.rate(19) == 0.01
    assert math.isclose(s.rate(20), 0.001) and math.isclose(s.rate(29), 0.001)
    assert math.isclose(s.rate(30), 0.0005) and math.isclose(s.rate(10**6), 0.0005)


def test_short_run_net_scales_the_steps_policy_to_the_run() -> None:
    net = {k: str(v) for k, v in short_run_net(200, 16).items()}
    assert net["batch"] == "16" and net["subdivisions"] == "1"
    s = Schedule.from_net({"learning_rate": "0.01", "policy": "steps", **net})
    assert s.rate(19) < 0.01 and s.rate(20) == 0.01 and s.rate(159) == 0.01  # burn-in: the first tenth
    assert math.isclose(s.rate(160), 0.001) and math.isclose(s.rate(180), 0.0001)  # / 10 at 80 %, 90 %


@pytest.mark.parametrize(
    ("net", "expected"),
    [
        ({"policy": "constant"}, lambda n: 0.02),
        ({"policy": "step", "step": "7", "scale": "0.5"}, lambda n: 0.02 * 0.5 ** (n // 7)),
        ({"policy": "exp", "gamma": "0.99"}, lambda n: 0.02 * 0.99**n),
        ({"policy": "poly", "power": "2", "max_batches": "50"}, lambda n: 0.02 * (1 - n / 50) ** 2),
        ({"policy": "sigmoid", "gamma": "0.3", "step": "20"}, lambda n: 0.02 / (1 + math.exp(0.3 * (n - 20)))),
    ],
)
def test_schedule_policies(net: dict[str, str], expected) -> None:
    s = Schedule.from_net({"learning_rate": "0.02", **net})
    for n in range(0, 50, 3):
        assert math.isclose(s.rate(n), expected(n), rel_tol=1e-12), n


def test_schedule_sgdr() -> None:
    s = Schedule.from_net(
        {"learning_rate": "0.1", "policy": "sgdr", "sgdr_cycle": "10", "sgdr_mult": "2", "learning_rate_min": "0.01"}
    )
    for n, start, cycle in [(0, 0, 10), (10, 0, 10), (11, 10, 20), (30, 10, 20), (31, 30, 40), (70, 30, 40)]:
        want = 0.01 + 0.5 * 0.09 * (1 + math.cos((n - start) * 3.14159265 / cycle))
        assert math.isclose(s.rate(n), want, rel_tol=1e-12), n


@pytest.mark.parametrize(
    ("net", "match"),
    [
        ({"policy": "random"}, "policy=random: not one of"),
        ({"policy": "steps", "steps": "10"}, "policy=steps needs steps= and scales="),
        ({"policy": "steps", "steps": "10,20", "scales": ".1"}, "2 steps but 1 scales"),
        ({"learning_rate": "fast"}, "learning_rate=fast: expected a number"),
    ],
)
def test_schedule_errors(net: dict[str, str], match: str) -> None:
    with pytest.raises(TrainOptionError, match=match):
        Schedule.from_net(net)


def test_step_reports_darknet_rate(shapes: Path) -> None:
    torch.manual_seed(0)
    trainer = Trainer(Darknet(tiny_cfg()), "cpu")
    images, targets = _batch(shapes)
    for n in range(1, 5):
        stats = trainer.step(images, targets)
        assert stats.iteration == n and stats.lr == trainer.settings.schedule.rate(n)
    assert trainer.seen == 32


# ---------------------------------------------------------------------------------------------
# The update


def _darknet_iterations(model: Darknet, images, targets, iterations: int, batch: int, subdivisions: int, cut=None):
    """darknet's iteration written from update_convolutional_layer: weight_updates accumulate the
    negative gradient of the summed loss; decay * batch * w is subtracted from convolution weights'
    updates; parameters move by learning_rate / batch times the updates; momentum of them is kept."""
    net = model.net_options
    schedule = Schedule.from_net(net)
    momentum, decay = float(net["momentum"]), float(net["decay"])
    loss_fn = YoloLoss(model)
    updates = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    mini = images.shape[0] // subdivisions
    for it in range(iterations):
        model.zero_grad(set_to_none=True)
        for k in range(subdivisions):
            sel = (targets[:, 0] >= k * mini) & (targets[:, 0] < (k + 1) * mini)
            t = targets[sel].clone()
            t[:, 0] -= k * mini
            heads = model(images[k * mini : (k + 1) * mini])
            loss_fn(heads, t.to(images.dtype)).backward()
        rate = schedule.rate(it + 1)
        with torch.no_grad():
            for name, param in model.named_parameters():
                frozen = cut is not None and int(name.split(".")[1]) <= cut(it)
                if param.grad is not None and not frozen:
                    updates[name] -= param.grad
                if name.endswith("conv.weight"):
                    updates[name] -= decay * batch * param
                param.add_(updates[name], alpha=rate / batch)
                updates[name] *= momentum
    return model


@pytest.mark.parametrize("fuse", [False, True])
def test_update_is_darknets(shapes: Path, fuse: bool) -> None:
    torch.manual_seed(1)
    model = Darknet(tiny_cfg()).double().train()
    reference = copy.deepcopy(model)
    images, targets = _batch(shapes)
    images = images.double()
    trainer = Trainer(model, "cpu", fuse=fuse)
    for _ in range(3):
        trainer.step(images, targets)
    _darknet_iterations(reference, images, targets, 3, 8, 2)
    tol = {"rtol": 1e-9, "atol": 1e-12} if not fuse else {"rtol": 1e-6, "atol": 1e-9}
    for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters(), strict=True):
        torch.testing.assert_close(p, q, **tol, msg=lambda m, name=name: f"{name}: {m}")
    assert not torch.equal(model.layers[0].conv.weight, Darknet(tiny_cfg()).layers[0].conv.weight.double())


def test_stopbackward_n(shapes: Path) -> None:
    """stopbackward=3 on layer 1: in iterations 1-3 layers 0 and 1 get no gradient but still decay
    and keep momentum (darknet updates them); from iteration 4 on they learn."""
    torch.manual_seed(2)
    model = Darknet(tiny_cfg(layer1="stopbackward=3")).double().train()
    reference = copy.deepcopy(model)
    images, targets = _batch(shapes)
    images = images.double()
    trainer = Trainer(model, "cpu", fuse=False)
    w0 = model.layers[0].conv.weight.detach().clone()
    trainer.step(images, targets)
    lr1 = trainer.settings.schedule.rate(1)
    torch.testing.assert_close(model.layers[0].conv.weight, w0 - lr1 * 0.0005 * w0, rtol=1e-12, atol=1e-15)
    for _ in range(4):
        trainer.step(images, targets)
    _darknet_iterations(reference, images, targets, 5, 8, 2, cut=lambda it: 1 if it < 3 else -1)
    for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12, msg=lambda m, name=name: f"{name}: {m}")


def test_stopbackward_1_freezes_earlier_layers(shapes: Path) -> None:
    torch.manual_seed(3)
    model = Darknet(tiny_cfg(layer1="stopbackward=1")).train()
    w0, w1 = model.layers[0].conv.weight.detach().clone(), model.layers[1].conv.weight.detach().clone()
    trainer = Trainer(model, "cpu", fuse=False)
    images, targets = _batch(shapes)
    trainer.step(images, targets)
    assert torch.equal(model.layers[0].conv.weight, w0)  # not updated at all
    lr1 = trainer.settings.schedule.rate(1)
    torch.testing.assert_close(model.layers[1].conv.weight, w1 - lr1 * 0.0005 * w1)  # decay only


def test_ema_follows_darknet(shapes: Path) -> None:
    """ema_alpha: from iteration max_batches / 2 an average of all parameters, copied into the
    model at max_batches - 1000."""
    torch.manual_seed(4)
    model = Darknet(tiny_cfg(net="ema_alpha=0.9"))
    trainer = Trainer(model, "cpu", max_batches=2006, fuse=False)
    images, targets = _batch(shapes)
    trainer.iteration = 1001
    trainer.step(images, targets)  # iteration 1002: not yet
    assert trainer.ema is None
    trainer.step(images, targets)  # 1003 = 2006 // 2: initialised to the weights
    ema = {n: p.detach().clone() for n, p in model.named_parameters()}
    for n, value in ema.items():  # darknet also averages in that iteration, with the copy itself
        torch.testing.assert_close(trainer.ema[n], value)
    for _ in range(2):  # 1004, 1005: averaged
        trainer.step(images, targets)
        ema = {n: 0.9 * ema[n] + 0.1 * p.detach() for n, p in model.named_parameters()}
    for n in ema:
        torch.testing.assert_close(trainer.ema[n], ema[n])
    trainer.step(images, targets)  # 1006 = 2006 - 1000: the EMA becomes the model
    for n, p in model.named_parameters():
        torch.testing.assert_close(p, ema[n])


def test_training_lowers_the_loss(shapes: Path) -> None:
    """A few iterations on one batch of shapes: the loss falls."""
    torch.manual_seed(5)
    trainer = Trainer(Darknet(tiny_cfg(net="burn_in=0")), "cpu")
    images, targets = _batch(shapes)
    losses = [trainer.step(images, targets).loss for _ in range(25)]
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:3]) / 3, losses


def test_bf16_autocast_step(shapes: Path) -> None:
    torch.manual_seed(6)
    trainer = Trainer(Darknet(tiny_cfg()), "cpu", amp="bf16")
    images, targets = _batch(shapes)
    stats = trainer.step(images, targets)
    assert math.isfinite(stats.loss) and stats.loss > 0


@pytest.mark.parametrize(
    ("net", "layer1", "match"),
    [
        ("adam=1", "", r"adam=1: Adam \(adam=1\) is not implemented"),
        ("adversarial_lr=0.05", "", "adversarial training is not implemented"),
        ("", "onlyforward=1", "onlyforward=1: not implemented"),
        ("", "train_only_bn=1", "train_only_bn=1: not implemented"),
        ("batch=10\nsubdivisions=3", "", "subdivisions must divide batch"),
    ],
)
def test_refused_training_options(net: str, layer1: str, match: str) -> None:
    text = tiny_cfg(net=net, layer1=layer1)
    with pytest.raises(TrainOptionError, match=match):
        Trainer(Darknet(text), "cpu")


def test_wrong_batch_size(shapes: Path) -> None:
    trainer = Trainer(Darknet(tiny_cfg()), "cpu")
    images, targets = _batch(shapes, 6)
    with pytest.raises(ValueError, match="images: 6 for this iteration; batch=8 over 1 process"):
        trainer.step(images, targets)


# ---------------------------------------------------------------------------------------------
# cfg editing, checkpoints, resume


def test_edit_cfg_sets_classes_filters_and_net() -> None:
    text = edit_cfg(packaged_cfg("yolov4-tiny"), classes=5, net={"batch": 16, "width": 320, "new_key": 3})
    model = Darknet(text)
    assert [y.classes for y in model.yolo_layers] == [5, 5]
    assert [model.layers[y.index - 1].conv.out_channels for y in model.yolo_layers] == [30, 30]
    assert (model.width, model.net_options["batch"], model.net_options["new_key"]) == (320, "16", "3")
    assert "# Training" in text or "#" in text  # comments kept
    csp = Darknet(edit_cfg(packaged_cfg("yolov4-p5"), classes=1))  # 4 anchors per head
    assert [csp.layers[y.index - 1].conv.out_channels for y in csp.yolo_layers] == [24, 24, 24]


def _train(shapes: Path, out: Path, **kw) -> object:
    args = {
        "max_batches": 8,
        "device": "cpu",
        "workers": 0,
        "seed": 3,
        "progress": False,
        "save_every": 4,
        "fuse": False,
    }
    args.update(kw)
    return train(tiny_cfg(), shapes, out, **args)


def test_train_writes_checkpoints_that_load_back(shapes: Path, tmp_path: Path) -> None:
    torch.manual_seed(7)
    result = _train(shapes, tmp_path, fuse=True, max_batches=12)
    assert result.iterations == 12 and result.seen == 96
    assert len(result.history) == 12 and all(math.isfinite(s.loss) for s in result.history)
    first, last = result.history[:4], result.history[-4:]
    assert sum(s.loss for s in last) < sum(s.loss for s in first)
    state = torch.load(result.checkpoint, weights_only=False)
    assert state["iteration"] == 12 and state["seen"] == 96
    for path in (result.weights, tmp_path / "model_last.weights"):
        loaded = Darknet(result.cfg)
        loaded.load_darknet_weights(path)
        assert loaded.weights_header[3] == 96  # seen: darknet resumes at iteration 96 / batch
        for name, value in loaded.state_dict().items():
            if name in state["model"] and "num_batches_tracked" not in name:  # not in .weights
                torch.testing.assert_close(value, state["model"][name], msg=lambda m, name=name: f"{name}: {m}")


def test_seed_decides_the_run(shapes: Path, tmp_path: Path) -> None:
    # The caller's RNG in a different state each time: the seed alone sets the initial weights and the
    # data order, so two runs with one seed end on the same weights, and another seed elsewhere.
    runs = []
    for k, seed in enumerate((5, 5, 6)):
        torch.manual_seed(100 + k)
        runs.append(_train(shapes, tmp_path / str(k), seed=seed, max_batches=3).weights.read_bytes())
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


class _Stop(Exception):
    pass


def test_resume_continues_where_it_stopped(shapes: Path, tmp_path: Path) -> None:
    """An interrupted run resumed from its _last.pt reaches the uninterrupted run's weights, with
    the same iterations and learning rates."""
    torch.manual_seed(8)
    full = _train(shapes, tmp_path / "full")

    def stop(stats) -> None:
        if stats.iteration == 4:
            raise _Stop

    torch.manual_seed(8)
    with pytest.raises(_Stop):
        _train(shapes, tmp_path / "part", progress=stop)
    resumed = _train(shapes, tmp_path / "part", resume=tmp_path / "part" / "model_last.pt")
    assert [s.iteration for s in resumed.history] == [5, 6, 7, 8]
    assert [s.lr for s in resumed.history] == [s.lr for s in full.history[4:]]
    assert [s.loss for s in resumed.history] == pytest.approx([s.loss for s in full.history[4:]], rel=1e-4)
    a = torch.load(full.checkpoint, weights_only=False)["model"]
    b = torch.load(resumed.checkpoint, weights_only=False)["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")


def test_weights_seen_sets_the_iteration(shapes: Path, tmp_path: Path) -> None:
    """Like darknet, starting from .weights continues at seen / batch, unless clear."""
    torch.manual_seed(9)
    first = _train(shapes, tmp_path / "a", max_batches=4)
    more = _train(shapes, tmp_path / "b", weights=first.weights, max_batches=6)
    assert [s.iteration for s in more.history] == [5, 6]
    fresh = _train(shapes, tmp_path / "c", weights=first.weights, max_batches=2, clear=True)
    assert [s.iteration for s in fresh.history] == [1, 2]


# ---------------------------------------------------------------------------------------------
# DistributedDataParallel (gloo on the CPU)


def _rank(rank: int, store: str, shapes: str, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        torch.manual_seed(10)
        _train(Path(shapes), Path(out), max_batches=3, subdivisions=1, save_every=0)
    finally:
        dist.destroy_process_group()


def test_ddp_gloo_matches_one_process(shapes: Path, tmp_path: Path) -> None:
    """Two processes of batch / 2 images each (one subdivision each) give the parameters and the
    losses of one process running the batch in two subdivisions."""
    mp.spawn(_rank, args=(str(tmp_path / "store"), str(shapes), str(tmp_path / "ddp")), nprocs=2, join=True)
    torch.manual_seed(10)
    single = _train(shapes, tmp_path / "one", max_batches=3, subdivisions=2, save_every=0)
    a = torch.load(tmp_path / "ddp" / "model_last.pt", weights_only=False)
    b = torch.load(single.checkpoint, weights_only=False)
    assert a["iteration"] == b["iteration"] == 3
    for name, p in b["model"].items():
        if "running" not in name and "num_batches" not in name:  # DDP broadcasts rank 0's BatchNorm statistics
            torch.testing.assert_close(a["model"][name], p, rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")
    assert not torch.equal(b["model"]["layers.0.conv.weight"], Darknet(tiny_cfg()).layers[0].conv.weight)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("amp", [None, "bf16", "fp16"])
def test_cuda_trainer(shapes: Path, tmp_path: Path, amp: str | None) -> None:
    """On a GPU, fused BatchNorm-Mish and autocast: the loss falls on one batch and the .weights
    written load back into a fresh model."""
    torch.manual_seed(11)
    trainer = Trainer(Darknet(tiny_cfg(net="burn_in=0")), "cuda", amp=amp)
    images, targets = _batch(shapes)
    losses = [trainer.step(images, targets).loss for _ in range(25)]
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:3]) / 3, losses
    trainer.save_weights(tmp_path / "w.weights")
    loaded = Darknet(tiny_cfg())
    loaded.load_darknet_weights(tmp_path / "w.weights")
    assert loaded.weights_header[3] == 25 * 8
    state = trainer.model.state_dict()
    for name, value in loaded.state_dict().items():
        if "num_batches_tracked" not in name:
            torch.testing.assert_close(value, state[name].cpu(), msg=lambda m, name=name: f"{name}: {m}")
