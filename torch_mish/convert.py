"""Swap a model's Mish modules for torch_mish.Mish (and back), like
nn.SyncBatchNorm.convert_sync_batchnorm, and fuse BatchNorm2d -> Mish pairs into BatchNormMish.

A module is replaced when it is nn.Mish, or when it *computes* Mish: a stateless leaf module (no
parameters, buffers or children) whose output on a probe tensor equals F.mish's in float64 (float32
on its CUDA device for CUDA-only modules such as mish-cuda's MishCuda). The class name is never the
criterion, so a module called "Mish" that computes something else stays, and a hand-written
``x * tanh(softplus(x))`` under any name is found.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections import Counter

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from torch_mish.nn import BatchNormMish, Mish

logger = logging.getLogger("torch_mish.convert")

# torch.nn's own stateless modules are known not to be Mish; probing them is wasted work.
_KNOWN_NOT_MISH = tuple(
    getattr(nn, name)
    for name in (
        "ReLU",
        "ReLU6",
        "LeakyReLU",
        "SiLU",
        "GELU",
        "Sigmoid",
        "Tanh",
        "Softplus",
        "Hardswish",
        "Identity",
        "MaxPool2d",
        "AvgPool2d",
        "Upsample",
        "Dropout",
        "Flatten",
        "ELU",
        "Hardtanh",
    )
)


def _probe(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Values across Mish's regimes, every one of them checked: the minimum (-1.19), the branch point
    of fast kernels (-0.6), zero, the saturated tail and very negative inputs, out to +-40 (where a
    clamp or a cut-off softplus shows). A 4-d tensor, as activations are."""
    values = torch.cat(
        [
            torch.linspace(-12, 12, 233, dtype=torch.float64),
            torch.tensor([-1.1924, -0.6, 20.0, 25.0, 30.0, 40.0, -20.0, -25.0, -30.0, -40.0], dtype=torch.float64),
        ]
    )
    assert values.numel() == 243
    return values.reshape(3, 3, 27, 1).to(device=device, dtype=dtype)


def computes_mish(module: nn.Module) -> bool:
    """True if ``module`` is a stateless leaf that computes Mish on a probe tensor."""
    if isinstance(module, (nn.Mish, Mish)):
        return True
    if isinstance(module, _KNOWN_NOT_MISH) or any(True for _ in module.children()):
        return False
    if any(True for _ in module.parameters()) or any(True for _ in module.buffers()):
        return False
    attempts = [(torch.device("cpu"), torch.float64)]
    if torch.cuda.is_available():
        attempts.append((torch.device("cuda"), torch.float32))
    for device, dtype in attempts:
        x = _probe(device, dtype)
        try:
            with torch.no_grad():
                y = module(x.clone())
        except Exception:  # noqa: BLE001 - a module that can't run on the probe is not recognized
            continue
        if not isinstance(y, torch.Tensor) or y.shape != x.shape:
            return False
        tol = 1e-10 if dtype == torch.float64 else 1e-5
        return torch.allclose(y.to(torch.float64), F.mish(x.to(torch.float64)), rtol=tol, atol=tol)
    return False


def _swap(model: nn.Module, match: type | None, make: type, prefix: str = "") -> list[str]:
    replaced = []
    for name, child in list(model.named_children()):
        path = f"{prefix}{name}"
        is_target = (
            isinstance(child, match) if match is not None else computes_mish(child) and not isinstance(child, make)
        )
        if is_target:
            new = make(inplace=bool(getattr(child, "inplace", False)))
            new.train(child.training)
            setattr(model, name, new)
            logger.info("replaced %s (%s) with %s.%s", path, type(child).__name__, make.__module__, make.__name__)
            replaced.append(path)
        else:
            replaced += _swap(child, match, make, f"{path}.")
    return replaced


def convert_mish(model: nn.Module) -> nn.Module:
    """Replace nn.Mish and every module that computes Mish with torch_mish.Mish, in place.

    Training mode, device and dtype are kept (Mish has no state). Returns ``model``; if ``model``
    itself computes Mish, returns a new torch_mish.Mish. Logs each replacement (logger
    ``torch_mish.convert``) and a summary.
    """
    if computes_mish(model) and not isinstance(model, Mish):
        return Mish(inplace=bool(getattr(model, "inplace", False))).train(model.training)
    replaced = _swap(model, None, Mish)
    logger.info("convert_mish: %d module(s) now use torch_mish.Mish", len(replaced))
    return model


def revert_mish(model: nn.Module) -> nn.Module:
    """Replace every torch_mish.Mish with torch.nn.Mish (for environments without torch_mish)."""
    if isinstance(model, Mish):
        return nn.Mish(inplace=model.inplace).train(model.training)
    replaced = _swap(model, Mish, nn.Mish)
    logger.info("revert_mish: %d module(s) now use torch.nn.Mish", len(replaced))
    return model


