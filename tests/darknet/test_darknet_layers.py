"""Each darknet section type against darknet's definition (the NumPy reference in darknet_ref.py,
written from darknet's C loops) on small hand-built cfgs, fresh random weights and inputs, float64."""

from __future__ import annotations

import pytest
import torch
from compare import build_with_random_weights, compare, net

from torch_mish.darknet import Darknet
from torch_mish.darknet import layers as L


def conv(filters: int, size: int = 3, stride: int = 1, act: str = "leaky", bn: int = 1, extra: str = "") -> str:
    return (
        f"[convolutional]\nbatch_normalize={bn}\nfilters={filters}\nsize={size}\nstride={stride}\npad=1\n"
        f"activation={act}\n{extra}\n"
    )


CONV_CASES = {
    "bn-leaky-stride2": conv(8, 3, 2),
    "bias-linear-1x1": conv(6, 1, 1, "linear", 0),
    "groups": conv(8, 3, 1, "mish") + conv(8, 3, 1, "mish", extra="groups=4"),
    "dilation": conv(8) + conv(8, 3, 1, "swish", extra="dilation=2"),
    "stride-x-y": conv(8, 3, 1, extra="stride_x=2\nstride_y=1"),
    "padding-key": "[convolutional]\nfilters=5\nsize=5\nstride=1\npadding=1\nactivation=relu\n",
    "pad-wins-over-padding": "[convolutional]\nfilters=5\nsize=5\nstride=2\npad=1\npadding=0\nactivation=linear\n",
    "default-logistic-no-pad": "[convolutional]\nfilters=4\nsize=3\nstride=1\n",
    "even-size": "[convolutional]\nfilters=4\nsize=2\nstride=2\nactivation=leaky\n",
    "antialiasing": conv(8, 3, 2, extra="antialiasing=1") + conv(8, 3, 2, extra="antialiasing=2"),
    "cbn": "[convolutional]\ncbn=1\nfilters=4\nsize=3\nstride=1\npad=1\nactivation=mish\n",
}

ACTIVATIONS = [
    "linear", "logistic", "loggy", "relu", "relu6", "elu", "selu", "gelu", "relie", "ramp", "leaky", "revleaky",
    "tanh", "plse", "stair", "hardtan", "lhtan", "swish", "mish", "hard_mish", "normalize_channels",
    "normalize_channels_softmax", "normalize_channels_softmax_maxval",
]  # fmt: skip


@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_convolutional(case: str, gen: torch.Generator, tmp_path) -> None:  # noqa: ANN001
    compare(net(13, 11) + CONV_CASES[case], gen, tmp_path)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_activation(act: str, gen: torch.Generator, tmp_path) -> None:  # noqa: ANN001
    # scale 3: inputs across the activations' pieces (plse's +-4, hard_mish's -2, stair's steps)
    compare(net(8, 8) + conv(6, 3, 1, act), gen, tmp_path, scale=3.0)


