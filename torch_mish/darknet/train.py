"""Training a darknet cfg in PyTorch with darknet's optimizer and learning-rate semantics
(AlexeyAB/darknet ``src/network.c``: get_current_rate, update_network; ``src/convolutional_kernels.cu``:
update_convolutional_layer_gpu; ``src/detector.c``: train_detector) and :class:`YoloLoss`.

    from torch_mish.darknet.train import train
    result = train("yolov4-tiny.cfg", "shapes/obj.data", output="runs/tiny", epochs=30, device="cuda")

What darknet does, and what this does:

- Update: darknet accumulates the gradient of its loss summed over the ``batch`` images of an
  iteration (``subdivisions`` forward/backward passes of ``batch / subdivisions`` images), adds
  ``-decay * batch * w`` to convolution weights only, moves each parameter by ``learning_rate /
  batch`` times that sum and keeps ``momentum`` of it for the next iteration. That is
  ``torch.optim.SGD(momentum, dampening=0, weight_decay=decay on convolution weights only)`` on
  the gradient averaged over the batch, which is what :class:`Trainer` runs (biases and BatchNorm
  scales get no decay, as in darknet). A layer's ``learning_rate=`` scales its rate.
- Learning rate: darknet's get_current_rate at iteration ``n`` (counted from 1: darknet counts the
  images of the iteration before it updates): ``learning_rate * (n / burn_in) ** power`` while
  ``n < burn_in``, then the ``policy``: ``constant``, ``step`` (``step``, ``scale``), ``steps``
  (``steps``, ``scales``), ``exp`` (``gamma``), ``poly`` (``power``, ``max_batches``), ``sigmoid``
  (``gamma``, ``step``), ``sgdr`` (``learning_rate_min``, ``sgdr_cycle``, ``sgdr_mult``).
  (:class:`Schedule`; ``random`` is refused.)
- ``ema_alpha``: from iteration ``max_batches / 2`` an exponential average of convolution
  weights, biases and scales, copied into the model at ``max_batches - 1000``, as darknet.
- ``stopbackward=1`` on a layer: it and earlier layers get no gradient, and layers before it are
  not updated; ``stopbackward=N`` (yolov4x-mish: 800): no gradient for it and earlier layers
  during the first N iterations (darknet still applies weight decay and momentum to them then).
  ``clip=``: convolution weights clamped after each update.
- ``random=1`` on the last [yolo] (multi-scale, yolov4.cfg): every 10 iterations a new input size,
  darknet's rule (``resize_step`` multiples up to 1.4x, the largest first); here the batch loaded at
  the cfg size is resized with bilinear interpolation (darknet loads the images at the new size).
- Batch: ``batch`` is the number of images per iteration over all processes; with torchrun each
  of the ``W`` processes loads ``batch / W`` and DistributedDataParallel averages the gradients, so
  a run gives the same iterations for any ``W`` (darknet's ``-gpus`` instead runs ``batch`` images
  per GPU and multiplies the learning rate by the number of GPUs).
- darknet draws its images at random with replacement; here each epoch is a seeded permutation.
- Not implemented (``TrainOptionError``): ``adam=1``, ``policy=random``, ``onlyforward``,
  ``dont_update``, ``burnin_update``, ``train_only_bn``, ``adversarial_lr``, ``weights_reject_freq``,
  ``dynamic_minibatch`` with ``random``, ``track`` and ``time_steps`` above 1.

``fuse_batchnorm_mish`` (on by default) replaces each BatchNorm -> Mish pair by one BatchNormMish
module, which keeps one tensor instead of two for backward in eager training; parameters, state-dict
keys and ``.weights`` files are unchanged. bfloat16/float16 autocast with ``amp`` (float16 with
gradient scaling); the loss is always computed in float32.

Checkpoints: ``{name}_last.pt`` (model, optimizer, iteration, EMA, RNG: :func:`train` resumes from
it) and darknet ``.weights`` files (``seen`` in the header = images seen, so darknet resumes at the
same iteration), beside the cfg the run used (``{name}.cfg``, with ``classes``/``filters`` set for
the data's classes).
"""

from __future__ import annotations

import copy
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from torch_mish.darknet import layers as L
from torch_mish.darknet.cfg import parse_cfg, read_cfg
from torch_mish.darknet.loss import YoloLoss
from torch_mish.darknet.model import Darknet

