"""darknet .weights files: round trip byte for byte, values land where darknet puts them, and bad
files fail with the expected vs found counts and leave the model unchanged."""

from __future__ import annotations

import struct
from pathlib import Path

import darknet_ref
import numpy as np
import pytest
import torch
from compare import net, numpy_rng

import torch_mish
from torch_mish.darknet import Darknet, WeightsError, packaged_cfg

MIXED = (
    net(8, 8)
    + "[convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\nstride=1\npad=1\nactivation=mish\n"
    + "[convolutional]\nfilters=6\nsize=1\nstride=1\nactivation=linear\n"  # bias, no BatchNorm
    + "[batchnorm]\n"
    + "[convolutional]\nbatch_normalize=1\nfilters=4\ngroups=2\nsize=3\nstride=1\npad=1\nactivation=leaky\n"
)


@pytest.mark.parametrize("cfg", ["mixed", "yolov4-tiny", "yolov4-csp"])
@pytest.mark.parametrize("minor", [2, 1], ids=["seen64", "seen32"])
def test_round_trip_is_byte_identical(cfg: str, minor: int, gen: torch.Generator, tmp_path) -> None:  # noqa: ANN001
    text = MIXED if cfg == "mixed" else packaged_cfg(cfg).read_text()
    data = darknet_ref.random_weights(text, numpy_rng(gen), minor=minor, seen=4_000_000_123 if minor == 2 else 77)
    (tmp_path / "in.weights").write_bytes(data)
    model = Darknet(text)
    model.load_darknet_weights(tmp_path / "in.weights")
    model.save_darknet_weights(tmp_path / "out.weights")
    assert (tmp_path / "out.weights").read_bytes() == data
    assert model.weights_header[:2] == (0, minor)


def test_values_land_in_darknet_order(gen: torch.Generator, tmp_path) -> None:  # noqa: ANN001
    data = darknet_ref.random_weights(MIXED, numpy_rng(gen))
    (tmp_path / "w").write_bytes(data)
    model = Darknet(MIXED)
    model.load_darknet_weights(tmp_path / "w")
    floats = torch.from_numpy(np.frombuffer(data, "<f4", offset=20).copy())
    expected = []
    c0, c1, bn, c3 = model.layers
    expected += [c0.bn.bias, c0.bn.weight, c0.bn.running_mean, c0.bn.running_var, c0.conv.weight]
    expected += [c1.conv.bias, c1.conv.weight]
    expected += [bn.bn.bias, bn.bn.weight, bn.bn.running_mean, bn.bn.running_var]
    expected += [c3.bn.bias, c3.bn.weight, c3.bn.running_mean, c3.bn.running_var, c3.conv.weight]
    assert tuple(c3.conv.weight.shape) == (4, 3, 3, 3)  # n x c/groups x size x size
    torch.testing.assert_close(torch.cat([t.detach().reshape(-1) for t in expected]), floats, rtol=0, atol=0)


def test_fresh_model_saves_darknets_header(tmp_path) -> None:  # noqa: ANN001
    model = Darknet(MIXED)
    model.save_darknet_weights(tmp_path / "w")
    data = (tmp_path / "w").read_bytes()
    assert struct.unpack_from("<3iQ", data) == (0, 2, 5, 0)
    n = sum(p.numel() for p in model.parameters()) + sum(b.numel() for n, b in model.named_buffers() if "running" in n)
    assert len(data) == 20 + 4 * n


