"""PyTorch modules for darknet's layer types, each computing what darknet's forward pass computes
(AlexeyAB/darknet ``src/*_layer.c``). Shapes are read from tensors at run time, so one model serves
several input sizes; nothing branches on tensor values, so torch.export, TorchScript tracing and
torch-tensorrt see one static graph per input shape."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torch_mish.nn import Mish

# ---------------------------------------------------------------------------------------------
# Activations (darknet src/activations.h). Written with darknet's constants, not torch's nearby
# built-ins (SELU, tanh-GELU), so outputs match darknet's to float rounding.


def _mask(cond: Tensor, x: Tensor) -> Tensor:
    return cond.to(x.dtype)


def _elu(x: Tensor) -> Tensor:
    # darknet's (x >= 0)*x + (x < 0)*(exp(x) - 1), including its NaN where exp overflows.
    return _mask(x >= 0, x) * x + _mask(x < 0, x) * (torch.exp(x) - 1)


def _selu(x: Tensor) -> Tensor:
    return _mask(x >= 0, x) * 1.0507 * x + _mask(x < 0, x) * (1.0507 * 1.6732) * (torch.exp(x) - 1)


def _gelu(x: Tensor) -> Tensor:
    return 0.5 * x * (1 + torch.tanh(0.797885 * x + 0.035677 * x * x * x))


def _loggy(x: Tensor) -> Tensor:
    return 2 / (1 + torch.exp(-x)) - 1


def _relie(x: Tensor) -> Tensor:
    return torch.where(x > 0, x, 0.01 * x)


def _ramp(x: Tensor) -> Tensor:
    return x * _mask(x > 0, x) + 0.1 * x


def _plse(x: Tensor) -> Tensor:
    return torch.where(x < -4, 0.01 * (x + 4), torch.where(x > 4, 0.01 * (x - 4) + 1, 0.125 * x + 0.5))


def _stair(x: Tensor) -> Tensor:
    n = torch.floor(x)
    half = torch.floor(x / 2)
    return torch.where(torch.remainder(n, 2) == 0, half, (x - n) + half)


def _lhtan(x: Tensor) -> Tensor:
    return torch.where(x < 0, 0.001 * x, torch.where(x > 1, 0.001 * (x - 1) + 1, x))


def _hard_mish(x: Tensor) -> Tensor:
    return torch.where(x > 0, x, torch.where(x > -2, x * x / 2 + x, torch.zeros_like(x)))


def _normalize_channels(x: Tensor) -> Tensor:
    positive = torch.where(x > 0, x, torch.zeros_like(x))
    return positive / (positive.sum(dim=1, keepdim=True) + 0.0001)


def _normalize_channels_softmax(x: Tensor) -> Tensor:
    e = torch.exp(x)
    return e / (e.sum(dim=1, keepdim=True) + 0.0001)


def _normalize_channels_softmax_maxval(x: Tensor) -> Tensor:
    e = torch.exp(x - x.amax(dim=1, keepdim=True))
    return e / (e.sum(dim=1, keepdim=True) + 0.0001)


_FUNCTIONS = {
    "elu": _elu,
    "selu": _selu,
    "gelu": _gelu,
    "loggy": _loggy,
    "relie": _relie,
    "ramp": _ramp,
    "plse": _plse,
    "stair": _stair,
    "lhtan": _lhtan,
    "hard_mish": _hard_mish,
    "normalize_channels": _normalize_channels,
    "normalize_channels_softmax": _normalize_channels_softmax,
    "normalize_channels_softmax_maxval": _normalize_channels_softmax_maxval,
}


class DarknetActivation(nn.Module):
    """One of darknet's activations that torch.nn has no exact module for."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def forward(self, x: Tensor) -> Tensor:
        return _FUNCTIONS[self.name](x)

    def extra_repr(self) -> str:
        return self.name


