"""A reference darknet forward pass in NumPy float64, written from darknet's C definitions
(AlexeyAB/darknet src/*_layer.c, blas.c, activations.h) with their index arithmetic on flat
per-sample buffers, independently of torch_mish.darknet's vectorized modules. Also writes random
.weights files that it reads back itself, so tests compare the importer against the definition on
the same parameters."""

from __future__ import annotations

import math
import struct

import numpy as np

from torch_mish.darknet.cfg import Section, read_cfg

# ---------------------------------------------------------------------------------------------
# activations.h, elementwise


def _where(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(c, a, b)


def activate(x: np.ndarray, name: str) -> np.ndarray:  # noqa: PLR0911, PLR0912 - a branch per activation
    with np.errstate(over="ignore", invalid="ignore"):
        if name == "linear":
            return x
        if name == "logistic":
            return 1 / (1 + np.exp(-x))
        if name == "loggy":
            return 2 / (1 + np.exp(-x)) - 1
        if name == "relu":
            return x * (x > 0)
        if name == "relu6":
            return np.minimum(np.maximum(x, 0), 6)
        if name == "elu":
            return (x >= 0) * x + (x < 0) * (np.exp(x) - 1)
        if name == "selu":
            return (x >= 0) * 1.0507 * x + (x < 0) * 1.0507 * 1.6732 * (np.exp(x) - 1)
        if name == "gelu":
            return 0.5 * x * (1 + np.tanh(0.797885 * x + 0.035677 * x**3))
        if name == "relie":
            return _where(x > 0, x, 0.01 * x)
        if name == "ramp":
            return x * (x > 0) + 0.1 * x
        if name in ("leaky", "revleaky"):
            return _where(x > 0, x, 0.1 * x)
        if name == "tanh":
            return 2 / (1 + np.exp(-2 * x)) - 1
        if name == "plse":
            return _where(x < -4, 0.01 * (x + 4), _where(x > 4, 0.01 * (x - 4) + 1, 0.125 * x + 0.5))
        if name == "stair":
            n = np.floor(x)
            even = np.fmod(n, 2) == 0
            return _where(even, np.floor(x / 2), (x - n) + np.floor(x / 2))
        if name == "hardtan":
            return np.clip(x, -1, 1)
        if name == "lhtan":
            return _where(x < 0, 0.001 * x, _where(x > 1, 0.001 * (x - 1) + 1, x))
        if name == "swish":
            return x / (1 + np.exp(-x))
        if name == "mish":
            sp = _where(x > 20, x, _where(x < -20, np.exp(x), np.log(np.exp(x) + 1)))
            return x * np.tanh(sp)
        if name == "hard_mish":
            return _where(x > 0, x, _where(x > -2, x * x / 2 + x, 0 * x))
    raise KeyError(name)


def activate_channels(x: np.ndarray, name: str) -> np.ndarray:
    """normalize_channels*: per sample and position, over channels (axis 1 of NCHW)."""
    eps = 0.0001
    if name == "normalize_channels":
        pos = np.where(x > 0, x, 0)
        return np.where(x > 0, x / (eps + pos.sum(1, keepdims=True)), 0)
    m = x.max(1, keepdims=True) if name.endswith("maxval") else 0
    e = np.exp(x - m)
    return e / (eps + e.sum(1, keepdims=True))


# ---------------------------------------------------------------------------------------------
# layers


def conv2d(x: np.ndarray, w: np.ndarray, stride: tuple[int, int], pad: int, dilation: int, groups: int) -> np.ndarray:
    """im2col_cpu_ext + gemm: zero padding pad*dilation, output (h + 2*pad - size) / stride + 1."""
    n, c, h, wd = x.shape
    f, cg, k, _ = w.shape
    sy, sx = stride
    oh, ow = (h + 2 * pad - k) // sy + 1, (wd + 2 * pad - k) // sx + 1
    p = pad * dilation
    xp = np.zeros((n, c, h + 2 * p + k * dilation, wd + 2 * p + k * dilation))
    xp[:, :, p : p + h, p : p + wd] = x
    out = np.zeros((n, f, oh, ow))
    fg = f // groups
    for g in range(groups):
        xs = xp[:, g * cg : (g + 1) * cg]
        for ky in range(k):
            for kx in range(k):
                y0, x0 = ky * dilation, kx * dilation
                patch = xs[:, :, y0 : y0 + sy * (oh - 1) + 1 : sy, x0 : x0 + sx * (ow - 1) + 1 : sx]
                out[:, g * fg : (g + 1) * fg] += np.einsum("fc,nchw->nfhw", w[g * fg : (g + 1) * fg, :, ky, kx], patch)
    return out


def blur(x: np.ndarray, mode: int, stride: tuple[int, int]) -> np.ndarray:
    c = x.shape[1]
    if mode == 2:
        k, pad = np.full((2, 2), 0.25), 0
    else:
        k, pad = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16.0, 1
    return conv2d(x, np.broadcast_to(k, (c, 1, *k.shape)), stride, pad, 1, c)


def maxpool(x: np.ndarray, size: int, stride: tuple[int, int], pad: int, average: bool = False) -> np.ndarray:
    """forward_maxpool_layer / forward_local_avgpool_layer: offsets -pad/2, out (w + pad - size)/stride + 1."""
    n, c, h, w = x.shape
    sy, sx = stride
    oh, ow = (h + pad - size) // sy + 1, (w + pad - size) // sx + 1
    off = -(pad // 2)
    out = np.empty((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            best = np.full((n, c), -np.finfo(np.float32).max)
            total, count = np.zeros((n, c)), 0
            for a in range(size):
                for b in range(size):
                    y, xx = off + i * sy + a, off + j * sx + b
                    if 0 <= y < h and 0 <= xx < w:
                        best = np.maximum(best, x[:, :, y, xx])
                        total += x[:, :, y, xx]
                        count += 1
            out[:, :, i, j] = total / count if average else best
    return out


def maxpool_depth(x: np.ndarray, out_c: int) -> np.ndarray:
    n, c, h, w = x.shape
    out = np.empty((n, out_c, h, w))
    for g in range(out_c):
        out[:, g] = x[:, g::out_c].max(1)
    return out


def upsample(x: np.ndarray, stride: int, scale: float) -> np.ndarray:
    """upsample_cpu over flat per-sample buffers, forward (stride > 0) or reverse accumulation."""
    n, c, h, w = x.shape
    if stride > 0:
        s = stride
        out = np.zeros((n, c * h * s * w * s))
        flat = x.reshape(n, -1)
        for k in range(c):
            for j in range(h * s):
                for i in range(w * s):
                    out[:, k * w * h * s * s + j * w * s + i] = scale * flat[:, k * w * h + (j // s) * w + i // s]
        return out.reshape(n, c, h * s, w * s)
    s = -stride
    ow, oh = w // s, h // s
    out = np.zeros((n, c * oh * ow))
    flat = x.reshape(n, -1)
    for k in range(c):
        for j in range(oh * s):
            for i in range(ow * s):
                out[:, k * ow * oh + (j // s) * ow + i // s] += scale * flat[:, k * ow * oh * s * s + j * ow * s + i]
    return out.reshape(n, c, oh, ow)


def reorg(x: np.ndarray, out_shape: tuple[int, int, int], stride: int, forward: int) -> np.ndarray:
    """reorg_cpu(x, out_w, out_h, out_c, batch, stride, forward, out) on flat buffers."""
    n = x.shape[0]
    out_c, out_h, out_w = out_shape
    in_c = out_c // (stride * stride)
    flat = x.reshape(n, -1)
    out = np.zeros_like(flat)
    for k in range(out_c):
        for j in range(out_h):
            for i in range(out_w):
                in_index = i + out_w * (j + out_h * k)
                c2, offset = k % in_c, k // in_c
                w2, h2 = i * stride + offset % stride, j * stride + offset // stride
                out_index = w2 + out_w * stride * (h2 + out_h * stride * c2)
                if forward:
                    out[:, out_index] = flat[:, in_index]
                else:
                    out[:, in_index] = flat[:, out_index]
    return out


def shortcut(x: np.ndarray, adds: list[np.ndarray]) -> np.ndarray:
    """shortcut_multilayer_cpu without weights: out[i] = in[i] + add[i] where i < len(add)."""
    n = x.shape[0]
    out = x.reshape(n, -1).copy()
    size = out.shape[1]
    for a in adds:
        flat = a.reshape(n, -1)
        for i in range(min(size, flat.shape[1])):
            out[:, i] += flat[:, i]
    return out.reshape(x.shape)


def route(inputs: list[np.ndarray], groups: int, group_id: int) -> np.ndarray:
    n = inputs[0].shape[0]
    parts = []
    for t in inputs:
        flat = t.reshape(n, -1)
        part = flat.shape[1] // groups
        parts.append(flat[:, part * group_id : part * (group_id + 1)])
    h, w = inputs[0].shape[2:]
    return np.concatenate(parts, 1).reshape(n, -1, h, w)


def yolo_activate(x: np.ndarray, anchors: int, classes: int, scale: float, new_coords: bool) -> np.ndarray:
    """forward_yolo_layer on the flat buffer (entry_index layout)."""
    n, c, h, w = x.shape
    out = x.reshape(n, -1).copy()
    hw = h * w
    for a in range(anchors):
        box = a * hw * (4 + classes + 1)
        if not new_coords:
            out[:, box : box + 2 * hw] = activate(out[:, box : box + 2 * hw], "logistic")
            obj = box + 4 * hw
            out[:, obj : obj + (1 + classes) * hw] = activate(out[:, obj : obj + (1 + classes) * hw], "logistic")
        out[:, box : box + 2 * hw] = out[:, box : box + 2 * hw] * scale - 0.5 * (scale - 1)
    return out.reshape(x.shape)


def yolo_decode(
    act: np.ndarray, anchors: list[tuple[float, float]], mask: list[int], classes: int, new_coords: bool, net_hw: tuple
) -> np.ndarray:
    """get_yolo_box for every (anchor, row, column), scaled from relative to input pixels."""
    n, _, h, w = act.shape
    net_h, net_w = net_hw
    flat = act.reshape(n, -1)
    hw = h * w
    rows = []
    for a, m in enumerate(mask):
        aw, ah = anchors[m]
        for j in range(h):
            for i in range(w):
                base = a * hw * (5 + classes) + j * w + i

                def entry(e: int, base: int = base) -> np.ndarray:
                    return flat[:, base + e * hw]

                bx = (i + entry(0)) / w
                by = (j + entry(1)) / h
                if new_coords:
                    bw = entry(2) * entry(2) * 4 * aw / net_w
                    bh = entry(3) * entry(3) * 4 * ah / net_h
                else:
                    bw = np.exp(entry(2)) * aw / net_w
                    bh = np.exp(entry(3)) * ah / net_h
                row = [bx * net_w, by * net_h, bw * net_w, bh * net_h] + [entry(4 + k) for k in range(1 + classes)]
                rows.append(np.stack(row, 1))
    return np.stack(rows, 1)


# ---------------------------------------------------------------------------------------------
# .weights files and the whole network


def conv_param_counts(s: Section, in_c: int) -> tuple[int, bool, int]:
    filters = s.get_int("filters", 1)
    groups = max(1, s.get_int("groups", 1))
    size = s.get_int("size", 1)
    bn = bool(s.get_int("batch_normalize", 0) or s.get_int("cbn", 0))  # cbn=1 sets batch_normalize=2
    return filters, bn, filters * (in_c // groups) * size * size


def random_weights(cfg: str, gen: np.random.Generator, major: int = 0, minor: int = 2, seen: int = 12345) -> bytes:
    """A .weights file for ``cfg`` with random values: BatchNorm variances positive, weights of
    variance 1 / fan-in so activations stay O(1) through deep nets."""
    body = []
    for kind, s, in_c in _walk_params(cfg):
        if kind == "conv":
            filters, bn, nweights = conv_param_counts(s, in_c)
            body.append(gen.normal(0, 0.2, filters))
            if bn:
                body += [gen.uniform(0.5, 1.5, filters), gen.normal(0, 0.2, filters), gen.uniform(0.5, 2, filters)]
            bound = math.sqrt(3 / (nweights // filters))  # uniform with variance 1 / fan-in
            body.append(gen.random(nweights, dtype=np.float32) * (2 * bound) - bound)
        else:  # [batchnorm]
            body += [gen.normal(0, 0.2, in_c), gen.uniform(0.5, 1.5, in_c), gen.normal(0, 0.2, in_c)]
            body.append(gen.uniform(0.5, 2, in_c))
    header = struct.pack("<3i", major, minor, 5) + struct.pack("<Q" if major * 10 + minor >= 2 else "<I", seen)
    return header + np.concatenate([np.zeros(0), *body]).astype("<f4").tobytes()


def _walk_params(cfg: str) -> list[tuple[str, Section, int]]:
    """(kind, section, input channels) of each layer with weights, by a channel-only pass."""
    sections = read_cfg(cfg)
    net = sections[0]
    c = net.get_int("channels", 0)
    chans: list[int] = []
    found = []
    for index, s in enumerate(sections[1:]):
        t = s.type
        if t in ("convolutional", "conv"):
            found.append(("conv", s, c))
            c = s.get_int("filters", 1)
        elif t == "batchnorm":
            found.append(("bn", s, c))
        elif t == "route":
            idx = [index + v if v < 0 else v for v in s.get_ints("layers")]
            c = sum(chans[j] for j in idx) // s.get_int("groups", 1)
        elif t in ("sam", "scale_channels"):
            (v,) = s.get_ints("from")[:1]
            c = chans[index + v if v < 0 else v]
        elif t == "reorg3d":
            st = s.get_int("stride", 1)
            c = c // st**2 if s.get_int("reverse", 0) else c * st**2
        elif t in ("maxpool", "max") and s.get_int("maxpool_depth", 0):
            c = s.get_int("out_channels", 1)
        chans.append(c)
    return found


def forward(cfg: str, weights: bytes, x: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:  # noqa: PLR0912
    """Every layer's output (a [yolo] layer's is darknet's activated one) and the network's eval output:
    concatenated decoded detections, or the last output without [yolo]."""
    sections = read_cfg(cfg)
    major, minor = struct.unpack_from("<2i", weights)
    offset = 12 + (8 if major * 10 + minor >= 2 else 4)
    values = np.frombuffer(weights, "<f4", offset=offset).astype(np.float64)
    pos = 0

    def take(count: int) -> np.ndarray:
        nonlocal pos
        pos += count
        return values[pos - count : pos]

    net_hw = x.shape[2:]
    outs: list[np.ndarray] = []
    dets = []
    for index, s in enumerate(sections[1:]):
        t = {"conv": "convolutional", "max": "maxpool", "avg": "avgpool", "silence": "empty"}.get(s.type, s.type)

        def ref(v: int, index: int = index) -> np.ndarray:
            return outs[index + v if v < 0 else v]

        if t == "convolutional":
            filters, bn, nweights = conv_param_counts(s, x.shape[1])
            biases = take(filters)
            scales, means, variances = (take(filters), take(filters), take(filters)) if bn else (None,) * 3
            groups, size = max(1, s.get_int("groups", 1)), s.get_int("size", 1)
            w = take(nweights).reshape(filters, x.shape[1] // groups, size, size)
            sx, sy = s.get_int("stride_x", -1), s.get_int("stride_y", -1)
            stride = s.get_int("stride", 1)
            sx, sy = (stride if sx < 1 else sx), (stride if sy < 1 else sy)
            pad = size // 2 if s.get_int("pad", 0) else s.get_int("padding", 0)
            dilation = 1 if size == 1 else s.get_int("dilation", 1)
            aa = s.get_int("antialiasing", 0)
            y = conv2d(x, w, (1, 1) if aa else (sy, sx), pad, dilation, groups)
            if bn:
                sh = (1, -1, 1, 1)
                y = (y - means.reshape(sh)) / np.sqrt(variances.reshape(sh) + 0.00001) * scales.reshape(sh)
            y = y + biases.reshape(1, -1, 1, 1)
            act = s.get_str("activation", "logistic")
            y = activate_channels(y, act) if act.startswith("normalize_channels") else activate(y, act)
            if aa:
                y = blur(y, 2 if aa == 2 else 1, (sy, sx))
        elif t == "batchnorm":
            c = x.shape[1]
            biases, scales, means, variances = take(c), take(c), take(c), take(c)
            sh = (1, -1, 1, 1)
            y = (x - means.reshape(sh)) / np.sqrt(variances.reshape(sh) + 0.00001) * scales.reshape(sh)
            y = y + biases.reshape(sh)
        elif t == "route":
            y = route([ref(v) for v in s.get_ints("layers")], s.get_int("groups", 1), s.get_int("group_id", 0))
        elif t == "shortcut":
            y = activate(shortcut(x, [ref(v) for v in s.get_ints("from")]), s.get_str("activation", "linear"))
        elif t == "sam":
            y = activate(x * ref(s.get_ints("from")[0]), s.get_str("activation", "linear"))
        elif t == "scale_channels":
            other = ref(s.get_ints("from")[0])
            n, c, h, w = other.shape
            flat_o, flat_x = other.reshape(n, -1), x.reshape(n, -1)
            idx = np.arange(c * h * w)
            scale = flat_x[:, idx % (h * w)] if s.get_int("scale_wh", 0) else flat_x[:, idx // (h * w)]
            y = activate((scale * flat_o).reshape(other.shape), s.get_str("activation", "linear"))
        elif t in ("maxpool", "local_avgpool"):
            stride = s.get_int("stride", 1)
            st = (s.get_int("stride_y", stride), s.get_int("stride_x", stride))
            size = s.get_int("size", stride)
            if t == "maxpool" and s.get_int("maxpool_depth", 0):
                y = maxpool_depth(x, s.get_int("out_channels", 1))
            else:
                aa = s.get_int("antialiasing", 0) if t == "maxpool" else 0
                y = maxpool(x, size, (1, 1) if aa else st, s.get_int("padding", size - 1), t == "local_avgpool")
                if aa:
                    y = blur(y, 2 if aa == 2 else 1, st)
        elif t == "upsample":
            y = upsample(x, s.get_int("stride", 2), s.get_float("scale", 1.0))
        elif t == "reorg3d":
            st = s.get_int("stride", 1)
            n, c, h, w = x.shape
            if s.get_int("reverse", 0):
                shape = (c // st**2, h * st, w * st)
                y = reorg(x, shape, st, 1).reshape(n, *shape)
            else:
                shape = (c * st**2, h // st, w // st)
                y = reorg(x, shape, st, 0).reshape(n, *shape)
        elif t == "avgpool":
            y = x.mean((2, 3), keepdims=True)
        elif t == "activation":
            y = activate(x, s.get_str("activation", "linear"))
        elif t in ("dropout", "empty"):
            y = x
        elif t == "yolo":
            classes, total = s.get_int("classes", 20), s.get_int("num", 1)
            mask = s.get_ints("mask") or list(range(total))
            anchors_flat = (s.get_floats("anchors") or []) + [0.5] * (2 * total)
            anchors = [(anchors_flat[2 * i], anchors_flat[2 * i + 1]) for i in range(total)]
            new_coords = bool(s.get_int("new_coords", 0))
            y = yolo_activate(x, len(mask), classes, s.get_float("scale_x_y", 1.0), new_coords)
            dets.append(yolo_decode(y, anchors, mask, classes, new_coords, net_hw))
        else:
            raise NotImplementedError(t)
        outs.append(y)
        x = y
    assert pos == len(values), f"reference read {pos} of {len(values)} floats"
    return outs, (np.concatenate(dets, 1) if dets else x)
