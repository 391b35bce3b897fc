"""Darknet ``.weights`` files: int32 major, minor, revision; ``seen`` as uint64 when
major * 10 + minor >= 2, else uint32; then float32 little-endian values for each layer in cfg order:
[convolutional] biases (n), with batch_normalize the BatchNorm scales, running means and running
variances (n each), then the weights (n * c/groups * size * size); [batchnorm] biases, scales, means,
variances. Layers with ``dontload=1`` are skipped when loading, and ``dontloadscales=1`` skips a
layer's BatchNorm values, as darknet does; saving writes every layer.

Loading checks the whole file against the cfg before it assigns anything, so a wrong file leaves the
model unchanged.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor, nn

from torch_mish.darknet import layers as L

# Versions darknet has written (0.1.x; 0.2.0 by pjreddie's darknet; 0.2.5 by AlexeyAB's).
KNOWN_MAJOR = 0
KNOWN_MINORS = (0, 1, 2)


class WeightsError(ValueError):
    """A .weights file that does not fit the model's cfg."""


class DarknetLayers(Protocol):
    """What the file format needs of a model (a :class:`~torch_mish.darknet.Darknet` has it): its
    darknet layers (:mod:`torch_mish.darknet.layers`) in cfg order, and the header (major, minor,
    revision, seen) of the file it was loaded from, which saving writes back."""

    layers: nn.ModuleList
    weights_header: tuple[int, int, int, int]


def _entries(model: DarknetLayers, loading: bool) -> list[tuple[int, str, Tensor]]:
    """(layer index, what, tensor) in file order."""
    entries = []
    for layer in model.layers:
        if loading and getattr(layer, "dontload", False):
            continue
        i = layer.index
        if isinstance(layer, L.Convolutional):
            bn = layer.bn
            if bn is None:
                entries.append((i, "biases", layer.conv.bias))
            else:
                entries.append((i, "biases", bn.bias))
                if not (loading and getattr(layer, "dontloadscales", False)):
                    entries += [(i, "scales", bn.weight), (i, "means", bn.running_mean)]
                    entries.append((i, "variances", bn.running_var))
            entries.append((i, "weights", layer.conv.weight))
        elif isinstance(layer, L.BatchNorm):
            bn = layer.bn
            entries += [(i, "biases", bn.bias), (i, "scales", bn.weight), (i, "means", bn.running_mean)]
            entries.append((i, "variances", bn.running_var))
    return entries


def _header_size(major: int, minor: int) -> int:
    return 12 + (8 if major * 10 + minor >= 2 else 4)


def load_darknet_weights(model: DarknetLayers, path: str | Path) -> None:
    """Load ``path`` into ``model`` (a :class:`~torch_mish.darknet.Darknet`). Raises
    :class:`WeightsError` (model unchanged) when the file's header is of an unknown version or its
    size does not match the cfg."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 12:
        raise WeightsError(f"{path}: {len(data)} bytes, too short for a darknet .weights header (at least 16)")
    major, minor, revision = struct.unpack_from("<3i", data)
    if major != KNOWN_MAJOR or minor not in KNOWN_MINORS:
        raise WeightsError(
            f"{path}: unknown .weights header version {major}.{minor}.{revision} "
            f"(known: {KNOWN_MAJOR}.{KNOWN_MINORS[0]}-{KNOWN_MAJOR}.{KNOWN_MINORS[-1]}; darknet writes 0.2.5)"
        )
    header = _header_size(major, minor)
    if len(data) < header:
        raise WeightsError(
            f"{path}: {len(data)} bytes, shorter than the {header}-byte header of version {major}.{minor}"
        )
    seen = struct.unpack_from("<Q" if header == 20 else "<I", data, 12)[0]
    body = len(data) - header
    entries = _entries(model, loading=True)
    expected = sum(t.numel() for _, _, t in entries)
    if body % 4 or body // 4 != expected:
        found = f"{body // 4} floats" + (f" and {body % 4} stray bytes" if body % 4 else "")
        detail = ""
        if body // 4 < expected:  # say where the file runs out
            offset = 0
            for i, what, t in entries:
                if offset + t.numel() > body // 4:
                    layer = model.layers[i]
                    detail = f"; it ends in layer {i} ([{layer.section}] {layer.where}) {what}"
                    break
                offset += t.numel()
        kind = "truncated" if body // 4 < expected else "too long for the cfg"
        raise WeightsError(
            f"{path}: {kind}: the cfg needs {expected} floats after the {header}-byte header, found {found}{detail}"
        )
    values = torch.from_numpy(np.frombuffer(data, dtype="<f4", offset=header).astype(np.float32))
    offset = 0
    sources = []
    for _, _, t in entries:
        sources.append(values[offset : offset + t.numel()].view(t.shape))
        offset += t.numel()
    with torch.no_grad():
        for (_, _, t), src in zip(entries, sources, strict=True):
            t.copy_(src)
    model.weights_header = (major, minor, revision, seen)


def save_darknet_weights(model: DarknetLayers, path: str | Path) -> None:
    """Write ``model``'s weights to ``path`` in darknet's format, with the header it was loaded
    with (0.2.5, seen 0 for a model that never loaded a file)."""
    major, minor, revision, seen = model.weights_header
    parts = [struct.pack("<3i", major, minor, revision)]
    parts.append(struct.pack("<Q" if _header_size(major, minor) == 20 else "<I", seen))
    for _, _, t in _entries(model, loading=False):
        parts.append(t.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4").tobytes())
    # Written beside the target and renamed over it: an interrupted write (a training run stopped
    # while it checkpoints) leaves the previous file whole.
    target = Path(path)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(b"".join(parts))
    partial.replace(target)