# activate() in activations.c: what [shortcut], [sam] and [scale_channels] compute for any name
# outside their special cases (anything else comes out as 0 on darknet's CPU path).
ELEMENTWISE = (
    "linear",
    "logistic",
    "loggy",
    "relu",
    "elu",
    "selu",
    "gelu",
    "relie",
    "ramp",
    "leaky",
    "revleaky",
    "tanh",
    "plse",
    "stair",
    "hardtan",
    "lhtan",
)
# [convolutional] also computes these (forward_convolutional_layer); [shortcut] swish and mish.
CONVOLUTIONAL = (*ELEMENTWISE, "swish", "mish", "hard_mish", "relu6", *list(_FUNCTIONS)[-3:])
SHORTCUT = (*ELEMENTWISE, "swish", "mish")


def make_activation(name: str) -> nn.Module:
    if name == "linear":
        return nn.Identity()
    if name == "mish":
        return Mish()
    if name in ("leaky", "revleaky"):  # revleaky's forward is leaky's
        return nn.LeakyReLU(0.1)
    simple = {
        "logistic": nn.Sigmoid,
        "relu": nn.ReLU,
        "relu6": nn.ReLU6,
        "swish": nn.SiLU,
        "tanh": nn.Tanh,
        "hardtan": nn.Hardtanh,
    }
    if name in simple:
        return simple[name]()
    return DarknetActivation(name)


# ---------------------------------------------------------------------------------------------
# Layers


class DarknetLayer(nn.Module):
    """Base: where the layer comes from (cfg section, file and line) and which earlier layers'
    outputs it reads besides its input (``sources``, absolute indices)."""

    section = ""

    def __init__(self, index: int, where: str, sources: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.index = index
        self.where = where
        self.sources = sources

    def describe(self) -> str:
        return ""

    def extra_repr(self) -> str:
        details = self.describe()
        return f"{self.index}: [{self.section}] {self.where}" + (f", {details}" if details else "")


def _blur_kernel(channels: int, mode: int) -> Tensor:
    # darknet's antialiasing: a fixed depthwise 3x3 binomial (mode 1) or 2x2 box (mode 2) filter
    if mode == 2:
        k = torch.full((2, 2), 0.25)
    else:
        k = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16
    return k.expand(channels, 1, *k.shape).clone()


class _Blur(nn.Module):
    def __init__(self, channels: int, mode: int, stride: tuple[int, int]) -> None:
        super().__init__()
        self.register_buffer("weight", _blur_kernel(channels, mode), persistent=False)
        self.stride = stride
        self.padding = 0 if mode == 2 else 1

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight.to(x.dtype), None, self.stride, self.padding, 1, x.shape[1])


class Convolutional(DarknetLayer):
    """Convolution, then BatchNorm (``batch_normalize``; darknet's eps 1e-5 and running-average
    factor 0.01) or a bias, then the activation; with ``antialiasing`` the stride moves into a fixed
    blur filter applied last, as darknet does."""

    section = "convolutional"

    def __init__(
        self,
        index: int,
        where: str,
        in_channels: int,
        filters: int,
        size: int,
        stride: tuple[int, int],
        padding: int,
        dilation: int,
        groups: int,
        batch_normalize: bool,
        activation: str,
        antialiasing: int = 0,
    ) -> None:
        super().__init__(index, where)
        conv_stride = (1, 1) if antialiasing else stride
        # darknet pads by pad * dilation (im2col_cpu_ext and cuDNN alike)
        self.conv = nn.Conv2d(
            in_channels,
            filters,
            size,
            conv_stride,
            padding * dilation,
            dilation,
            groups,
            bias=not batch_normalize,
        )
        self.bn = nn.BatchNorm2d(filters, eps=1e-5, momentum=0.01) if batch_normalize else None
        self.act = make_activation(activation)
        self.blur = _Blur(filters, antialiasing, stride) if antialiasing else None
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        x = self.act(x)
        if self.blur is not None:
            x = self.blur(x)
        return x

    def describe(self) -> str:
        c = self.conv
        parts = [f"{c.in_channels}->{c.out_channels}", f"size={c.kernel_size[0]}"]
        stride = self.blur.stride if self.blur is not None else c.stride
        parts.append(f"stride={stride[1]}" if stride[0] == stride[1] else f"stride_x={stride[1]} stride_y={stride[0]}")
        if c.padding[0]:
            parts.append(f"padding={c.padding[0] // c.dilation[0]}")
        if c.dilation[0] != 1:
            parts.append(f"dilation={c.dilation[0]}")
        if c.groups != 1:
            parts.append(f"groups={c.groups}")
        parts.append("batch_normalize" if self.bn is not None else "bias")
        parts.append(self.activation)
        if self.blur is not None:
            parts.append("antialiasing")
        return " ".join(parts)