class _MishLeafTracer(torch.fx.Tracer):
    """Traces through user modules but stops at BatchNorm (a torch.nn leaf) and at Mish modules, so
    the graph shows which BatchNorm feeds which Mish."""

    def __init__(self, mish_modules: set[int]) -> None:
        super().__init__()
        self.mish_modules = mish_modules

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        leaf = id(m) in self.mish_modules or isinstance(m, BatchNormMish)  # fused already: opaque
        return leaf or super().is_leaf_module(m, module_qualified_name)


def _batchnorm_mish_pairs(module: nn.Module, prefix: str, mish_modules: set[int]) -> list[tuple[str, str]]:
    """(BatchNorm path, Mish path) for each BatchNorm2d whose only consumer is a Mish module applied
    to it alone. Modules FX cannot trace (data-dependent control flow) are searched child by child."""
    try:
        graph = _MishLeafTracer(mish_modules).trace(module)
    except Exception as exc:  # noqa: BLE001 - any tracing failure means: look inside instead
        logger.debug("fuse_batchnorm_mish: %s is not traceable (%s); searching its children", prefix or "model", exc)
        return [
            pair
            for name, child in module.named_children()
            for pair in _batchnorm_mish_pairs(child, f"{prefix}{name}.", mish_modules)
        ]
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or calls[node.target] != 1:
            continue
        if not isinstance(module.get_submodule(node.target), nn.modules.batchnorm._BatchNorm):
            continue
        users = list(node.users)
        if len(users) != 1:
            continue  # the BatchNorm output is used elsewhere too: it must exist, nothing to save
        act = users[0]
        if act.op != "call_module" or calls[act.target] != 1 or act.args != (node,) or act.kwargs:
            continue
        if id(module.get_submodule(act.target)) in mish_modules:
            pairs.append((f"{prefix}{node.target}", f"{prefix}{act.target}"))
    return pairs


class FusedMish(nn.Identity):
    """Stands where a Mish module was before :func:`fuse_batchnorm_mish` moved it into the
    BatchNormMish at ``batchnorm`` (a path from the model that was fused)."""

    def __init__(self, batchnorm: str) -> None:
        super().__init__()
        self.batchnorm = batchnorm

    def extra_repr(self) -> str:
        return f"fused into {self.batchnorm}"


def _has_hooks(module: nn.Module) -> bool:
    hooks = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return any(getattr(module, name, None) for name in hooks)


def _pairs_in_both_modes(model: nn.Module, mish_modules: set[int]) -> tuple[list[tuple[str, str]], dict]:
    """Pairs that are safe in training and in eval mode (FX bakes `self.training` into the trace, and
    a module may route the BatchNorm output elsewhere in one mode only), and the pairs found in one
    mode only, with that mode."""
    modes = {name: m.training for name, m in model.named_modules()}
    # Tracing runs Python forward code, and some of it updates buffers in place as it goes (timm's
    # BatchNormAct2d counts batches): put every buffer back afterwards.
    buffers = [(b, b.clone()) for b in model.buffers()]
    try:
        found = []
        for training in (True, False):
            model.train(training)
            found.append(set(_batchnorm_mish_pairs(model, "", mish_modules)))
    finally:
        for name, m in model.named_modules():
            m.training = modes[name]
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
    one_mode = {pair: "eval" for pair in found[0] - found[1]} | {pair: "training" for pair in found[1] - found[0]}
    return sorted(found[0] & found[1]), one_mode


