"""``Darknet``: a darknet ``.cfg`` built as a PyTorch module with darknet's forward semantics."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from torch_mish.darknet import layers as L
from torch_mish.darknet.cfg import CfgError, Section, read_cfg
from torch_mish.darknet.weights import load_darknet_weights, save_darknet_weights

Shape = tuple[int, int, int]  # (channels, height, width) at the cfg's default input size

# Keys darknet reads for every layer (parse_network_cfg_custom); they steer training only.
_COMMON_TRAINING = ("clip", "onlyforward", "dont_update", "burnin_update", "stopbackward", "train_only_bn")
_COMMON_TRAINING += ("learning_rate",)
# Read by the .weights loader (dontload: skip the layer; dontloadscales: skip its BatchNorm values).
_COMMON_WEIGHTS = ("dontload", "dontloadscales")

# Keys of parse_net_options other than width/height/channels: training and data settings.
_NET_TRAINING = (
    "max_batches batch learning_rate learning_rate_min sgdr_cycle sgdr_mult momentum decay subdivisions time_steps "
    "track augment_speed sequential_subdivisions try_fix_nan weights_reject_freq equidistant_point "
    "badlabels_rejection_percentage num_sigmas_reject_badlabels ema_alpha use_cuda_graph loss_scale "
    "dynamic_minibatch optimized_memory workspace_size_limit_MB adam B1 B2 eps inputs max_crop min_crop flip blur "
    "gaussian_noise mixup cutmix mosaic letter_box mosaic_bound contrastive contrastive_jit_flip contrastive_color "
    "unsupervised label_smooth_eps resize_step attention adversarial_lr max_chart_loss angle aspect saturation "
    "exposure hue power policy burn_in step scale steps scales seq_scales gamma show_receptive_field"
).split()

_YOLO_TRAINING = (
    "max show_details max_delta counters_per_class label_smooth_eps objectness_smooth iou_normalizer obj_normalizer "
    "cls_normalizer delta_normalizer iou_loss iou_thresh_kind beta_nms nms_kind jitter resize focal_loss "
    "ignore_thresh truth_thresh iou_thresh random track_history_size sim_thresh dets_for_track dets_for_show "
    "track_ciou_norm embedding_layer map"
).split()

# Keys that only matter in training (or only with another, refused, key) per section type.
_TRAINING: dict[str, tuple[str, ...]] = {
    "convolutional": ("assisted_excitation", "cbn", "dot", "grad_centr", "angle", "reverse", "stream", "wait_stream"),
    "route": ("stream", "wait_stream"),
    "shortcut": ("weights_normalization",),
    "dropout": ("dropblock_size_rel", "dropblock_size_abs"),
    "yolo": tuple(_YOLO_TRAINING),
}

# Keys whose non-default values change the forward pass in ways this importer does not build.
_REFUSED: dict[str, dict[str, str]] = {
    "convolutional": {
        "share_index": "weights shared with another layer",
        "binary": "binarized weights",
        "xnor": "XNOR (binarized) convolution",
        "sway": "deformable (sway) convolution",
        "rotate": "deformable (rotate) convolution",
        "stretch": "deformable (stretch) convolution",
        "stretch_sway": "deformable (stretch_sway) convolution",
        "flipped": "transposed weights in the .weights file",
        "coordconv": "coordinate channels",
        "bin_output": "binary output (XNOR)",
    },
    "maxpool": {"maxpool_zero_nonmax": "zeroing non-maximum inputs"},
}

_ALIASES = {
    "conv": "convolutional",
    "network": "net",
    "max": "maxpool",
    "avg": "avgpool",
    "local_avg": "local_avgpool",
    "silence": "empty",
}

# Section types darknet has that this importer does not build.
_NOT_BUILT = (
    "local crnn gru lstm conv_lstm history rnn connected conn crop cost region detection Gaussian_yolo "
    "softmax soft contrastive normalization lrn reorg implicit"
).split()


class Darknet(nn.Module):
    """A darknet network built from its ``.cfg`` (a path, or the cfg text itself).

    ``model.layers[i]`` is darknet's layer i (numbered from 0 after ``[net]``). Eval mode returns
    (N, R, 5 + classes) detections: one row per (head in cfg order, anchor in mask order, grid row,
    grid column) with cx, cy, w, h in input pixels, objectness and per-class scores (not multiplied
    by objectness). Training mode returns, per [yolo] head, the head convolution's output after its
    activation as (N, anchors, H, W, 5 + classes). A cfg without [yolo] returns its last layer's
    output in both modes. The input is (N, channels, H, W); [net] width/height are the default size
    and any size the strides divide works.

    Training-only settings stay available: ``net_options`` ([net] as written), ``layer_options``
    (per layer index, the training keys of that layer) and each head's ``train_options``.
    """

    def __init__(self, cfg: str | Path) -> None:
        super().__init__()
        sections = read_cfg(cfg)
        net = sections[0]
        if _ALIASES.get(net.type, net.type) != "net":
            raise net.error("the first section must be [net] or [network]")
        self.source = net.source
        self.width = net.get_int("width", 0)
        self.height = net.get_int("height", 0)
        self.channels = net.get_int("channels", 0)
        for key, value in (("width", self.width), ("height", self.height), ("channels", self.channels)):
            if value < 1:
                raise net.error(f"{key}={value}: [net] needs a positive width, height and channels", key)
        self.net_options = {key: opt.value for key, opt in net.options.items()}
        for key in _NET_TRAINING:
            net.raw(key)
        _warn_unused(net)

        self.layer_options: dict[int, dict[str, str]] = {}
        modules: list[L.DarknetLayer] = []
        shapes: list[Shape] = []
        shape: Shape = (self.channels, self.height, self.width)
        for index, section in enumerate(sections[1:]):
            module, shape = _build(section, index, shape, shapes)
            options = {}
            for key in (*_COMMON_TRAINING, *_TRAINING.get(module.section, ())):
                value = section.raw(key)
                if value is not None:
                    options[key] = value
            if options:
                self.layer_options[index] = options
            for key in _COMMON_WEIGHTS:
                setattr(module, key, bool(section.get_int(key, 0)))
            _warn_unused(section)
            modules.append(module)
            shapes.append(shape)
        if not modules:
            raise net.error("the cfg has no layers after [net]")
        self.layers = nn.ModuleList(modules)
        self.shapes = shapes
        self.heads = [m.index for m in modules if isinstance(m, L.Yolo)]
        # (major, minor, revision, seen) of the .weights header; save_darknet_weights writes it back.
        self.weights_header = (0, 2, 5, 0)

        # Keep only outputs a later layer reads; a [yolo] output is computed only if something reads it.
        referenced = {j for m in modules for j in m.sources}
        self._keep = [i in referenced for i in range(len(modules))]
        self._yolo_output_used = [
            i in referenced or (i + 1 < len(modules) and not isinstance(modules[i + 1], L.Route))
            for i in range(len(modules))
        ]

    @property
    def yolo_layers(self) -> list[L.Yolo]:
        return [self.layers[i] for i in self.heads]  # type: ignore[misc]

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        net_h, net_w = x.shape[2], x.shape[3]
        outputs: list[Tensor | None] = [None] * len(self.layers)
        heads: list[Tensor] = []
        keep = self._keep
        for i, layer in enumerate(self.layers):
            if isinstance(layer, L.Route):
                x = layer(*[outputs[j] for j in layer.sources])
            elif isinstance(layer, L.Yolo):
                heads.append(x)
                if self._yolo_output_used[i]:
                    x = layer(x)
            elif layer.sources:
                x = layer(x, *[outputs[j] for j in layer.sources])
            else:
                x = layer(x)
                if self.training and i > 0 and keep[i - 1] and isinstance(layer, L.Dropout):
                    outputs[i - 1] = x  # darknet drops in place: the previous layer's output changes too
            if keep[i]:
                outputs[i] = x
        if not heads:
            return x
        yolos = self.yolo_layers
        if self.training:
            return [yolo.split(h) for yolo, h in zip(yolos, heads, strict=True)]
        return torch.cat([yolo.decode(h, net_h, net_w) for yolo, h in zip(yolos, heads, strict=True)], 1)

    def check_input_size(self, height: int, width: int) -> None:
        """Raise ValueError if a height x width input does not fit the network: a size its strides do
        not divide makes two branches disagree where a route or shortcut joins them, deep in forward.
        Runs the network on fake tensors (shapes only: no arithmetic, no activation memory), after
        the one rule a user can apply up front: a multiple of the network's largest stride."""
        from torch._subclasses.fake_tensor import FakeTensorMode

        stride = self._largest_stride()
        if height % stride or width % stride:
            fit = f"{-(-height // stride) * stride}x{-(-width // stride) * stride}"
            raise ValueError(
                f"{height}x{width} does not fit {self.source} (its largest stride is {stride}); "
                f"use a multiple of {stride}, e.g. {fit}"
            )

        fake_log = logging.getLogger("torch._subclasses.fake_tensor")  # logs the failing op's traceback
        level = fake_log.level
        fake_log.setLevel(logging.CRITICAL)
        like = next(self.parameters(), torch.empty(0))  # the input on the model's device, in its dtype
        try:
            with FakeTensorMode(allow_non_fake_inputs=True), torch.no_grad():
                self(torch.empty(1, self.channels, height, width, device=like.device, dtype=like.dtype))
        except RuntimeError as exc:
            reason = str(exc).strip().splitlines()[0]
            raise ValueError(
                f"{height}x{width} does not fit {self.source} ({reason}); use a size its strides divide, "
                "a multiple of 32 for the YOLOv4 family"
            ) from None
        finally:
            fake_log.setLevel(level)

    def _largest_stride(self) -> int:
        """How much the deepest layer downsamples: [net] size over its size there, where that divides
        evenly (1 otherwise: then only the fake-tensor run decides). Global pooling (1x1) takes any size."""
        spatial = [(h, w) for _, h, w in self.shapes if h > 1 and w > 1]
        if not spatial:
            return 1
        height, width = min(spatial)
        if self.height % height or self.width % width or self.height // height != self.width // width:
            return 1
        return self.height // height

    def load_darknet_weights(self, path: str | Path) -> None:
        """Load a darknet ``.weights`` file (see :mod:`torch_mish.darknet.weights`)."""
        load_darknet_weights(self, path)

    def save_darknet_weights(self, path: str | Path) -> None:
        """Write the weights in darknet's format; a file loaded with load_darknet_weights is
        written back byte for byte."""
        save_darknet_weights(self, path)

    def extra_repr(self) -> str:
        heads = ", ".join(str(i) for i in self.heads)
        return f"{self.source}: input {self.channels}x{self.height}x{self.width}, [yolo] heads at layers {heads or '-'}"


