"""Figures people would rather look at than read: curves, samples, mistakes.

Every function returns a matplotlib Figure and, given `path`, also saves it
(atomically: a reader never finds half a PNG).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt  # falls back to the Agg backend by itself where there is no screen
import torch

from kit.files import replacing
from kit.formats import ImageSet
from kit.train import History, Misclassified


def save(fig, path: str | os.PathLike | None):
    """Save `fig` to `path` (if given) through a temporary file, and return it."""
    if path is not None:
        with replacing(path) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format=Path(path).suffix.lstrip(".") or "png")
    return fig


def curves(history: History, title: str = "", path=None):
    """Train and test loss (left) and accuracy (right) per epoch."""
    epochs = history.column("epoch")
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, metric, label in ((ax_loss, "loss", "loss"), (ax_acc, "acc", "accuracy (%)")):
        ax.plot(epochs, history.column(f"train_{metric}"), "o-", label="train")
        ax.plot(epochs, history.column(f"test_{metric}"), "s-", label="test")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    best, at = history.best("test_acc")
    ax_acc.set_title(f"best test {best:.2f}% (epoch {at})")
    ax_loss.set_title("loss")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path)


def _grid(images: torch.Tensor, titles: Sequence[str], columns: int, title: str):
    n = len(images)
    rows = max(1, math.ceil(n / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, titles):
        image = image.float().clamp(0, 1)
        if image.shape[0] == 1:
            ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(image.permute(1, 2, 0).numpy())
        ax.set_title(caption, fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def samples(data: ImageSet, n: int = 32, columns: int = 8, path=None):
    """The first `n` images of a data set with their labels."""
    images = data.images[:n].float() / 255
    titles = [data.classes[int(y)] for y in data.labels[:n]]
    return save(_grid(images, titles, columns, f"{data.name}: first {len(images)} images"), path)


def misclassified(mistakes: Misclassified, classes: Sequence[str], mean: Sequence[float],
                  std: Sequence[float], columns: int = 5, path=None):
    """Wrongly classified images, un-normalised, titled 'predicted (true)'."""
    shape = (1, -1, 1, 1)
    images = mistakes.images * torch.tensor(std).view(shape) + torch.tensor(mean).view(shape)
    titles = [f"{classes[int(p)]} (true {classes[int(t)]})" for p, t in zip(mistakes.predicted, mistakes.target)]
    return save(_grid(images, titles, columns, f"{len(mistakes)} misclassified: predicted (true)"), path)
