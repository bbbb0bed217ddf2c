"""The models of the two studies: normalisation (CIFAR-10) and distillation (teacher and student)."""
from __future__ import annotations

import torch
from torch import nn

from kit.models.blocks import ConvBlock


class NormNet(nn.Module):
    """The normalisation study's CIFAR-10 model: the same layers whatever `norm` is.

    C1 C2 c3 P1 C4 C5 C6 c7 P2 C8 C9 C10 GAP c11, where C is a 3x3 ConvBlock, c a 1x1
    one and P a max-pool; C5, C6, C9 and C10 add their input back (conv -> norm ->
    +x -> ReLU -> dropout). Output sizes and receptive fields are for a 32 x 32 input
    (CIFAR-10); `channels` is 1 for a grey stand-in such as Fashion-MNIST.
    """

    def __init__(self, norm: str = "batch", groups: int = 4, dropout: float = 0.05, n_classes: int = 10,
                 channels: int = 3):
        super().__init__()

        def block(i, o, k=3, p=0, residual=False):
            return ConvBlock(i, o, k, padding=p, norm=norm, groups=groups, dropout=dropout, residual=residual)

        self.features = nn.Sequential(
            block(channels, 12),                 # C1  30, RF 3
            block(12, 24),                       # C2  28, RF 5
            block(24, 12, 1),                    # c3  28, RF 5
            nn.MaxPool2d(2),                     # P1  14, RF 6
            block(12, 24, p=1),                  # C4  14, RF 10
            block(24, 24, p=1, residual=True),   # C5  14, RF 14
            block(24, 24, p=1, residual=True),   # C6  14, RF 18
            block(24, 16, 1),                    # c7  14, RF 18
            nn.MaxPool2d(2),                     # P2  7,  RF 20
            block(16, 32, p=1),                  # C8  7,  RF 28
            block(32, 32, p=1, residual=True),   # C9  7,  RF 36
            block(32, 32, p=1, residual=True),   # C10 7,  RF 44
        )
        self.gap = nn.AdaptiveAvgPool2d(1)                       # GAP 1, RF 68
        self.classify = nn.Conv2d(32, n_classes, 1, bias=False)  # c11

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.gap(self.features(x))).flatten(1)


def xavier_init(model: nn.Module) -> nn.Module:
    """Xavier (Glorot) uniform weights for every convolution and linear layer, zero biases."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


class FcHead(nn.Module):
    """The distillation study's head, the same for teacher and student: average pool, FC 1024, classes."""

    def __init__(self, in_channels: int, n_classes: int, hidden: int = 1024):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)  # the network's one pooling layer
        self.fc = nn.Linear(in_channels, hidden)
        self.classify = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(torch.relu(self.fc(self.pool(x).flatten(1))))


class Teacher(nn.Module):
    """12 convolution layers (12 filters in the first), one average pool, one FC layer of 1024; Xavier init.

    Three of the convolutions have stride 2, so the single pool has little left to average.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 10):
        super().__init__()
        widths = [12, 12, 24, 24, 24, 48, 48, 48, 96, 96, 96, 96]
        strides = [1, 1, 2, 1, 1, 2, 1, 1, 2, 1, 1, 1]
        layers, c = [], in_channels
        for w, s in zip(widths, strides):
            layers.append(ConvBlock(c, w, padding=1, stride=s))
            c = w
        self.features = nn.Sequential(*layers)
        self.head = FcHead(c, n_classes)
        xavier_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Student(nn.Module):
    """3 convolution layers, one average pool, and the teacher's head; Xavier init."""

    def __init__(self, in_channels: int = 1, n_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            ConvBlock(in_channels, 12, padding=1),
            ConvBlock(12, 24, padding=1, stride=2),
            ConvBlock(24, 48, padding=1, stride=2),
        )
        self.head = FcHead(48, n_classes)
        xavier_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