if TYPE_CHECKING:
    from torch_mish.darknet.data import DataConfig

POLICIES = ("constant", "step", "steps", "exp", "poly", "sigmoid", "sgdr")
_NET_REFUSED = {
    "adam": "Adam (adam=1)",
    "adversarial_lr": "adversarial training",
    "weights_reject_freq": "rejecting similar weights",
    "track": "sequence (tracking) training",
    "contrastive": "contrastive training",
    "unsupervised": "unsupervised training",
}
_LAYER_REFUSED = ("onlyforward", "dont_update", "burnin_update", "train_only_bn")


class TrainOptionError(ValueError):
    """A cfg training option the trainer does not implement or cannot read."""


def _num(options: Mapping[str, str], key: str, default: float, where: str, integer: bool = False) -> float:
    value = options.get(key)
    if value is None:
        return default
    text = value.split("#", 1)[0]
    try:
        return int(text) if integer else float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise TrainOptionError(f"{where}: {key}={value}: expected {kind}") from None


def _list(options: Mapping[str, str], key: str, where: str, kind: type) -> tuple:
    value = options.get(key)
    if value is None:
        return ()
    try:
        return tuple(kind(v) for v in value.split("#", 1)[0].split(","))
    except ValueError:
        raise TrainOptionError(f"{where}: {key}={value}: expected a comma-separated list") from None