class Route(DarknetLayer):
    """Concatenation along channels of the listed layers' outputs; with ``groups`` each contributes
    its ``group_id``-th of ``groups`` equal channel slices (a view: nothing is copied for one input)."""

    section = "route"

    def __init__(self, index: int, where: str, sources: tuple[int, ...], groups: int, group_id: int) -> None:
        super().__init__(index, where, sources)
        self.groups = groups
        self.group_id = group_id

    def forward(self, *inputs: Tensor) -> Tensor:
        if self.groups != 1:
            parts = []
            for t in inputs:
                part = t.shape[1] // self.groups
                parts.append(t.narrow(1, self.group_id * part, part))
            inputs = tuple(parts)
        return inputs[0] if len(inputs) == 1 else torch.cat(inputs, 1)

    def describe(self) -> str:
        text = "layers=" + ",".join(str(s) for s in self.sources)
        return text + (f" groups={self.groups} group_id={self.group_id}" if self.groups != 1 else "")


def _add_prefix(out: Tensor, add: Tensor) -> Tensor:
    """darknet's shortcut_multilayer: per sample, the first min(len) elements of the flattened
    tensors are summed; the rest of ``out`` passes through."""
    if add.shape == out.shape:
        return out + add
    if add.shape[2:] == out.shape[2:]:  # same grid: a channel prefix
        c = min(out.shape[1], add.shape[1])
        head = out[:, :c] + add[:, :c]
        return head if c == out.shape[1] else torch.cat([head, out[:, c:]], 1)
    n = out.shape[0]
    flat_out, flat_add = out.reshape(n, -1), add.reshape(n, -1)
    k = min(flat_out.shape[1], flat_add.shape[1])
    head = flat_out[:, :k] + flat_add[:, :k]
    flat = head if k == flat_out.shape[1] else torch.cat([head, flat_out[:, k:]], 1)
    return flat.reshape(out.shape)


class Shortcut(DarknetLayer):
    """Input plus the listed layers' outputs, then the activation."""

    section = "shortcut"

    def __init__(self, index: int, where: str, sources: tuple[int, ...], activation: str) -> None:
        super().__init__(index, where, sources)
        self.act = make_activation(activation)
        self.activation = activation

    def forward(self, x: Tensor, *others: Tensor) -> Tensor:
        for other in others:
            x = _add_prefix(x, other)
        return self.act(x)

    def describe(self) -> str:
        return "from=" + ",".join(str(s) for s in self.sources) + f" {self.activation}"


# darknet's value for positions outside the input (-FLT_MAX): never wins, and is the result of a
# window that lies entirely in the padding.
_PAD = -3.4028234663852886e38


class MaxPool(DarknetLayer):
    """Max over size x size windows; ``padding`` (default size - 1) splits as padding // 2 before and
    the rest after, and padded positions never win. Output (w + padding - size) // stride + 1."""

    section = "maxpool"

    def __init__(
        self, index: int, where: str, size: int, stride: tuple[int, int], padding: int, antialiasing: int = 0
    ) -> None:
        super().__init__(index, where)
        self.size = size
        self.stride = (1, 1) if antialiasing else stride
        self.padding = padding
        self.blur: _Blur | None = None
        self.antialiasing = antialiasing
        self._blur_stride = stride

    def set_channels(self, channels: int) -> None:
        if self.antialiasing:
            self.blur = _Blur(channels, self.antialiasing, self._blur_stride)

    def forward(self, x: Tensor) -> Tensor:
        before = self.padding // 2
        pads = []
        for dim, stride in ((3, self.stride[1]), (2, self.stride[0])):
            n = x.shape[dim]
            out = (n + self.padding - self.size) // stride + 1
            # symmetric padding as far as max_pool2d allows; one more trailing row/column only when
            # darknet's last window reaches it
            pads.append(max(0, (out - 1) * stride + self.size - n - 2 * before))
        if before * 2 > self.size:  # beyond max_pool2d's own padding limit
            pads = [p + before for p in pads]
            x = F.pad(x, (before, pads[0], before, pads[1]), value=_PAD)
            before = 0
        elif pads[0] or pads[1]:
            x = F.pad(x, (0, pads[0], 0, pads[1]), value=_PAD)
        y = F.max_pool2d(x, self.size, self.stride, before)
        return self.blur(y) if self.blur is not None else y

    def describe(self) -> str:
        s = self._blur_stride
        stride = f"stride={s[1]}" if s[0] == s[1] else f"stride_x={s[1]} stride_y={s[0]}"
        return f"size={self.size} {stride} padding={self.padding}" + (" antialiasing" if self.blur is not None else "")