def _applies_own_mish(module: nn.Module, mish_modules: set[int]) -> bool:
    """True for a BatchNorm2d subclass that applies a Mish child of its own after normalizing (timm's
    BatchNormAct2d and the like): one child in ``mish_modules``, the rest identities, and the module
    computes BatchNorm2d then Mish, checked on a probe in training and in eval mode on copies (so its
    running statistics do not move)."""
    if not isinstance(module, nn.BatchNorm2d) or type(module) is nn.BatchNorm2d or isinstance(module, BatchNormMish):
        return False
    children = list(module.children())
    mish = [c for c in children if id(c) in mish_modules]
    if len(mish) != 1 or any(not isinstance(c, nn.Identity) for c in children if c is not mish[0]):
        return False
    param = next(module.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    if device.type == "meta":
        return False
    generator = torch.Generator().manual_seed(0)
    x = (torch.randn(4, module.num_features, 3, 3, dtype=torch.float64, generator=generator) * 4).to(device)
    for training in (True, False):
        candidate = copy.deepcopy(module).double().train(training)
        plain = copy.deepcopy(candidate)  # the same state, normalized by BatchNorm2d's own forward
        try:
            with torch.no_grad():
                same = torch.allclose(candidate(x), F.mish(nn.BatchNorm2d.forward(plain, x)), rtol=1e-10, atol=1e-10)
        except Exception:  # noqa: BLE001 - a module that cannot run the probe is not recognized
            return False
        if not same:
            return False
    return True


def fuse_batchnorm_mish(model: nn.Module) -> nn.Module:
    """Replace each ``BatchNorm2d`` whose output goes only to a Mish module by :class:`BatchNormMish`,
    and that Mish module by a :class:`FusedMish` placeholder (an identity), in place; and each
    BatchNorm2d subclass that applies a Mish module of its own (timm's ``BatchNormAct2d``) by a
    BatchNormMish. Returns ``model``.

    Halves what those layers keep for backward in eager training (one tensor instead of two; see
    BatchNormMish); the outputs are the same. Pairs are found by tracing the model with torch.fx in
    training and in eval mode; a pair is left alone when, in either mode, the BatchNorm output has
    another consumer, or when a module is shared, called twice, or has hooks (a hook on the BatchNorm
    would see the Mish output). Modules FX cannot trace are searched child by child; a parent that
    cannot be traced is assumed not to call its children's submodules itself. State-dict keys do not
    change. Logs each fusion (logger ``torch_mish.convert``) and warns, with the reason, for each
    BatchNorm -> Mish pair it leaves unfused.

    Fuse for training: :func:`unfuse_batchnorm_mish` restores the pairs before conv-BN folding,
    SyncBatchNorm conversion or any tool that looks for BatchNorm2d modules.
    """
    mish_modules = {id(m) for m in model.modules() if computes_mish(m)}
    paths_per_module = Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
    left: list[str] = []

    def blocked(*modules: nn.Module) -> str | None:
        if any(paths_per_module[id(m)] > 1 for m in modules):
            return "a module is shared (registered at more than one path)"
        if any(_has_hooks(m) for m in modules):
            return "a module has hooks (they would see the fused output)"
        return None

    fused = 0
    pairs, one_mode = _pairs_in_both_modes(model, mish_modules)
    for bn_path, act_path in pairs:
        bn, act = model.get_submodule(bn_path), model.get_submodule(act_path)
        reason = blocked(bn, act)
        if type(bn) is not nn.BatchNorm2d:  # subclasses (SyncBatchNorm, ...) may normalize differently
            reason = f"{type(bn).__name__} is not fused, only nn.BatchNorm2d (fuse before SyncBatchNorm conversion)"
        if reason:
            left.append(f"{bn_path} -> {act_path}: {reason}")
            continue
        model.set_submodule(bn_path, BatchNormMish.from_batchnorm(bn))
        model.set_submodule(act_path, FusedMish(bn_path).train(act.training))
        logger.info("fused %s -> %s into BatchNormMish", bn_path, act_path)
        fused += 1
    for (bn_path, act_path), mode in sorted(one_mode.items()):
        left.append(f"{bn_path} -> {act_path}: in {mode} mode the BatchNorm output also goes elsewhere")
    for path, module in list(model.named_modules()):
        if not path or not _applies_own_mish(module, mish_modules):
            continue
        reason = blocked(module, *module.children())
        if reason:
            left.append(f"{path} ({type(module).__name__}): {reason}")
            continue
        model.set_submodule(path, BatchNormMish.from_batchnorm(module, original=module))
        logger.info("fused %s (%s) into BatchNormMish", path, type(module).__name__)
        fused += 1
    logger.info("fuse_batchnorm_mish: %d BatchNorm -> Mish pair(s) fused", fused)
    if left:
        warnings.warn(
            f"fuse_batchnorm_mish left {len(left)} BatchNorm -> Mish pair(s) unfused:\n  " + "\n  ".join(left),
            UserWarning,
            stacklevel=2,
        )
    return model


def unfuse_batchnorm_mish(model: nn.Module) -> nn.Module:
    """Undo :func:`fuse_batchnorm_mish` on the same model, in place: each BatchNormMish becomes an
    ``nn.BatchNorm2d`` (same parameters and buffers) and its placeholder a ``torch_mish.Mish``.
    Returns ``model``."""
    restored = 0
    for path, placeholder in list(model.named_modules()):
        if not isinstance(placeholder, FusedMish):
            continue
        fused = model.get_submodule(placeholder.batchnorm)
        if not isinstance(fused, BatchNormMish):
            raise ValueError(
                f"unfuse_batchnorm_mish: {path} says its Mish was fused into {placeholder.batchnorm}, which is "
                f"a {type(fused).__name__}; call unfuse_batchnorm_mish on the module that was fused"
            )
        model.set_submodule(placeholder.batchnorm, fused.to_batchnorm())
        model.set_submodule(path, Mish().train(placeholder.training))
        restored += 1
    for path, module in list(model.named_modules()):
        if isinstance(module, BatchNormMish) and module.original is not None:
            model.set_submodule(path, module.to_original())
            restored += 1
    logger.info("unfuse_batchnorm_mish: %d pair(s) restored", restored)
    return model