def test_batchnorm_is_darknets(gen: torch.Generator, tmp_path) -> None:  # noqa: ANN001
    """BatchNorm at inference: scale * (x - mean) / sqrt(var + 1e-5) + bias, and no conv bias."""
    model, _ = build_with_random_weights(net(8, 8) + conv(4, 3, 1, "linear"), gen, tmp_path)
    block = model.layers[0]
    assert block.conv.bias is None and block.bn.eps == 1e-5
    model.eval()
    x = torch.randn(1, 3, 8, 8, generator=gen)
    bn = block.bn
    expected = (block.conv(x) - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(bn.running_var.view(1, -1, 1, 1) + 1e-5)
    expected = expected * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(model(x), expected)


ROUTE = net(8, 8) + conv(4) + conv(6) + conv(8)
ROUTE_CASES = {
    "negative": "[route]\nlayers=-2\n",
    "absolute": "[route]\nlayers=0\n",
    "mixed": "[route]\nlayers = -1, 0, 1\n",
    "groups": "[route]\nlayers=-1\ngroups=2\ngroup_id=1\n",
    "groups-multi": "[route]\nlayers=1,2\ngroups=2\ngroup_id=0\n",
}


@pytest.mark.parametrize("case", sorted(ROUTE_CASES))
def test_route(case: str, gen: torch.Generator, tmp_path) -> None:  # noqa: ANN001
    compare(ROUTE + ROUTE_CASES[case] + conv(3), gen, tmp_path)


def test_route_slices_are_views(gen: torch.Generator, tmp_path) -> None:  # noqa: ANN001
    """A single-input route, with or without groups, returns (a view of) its input: no copy."""
    cfg = ROUTE + "[route]\nlayers=-1\ngroups=2\ngroup_id=1\n" + "[route]\nlayers=1\n" + conv(3)
    _, out = compare(cfg, gen, tmp_path)
    assert out[3].untyped_storage().data_ptr() == out[2].untyped_storage().data_ptr()
    assert out[3].data_ptr() == out[2].data_ptr() + 4 * 8 * 8 * out[2].element_size()
    assert out[4].data_ptr() == out[1].data_ptr()


SHORTCUT_CASES = {
    "same-shape": conv(8) + conv(4, 1) + conv(8) + "[shortcut]\nfrom=-3\nactivation=linear\n",
    "absolute-mish": conv(8) + conv(8) + "[shortcut]\nfrom=0\nactivation=mish\n",
    "fewer-channels": conv(4) + conv(8) + "[shortcut]\nfrom=-2\nactivation=leaky\n",
    "more-channels": conv(8) + conv(4) + "[shortcut]\nfrom=-2\nactivation=swish\n",
    "other-grid": conv(8) + conv(4, 3, 2) + "[shortcut]\nfrom=-2\n",
    "multi": conv(8) + conv(8) + conv(8) + "[shortcut]\nfrom=-2,-3\nactivation=logistic\n",
}


@pytest.mark.parametrize("case", sorted(SHORTCUT_CASES))
def test_shortcut(case: str, gen: torch.Generator, tmp_path) -> None:  # noqa: ANN001
    compare(net(8, 8) + SHORTCUT_CASES[case], gen, tmp_path)


MAXPOOL_CASES = {
    "spp-stride1": conv(4)
    + "[maxpool]\nstride=1\nsize=5\n[route]\nlayers=-2\n[maxpool]\nstride=1\nsize=9\n"
    + "[route]\nlayers=-4\n[maxpool]\nstride=1\nsize=13\n[route]\nlayers=-1,-3,-5,-6\n",
    "size2-stride2": "[maxpool]\nsize=2\nstride=2\n",
    "size3-stride2-default-padding": "[maxpool]\nsize=3\nstride=2\n",
    "explicit-padding": "[maxpool]\nsize=3\nstride=2\npadding=0\n",
    "padding-beyond-half-window": "[maxpool]\nsize=3\nstride=1\npadding=6\n",
    "stride-x-y": "[maxpool]\nsize=2\nstride_x=2\nstride_y=1\n",
    "size-defaults-to-stride": "[maxpool]\nstride=3\n",
    "depth": conv(8) + "[maxpool]\nmaxpool_depth=1\nout_channels=3\n",
    "antialiasing": "[maxpool]\nsize=2\nstride=2\nantialiasing=1\n",
    "local-avgpool": "[local_avgpool]\nsize=3\nstride=2\n",
}


@pytest.mark.parametrize("case", sorted(MAXPOOL_CASES))
@pytest.mark.parametrize("size", [(13, 11), (8, 8)], ids=["odd", "even"])
def test_maxpool(case: str, size: tuple[int, int], gen: torch.Generator, tmp_path) -> None:  # noqa: ANN001
    compare(net(*size) + MAXPOOL_CASES[case], gen, tmp_path)


def test_spp_keeps_the_grid(gen: torch.Generator, tmp_path) -> None:  # noqa: ANN001
    model, _ = compare(net(7, 9) + MAXPOOL_CASES["spp-stride1"], gen, tmp_path)
    assert model.shapes[-1] == (16, 9, 7)


UPSAMPLE_CASES = {
    "stride2": "[upsample]\nstride=2\n",
    "default-stride": "[upsample]\n",
    "stride3-scale": "[upsample]\nstride=3\nscale=0.5\n",
    "negative-stride": "[upsample]\nstride=-2\nscale=0.25\n",
}


@pytest.mark.parametrize("case", sorted(UPSAMPLE_CASES))
def test_upsample(case: str, gen: torch.Generator, tmp_path) -> None:  # noqa: ANN001
    compare(net(8, 6) + conv(4) + UPSAMPLE_CASES[case], gen, tmp_path)


@pytest.mark.parametrize("reverse", [0, 1])
def test_reorg3d(reverse: int, gen: torch.Generator, tmp_path) -> None:  # noqa: ANN001
    compare(net(8, 6) + conv(32) + f"[reorg3d]\nstride=2\nreverse={reverse}\n" + conv(4), gen, tmp_path)


def test_sam_scale_channels_avgpool(gen: torch.Generator, tmp_path) -> None:  # noqa: ANN001
    cfg = (
        net(8, 8)
        + conv(8)  # 0
        + conv(8, 1, 1, "logistic")  # 1
        + "[sam]\nfrom=-2\n"  # 2: 0 * 1
        + "[avgpool]\n"  # 3: (8, 1, 1)
        + conv(8, 1, 1, "logistic", 0)  # 4
        + "[scale_channels]\nfrom=2\nactivation=leaky\n"  # 5: 2 scaled per channel by 4
        + conv(1, 1, 1, "logistic", 0)  # 6: (1, 8, 8)
        + "[scale_channels]\nfrom=-2\nscale_wh=1\n"  # 7: 5 scaled per position by 6
    )
    model, out = compare(cfg, gen, tmp_path)
    assert [type(m) for m in model.layers][2:8:5] == [L.Sam, L.ScaleChannels]
    assert out[3].shape[1:] == (8, 1, 1)


def test_dropout_empty_batchnorm_activation(gen: torch.Generator, tmp_path) -> None:  # noqa: ANN001
    cfg = net(8, 8) + conv(4) + "[dropout]\nprobability=0.4\n[empty]\n[batchnorm]\n[silence]\n" + conv(3)
    cfg += "[activation]\nactivation=selu\n[activation]\n"
    compare(cfg, gen, tmp_path)


def test_dropout_training_is_in_place_on_the_previous_output(gen: torch.Generator) -> None:
    """darknet's dropout overwrites the previous layer's buffer: a route to that layer sees the
    dropped values. Training: zeros with the probability, survivors times 1 / (1 - p)."""
    cfg = net(16, 16) + conv(8, 3, 1, "relu6", 0) + "[dropout]\nprobability=0.25\n[route]\nlayers=-2\n"
    model = Darknet(cfg).train()
    captured: dict[int, torch.Tensor] = {}
    for layer in model.layers:
        layer.register_forward_hook(lambda m, a, o: captured.__setitem__(m.index, o))
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=gen)))
    x = torch.rand(8, 3, 16, 16, generator=gen) + 1.0
    out = model(x)
    before = captured[0]
    kept = out != 0
    torch.testing.assert_close(out[kept], before[kept] / 0.75)
    nonzero = before != 0
    dropped = (~kept & nonzero).sum().item() / nonzero.sum().item()
    assert 0.2 < dropped < 0.3
    assert torch.equal(out, captured[1])  # the route to layer 0 gets the dropped tensor
    model.eval()
    torch.testing.assert_close(model(x), model.layers[0](x))