class MaxPoolDepth(DarknetLayer):
    """``maxpool_depth``: output channel g is the max over input channels g, g + out_channels, ..."""

    section = "maxpool"

    def __init__(self, index: int, where: str, out_channels: int) -> None:
        super().__init__(index, where)
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        groups = -(-c // self.out_channels)
        missing = groups * self.out_channels - c
        if missing:
            x = torch.cat([x, x.new_full((n, missing, h, w), float("-inf"))], 1)
        return x.view(n, groups, self.out_channels, h, w).amax(1)

    def describe(self) -> str:
        return f"maxpool_depth out_channels={self.out_channels}"


class LocalAvgPool(DarknetLayer):
    """Average over the window's positions inside the input (padding as in [maxpool])."""

    section = "local_avgpool"

    def __init__(self, index: int, where: str, size: int, stride: tuple[int, int], padding: int) -> None:
        super().__init__(index, where)
        self.size, self.stride, self.padding = size, stride, padding

    def forward(self, x: Tensor) -> Tensor:
        before = self.padding // 2
        pads = []
        for dim, stride in ((3, self.stride[1]), (2, self.stride[0])):
            n = x.shape[dim]
            out = (n + self.padding - self.size) // stride + 1
            pads.append((out - 1) * stride + self.size - n - before)
        padded = F.pad(x, (before, pads[0], before, pads[1]))
        ones = F.pad(torch.ones_like(x[:1, :1]), (before, pads[0], before, pads[1]))
        total = F.avg_pool2d(padded, self.size, self.stride, divisor_override=1)
        count = F.avg_pool2d(ones, self.size, self.stride, divisor_override=1)
        return total / count

    def describe(self) -> str:
        return f"size={self.size} stride={self.stride[1]},{self.stride[0]} padding={self.padding}"


class Upsample(DarknetLayer):
    """Nearest-neighbour upsampling by ``stride``, times ``scale``; a negative stride sums
    stride x stride blocks instead (times ``scale``)."""

    section = "upsample"

    def __init__(self, index: int, where: str, stride: int, scale: float) -> None:
        super().__init__(index, where)
        self.stride = stride
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        if self.stride > 0:
            s = self.stride
            y = x[:, :, :, None, :, None].expand(n, c, h, s, w, s).reshape(n, c, h * s, w * s)
        else:
            s = -self.stride
            y = x.reshape(n, c, h // s, s, w // s, s).sum((3, 5))
        return y * self.scale if self.scale != 1 else y

    def describe(self) -> str:
        return f"stride={self.stride}" + (f" scale={self.scale:g}" if self.scale != 1 else "")


def _space_to_depth(x: Tensor, s: int) -> Tensor:
    # reorg_cpu(forward=0): out[(dy*s + dx)*C + c, j, i] = in[c, j*s + dy, i*s + dx]
    n, c, h, w = x.shape
    return x.reshape(n, c, h // s, s, w // s, s).permute(0, 3, 5, 1, 2, 4).reshape(n, c * s * s, h // s, w // s)


def _depth_to_space(x: Tensor, s: int) -> Tensor:
    n, c, h, w = x.shape
    cb = c // (s * s)
    return x.reshape(n, s, s, cb, h, w).permute(0, 3, 4, 1, 5, 2).reshape(n, cb, h * s, w * s)


class Reorg3d(DarknetLayer):
    """[reorg3d]: space to depth by ``stride``; with ``reverse=1`` darknet's reverse pass, which reads
    the input as the output's shape, moves depth to space on it and reads the result back as that
    shape (reorg_cpu with forward=1)."""

    section = "reorg3d"

    def __init__(self, index: int, where: str, stride: int, reverse: bool) -> None:
        super().__init__(index, where)
        self.stride = stride
        self.reverse = reverse

    def forward(self, x: Tensor) -> Tensor:
        s = self.stride
        if not self.reverse:
            return _space_to_depth(x, s)
        n, c, h, w = x.shape
        shape = (n, c // (s * s), h * s, w * s)
        return _depth_to_space(x.reshape(shape), s).reshape(shape)

    def describe(self) -> str:
        return f"stride={self.stride}" + (" reverse" if self.reverse else "")


class Sam(DarknetLayer):
    """Input times the ``from`` layer's output, elementwise, then the activation."""

    section = "sam"

    def __init__(self, index: int, where: str, source: int, activation: str) -> None:
        super().__init__(index, where, (source,))
        self.act = make_activation(activation)
        self.activation = activation

    def forward(self, x: Tensor, other: Tensor) -> Tensor:
        return self.act(x * other)

    def describe(self) -> str:
        return f"from={self.sources[0]} {self.activation}"


class ScaleChannels(DarknetLayer):
    """The ``from`` layer's output scaled per channel by the input (N, C, 1, 1), or with
    ``scale_wh=1`` per position by the input (N, 1, H, W); then the activation."""

    section = "scale_channels"

    def __init__(self, index: int, where: str, source: int, scale_wh: bool, activation: str) -> None:
        super().__init__(index, where, (source,))
        self.scale_wh = scale_wh
        self.act = make_activation(activation)
        self.activation = activation

    def forward(self, x: Tensor, other: Tensor) -> Tensor:
        return self.act(other * x)

    def describe(self) -> str:
        return f"from={self.sources[0]}" + (" scale_wh" if self.scale_wh else "") + f" {self.activation}"


class Activation(DarknetLayer):
    """[activation]: the activation alone (darknet's activate_array)."""

    section = "activation"

    def __init__(self, index: int, where: str, activation: str) -> None:
        super().__init__(index, where)
        self.act = make_activation(activation)
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x)

    def describe(self) -> str:
        return self.activation


class AvgPool(DarknetLayer):
    """[avgpool]: global average per channel, (N, C, 1, 1)."""

    section = "avgpool"

    def forward(self, x: Tensor) -> Tensor:
        return x.mean((2, 3), keepdim=True)


class Dropout(DarknetLayer):
    """Identity in eval. In training, darknet's dropout: zero with ``probability``, scale the rest
    by 1 / (1 - probability), in place on the previous layer's output (Darknet.forward makes the
    earlier layer's stored output the dropped tensor, as darknet shares the buffer). DropBlock
    (``dropblock=1``) has no training implementation here and raises in training mode."""

    section = "dropout"

    def __init__(self, index: int, where: str, probability: float, dropblock: bool) -> None:
        super().__init__(index, where)
        self.probability = probability
        self.dropblock = dropblock

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return x
        if self.dropblock:
            raise NotImplementedError(f"{self.where}: [dropout] dropblock=1 is not implemented for training")
        return F.dropout(x, self.probability, True)

    def describe(self) -> str:
        return f"probability={self.probability:g}" + (" dropblock" if self.dropblock else "")


class Empty(DarknetLayer):
    """[empty] / [silence]: the input, unchanged."""

    section = "empty"

    def forward(self, x: Tensor) -> Tensor:
        return x


class BatchNorm(DarknetLayer):
    """[batchnorm]: a standalone BatchNorm (its weights are in the .weights file)."""

    section = "batchnorm"

    def __init__(self, index: int, where: str, channels: int) -> None:
        super().__init__(index, where)
        self.bn = nn.BatchNorm2d(channels, eps=1e-5, momentum=0.01)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(x)


class Yolo(DarknetLayer):
    """A [yolo] head. ``forward`` is darknet's yolo layer output (what a later layer reading it
    gets); ``decode`` the boxes as get_yolo_detections computes them, in input pixels.

    Training-only settings (loss, NMS, augmentation) are in ``train_options``, unused here."""

    section = "yolo"

    def __init__(
        self,
        index: int,
        where: str,
        classes: int,
        mask: list[int],
        anchors: list[tuple[float, float]],
        scale_x_y: float,
        new_coords: bool,
        train_options: dict[str, str],
    ) -> None:
        super().__init__(index, where)
        self.classes = classes
        self.mask = mask
        self.all_anchors = anchors
        self.scale_x_y = scale_x_y
        self.new_coords = new_coords
        self.train_options = train_options
        self.register_buffer("anchors", torch.tensor([anchors[m] for m in mask], dtype=torch.float32), persistent=False)

    @property
    def num_anchors(self) -> int:
        return len(self.mask)

    def split(self, x: Tensor) -> Tensor:
        """(N, A*(5+C), H, W) -> (N, A, H, W, 5+C): the training output."""
        n, _, h, w = x.shape
        return x.view(n, self.num_anchors, 5 + self.classes, h, w).permute(0, 1, 3, 4, 2)

    def _activate(self, t: Tensor) -> Tensor:
        """darknet's forward_yolo_layer on (..., 5+C) entries: logistic on x, y, objectness and
        classes unless new_coords, then x, y scaled by scale_x_y around 0.5."""
        s = self.scale_x_y
        if self.new_coords:
            xy, rest = t[..., :2], t[..., 2:]
        else:
            xy = torch.sigmoid(t[..., :2])
            rest = torch.cat([t[..., 2:4], torch.sigmoid(t[..., 4:])], -1)
        if s != 1:
            xy = xy * s - 0.5 * (s - 1)
        return torch.cat([xy, rest], -1)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        t = x.view(n, self.num_anchors, 5 + self.classes, h, w).transpose(2, 4)
        return self._activate(t).transpose(2, 4).reshape(n, c, h, w)

    def decode(self, x: Tensor, net_h: int, net_w: int) -> Tensor:
        """(N, A*H*W, 5+C): cx, cy, w, h in input pixels, objectness, class scores; rows ordered by
        anchor (mask order), grid row, grid column. Whole-tensor ops, few of them: at small batch
        sizes the decode's cost is its kernel launches. Computed in float32 (float64 stays) whatever
        the model's dtype, as darknet's yolo layer is: in bfloat16 a corner past 128 px rounds to 1 px."""
        x = x.to(torch.promote_types(x.dtype, torch.float32))
        n, _, h, w = x.shape
        a, k = self.num_anchors, 5 + self.classes
        t = x.view(n, a, k, h, w)
        if self.new_coords:
            act = t
            wh = t[:, :, 2:4].square() * 4
        else:
            act = torch.sigmoid(t)  # entries 2:4 unused
            wh = torch.exp(t[:, :, 2:4])
        xy = act[:, :, :2]
        s = self.scale_x_y
        if s != 1:
            xy = xy * s - 0.5 * (s - 1)
        gx = torch.arange(w, dtype=x.dtype, device=x.device).view(1, 1, 1, 1, w)
        gy = torch.arange(h, dtype=x.dtype, device=x.device).view(1, 1, 1, h, 1)
        cx = (xy[:, :, :1] + gx) * (net_w / w)
        cy = (xy[:, :, 1:] + gy) * (net_h / h)
        wh = wh * self.anchors.to(x.dtype).view(1, a, 2, 1, 1)
        return torch.cat([cx, cy, wh, act[:, :, 4:]], 2).permute(0, 1, 3, 4, 2).reshape(n, a * h * w, k)

    def describe(self) -> str:
        anchors = ", ".join(f"{w:g}x{h:g}" for w, h in (self.all_anchors[m] for m in self.mask))
        extra = f" scale_x_y={self.scale_x_y:g}" if self.scale_x_y != 1 else ""
        extra += " new_coords" if self.new_coords else ""
        return f"classes={self.classes} mask={','.join(map(str, self.mask))} anchors=[{anchors}]{extra}"
