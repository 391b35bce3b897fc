"""Reading cfgs as darknet does, and the errors for what the importer does not build: each names the
file, the line and the section."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from compare import build_with_random_weights, net

from torch_mish.darknet import CfgError, Darknet, packaged_cfg, read_cfg

CONV = "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=1\npad=1\nactivation=leaky\n"


def test_darknet_line_syntax() -> None:
    """Whitespace anywhere is removed, '#' and ';' lines are comments, a trailing '# ...' after a
    number is ignored, the first of two equal keys wins."""
    text = "[net]\n w i d t h = 3 2\n# comment\n; comment\nheight=32 # inline\nchannels=3\n\n[convolutional]\n"
    text += "filters=4\nfilters=8\nsize = 3\nlayers = -1, 2 ,3\n"
    with pytest.warns(UserWarning, match=r"<cfg text>:10: \[convolutional\]: filters repeated; darknet uses the first"):
        net_s, conv = read_cfg(text)
    assert (net_s.get_int("width", 0), net_s.get_int("height", 0)) == (32, 32)
    assert conv.get_int("filters", 1) == 4 and conv.get_ints("layers") == [-1, 2, 3]
    assert conv.line == 8 and conv.options["size"].line == 11


def cfg_error(body: str) -> str:
    return net() + CONV + body


ERRORS = [
    # (cfg after [net] and one convolutional (lines 6-12), expected message)
    ("[foo]\n", r"<cfg text>:13: \[foo\]: unknown section type"),
    ("[connected]\noutput=10\n", r"<cfg text>:13: \[connected\]: this layer type is not supported"),
    ("[net]\n", r"<cfg text>:13: \[net\]: \[net\] may only be the first section"),
    ("[convolutional]\nfilters=4\nactivation=foo\n", r"<cfg text>:15: \[convolutional\]: activation=foo: unknown"),
    ("[convolutional]\nfilters=4\nsize=abc\n", r"<cfg text>:15: \[convolutional\]: size=abc: expected an integer"),
    ("[convolutional]\nfilters=4\nstride=0\n", r"<cfg text>:15: \[convolutional\]: stride=0: must be >= 1"),
    ("[convolutional]\nfilters=6\ngroups=4\n", r":15: \[convolutional\]: groups=4 must divide the input channels"),
    ("[convolutional]\nfilters=4\nsize=3\ndilation=2\n", r":16: \[convolutional\]: dilation=2 needs padding"),
    ("[convolutional]\nfilters=4\nxnor=1\n", r":15: \[convolutional\]: xnor=1: XNOR .* is not supported"),
    ("[convolutional]\nfilters=4\nbinary=1\n", r":15: \[convolutional\]: binary=1: binarized weights"),
    ("[convolutional]\nfilters=4\nshare_index=0\n", r":15: \[convolutional\]: share_index=0: weights shared"),
    ("[convolutional]\nfilters=4\nflipped=1\n", r":15: \[convolutional\]: flipped=1: transposed weights"),
    ("[convolutional]\nfilters=4\nsize=3\nsway=1\n", r":16: \[convolutional\]: sway=1: deformable"),
    ("[convolutional]\nfilters=4\ncoordconv=1\n", r":15: \[convolutional\]: coordconv=1"),
    ("[route]\nlayers=1\n", r"<cfg text>:14: \[route\]: layers: 1 refers to layer 1, not an earlier layer"),
    ("[route]\nlayers=-2\n", r":14: \[route\]: layers: -2 refers to layer -1"),
    ("[route]\nlayers=-1,\n", r":14: \[route\]: layers=-1,: empty entry in the list"),
    ("[route]\n", r"<cfg text>:13: \[route\]: layers= is required"),
    ("[route]\nlayers=-1\ngroups=3\n", r":15: \[route\]: groups=3 does not divide the channels"),
    ("[route]\nlayers=-1\ngroups=2\ngroup_id=2\n", r":16: \[route\]: group_id=2: must be in \[0, groups=2\)"),
    (
        "[maxpool]\nsize=2\nstride=2\n[route]\nlayers=-1,-2\n",
        r":17: \[route\]: layers= have different widths and heights \(layer 1: 8x8, layer 0: 16x16\)",
    ),
    ("[shortcut]\nfrom=-1\nweights_type=per_feature\n", r":15: \[shortcut\]: weights_type=per_feature: weighted"),
    ("[shortcut]\nfrom=-1\nactivation=hard_mish\n", r":15: \[shortcut\]: activation=hard_mish: darknet's \[shortcut\]"),
    ("[sam]\nfrom=-1\nactivation=mish\n", r":15: \[sam\]: activation=mish: darknet's \[sam\] does not compute it"),
    ("[activation]\nactivation=swish\n", r":14: \[activation\]: activation=swish: darknet's \[activation\]"),
    ("[avgpool]\n[scale_channels]\nfrom=-2\nscale_wh=1\n", r":14: \[scale_channels\]: input \(8, 1, 1\) must be"),
    ("[maxpool]\nsize=2\nmaxpool_zero_nonmax=1\n", r":15: \[maxpool\]: maxpool_zero_nonmax=1"),
    ("[maxpool]\nsize=40\npadding=0\n", r":13: \[maxpool\]: the input 16x16 is smaller than size=40"),
    ("[upsample]\nstride=-3\n", r":14: \[upsample\]: stride=-3: the input 16x16 is not divisible by 3"),
    ("[reorg3d]\nstride=2\nreverse=1\n", r":15: \[reorg3d\]: reverse=1 needs channels \(8\) divisible"),
    ("[dropout]\nprobability=1\n", r":14: \[dropout\]: probability=1.0: must be in \[0, 1\)"),
    (
        "[yolo]\nclasses=1\nmask=0,1\nnum=3\n",
        r":13: \[yolo\]: the input has 8 channels; 2 anchors x \(classes=1 \+ 5\)",
    ),
    ("[yolo]\nclasses=3\nmask=0,3\nnum=3\n", r":15: \[yolo\]: mask entry 3 is not an anchor index in \[0, num=3\)"),
    ("width=3\n", r"<cfg text>:13: \[convolutional\]: width=3 is not a darknet option"),
    ("filters\n", r"<cfg text>:13: \[convolutional\]: expected key=value, got 'filters'"),
    ("[conv\n", r"<cfg text>:13: malformed section header"),
]


@pytest.mark.parametrize(("body", "message"), ERRORS, ids=[re.sub(r"\W+", "-", b)[:40] for b, _ in ERRORS])
def test_errors_name_file_line_section(body: str, message: str) -> None:
    if "not a darknet option" in message:  # darknet ignores unknown keys: a warning, not an error
        with pytest.warns(UserWarning, match=message):
            Darknet(cfg_error(body))
        return
    with pytest.raises(CfgError, match=message):
        Darknet(cfg_error(body))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("filters=3\n[net]\n", r"<cfg text>:1: option 'filters=3' before the first \[section\]"),
        ("[convolutional]\nfilters=3\n", r"<cfg text>:1: \[convolutional\]: the first section must be \[net\]"),
        ("[net]\nwidth=32\nchannels=3\n" + CONV, r"<cfg text>:1: \[net\]: height=0: \[net\] needs a positive"),
        ("[net]\nwidth=8\nheight=8\nchannels=3\n", r"<cfg text>:1: \[net\]: the cfg has no layers"),
    ],
)
def test_net_errors(text: str, message: str) -> None:
    with pytest.raises(CfgError, match=message):
        Darknet(text)


def test_byte_order_mark(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "bom.cfg"
    path.write_text(net() + CONV, encoding="utf-8-sig")
    assert Darknet(path).layers[0].conv.out_channels == 8


def test_errors_name_the_cfg_file(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "mine.cfg"
    path.write_text(net() + CONV + "[shortcut]\nfrom=-1\nweights_type=per_channel\n")
    with pytest.raises(CfgError, match=r"^mine\.cfg:15: \[shortcut\]: weights_type=per_channel"):
        Darknet(path)
    with pytest.raises(CfgError, match=r"missing\.cfg: cannot read the cfg file"):
        Darknet(tmp_path / "missing.cfg")
    # a packaged cfg's name, as the CLI takes it, points to packaged_cfg()
    for name in ("yolov4-csp", "yolov4-csp.cfg"):
        with pytest.raises(CfgError, match=r"cannot read the cfg file: .*packaged_cfg\('yolov4-csp\.cfg'\)"):
            Darknet(name)


TRAINING_KEYS = {
    "[net]\n": "[net]\nbatch=64\nsubdivisions=8\nlearning_rate=0.001\nmosaic=1\nletter_box=1\nhue=.1\npolicy=steps\n"
    "steps=400000,450000\nscales=.1,.1\n",
    "activation=leaky\n": "activation=leaky\nstopbackward=1\nlearning_rate=0.5\ndont_update=1\n",
    "scale_x_y=1.2\n": "scale_x_y=1.2\njitter=.3\nignore_thresh=.7\ntruth_thresh=1\niou_normalizer=0.07\n"
    "iou_loss=ciou\nnms_kind=greedynms\nbeta_nms=0.6\nrandom=1\nmax_delta=5\ncounters_per_class=1,2\n",
}


def test_training_keys_are_kept_and_change_nothing(gen: torch.Generator, tmp_path) -> None:  # noqa: ANN001
    base = (
        net()
        + CONV
        + "[convolutional]\nfilters=14\nsize=1\nstride=1\nactivation=linear\n"
        + "[yolo]\nmask=0,1\nanchors=10,14, 23,27\nclasses=2\nnum=2\nscale_x_y=1.2\n"
    )
    trained = base
    for old, new in TRAINING_KEYS.items():
        trained = trained.replace(old, new, 1)
    model, weights = build_with_random_weights(base, gen, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # darknet reads every one of these keys: no "not a darknet option"
        other = Darknet(trained)
    (tmp_path / "w").write_bytes(weights)
    other.load_darknet_weights(tmp_path / "w")
    x = torch.rand(2, 3, 16, 16, generator=gen)
    torch.testing.assert_close(other.eval()(x), model.eval()(x), rtol=0, atol=0)
    assert other.net_options["learning_rate"] == "0.001" and other.net_options["steps"] == "400000,450000"
    assert other.layer_options[0] == {"stopbackward": "1", "learning_rate": "0.5", "dont_update": "1"}
    assert other.layer_options[2]["ignore_thresh"] == ".7"
    assert other.yolo_layers[0].train_options["iou_loss"] == "ciou"
    assert other.yolo_layers[0].train_options["counters_per_class"] == "1,2"


def test_packaged_training_keys() -> None:
    model = Darknet(packaged_cfg("yolov4x-mish"))
    assert {i: o["stopbackward"] for i, o in model.layer_options.items() if "stopbackward" in o} == {165: "800"}
    assert model.net_options["mosaic"] == "1"
    assert model.yolo_layers[0].train_options["nms_kind"] == "diounms"