def _warn_unused(section: Section) -> None:
    # darknet prints "Unused field" for keys it never reads and goes on: such keys change nothing.
    for key in section.unused():
        value = section.options[key].value
        warnings.warn(
            f"{section.where(key)}: {key}={value} is not a darknet option; ignored as darknet does", stacklevel=3
        )


def _resolve(section: Section, key: str, index: int, values: list[int]) -> tuple[int, ...]:
    resolved = []
    for v in values:
        j = index + v if v < 0 else v
        if not 0 <= j < index:
            raise section.error(f"{key}: {v} refers to layer {j}, not an earlier layer (this is layer {index})", key)
        resolved.append(j)
    return tuple(resolved)


def _activation(section: Section, default: str, allowed: tuple[str, ...]) -> str:
    name = section.get_str("activation", default)
    if name not in allowed:
        known = name in L.CONVOLUTIONAL
        reason = f"darknet's [{section.type}] does not compute it" if known else "unknown activation"
        raise section.error(f"activation={name}: {reason} (supported here: {', '.join(allowed)})", "activation")
    return name


def _positive(section: Section, key: str, value: int, minimum: int = 1) -> int:
    if value < minimum:
        raise section.error(f"{key}={value}: must be >= {minimum}", key)
    return value


def _build(s: Section, index: int, shape: Shape, shapes: list[Shape]) -> tuple[L.DarknetLayer, Shape]:
    kind = _ALIASES.get(s.type, s.type)
    for key, what in _REFUSED.get(kind, {}).items():
        if s.has(key) and s.get_int(key, 0) != (-1000000000 if key == "share_index" else 0):
            raise s.error(f"{key}={s.raw(key)}: {what} is not supported", key)
    builder = _BUILDERS.get(kind)
    if builder is None:
        if kind == "net":
            raise s.error("[net] may only be the first section")
        if kind in _NOT_BUILT:
            raise s.error("this layer type is not supported by torch_mish.darknet")
        raise s.error("unknown section type")
    return builder(s, index, f"{s.source}:{s.line}", shape, shapes)