def test_dontload_and_dontloadscales(gen: torch.Generator, tmp_path) -> None:  # noqa: ANN001
    """darknet skips a dontload layer's values and a dontloadscales layer's BatchNorm values."""
    cfg = MIXED.replace("activation=mish\n", "activation=mish\ndontload=1\n").replace(
        "activation=leaky\n", "activation=leaky\ndontloadscales=1\n"
    )
    model = Darknet(cfg)
    c0, c1, bn, c3 = model.layers
    before0, before_scales = c0.conv.weight.detach().clone(), c3.bn.weight.detach().clone()
    values = [c1.conv.bias, c1.conv.weight, bn.bn.bias, bn.bn.weight, bn.bn.running_mean, bn.bn.running_var]
    values += [c3.bn.bias, c3.conv.weight]
    sizes = [t.numel() for t in values]
    floats = torch.rand(sum(sizes), generator=gen)
    (tmp_path / "w").write_bytes(struct.pack("<3iQ", 0, 2, 5, 0) + floats.numpy().astype("<f4").tobytes())
    model.load_darknet_weights(tmp_path / "w")
    torch.testing.assert_close(torch.cat([t.detach().reshape(-1) for t in values]), floats, rtol=0, atol=0)
    assert torch.equal(c0.conv.weight, before0) and torch.equal(c3.bn.weight, before_scales)


def _bad(data: bytes, case: str) -> bytes:
    if case == "truncated":
        return data[:-4]
    if case == "truncated-early":
        return data[: 20 + 4 * 10]
    if case == "too-long":
        return data + struct.pack("<f", 1.0)
    if case == "stray-bytes":
        return data + b"\0\0"
    if case == "version":
        return struct.pack("<3i", 1, 0, 0) + data[12:]
    return data[:10]  # shorter than a header


BAD = {
    "truncated": r"w: truncated: the cfg needs {n} floats after the 20-byte header, found {m} floats; it ends in "
    r"layer 3 \(\[convolutional\] <cfg text>:19\) weights",
    "truncated-early": r"truncated: .* found 10 floats; it ends in layer 0 \(\[convolutional\] <cfg text>:6\) means",
    "too-long": r"w: too long for the cfg: the cfg needs {n} floats after the 20-byte header, found {p} floats$",
    "stray-bytes": r"the cfg needs {n} floats .* found {n} floats and 2 stray bytes",
    "version": r"unknown \.weights header version 1\.0\.0 \(known: 0\.0-0\.2; darknet writes 0\.2\.5\)",
    "header": r"10 bytes, too short for a darknet \.weights header",
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files_leave_the_model_unchanged(case: str, gen: torch.Generator, tmp_path) -> None:  # noqa: ANN001
    data = darknet_ref.random_weights(MIXED, numpy_rng(gen))
    n = (len(data) - 20) // 4
    (tmp_path / "w").write_bytes(_bad(data, case))
    model = Darknet(MIXED)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    header = model.weights_header
    with pytest.raises(WeightsError, match=BAD[case].format(n=n, m=n - 1, p=n + 1)):
        model.load_darknet_weights(tmp_path / "w")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert model.weights_header == header


def test_fused_model_loads_and_saves_the_same(gen: torch.Generator, tmp_path) -> None:  # noqa: ANN001
    """After fuse_batchnorm_mish the BatchNorm parameters keep their places in the file."""
    data = darknet_ref.random_weights(MIXED, numpy_rng(gen))
    (tmp_path / "in").write_bytes(data)
    model = torch_mish.fuse_batchnorm_mish(Darknet(MIXED).train())
    assert isinstance(model.layers[0].bn, torch_mish.BatchNormMish)
    model.load_darknet_weights(tmp_path / "in")
    model.save_darknet_weights(tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data


def test_the_format_depends_on_the_layers_not_on_darknet(gen: torch.Generator, tmp_path) -> None:  # noqa: ANN001
    """torch_mish.darknet.weights reads and writes any holder of darknet layers: it imports the layers,
    never the Darknet model (which imports it: no cycle)."""
    import ast
    import types

    from torch_mish.darknet import weights

    tree = ast.parse(Path(weights.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert "torch_mish.darknet.model" not in imported and "Darknet" not in names
    data = darknet_ref.random_weights(MIXED, numpy_rng(gen))
    (tmp_path / "in").write_bytes(data)
    holder = types.SimpleNamespace(layers=Darknet(MIXED).layers, weights_header=(0, 2, 5, 0))
    weights.load_darknet_weights(holder, tmp_path / "in")
    weights.save_darknet_weights(holder, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data
