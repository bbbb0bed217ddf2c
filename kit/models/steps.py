"""The models of the ten drill-down steps.

Each step notebook builds one of these and shows its source. The comments give
the output size and receptive field after each layer, for a 28 x 28 input.
"""
from __future__ import annotations

import torch
from torch import nn

from kit.models.blocks import ConvBlock, GapHead


class SetupNet(nn.Module):
    """Step 1 (set-up): a model that works, and is far too heavy for MNIST (6.4M parameters)."""

    def __init__(self, n_classes: int = 10):
        super().__init__()
        block = lambda i, o, **kw: ConvBlock(i, o, norm="none", **kw)  # noqa: E731
        self.features = nn.Sequential(
            block(1, 32, padding=1),     # 28, RF 3
            block(32, 64, padding=1),    # 28, RF 5
            nn.MaxPool2d(2),             # 14, RF 6
            block(64, 128, padding=1),   # 14, RF 10
            block(128, 256, padding=1),  # 14, RF 14
            nn.MaxPool2d(2),             # 7,  RF 16
            block(256, 512),             # 5,  RF 24
            block(512, 1024),            # 3,  RF 32
        )
        self.classify = nn.Conv2d(1024, n_classes, 3)  # 1, RF 40: the class scores (no ReLU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x)).flatten(1)


class SkeletonNet(nn.Module):
    """Step 2 (basic skeleton): the shape every later step keeps.

    Two convolution blocks that grow the channels and the receptive field, a
    transition (max-pool, then a 1x1 that cuts the channels), two more blocks,
    and a 1x1 to the classes with a 7x7 that reads the whole remaining image.
    """

    def __init__(self, n_classes: int = 10):
        super().__init__()
        block = lambda i, o, k=3: ConvBlock(i, o, k, norm="none")  # noqa: E731
        self.features = nn.Sequential(
            block(1, 32),        # 26, RF 3
            block(32, 64),       # 24, RF 5
            block(64, 128),      # 22, RF 7
            nn.MaxPool2d(2),     # 11, RF 8
            block(128, 32, 1),   # 11, RF 8
            block(32, 64),       # 9,  RF 12
            block(64, 128),      # 7,  RF 16
            block(128, n_classes, 1),  # 7, RF 16
        )
        self.classify = nn.Conv2d(n_classes, n_classes, 7)  # 1, RF 28 (no ReLU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x)).flatten(1)


class LighterNet(nn.Module):
    """Steps 3-5: the skeleton with 10-20 channels instead of 32-128.

    Step 3 trains it as it is; step 4 adds batch normalisation (`norm="batch"`);
    step 5 adds dropout after every block (`dropout=0.05`), which steps 6-10 keep.
    """

    def __init__(self, norm: str = "none", dropout: float = 0.0, n_classes: int = 10):
        super().__init__()
        block = lambda i, o, k=3: ConvBlock(i, o, k, norm=norm, dropout=dropout)  # noqa: E731
        self.features = nn.Sequential(
            block(1, 10),        # 26, RF 3
            block(10, 10),       # 24, RF 5
            block(10, 20),       # 22, RF 7
            nn.MaxPool2d(2),     # 11, RF 8
            block(20, 10, 1),    # 11, RF 8
            block(10, 10),       # 9,  RF 12
            block(10, 20),       # 7,  RF 16
            block(20, n_classes, 1),  # 7, RF 16
        )
        self.classify = nn.Conv2d(n_classes, n_classes, 7)  # 1, RF 28: the big final kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x)).flatten(1)


class GapNet(nn.Module):
    """Step 6: step 5's model with global average pooling in place of the big 7x7 kernel."""

    def __init__(self, norm: str = "batch", dropout: float = 0.05, n_classes: int = 10):
        super().__init__()
        block = lambda i, o, k=3: ConvBlock(i, o, k, norm=norm, dropout=dropout)  # noqa: E731
        self.features = nn.Sequential(
            block(1, 10),        # 26, RF 3
            block(10, 10),       # 24, RF 5
            block(10, 20),       # 22, RF 7
            nn.MaxPool2d(2),     # 11, RF 8
            block(20, 10, 1),    # 11, RF 8
            block(10, 10),       # 9,  RF 12
            block(10, 20),       # 7,  RF 16
        )
        self.head = GapHead(20, n_classes)  # GAP over 7x7, then 1x1 to the classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class CapacityNet(nn.Module):
    """Step 7: more channels, and one more block at the end, before GAP."""

    def __init__(self, norm: str = "batch", dropout: float = 0.05, n_classes: int = 10):
        super().__init__()
        block = lambda i, o, k=3, p=0: ConvBlock(i, o, k, padding=p, norm=norm, dropout=dropout)  # noqa: E731
        self.features = nn.Sequential(
            block(1, 10),        # 26, RF 3
            block(10, 16),       # 24, RF 5
            block(16, 16),       # 22, RF 7
            nn.MaxPool2d(2),     # 11, RF 8
            block(16, 10, 1),    # 11, RF 8
            block(10, 16),       # 9,  RF 12
            block(16, 16),       # 7,  RF 16
            block(16, 16, p=1),  # 7,  RF 20: the added block
        )
        self.head = GapHead(16, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class PoolAt5Net(nn.Module):
    """Steps 8-10: max-pooling where the receptive field is 5, the size of MNIST's strokes and edges.

    Pooling one block earlier leaves one more block for the 12x12 maps, where the
    digit's parts are combined. Steps 9 and 10 train this same model differently.
    """

    def __init__(self, norm: str = "batch", dropout: float = 0.05, n_classes: int = 10):
        super().__init__()
        block = lambda i, o, k=3, p=0: ConvBlock(i, o, k, padding=p, norm=norm, dropout=dropout)  # noqa: E731
        self.features = nn.Sequential(
            block(1, 10),        # 26, RF 3
            block(10, 16),       # 24, RF 5
            nn.MaxPool2d(2),     # 12, RF 6
            block(16, 10, 1),    # 12, RF 6
            block(10, 16),       # 10, RF 10
            block(16, 16),       # 8,  RF 14
            block(16, 16),       # 6,  RF 18
            block(16, 16, p=1),  # 6,  RF 22
        )
        self.head = GapHead(16, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
