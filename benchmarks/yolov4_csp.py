"""The benchmarks' and tests' workload: a YOLOv4-CSP (Scaled-YOLOv4) style detector written in PyTorch
(CSPDarknet53 backbone, SPP-CSP + PAN neck, three detection heads), whose activation is a parameter.
Users build these detectors from darknet's cfg with torch_mish.darknet. At width = depth = 1 it has
the published structure's 115 convolutions and 112 Mish layers (Wang, Bochkovskiy, Liao,
"Scaled-YOLOv4", CVPR 2021; darknet yolov4-csp.cfg).

Written here from the published structure; weights are random unless you load a checkpoint.
width/depth multipliers shrink it (channels rounded to multiples of 8, at least 8; block repeats at
least 1) so a small configuration runs on a CPU in seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

import torch_mish

ActFactory = Callable[[], nn.Module]


class ConvBnAct(nn.Module):
    """Conv2d(bias=False) -> BatchNorm2d -> activation: the block every Mish in YOLOv4 follows."""

    def __init__(self, cin: int, cout: int, k: int = 1, s: int = 1, act: ActFactory = torch_mish.Mish) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-4, momentum=0.03)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c: int, shortcut: bool, act: ActFactory) -> None:
        super().__init__()
        self.cv1 = ConvBnAct(c, c, 1, act=act)
        self.cv2 = ConvBnAct(c, c, 3, act=act)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.shortcut else y


class CSPStage(nn.Module):
    """Backbone cross-stage-partial block (darknet layout): two 1x1 branches, n residual
    bottlenecks on one, a transition, concatenation, and a 1x1 fuse; every conv has BN + Mish."""

    def __init__(self, cin: int, cout: int, n: int, act: ActFactory) -> None:
        super().__init__()
        c = cout // 2
        self.part1 = ConvBnAct(cin, c, 1, act=act)
        self.part2 = ConvBnAct(cin, c, 1, act=act)
        self.blocks = nn.Sequential(*(Bottleneck(c, True, act) for _ in range(n)))
        self.transition = ConvBnAct(c, c, 1, act=act)
        self.fuse = ConvBnAct(2 * c, cout, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([self.transition(self.blocks(self.part2(x))), self.part1(x)], 1))


class ReversedCSP(nn.Module):
    """Neck CSP block without shortcuts (Scaled-YOLOv4's BottleneckCSP2)."""

    def __init__(self, cin: int, cout: int, n: int, act: ActFactory) -> None:
        super().__init__()
        c = cout
        self.cv1 = ConvBnAct(cin, c, 1, act=act)
        self.blocks = nn.Sequential(*(Bottleneck(c, False, act) for _ in range(n)))
        self.cv2 = nn.Conv2d(c, c, 1, bias=False)
        self.bn = nn.BatchNorm2d(2 * c, eps=1e-4, momentum=0.03)
        self.act = act()
        self.cv3 = ConvBnAct(2 * c, cout, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.cv1(x)
        return self.cv3(self.act(self.bn(torch.cat([self.blocks(x1), self.cv2(x1)], 1))))


class SPPCSP(nn.Module):
    """Spatial pyramid pooling (5, 9, 13) inside a CSP block."""

    def __init__(self, cin: int, cout: int, act: ActFactory) -> None:
        super().__init__()
        c = cout
        self.cv1 = ConvBnAct(cin, c, 1, act=act)
        self.cv2 = nn.Conv2d(cin, c, 1, bias=False)
        self.cv3 = ConvBnAct(c, c, 3, act=act)
        self.cv4 = ConvBnAct(c, c, 1, act=act)
        self.pools = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in (5, 9, 13))
        self.cv5 = ConvBnAct(4 * c, c, 1, act=act)
        self.cv6 = ConvBnAct(c, c, 3, act=act)
        self.bn = nn.BatchNorm2d(2 * c, eps=1e-4, momentum=0.03)
        self.act = act()
        self.cv7 = ConvBnAct(2 * c, cout, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.cv4(self.cv3(self.cv1(x)))
        y1 = self.cv6(self.cv5(torch.cat([x1, *(p(x1) for p in self.pools)], 1)))
        return self.cv7(self.act(self.bn(torch.cat([y1, self.cv2(x)], 1))))


class YOLOv4CSP(nn.Module):
    """YOLOv4-CSP-style detector. Returns the three raw head outputs (strides 8, 16, 32), each
    (batch, anchors * (5 + classes), H / stride, W / stride).

    Args:
        num_classes: 80 for COCO.
        width: channel multiplier (1.0 = published).
        depth: block-repeat multiplier (1.0 = published).
        act: activation factory; torch_mish.Mish by default, nn.Mish or a hand-written module for
            comparisons.
    """

    def __init__(
        self,
        num_classes: int = 80,
        width: float = 1.0,
        depth: float = 1.0,
        act: ActFactory = torch_mish.Mish,
        anchors_per_level: int = 3,
    ) -> None:
        super().__init__()

        def ch(c: int) -> int:
            return max(8, int(math.ceil(c * width / 8) * 8))

        def rep(n: int) -> int:
            return max(1, round(n * depth))

        self.config = {"num_classes": num_classes, "width": width, "depth": depth}
        a = act
        # Backbone: CSPDarknet53.
        self.stem = nn.Sequential(
            ConvBnAct(3, ch(32), 3, act=a), ConvBnAct(ch(32), ch(64), 3, 2, act=a), Bottleneck(ch(64), True, a)
        )
        self.stage2 = nn.Sequential(ConvBnAct(ch(64), ch(128), 3, 2, act=a), CSPStage(ch(128), ch(128), rep(2), a))
        self.stage3 = nn.Sequential(ConvBnAct(ch(128), ch(256), 3, 2, act=a), CSPStage(ch(256), ch(256), rep(8), a))
        self.stage4 = nn.Sequential(ConvBnAct(ch(256), ch(512), 3, 2, act=a), CSPStage(ch(512), ch(512), rep(8), a))
        self.stage5 = nn.Sequential(ConvBnAct(ch(512), ch(1024), 3, 2, act=a), CSPStage(ch(1024), ch(1024), rep(4), a))
        # Neck: SPP-CSP, then PAN (top-down, then bottom-up).
        self.spp = SPPCSP(ch(1024), ch(512), a)
        self.reduce5 = ConvBnAct(ch(512), ch(256), 1, act=a)
        self.lateral4 = ConvBnAct(ch(512), ch(256), 1, act=a)
        self.td4 = ReversedCSP(ch(512), ch(256), rep(2), a)
        self.reduce4 = ConvBnAct(ch(256), ch(128), 1, act=a)
        self.lateral3 = ConvBnAct(ch(256), ch(128), 1, act=a)
        self.td3 = ReversedCSP(ch(256), ch(128), rep(2), a)
        self.down3 = ConvBnAct(ch(128), ch(256), 3, 2, act=a)
        self.bu4 = ReversedCSP(ch(512), ch(256), rep(2), a)
        self.down4 = ConvBnAct(ch(256), ch(512), 3, 2, act=a)
        self.bu5 = ReversedCSP(ch(1024), ch(512), rep(2), a)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        # Heads: a 3x3 conv per level, then the 1x1 prediction conv (no activation).
        out = anchors_per_level * (5 + num_classes)
        self.head3 = ConvBnAct(ch(128), ch(256), 3, act=a)
        self.head4 = ConvBnAct(ch(256), ch(512), 3, act=a)
        self.head5 = ConvBnAct(ch(512), ch(1024), 3, act=a)
        self.pred = nn.ModuleList(nn.Conv2d(ch(c), out, 1) for c in (256, 512, 1024))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c3 = self.stage3(self.stage2(self.stem(x)))
        c4 = self.stage4(c3)
        p5 = self.spp(self.stage5(c4))
        p4 = self.td4(torch.cat([self.lateral4(c4), self.up(self.reduce5(p5))], 1))
        p3 = self.td3(torch.cat([self.lateral3(c3), self.up(self.reduce4(p4))], 1))
        n4 = self.bu4(torch.cat([self.down3(p3), p4], 1))
        n5 = self.bu5(torch.cat([self.down4(n4), p5], 1))
        return (self.pred[0](self.head3(p3)), self.pred[1](self.head4(n4)), self.pred[2](self.head5(n5)))


def count_layers(model: nn.Module, act_types: tuple[type, ...] = (torch_mish.Mish, nn.Mish)) -> tuple[int, int]:
    """(convolutions, activation modules of act_types) in a model."""
    convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    acts = sum(isinstance(m, act_types) for m in model.modules())
    return convs, acts
