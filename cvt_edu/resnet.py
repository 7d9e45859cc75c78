"""A residual network for CIFAR, ResNet-20 (He et al., CVPR 2016, Sec. 4.2): the convolutional baseline.

The network the paper trains on CIFAR-10: a 3x3 convolution with 16 channels, then three stages of n
basic blocks on 32x32, 16x16 and 8x8 maps with 16, 32 and 64 channels (the first block of stages 2 and 3
halves the map with a stride of 2), global average pooling and a linear classifier; 6n + 2 weighted
layers, n = 3 for ResNet-20.

A basic block (Sec. 3.2, Fig. 2, left): y = ReLU(F(x) + shortcut(x)), F = BN(Conv3x3(ReLU(BN(Conv3x3(x))))).
Where the map shrinks or widens, the shortcut is a projection, a 1x1 convolution of the block's stride
followed by BatchNorm: option B of Sec. 3.3 (the paper's CIFAR net uses option A, zero-padded identity
shortcuts; B is simpler and adds 2,752 parameters to ResNet-20's 0.27 M). Elsewhere the shortcut is the
identity.

The model has no attention and no [CLS] token: ``forward_features`` returns the three stage maps, and the
classifier reads the last one averaged over H and W (:meth:`cvt_edu.layers.Features.pooled`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .layers import Classifier, Features, classifier_head
from .patching import check_image

__all__ = ["ResNetConfig", "BasicBlock", "ResNet"]


@dataclass(frozen=True)
class ResNetConfig:
    """A CIFAR ResNet (He et al. 2016, Sec. 4.2).

    ``widths`` are the channels of the stages (16, 32, 64 in the paper; the stem has ``widths[0]``),
    ``blocks_per_stage`` is n (3 for ResNet-20: depth 6n + 2 = 20). ``image_size`` is informative (FLOP
    counts); the network accepts any size its three strides reach. ``num_classes = 0`` builds it without a
    classifier: ``head`` is the identity and the model returns the pooled features (B, widths[-1]).

    Raises:
        ValueError: for no stage, a width or n below 1.
    """

    widths: tuple[int, ...] = (16, 32, 64)
    blocks_per_stage: int = 3
    in_chans: int = 3
    num_classes: int = 10
    image_size: int = 32

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(self.widths))  # a list when read back from config.json
        if not self.widths or min(self.widths) < 1 or self.blocks_per_stage < 1:
            raise ValueError(f"a ResNet needs at least one stage of positive width and n >= 1 blocks per stage, "
                             f"got widths={list(self.widths)} and blocks_per_stage={self.blocks_per_stage}")

    @property
    def depth(self) -> int:
        """Weighted layers: the stem, two convolutions per block, the classifier (20 for ResNet-20)."""
        return 2 * self.blocks_per_stage * len(self.widths) + 2


def conv3x3(in_chans: int, out_chans: int, stride: int = 1) -> nn.Conv2d:
    """A 3x3 convolution that keeps the map size at stride 1 (padding 1) and has no bias (BatchNorm follows)."""
    return nn.Conv2d(in_chans, out_chans, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """The basic residual block (He et al. 2016, Sec. 3.2, Fig. 2 left), with option-B projection shortcuts.

    y = ReLU(BN(Conv3x3(ReLU(BN(Conv3x3_s(x))))) + shortcut(x)); the shortcut is the identity when the
    shape is kept, else BN(Conv1x1_s(x)) (Sec. 3.3, option B).

    Args:
        in_chans: channels of the incoming map.
        out_chans: channels of the block's output.
        stride: of the first convolution and of the shortcut; 2 halves H and W.

    Shapes:
        (B, in_chans, H, W) -> (B, out_chans, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, *, in_chans: int, out_chans: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_chans, out_chans, stride)
        self.bn1 = nn.BatchNorm2d(out_chans)
        self.conv2 = conv3x3(out_chans, out_chans)
        self.bn2 = nn.BatchNorm2d(out_chans)
        self.relu = nn.ReLU(inplace=True)
        if stride != 1 or in_chans != out_chans:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(in_chans, out_chans, 1, stride=stride, bias=False), nn.BatchNorm2d(out_chans)
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(residual + self.shortcut(x))


class ResNet(Classifier):
    """CIFAR ResNet classifier (He et al. 2016, Sec. 4.2): stem, stages of basic blocks, average pooling, linear head.

    Args:
        config: a :class:`ResNetConfig`.

    Shapes:
        images (B, C, H, W) -> logits (B, num_classes). ``forward_features`` returns
        :class:`~cvt_edu.layers.Features` with the map of every stage, (B, widths[i], H / 2^i, W / 2^i) for
        32x32 images, and no [CLS] token; the head reads the last map averaged over H and W.

    Raises:
        ValueError: on a wrong channel count or a map that is not 4-D.
        TypeError: for images that are not float tensors of the weights' dtype (uint8 pixels, float64), see
            :func:`~cvt_edu.patching.check_image`.
    """

    def __init__(self, config: ResNetConfig) -> None:
        super().__init__()
        c = self.config = config
        self.stem = nn.Sequential(conv3x3(c.in_chans, c.widths[0]), nn.BatchNorm2d(c.widths[0]), nn.ReLU(inplace=True))
        stages, chans = [], c.widths[0]
        for i, width in enumerate(c.widths):
            blocks = [BasicBlock(in_chans=chans if j == 0 else width, out_chans=width, stride=2 if i > 0 and j == 0 else 1)
                      for j in range(c.blocks_per_stage)]
            stages.append(nn.Sequential(*blocks))
            chans = width
        self.stages = nn.ModuleList(stages)
        self.head = classifier_head(c.widths[-1], c.num_classes)
        # He et al. 2015 initialisation for the convolutions (the paper's Sec. 3.4), unit BatchNorm;
        # the linear head keeps PyTorch's default.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, images: torch.Tensor) -> Features:
        check_image(images, self.config.in_chans, dtype=self.stem[0].weight.dtype)
        x, maps = self.stem(images), []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return Features(maps=maps)