def _route(s: Section, index: int, where: str, shape: Shape, shapes: list[Shape]) -> tuple[L.DarknetLayer, Shape]:
    sources = _resolve(s, "layers", index, _required_ints(s, "layers"))
    groups = _positive(s, "groups", s.get_int("groups", 1))
    group_id = s.get_int("group_id", 0)
    if not 0 <= group_id < groups:
        raise s.error(f"group_id={group_id}: must be in [0, groups={groups})", "group_id")
    ins = [shapes[j] for j in sources]
    if any(t[1:] != ins[0][1:] for t in ins):
        sizes = ", ".join(f"layer {j}: {t[2]}x{t[1]}" for j, t in zip(sources, ins, strict=True))
        raise s.error(f"layers= have different widths and heights ({sizes})", "layers")
    if any(t[0] % groups for t in ins):
        raise s.error(f"groups={groups} does not divide the channels of every input", "groups")
    out = (sum(t[0] for t in ins) // groups, *ins[0][1:])
    return L.Route(index, where, sources, groups, group_id), out


def _shortcut(s: Section, index: int, where: str, shape: Shape, shapes: list[Shape]) -> tuple[L.DarknetLayer, Shape]:
    sources = _resolve(s, "from", index, _required_ints(s, "from"))
    weights_type = s.get_str("weights_type", "none")
    if weights_type != "none":
        raise s.error(f"weights_type={weights_type}: weighted shortcuts are not supported", "weights_type")
    act = _activation(s, "linear", L.SHORTCUT)
    return L.Shortcut(index, where, sources, act), shape


def _sam(s: Section, index: int, where: str, shape: Shape, shapes: list[Shape]) -> tuple[L.DarknetLayer, Shape]:
    (source,) = _resolve(s, "from", index, _required_ints(s, "from")[:1])  # darknet reads one index (atoi)
    act = _activation(s, "linear", L.ELEMENTWISE)
    if shapes[source] != shape:
        raise s.error(f"from layer {source} is {shapes[source]}, the input is {shape}: [sam] needs equal shapes")
    return L.Sam(index, where, source, act), shape


def _scale_channels(
    s: Section, index: int, where: str, shape: Shape, shapes: list[Shape]
) -> tuple[L.DarknetLayer, Shape]:
    (source,) = _resolve(s, "from", index, _required_ints(s, "from")[:1])
    act = _activation(s, "linear", L.ELEMENTWISE)
    c, h, w = shape
    other = shapes[source]
    scale_wh = bool(s.get_int("scale_wh", 0))
    ok = (c == 1 and (h, w) == other[1:]) if scale_wh else ((h, w) == (1, 1) and c == other[0])
    if not ok:
        need = "(1, H, W) matching" if scale_wh else "(C, 1, 1) matching the channels of"
        raise s.error(f"input {shape} must be {need} from layer {source} {other}")
    return L.ScaleChannels(index, where, source, scale_wh, act), other


def _upsample(s: Section, index: int, where: str, shape: Shape, shapes: list[Shape]) -> tuple[L.DarknetLayer, Shape]:
    c, h, w = shape
    stride = s.get_int("stride", 2)
    if stride == 0:
        raise s.error("stride=0", "stride")
    scale = s.get_float("scale", 1.0)
    if stride < 0 and (h % -stride or w % -stride):
        raise s.error(f"stride={stride}: the input {w}x{h} is not divisible by {-stride}", "stride")
    out = (c, h * stride, w * stride) if stride > 0 else (c, h // -stride, w // -stride)
    return L.Upsample(index, where, stride, scale), out


def _activation_layer(
    s: Section, index: int, where: str, shape: Shape, shapes: list[Shape]
) -> tuple[L.DarknetLayer, Shape]:
    return L.Activation(index, where, _activation(s, "linear", L.ELEMENTWISE)), shape


def _avgpool(s: Section, index: int, where: str, shape: Shape, shapes: list[Shape]) -> tuple[L.DarknetLayer, Shape]:
    return L.AvgPool(index, where), (shape[0], 1, 1)


def _dropout(s: Section, index: int, where: str, shape: Shape, shapes: list[Shape]) -> tuple[L.DarknetLayer, Shape]:
    p = s.get_float("probability", 0.2)
    if not 0 <= p < 1:
        raise s.error(f"probability={p}: must be in [0, 1)", "probability")
    return L.Dropout(index, where, p, bool(s.get_int("dropblock", 0))), shape


def _reorg3d(s: Section, index: int, where: str, shape: Shape, shapes: list[Shape]) -> tuple[L.DarknetLayer, Shape]:
    c, h, w = shape
    stride = _positive(s, "stride", s.get_int("stride", 1))
    if s.get_int("reverse", 0):
        if c % stride**4:
            raise s.error(f"reverse=1 needs channels ({c}) divisible by stride^4 ({stride**4})", "reverse")
        return L.Reorg3d(index, where, stride, True), (c // stride**2, h * stride, w * stride)
    if h % stride or w % stride:
        raise s.error(f"the input {w}x{h} is not divisible by stride={stride}", "stride")
    return L.Reorg3d(index, where, stride, False), (c * stride**2, h // stride, w // stride)


def _batchnorm(s: Section, index: int, where: str, shape: Shape, shapes: list[Shape]) -> tuple[L.DarknetLayer, Shape]:
    return L.BatchNorm(index, where, shape[0]), shape


def _empty(s: Section, index: int, where: str, shape: Shape, shapes: list[Shape]) -> tuple[L.DarknetLayer, Shape]:
    return L.Empty(index, where), shape


def _required_ints(s: Section, key: str) -> list[int]:
    values = s.get_ints(key)
    if values is None:
        raise s.error(f"{key}= is required")
    return values


def _convolutional(
    s: Section, index: int, where: str, shape: Shape, shapes: list[Shape]
) -> tuple[L.DarknetLayer, Shape]:
    c, h, w = shape
    filters = _positive(s, "filters", s.get_int("filters", 1))
    groups = max(s.get_int("groups", 1), 1)  # darknet: groups < 1 means 1
    size = _positive(s, "size", s.get_int("size", 1))
    stride_x, stride_y = s.get_int("stride_x", -1), s.get_int("stride_y", -1)
    stride = s.get_int("stride", 1)
    if stride_x < 1 or stride_y < 1:
        stride_x = stride if stride_x < 1 else stride_x
        stride_y = stride if stride_y < 1 else stride_y
    _positive(s, "stride", min(stride_x, stride_y))
    dilation = _positive(s, "dilation", s.get_int("dilation", 1))
    if size == 1:
        dilation = 1
    antialiasing = s.get_int("antialiasing", 0)
    pad, padding = s.get_int("pad", 0), s.get_int("padding", 0)
    if pad:
        padding = size // 2
    _positive(s, "padding", padding, 0)
    activation = _activation(s, "logistic", L.CONVOLUTIONAL)
    batch_normalize = bool(s.get_int("batch_normalize", 0) or s.get_int("cbn", 0))
    if c % groups or filters % groups:
        raise s.error(f"groups={groups} must divide the input channels ({c}) and filters ({filters})", "groups")
    if dilation > 1 and 2 * padding != size - 1:
        # darknet sizes the output as if undilated; only this padding gives the same size
        raise s.error(f"dilation={dilation} needs padding = (size - 1) / 2 (got padding={padding})", "dilation")
    if antialiasing:
        antialiasing = 2 if antialiasing == 2 else 1
        oh, ow = h + 2 * padding - size + 1, w + 2 * padding - size + 1
        blur, blur_pad = (2, 0) if antialiasing == 2 else (3, 1)
        oh, ow = (oh + 2 * blur_pad - blur) // stride_y + 1, (ow + 2 * blur_pad - blur) // stride_x + 1
    else:
        oh, ow = (h + 2 * padding - size) // stride_y + 1, (w + 2 * padding - size) // stride_x + 1
    if oh < 1 or ow < 1:
        raise s.error(f"the input {w}x{h} is smaller than the kernel (size={size}, padding={padding})")
    module = L.Convolutional(
        index, where, c, filters, size, (stride_y, stride_x), padding, dilation, groups, batch_normalize, activation,
        antialiasing,
    )  # fmt: skip
    return module, (filters, oh, ow)


def _pool(s: Section, index: int, where: str, shape: Shape, shapes: list[Shape]) -> tuple[L.DarknetLayer, Shape]:
    kind = _ALIASES.get(s.type, s.type)
    c, h, w = shape
    stride = s.get_int("stride", 1)
    stride_x, stride_y = s.get_int("stride_x", stride), s.get_int("stride_y", stride)
    _positive(s, "stride", min(stride_x, stride_y))
    size = _positive(s, "size", s.get_int("size", stride))
    padding = _positive(s, "padding", s.get_int("padding", size - 1), 0)
    if kind == "maxpool":
        depth = s.get_int("maxpool_depth", 0)
        out_channels = s.get_int("out_channels", 1)
        antialiasing = s.get_int("antialiasing", 0)
        if depth:
            if antialiasing:
                raise s.error("antialiasing with maxpool_depth is not supported", "antialiasing")
            _positive(s, "out_channels", out_channels)
            return L.MaxPoolDepth(index, where, out_channels), (out_channels, h, w)
    else:
        antialiasing = 0
    host_x, host_y = (1, 1) if antialiasing else (stride_x, stride_y)  # antialiasing moves the stride into a blur
    oh, ow = (h + padding - size) // host_y + 1, (w + padding - size) // host_x + 1
    if oh < 1 or ow < 1:
        raise s.error(f"the input {w}x{h} is smaller than size={size} with padding={padding}")
    if kind == "local_avgpool":
        return L.LocalAvgPool(index, where, size, (stride_y, stride_x), padding), (c, oh, ow)
    module = L.MaxPool(
        index, where, size, (stride_y, stride_x), padding, 2 if antialiasing == 2 else int(bool(antialiasing))
    )
    module.set_channels(c)
    if antialiasing:
        blur, blur_pad = (2, 0) if antialiasing == 2 else (3, 1)
        oh, ow = (oh + 2 * blur_pad - blur) // stride_y + 1, (ow + 2 * blur_pad - blur) // stride_x + 1
    return module, (c, oh, ow)


def _yolo(s: Section, index: int, where: str, shape: Shape, shapes: list[Shape]) -> tuple[L.DarknetLayer, Shape]:
    c = shape[0]
    classes = _positive(s, "classes", s.get_int("classes", 20), 0)
    total = _positive(s, "num", s.get_int("num", 1))
    mask = s.get_ints("mask")
    if mask is None:
        mask = list(range(total))
    for m in mask:
        if not 0 <= m < total:
            raise s.error(f"mask entry {m} is not an anchor index in [0, num={total})", "mask")
    given = s.get_floats("anchors") or []
    # darknet reads at most num pairs; anchors it is not given stay at its initial 0.5
    biases = (given + [0.5] * (2 * total))[: 2 * total]
    anchors = [(biases[2 * i], biases[2 * i + 1]) for i in range(total)]
    if c != len(mask) * (classes + 5):
        raise s.error(
            f"the input has {c} channels; {len(mask)} anchors x (classes={classes} + 5) = "
            f"{len(mask) * (classes + 5)} (filters= of the layer before does not match classes= or mask=)"
        )
    scale_x_y = s.get_float("scale_x_y", 1.0)
    new_coords = bool(s.get_int("new_coords", 0))
    options = {key: s.options[key].value for key in _YOLO_TRAINING if key in s.options}
    return L.Yolo(index, where, classes, mask, anchors, scale_x_y, new_coords, options), shape


_BUILDERS = {
    "convolutional": _convolutional,
    "route": _route,
    "shortcut": _shortcut,
    "sam": _sam,
    "scale_channels": _scale_channels,
    "upsample": _upsample,
    "maxpool": _pool,
    "local_avgpool": _pool,
    "avgpool": _avgpool,
    "activation": _activation_layer,
    "dropout": _dropout,
    "reorg3d": _reorg3d,
    "yolo": _yolo,
    "batchnorm": _batchnorm,
    "empty": _empty,
}

__all__ = ["CfgError", "Darknet"]