YOLO = (
    net(16, 16)
    + conv(8, 3, 2)  # 0: 8x8
    + conv(3 * 7, 1, 1, "linear", 0)  # 1
    + "[yolo]\nmask=3,4,5\nanchors=10,14, 23,27, 37,58, 81,82, 135,169, 344,319\nclasses=2\nnum=6\n"
    "scale_x_y=1.2\njitter=.3\nignore_thresh=.7\niou_loss=ciou\n"  # 2
    + "[route]\nlayers=-3\n"  # 3
    + conv(8, 3, 2)  # 4: 4x4
    + conv(2 * 7, 1, 1, "logistic", 0)  # 5
    + "[yolo]\nmask=1,0\nanchors=12,16, 19,36, 40,28\nclasses=2\nnum=3\nscale_x_y=2.0\nnew_coords=1\n"  # 6
)


@pytest.mark.parametrize("size", [(16, 16), (32, 24)], ids=["default", "other-size"])
def test_yolo_decode(size: tuple[int, int], gen: torch.Generator, tmp_path) -> None:  # noqa: ANN001
    """new_coords 0 and 1, scale_x_y, mask order, row order (head, anchor, row, column); the grid
    follows the input."""
    model, _ = compare(YOLO, gen, tmp_path, size=size, scale=2.0)
    h, w = size
    assert model.heads == [2, 6]
    assert model(torch.zeros(1, 3, h, w, dtype=torch.float64)).shape == (
        1,
        3 * (h // 2) * (w // 2) + 2 * (h // 4) * (w // 4),
        7,
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_yolo_decode_is_float32_for_low_precision_heads(dtype: torch.dtype, gen: torch.Generator) -> None:
    """darknet decodes in float32 whatever its convolutions ran in: the rows of a float16/bfloat16
    head are the float32 decode of the same head values (in bfloat16 a corner past 128 px would
    otherwise round to 1 px), for both coordinate kinds."""
    model = Darknet(YOLO).eval()
    for layer, (h, w) in zip(model.yolo_layers, [(8, 8), (4, 4)], strict=True):
        x = (torch.randn(2, layer.num_anchors * 7, h, w, generator=gen) * 2).to(dtype)
        rows = layer.decode(x, 256, 320)
        assert rows.dtype == torch.float32
        torch.testing.assert_close(rows, layer.decode(x.float(), 256, 320), rtol=0, atol=0)


def test_yolo_output_read_by_later_layers(gen: torch.Generator, tmp_path) -> None:  # noqa: ANN001
    """A layer after [yolo] (or a route to it) reads darknet's activated yolo output."""
    cfg = YOLO.replace("[route]\nlayers=-3\n", conv(8, 3, 1)) + "[route]\nlayers=2\n" + conv(4, 1)
    compare(cfg, gen, tmp_path, scale=2.0)


def test_training_output_is_the_head_reshaped(gen: torch.Generator) -> None:
    model = Darknet(YOLO).train()
    heads: dict[int, torch.Tensor] = {}
    for i in (1, 5):
        model.layers[i].register_forward_hook(lambda m, a, o: heads.__setitem__(m.index, o))
    x = torch.rand(2, 3, 16, 16, generator=gen)
    out = model(x)
    assert [tuple(t.shape) for t in out] == [(2, 3, 8, 8, 7), (2, 2, 4, 4, 7)]
    for t, i in zip(out, (1, 5), strict=True):
        conv_out = heads[i]
        for a in range(t.shape[1]):
            for k in range(7):
                torch.testing.assert_close(t[:, a, :, :, k], conv_out[:, a * 7 + k], rtol=0, atol=0)
    assert model.yolo_layers[0].train_options == {"jitter": ".3", "ignore_thresh": ".7", "iou_loss": "ciou"}
