"""Figures people would rather look at than read: curves, samples, mistakes.

Every function returns a matplotlib Figure and, given `path`, also saves it
(atomically: a reader never finds half a PNG).
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt  # falls back to the Agg backend by itself where there is no screen
import torch
from matplotlib.ticker import MaxNLocator

from kit.files import replacing
from kit.formats import ImageSet
from kit.history import History, Misclassified


def save(fig, path: str | os.PathLike | None):
    """Save `fig` to `path` (if given) through a temporary file, and return it."""
    if path is not None:
        with replacing(path) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format=Path(path).suffix.lstrip(".") or "png")
    return fig


def _history(run) -> History:
    """A History, from itself or from the Trainer that holds it."""
    return run if isinstance(run, History) else run.history


def curves(run, title: str = "", path=None):
    """Train and test loss (left) and accuracy (middle) per epoch of a Trainer (or a History);
    the learning rate (right) when it changes."""
    history = _history(run)
    epochs = history.column("epoch")
    lrs = history.column("lr")
    scheduled = len(set(lrs)) > 1
    fig, axes = plt.subplots(1, 3 if scheduled else 2, figsize=(15 if scheduled else 11, 3.8))
    ax_loss, ax_acc = axes[0], axes[1]
    for ax, metric, label in ((ax_loss, "loss", "loss"), (ax_acc, "acc", "accuracy (%)")):
        ax.plot(epochs, history.column(f"train_{metric}"), "o-", label="train")
        ax.plot(epochs, history.column(f"test_{metric}"), "s-", label="test")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    best, at = history.best("test_acc")
    ax_acc.set_title(f"best test {best:.2f}% (epoch {at})")
    ax_loss.set_title("loss")
    if scheduled:
        axes[2].plot(epochs, lrs, "o-", color="tab:green")
        axes[2].set(xlabel="epoch", ylabel="learning rate", title="learning rate each epoch started with", yscale="log")
        axes[2].grid(alpha=0.3)
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


def batch(loader, n: int = 32, columns: int = 8, path=None):
    """The first `n` images of the loader's next batch, un-normalised: what the model sees (augmentation included)."""
    images, labels = next(iter(loader))
    shape = (1, -1, 1, 1)
    images = images[:n].float().cpu() * torch.tensor(loader.std).view(shape) + torch.tensor(loader.mean).view(shape)
    titles = [loader.classes[int(y)] for y in labels[:n]]
    return save(_grid(images, titles, columns, f"one training batch: {len(images)} of {len(labels)} images"), path)


def misclassified(mistakes, n: int = 20, columns: int = 5, title: str = "", path=None):
    """Wrongly classified test images, un-normalised, titled 'predicted (true)'.

    `mistakes` is a Trainer (its first `n` mistakes on its test loader are collected) or
    what `trainer.misclassified()` returned; either carries the classes and normalisation.
    """
    if not isinstance(mistakes, Misclassified):
        mistakes = mistakes.misclassified(limit=n)
    shape = (1, -1, 1, 1)
    images = mistakes.images * torch.tensor(mistakes.std).view(shape) + torch.tensor(mistakes.mean).view(shape)
    name = lambda i: mistakes.classes[int(i)] if mistakes.classes else str(int(i))  # noqa: E731
    titles = [f"{name(p)} (true {name(t)})" for p, t in zip(mistakes.predicted, mistakes.target)]
    heading = f"{title}: " if title else ""
    return save(_grid(images, titles, columns, f"{heading}{len(mistakes)} misclassified, predicted (true)"), path)


def compare(runs: dict, title: str = "", path=None):
    """Several runs (Trainers or Histories, by name) side by side: train accuracy (left) and test
    accuracy (right) per epoch, one line a run."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for ax, split in zip(axes, ("train", "test")):
        for name, run in runs.items():
            h = _history(run)
            ax.plot(h.column("epoch"), h.column(f"{split}_acc"), "o-", ms=3, label=name)
        ax.set(xlabel="epoch", ylabel="accuracy (%)", title=f"{split} accuracy")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path)