@dataclass(frozen=True)
class Schedule:
    """darknet's learning-rate rules ([net] learning_rate, burn_in, power, policy, ...)."""

    learning_rate: float = 0.001
    policy: str = "constant"
    burn_in: int = 0
    power: float = 4.0
    max_batches: int = 0
    steps: tuple[int, ...] = ()
    scales: tuple[float, ...] = ()
    step: int = 1
    scale: float = 1.0
    gamma: float = 1.0
    learning_rate_min: float = 0.00001
    sgdr_cycle: int = 0
    sgdr_mult: int = 2

    @classmethod
    def from_net(cls, net: Mapping[str, str], where: str = "[net]") -> Schedule:
        policy = net.get("policy", "constant")
        if policy not in POLICIES:
            raise TrainOptionError(f"{where}: policy={policy}: not one of {', '.join(POLICIES)}")
        max_batches = int(_num(net, "max_batches", 0, where, True))
        steps = _list(net, "steps", where, int)
        scales = _list(net, "scales", where, float)
        if policy == "steps":
            if not steps or not scales:
                raise TrainOptionError(f"{where}: policy=steps needs steps= and scales= (darknet stops too)")
            if len(scales) < len(steps):
                raise TrainOptionError(f"{where}: {len(steps)} steps but {len(scales)} scales")
        return cls(
            learning_rate=_num(net, "learning_rate", 0.001, where),
            policy=policy,
            burn_in=int(_num(net, "burn_in", 0, where, True)),
            power=_num(net, "power", 4.0, where),
            max_batches=max_batches,
            steps=steps,
            scales=scales[: len(steps)],
            step=int(_num(net, "step", 1, where, True)),
            scale=_num(net, "scale", 1.0, where),
            gamma=_num(net, "gamma", 1.0, where),
            learning_rate_min=_num(net, "learning_rate_min", 0.00001, where),
            sgdr_cycle=int(_num(net, "sgdr_cycle", max_batches, where, True)),
            sgdr_mult=int(_num(net, "sgdr_mult", 2, where, True)),
        )

    def rate(self, batch_num: int) -> float:  # noqa: PLR0911 - one return per policy, as darknet's switch
        """get_current_rate with darknet's batch number (1 for the first update)."""
        lr = self.learning_rate
        if batch_num < self.burn_in:
            return lr * (batch_num / self.burn_in) ** self.power
        if self.policy == "constant":
            return lr
        if self.policy == "step":
            return lr * self.scale ** (batch_num // self.step)
        if self.policy == "steps":
            for s, sc in zip(self.steps, self.scales, strict=True):
                if s > batch_num:
                    return lr
                lr *= sc
            return lr
        if self.policy == "exp":
            return lr * self.gamma**batch_num
        if self.policy == "poly":
            return lr * (1 - batch_num / self.max_batches) ** self.power
        if self.policy == "sigmoid":
            return lr * (1 / (1 + math.exp(self.gamma * (batch_num - self.step))))
        start, cycle = 0, self.sgdr_cycle  # sgdr
        while start + cycle < batch_num:
            start += cycle
            cycle *= self.sgdr_mult
        cos = math.cos((batch_num - start) * 3.14159265 / cycle)
        return self.learning_rate_min + 0.5 * (lr - self.learning_rate_min) * (1 + cos)


@dataclass(frozen=True)
class NetSettings:
    """The [net] training settings the trainer uses (overrides applied)."""

    batch: int
    subdivisions: int
    momentum: float
    decay: float
    schedule: Schedule
    ema_alpha: float
    resize_step: int
    multi_scale: float  # the last [yolo]'s random= (0: off; 1: darknet's 1.4)

    @classmethod
    def from_model(cls, model: Darknet, overrides: Mapping[str, object] | None = None) -> NetSettings:
        net = dict(model.net_options)
        for key, value in (overrides or {}).items():
            net[key] = str(value)
        where = f"{model.source}: [net]"
        for key, what in _NET_REFUSED.items():
            if _num(net, key, 0, where) != 0:
                raise TrainOptionError(f"{where} {key}={net[key]}: {what} is not implemented")
        if int(_num(net, "time_steps", 1, where, True)) != 1:
            raise TrainOptionError(f"{where} time_steps={net['time_steps']}: sequence training is not implemented")
        batch = int(_num(net, "batch", 1, where, True))
        subdivisions = int(_num(net, "subdivisions", 1, where, True))
        if batch < 1 or subdivisions < 1 or batch % subdivisions:
            raise TrainOptionError(
                f"{where} batch={batch}, subdivisions={subdivisions}: subdivisions must divide batch"
            )
        random = 0.0
        if model.yolo_layers:
            random = _num(model.yolo_layers[-1].train_options, "random", 0, f"{model.source}: last [yolo]")
        if random and _num(net, "dynamic_minibatch", 0, where):
            raise TrainOptionError(f"{where} dynamic_minibatch=1: changing the batch with random= is not implemented")
        return cls(
            batch=batch,
            subdivisions=subdivisions,
            momentum=_num(net, "momentum", 0.9, where),
            decay=_num(net, "decay", 0.0001, where),
            schedule=Schedule.from_net(net, where),
            ema_alpha=_num(net, "ema_alpha", 0, where),
            resize_step=int(_num(net, "resize_step", 32, where, True)),
            multi_scale=random,
        )


# ---------------------------------------------------------------------------------------------
# cfg editing


def short_run_net(iterations: int, batch: int) -> dict[str, object]:
    """[net] overrides that scale darknet's learning-rate rules to a run of ``iterations``: ``batch``
    images an iteration in one pass, burn-in over the first tenth, the rate divided by 10 at 80 %
    and again at 90 % (``train(..., max_batches=iterations, net_overrides=short_run_net(...))``)."""
    return {
        "batch": batch,
        "subdivisions": 1,
        "burn_in": max(1, iterations // 10),
        "steps": f"{int(0.8 * iterations)},{int(0.9 * iterations)}",
        "scales": ".1,.1",
    }


def edit_cfg(cfg: str | Path, classes: int | None = None, net: Mapping[str, object] | None = None) -> str:
    """The cfg text with ``classes=`` of every [yolo] and ``filters=`` of the convolution before it
    set for ``classes`` (darknet's "train on your own objects" edit), and [net] keys set from
    ``net`` (e.g. ``{"batch": 16, "width": 320}``). Comments and other lines are kept."""
    text = Path(cfg).read_text(encoding="utf-8-sig") if isinstance(cfg, Path) or "\n" not in str(cfg) else str(cfg)
    read_cfg(text)  # a cfg the importer can read, with its errors
    lines = text.splitlines()
    sections: list[tuple[str, int, int]] = []  # (type, first line, end line) of each section
    for k, raw in enumerate(lines):
        line = "".join(raw.split())
        if line.startswith("[") and line.endswith("]"):
            if sections:
                sections[-1] = (*sections[-1][:2], k)
            sections.append((line[1:-1], k, len(lines)))
    edits: dict[int, dict[str, str]] = {}
    if net:
        edits[0] = {k: str(v) for k, v in net.items()}
    if classes is not None:
        if classes < 1:
            raise ValueError(f"classes={classes}: must be >= 1")
        parsed = parse_cfg(text)
        for s, sec in enumerate(parsed):
            if sec.type != "yolo":
                continue
            mask = sec.get_ints("mask")
            n = len(mask) if mask is not None else sec.get_int("num", 1)
            edits[s] = {"classes": str(classes)}
            conv = next((c for c in range(s - 1, 0, -1) if parsed[c].type in ("convolutional", "conv")), None)
            if conv is None:
                raise ValueError(f"{sec.where()}: no [convolutional] before this [yolo] to set filters= on")
            edits.setdefault(conv, {})["filters"] = str((classes + 5) * n)
    out = list(lines)
    for s in sorted(edits, reverse=True):
        _, first, end = sections[s]
        todo = dict(edits[s])
        for k in range(first + 1, end):
            key = "".join(out[k].split()).partition("=")[0]
            if key in todo and "=" in out[k] and not out[k].lstrip().startswith(("#", ";")):
                out[k] = f"{key}={todo.pop(key)}"
        out[first + 1 : first + 1] = [f"{k}={v}" for k, v in todo.items()]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# The trainer


@dataclass
class StepStats:
    """One iteration: ``iteration`` (counted from 1, darknet's), ``lr``, and per image of the
    batch (all processes): ``loss`` (sum of delta^2 over the heads) and its ``box``, ``objectness``,
    ``classes`` terms; ``darknet_loss`` darknet's printed loss (the mean over heads of its cost, per
    image); ``images`` this iteration, ``seconds`` it took, ``size`` its input (height, width)."""

    iteration: int
    lr: float
    loss: float
    box: float
    objectness: float
    classes: float
    darknet_loss: float
    images: int
    seconds: float
    size: tuple[int, int]


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _layer_of(name: str) -> int | None:
    m = re.match(r"layers\.(\d+)\.", name)
    return int(m.group(1)) if m else None


class Trainer:
    """darknet's iteration for ``model``: :meth:`step` takes this process's images of one
    iteration (``batch / world size`` of them, with their targets), runs ``subdivisions`` forward
    and backward passes and one update. Wraps the model in DistributedDataParallel when a process
    group is initialized (torchrun). ``batch``/``subdivisions`` override the cfg's."""

    def __init__(
        self,
        model: Darknet,
        device: str | torch.device | None = None,
        batch: int | None = None,
        subdivisions: int | None = None,
        amp: str | None = None,
        fuse: bool = True,
        compile: bool = False,
        net_overrides: Mapping[str, object] | None = None,
        max_batches: int | None = None,
    ) -> None:
        overrides = dict(net_overrides or {})
        if batch is not None:
            overrides["batch"] = batch
            overrides.setdefault("subdivisions", subdivisions or 1)
        if subdivisions is not None:
            overrides["subdivisions"] = subdivisions
        if max_batches is not None:
            overrides["max_batches"] = max_batches
        self.settings = NetSettings.from_model(model, overrides)
        if amp not in (None, "bf16", "fp16"):
            raise ValueError(f"amp={amp!r}: None, 'bf16' or 'fp16'")
        self.rank, self.world = _rank_world()
        s = self.settings
        if s.batch % (s.subdivisions * self.world):
            raise ValueError(
                f"batch={s.batch} is not divisible by subdivisions={s.subdivisions} x {self.world} process(es)"
            )
        self.device = torch.device(device) if device is not None else _default_device(self.rank)
        self.amp = amp
        self.model = model.to(self.device).train()
        for index, opts in model.layer_options.items():
            for key in _LAYER_REFUSED:
                if _num(opts, key, 0, f"{model.layers[index].where}") != 0:
                    raise TrainOptionError(f"{model.layers[index].where}: {key}={opts[key]}: not implemented")
        self.loss_fn = YoloLoss(model)
        if fuse:
            from torch_mish import fuse_batchnorm_mish

            fuse_batchnorm_mish(self.model)
        self._stop = self._stopbackward()
        frozen = self._stop.get("forever", -1)
        self._frozen_forever = {n for n, _ in model.named_parameters() if (_layer_of(n) or 0) < frozen}
        self.optimizer = self._optimizer()
        self._optimized = {id(p) for g in self.optimizer.param_groups for p in g["params"]}
        self._clip = {
            i: _num(o, "clip", 0, model.layers[i].where) for i, o in model.layer_options.items() if "clip" in o
        }
        self.forward: nn.Module = self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward = DistributedDataParallel(self.model, device_ids=ids, find_unused_parameters=bool(self._stop))
        if compile:
            self.forward = torch.compile(self.forward)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp == "fp16")
        self.iteration = 0  # updates done
        self.ema: dict[str, Tensor] | None = None
        self._size_count = 0
        self._size: tuple[int, int] | None = None
        self._avg_loss = -1.0

    @property
    def batch(self) -> int:
        return self.settings.batch

    @property
    def images_per_process(self) -> int:
        return self.settings.batch // self.world

    @property
    def seen(self) -> int:
        return self.iteration * self.settings.batch

    def lr(self, iteration: int | None = None) -> float:
        """The rate of update number ``iteration`` (from 1; default: the next one)."""
        return self.settings.schedule.rate(self.iteration + 1 if iteration is None else iteration)

    def _stopbackward(self) -> dict[str, int]:
        stop: dict[str, int] = {}
        for index, opts in self.model.layer_options.items():
            v = int(_num(opts, "stopbackward", 0, self.model.layers[index].where, True))
            if v == 1:
                stop["forever"] = max(stop.get("forever", -1), index)
            elif v > 1:
                stop[f"until {v}"] = max(stop.get(f"until {v}", -1), index)
        return stop

    def _cut(self) -> int:
        """The highest layer whose backward darknet skips in this iteration (-1: none)."""
        cut = self._stop.get("forever", -1)
        for key, index in self._stop.items():
            if key.startswith("until ") and int(key[6:]) > self.iteration:
                cut = max(cut, index)
        return cut

    def _optimizer(self) -> torch.optim.SGD:
        s = self.settings
        groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
        for name, p in self.model.named_parameters():
            if name in self._frozen_forever:
                p.requires_grad_(False)
                continue
            index = _layer_of(name)
            scale = 1.0
            if index is not None and "learning_rate" in self.model.layer_options.get(index, {}):
                scale = _num(self.model.layer_options[index], "learning_rate", 1.0, self.model.layers[index].where)
            decay = name.endswith("conv.weight")  # darknet decays convolution weights only
            groups.setdefault((scale, decay), []).append(p)
        params = [
            {"params": ps, "lr_scale": sc, "weight_decay": s.decay if dec else 0.0} for (sc, dec), ps in groups.items()
        ]
        return torch.optim.SGD(params, lr=s.schedule.rate(1), momentum=s.momentum, dampening=0)

    def _input_size(self, images: Tensor) -> tuple[int, int]:
        """darknet's multi-scale rule (random= on the last [yolo]): a new size every 10 iterations."""
        s = self.settings
        if not s.multi_scale:
            return images.shape[2], images.shape[3]
        if self._size is None or self._size_count % 10 == 0:
            coef = 1.4 if s.multi_scale == 1 else s.multi_scale
            g = torch.Generator().manual_seed(1_000_003 * self.iteration + 17)  # the same on every process
            lo, hi = sorted((1.0, coef))  # rand_scale: uniform in [1, coef], inverted half the time
            scale = lo + (hi - lo) * float(torch.rand((), generator=g))
            value = scale if int(torch.randint(0, 2, (), generator=g)) else 1 / scale
            h0, w0 = self.model.height, self.model.width
            step = s.resize_step
            dim_w, dim_h = round(value * w0 / step + 1) * step, round(value * h0 / step + 1) * step
            if value < 1 and (dim_w > w0 or dim_h > h0):
                dim_w, dim_h = w0, h0
            max_w, max_h = round(coef * w0 / step + 1) * step, round(coef * h0 / step + 1) * step
            if self._avg_loss < 0 or self.iteration + 1 > s.schedule.max_batches - 100:
                dim_w, dim_h = max_w, max_h
            self._size = (max(dim_h, step), max(dim_w, step))
        self._size_count += 1
        return self._size

    def step(self, images: Tensor, targets: Tensor) -> StepStats:
        """One iteration on this process's ``images`` (batch / world of them) and ``targets``
        (M, 6), image indices relative to ``images``."""
        start = time.perf_counter()
        s = self.settings
        n = images.shape[0]
        if n != self.images_per_process:
            raise ValueError(
                f"images: {n} for this iteration; batch={s.batch} over {self.world} process(es) needs "
                f"{self.images_per_process}"
            )
        cut = self._cut()
        for name, p in self.model.named_parameters():
            if name not in self._frozen_forever:
                p.requires_grad_((_layer_of(name) or 0) > cut)
        size = self._input_size(images)
        mini = n // s.subdivisions
        lr = self.lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        images = images.to(self.device, non_blocking=True)
        targets = targets.cpu()  # YoloLoss plans the assignments on the CPU: no wait for the device
        totals = torch.zeros(5, device=self.device)
        autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16 if self.amp == "bf16" else torch.float16)
            if self.amp
            else nullcontext()
        )
        for k in range(s.subdivisions):
            x = images[k * mini : (k + 1) * mini]
            if x.shape[2:] != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            sel = (targets[:, 0] >= k * mini) & (targets[:, 0] < (k + 1) * mini)
            t = targets[sel]
            t = torch.cat([t[:, :1] - k * mini, t[:, 1:]], 1)
            sync = self.world > 1 and k < s.subdivisions - 1 and hasattr(self.forward, "no_sync")
            with self.forward.no_sync() if sync else nullcontext():  # type: ignore[operator]
                with autocast:
                    heads = self.forward(x)
                loss = self.loss_fn(heads, t.float(), input_size=size)
                self.scaler.scale(loss / n).backward()
            parts = self.loss_fn.parts
            assert parts is not None
            totals += torch.stack(
                [
                    loss.detach(),
                    parts.box,
                    parts.objectness,
                    parts.classes,
                    sum(parts.darknet_cost) / len(parts.darknet_cost),
                ]
            ).float()
        self._update()
        if self.world > 1:
            dist.all_reduce(totals)
        values = (totals / s.batch).tolist()
        self._avg_loss = values[0] if self._avg_loss < 0 else 0.9 * self._avg_loss + 0.1 * values[0]
        return StepStats(
            self.iteration, lr, values[0], values[1], values[2], values[3], values[4], s.batch,
            time.perf_counter() - start, size,
        )  # fmt: skip

    def _update(self) -> None:
        for p in self.model.parameters():  # darknet decays and moves layers whose backward it skipped
            if p.grad is None and not p.requires_grad and id(p) in self._optimized:
                p.grad = torch.zeros_like(p)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.iteration += 1
        with torch.no_grad():
            for index, clip in self._clip.items():
                layer = self.model.layers[index]
                if isinstance(layer, L.Convolutional) and clip:
                    layer.conv.weight.clamp_(-clip, clip)
        self._ema_step()

    def _ema_step(self) -> None:
        """darknet's EMA (train_network_waitkey), after the update of iteration ``self.iteration``."""
        s = self.settings
        alpha, it, max_batches = s.ema_alpha, self.iteration, s.schedule.max_batches
        if not alpha or it < max_batches // 2:
            return
        with torch.no_grad():
            if self.ema is None:  # convolution weights, biases and BatchNorm scales: every parameter
                self.ema = {n: p.detach().clone() for n, p in self.model.named_parameters()}
            apply_at = max_batches - 1000
            if it == apply_at:
                for n, p in self.model.named_parameters():
                    p.copy_(self.ema[n])
            elif it < apply_at:
                for n, p in self.model.named_parameters():
                    self.ema[n].mul_(alpha).add_(p.detach(), alpha=1 - alpha)

    # -- checkpoints

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "iteration": self.iteration,
            "seen": self.seen,
            "ema": self.ema,
            "avg_loss": self._avg_loss,
            "size": (self._size, self._size_count),
            "batch": self.settings.batch,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.iteration = int(state["iteration"])
        self.ema = state.get("ema")
        self._avg_loss = float(state.get("avg_loss", -1.0))
        self._size, self._size_count = state.get("size", (None, 0))
        if self.ema is not None:
            self.ema = {k: v.to(self.device) for k, v in self.ema.items()}

    def save_weights(self, path: str | Path, ema: bool = False) -> None:
        """The model (or its EMA) as darknet ``.weights``, ``seen`` = images seen."""
        major, minor, revision, _ = self.model.weights_header
        self.model.weights_header = (major, minor, revision, self.seen)
        if not ema:
            self.model.save_darknet_weights(path)
            return
        if self.ema is None:
            raise ValueError("no EMA weights yet (ema_alpha unset, or before max_batches / 2)")
        model = copy.deepcopy(self.model)
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(self.ema[name])
        model.save_darknet_weights(path)


