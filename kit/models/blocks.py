"""The course's building blocks, and CompactNet, a small model built from them.

A ConvBlock is the unit the course draws on every slide: convolution, then
normalisation, then the activation, then dropout. The normalisation study's residual variant
adds the block's input after normalisation, before the activation.
"""
from __future__ import annotations

import torch
from torch import nn

NORMS = ("batch", "group", "layer", "instance", "none")


def norm_layer(norm: str, channels: int, groups: int = 2) -> nn.Module:
    """The normalisation a ConvBlock uses; layer and instance norm are GroupNorm with 1 or C groups."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "group":
        if channels % groups:
            raise ValueError(f"group norm needs channels ({channels}) divisible by groups ({groups})")
        return nn.GroupNorm(groups, channels)
    if norm == "layer":
        return nn.GroupNorm(1, channels)
    if norm == "instance":
        return nn.GroupNorm(channels, channels)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(repr(n) for n in NORMS)}")


class ConvBlock(nn.Module):
    """conv -> norm -> (+ input, if residual) -> activation -> dropout."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, padding: int = 0,
                 stride: int = 1, dilation: int = 1, norm: str = "batch", groups: int = 2,
                 dropout: float = 0.0, residual: bool = False, activation: type[nn.Module] = nn.ReLU):
        super().__init__()
        keeps_shape = stride == 1 and 2 * padding == dilation * (kernel_size - 1)
        if residual and (in_channels != out_channels or not keeps_shape):
            raise ValueError(
                "a residual ConvBlock must keep its shape: in_channels == out_channels, stride 1 and "
                f"padding = dilation * (kernel_size - 1) / 2; got {in_channels}->{out_channels}, "
                f"kernel {kernel_size}, padding {padding}, stride {stride}, dilation {dilation}"
            )
        # A bias before a normalisation layer is cancelled by its mean subtraction.
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                              dilation=dilation, bias=norm == "none")
        self.norm = norm_layer(norm, out_channels, groups)
        self.residual = residual
        self.activation = activation()
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()  # element-wise, as in the course

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.conv(x))
        if self.residual:
            y = y + x
        return self.dropout(self.activation(y))


class TransitionBlock(nn.Module):
    """1x1 convolution to cut the channels, then 2x2 max-pooling to halve the size."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.pool = nn.MaxPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(x))


class GapHead(nn.Module):
    """Global average pooling, then a 1x1 convolution to the class scores (logits)."""

    def __init__(self, in_channels: int, n_classes: int = 10):
        super().__init__()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.classify = nn.Conv2d(in_channels, n_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.gap(x)).flatten(1)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """The number of parameters, as the course's budgets count them."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class CompactNet(nn.Module):
    """A ~7,400-parameter MNIST net: two blocks, a transition at RF 5, three blocks, GAP.

    The kit's smoke test trains it for one epoch; it is a starting point, not a
    lesson's answer.
    """

    def __init__(self, n_classes: int = 10, norm: str = "batch", dropout: float = 0.0):
        super().__init__()
        block = lambda i, o: ConvBlock(i, o, norm=norm, dropout=dropout)  # noqa: E731
        self.features = nn.Sequential(
            block(1, 8),    # 28 -> 26, RF 3
            block(8, 16),   # 26 -> 24, RF 5
            TransitionBlock(16, 8),  # 24 -> 12, RF 6
            block(8, 16),   # 12 -> 10, RF 10
            block(16, 16),  # 10 -> 8,  RF 14
            block(16, 16),  # 8 -> 6,   RF 18
        )
        self.head = GapHead(16, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