def _default_device(rank: int) -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
    return torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# The loop


class EpochSampler(torch.utils.data.Sampler[int]):
    """Indices of a seeded permutation per epoch, this process's share of each iteration
    (``per_process`` consecutive indices of every ``per_process x world`` block), from iteration
    ``start`` on; whole iterations only."""

    def __init__(self, length: int, per_process: int, rank: int, world: int, seed: int) -> None:
        self.length, self.per, self.rank, self.world, self.seed = length, per_process, rank, world, seed
        self.epoch, self.start = 0, 0
        if self.iterations < 1:
            raise ValueError(f"{length} images are fewer than one iteration's {per_process * world}")

    @property
    def iterations(self) -> int:
        return self.length // (self.per * self.world)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.length, generator=g).tolist()
        block = self.per * self.world
        for it in range(self.start, self.iterations):
            base = it * block + self.rank * self.per
            yield from order[base : base + self.per]

    def __len__(self) -> int:
        return (self.iterations - self.start) * self.per


@dataclass
class TrainResult:
    """What a :func:`train` run wrote and did."""

    cfg: Path
    weights: Path
    checkpoint: Path
    iterations: int
    seen: int
    seconds: float
    history: list[StepStats] = field(default_factory=list, repr=False)


def train(
    cfg: str | Path,
    data: str | Path | DataConfig,
    output: str | Path,
    *,
    weights: str | Path | None = None,
    clear: bool = False,
    resume: str | Path | None = None,
    epochs: float | None = None,
    max_batches: int | None = None,
    batch: int | None = None,
    subdivisions: int | None = None,
    image_size: int | tuple[int, int] | None = None,
    device: str | torch.device | None = None,
    amp: str | None = None,
    fuse: bool = True,
    compile: bool = False,
    workers: int = 2,
    seed: int = 0,
    net_overrides: Mapping[str, object] | None = None,
    save_every: int = 100,
    progress: bool | Callable[[StepStats], None] = True,
) -> TrainResult:
    """Train ``cfg`` on the ``train`` list of ``data`` (an obj.data) and write checkpoints to
    ``output``. The cfg's ``classes``/``filters`` are set to the data's classes. ``weights``: a
    darknet ``.weights`` file to start from (training continues at the iteration its ``seen``
    implies, as darknet does, unless ``clear``); ``resume``: a ``_last.pt`` of an earlier run.
    ``epochs`` or ``max_batches`` (default the cfg's) sets the length; ``batch``/``subdivisions``/
    ``image_size``/``net_overrides`` override the cfg's [net]. ``seed`` sets the initial weights, the
    data order and the augmentation: one seed, one run. Under torchrun every process calls
    this; process 0 writes the files and shows the progress bar (or calls ``progress``)."""
    from torch_mish.darknet.data import Augment, DarknetDataset, read_data_config

    data_cfg = data if not isinstance(data, (str, Path)) else read_data_config(data)
    rank, world = _init_distributed()
    out = Path(output)
    name = Path(str(cfg)).stem if "\n" not in str(cfg) else "model"
    net: dict[str, object] = dict(net_overrides or {})
    if image_size is not None:
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        net.update(height=h, width=w)
    text = edit_cfg(cfg if "\n" in str(cfg) else Path(cfg), classes=data_cfg.classes, net=net)
    with torch.random.fork_rng(devices=[]):  # the same seed, the same initial weights; the caller's RNG untouched
        torch.manual_seed(seed)
        model = Darknet(text)
    if weights is not None:
        model.load_darknet_weights(weights)
    model.source = f"{name}.cfg"
    if batch is not None:
        net.update(batch=batch, subdivisions=subdivisions or 1)
    elif subdivisions is not None:
        net["subdivisions"] = subdivisions
    settings = NetSettings.from_model(model, net)
    dataset = DarknetDataset(
        data_cfg.split("train"), (model.height, model.width), data_cfg.classes, Augment.from_model(model),
        max_boxes=int(_num(model.yolo_layers[-1].train_options, "max", 200, "[yolo]", True)), seed=seed,
    )  # fmt: skip
    sampler = EpochSampler(len(dataset), settings.batch // world, rank, world, seed)
    total = max_batches if max_batches is not None else settings.schedule.max_batches
    if epochs is not None:
        total = math.ceil(epochs * sampler.iterations)
    if total < 1:
        raise ValueError("nothing to train: give epochs= or max_batches= (the cfg's max_batches is 0)")
    # the run's length is darknet's max_batches (poly, sgdr, EMA and multi-scale count from it)
    trainer = Trainer(model, device, amp=amp, fuse=fuse, compile=compile, net_overrides={**net, "max_batches": total})
    if resume is not None:
        trainer.load_state_dict(torch.load(resume, map_location=trainer.device, weights_only=False))
    elif weights is not None and not clear:
        trainer.iteration = model.weights_header[3] // trainer.batch
    paths = (out / f"{name}_last.pt", out / f"{name}_last.weights")
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.cfg").write_text(text)
    started = time.perf_counter()
    history = _loop(trainer, dataset, sampler, total, workers, progress, paths, save_every)
    final = out / f"{name}_final.weights"
    if rank == 0:
        _save(trainer, *paths)
        trainer.save_weights(final)
        if trainer.ema is not None:
            trainer.save_weights(out / f"{name}_ema.weights", ema=True)
    if world > 1:
        dist.barrier()
    return TrainResult(
        out / f"{name}.cfg", final, paths[0], trainer.iteration, trainer.seen, time.perf_counter() - started, history
    )


def _loop(
    trainer: Trainer,
    dataset: torch.utils.data.Dataset,
    sampler: EpochSampler,
    total: int,
    workers: int,
    progress: bool | Callable[[StepStats], None],
    paths: tuple[Path, Path],
    save_every: int,
) -> list[StepStats]:
    """Iterations until ``total``, epoch by epoch from where the trainer is."""
    from torch_mish.darknet.data import collate

    s, rank = trainer.settings, trainer.rank
    mini = trainer.images_per_process // s.subdivisions
    bar = None
    if progress is True and rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=min(trainer.iteration, total), unit="it", dynamic_ncols=True)
    callback = progress if callable(progress) else None
    history: list[StepStats] = []
    try:
        while trainer.iteration < total:
            epoch, offset = divmod(trainer.iteration, sampler.iterations)
            sampler.set_epoch(epoch, offset)
            dataset.set_epoch(epoch)  # type: ignore[attr-defined]
            loader = torch.utils.data.DataLoader(
                dataset, batch_size=mini, sampler=sampler, num_workers=workers, collate_fn=collate,
                pin_memory=trainer.device.type == "cuda",
            )  # fmt: skip
            batches: list[tuple[Tensor, Tensor]] = []
            for images, targets, _ in loader:
                batches.append((images, targets))
                if len(batches) < s.subdivisions:
                    continue
                stats = trainer.step(*_join(batches))
                batches = []
                history.append(stats)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(
                        f"loss {stats.loss:.3g} (box {stats.box:.3g} obj {stats.objectness:.3g} "
                        f"cls {stats.classes:.3g}) lr {stats.lr:.3g} {stats.images / stats.seconds:.0f} img/s"
                    )
                if rank == 0 and save_every and trainer.iteration % save_every == 0:
                    _save(trainer, *paths)
                if callback is not None and rank == 0:
                    callback(stats)
                if trainer.iteration >= total:
                    break
    finally:
        if bar is not None:
            bar.close()
    return history


def _join(batches: Sequence[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    images, rows, offset = [], [], 0
    for x, t in batches:
        images.append(x)
        rows.append(torch.cat([t[:, :1] + offset, t[:, 1:]], 1))
        offset += x.shape[0]
    return torch.cat(images), torch.cat(rows)


def _save(trainer: Trainer, pt: Path, weights: Path) -> None:
    tmp = pt.with_suffix(".pt.tmp")
    torch.save(trainer.state_dict(), tmp)
    tmp.replace(pt)
    trainer.save_weights(weights)


def _init_distributed() -> tuple[int, int]:
    """Join torchrun's process group (gloo on the CPU, NCCL on GPUs) when WORLD_SIZE > 1."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return _rank_world()


__all__ = [
    "POLICIES",
    "EpochSampler",
    "NetSettings",
    "Schedule",
    "StepStats",
    "TrainOptionError",
    "TrainResult",
    "Trainer",
    "edit_cfg",
    "short_run_net",
    "train",
]
