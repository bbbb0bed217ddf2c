"""Two data paths behind one interface.

Both yield `(images, labels)` batches, normalised the same way, and both have
`len()`, `.name` (the data set's), `.mean`, `.std` and `.classes`, so the
Trainer cannot tell them apart.

- "classic": the torchvision way. A DataLoader with worker processes hands out
  one PIL image at a time, each transformed on the CPU, then copied to the device.
- "device": the whole data set sits on the training device as one uint8 tensor;
  a batch is an index into it and is augmented all at once on the device.
"""
from __future__ import annotations

import math
import os
from typing import Iterator, Sequence

import torch
from PIL import Image

from kit.data import load, stats
from kit.formats import ImageSet
from kit.transforms import Augment

PATHS = ("device", "classic")


class PILDataset(torch.utils.data.Dataset):
    """An ImageSet served one PIL image at a time, as torchvision's MNIST and CIFAR10 do."""

    def __init__(self, data: ImageSet, transform):
        self.data, self.transform = data, transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        pixels = self.data.images[i]
        if pixels.shape[0] == 1:
            image = Image.fromarray(pixels[0].numpy(), mode="L")
        else:
            image = Image.fromarray(pixels.permute(1, 2, 0).numpy())
        return self.transform(image), int(self.data.labels[i])


class ClassicLoader:
    """The classic torchvision DataLoader pipeline (PIL images, per-image transforms)."""

    def __init__(self, data: ImageSet, batch_size: int, *, train: bool, mean: Sequence[float],
                 std: Sequence[float], augment: Augment | None = None, device: str | torch.device = "cpu",
                 seed: int = 0, num_workers: int | None = None):
        from torchvision import transforms as T

        steps = augment.torchvision(data.shape[1:]) if (train and augment) else []
        transform = T.Compose([*steps, T.ToTensor(), T.Normalize(mean, std)])
        workers = min(2, os.cpu_count() or 1) if num_workers is None else num_workers
        self.device = torch.device(device)
        self.name, self.mean, self.std, self.classes = data.name, tuple(mean), tuple(std), data.classes
        self.loader = torch.utils.data.DataLoader(
            PILDataset(data, transform), batch_size=batch_size, shuffle=train,
            num_workers=workers, persistent_workers=workers > 0,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(seed),
        )

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self.loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


class DeviceLoader:
    """The whole data set on the training device; batches drawn by index, augmented on the device."""

    def __init__(self, data: ImageSet, batch_size: int, *, train: bool, mean: Sequence[float],
                 std: Sequence[float], augment: Augment | None = None, device: str | torch.device = "cpu",
                 seed: int = 0, drop_last: bool = False):
        self.device = torch.device(device)
        self.images = data.images.to(self.device)  # uint8: MNIST's 60k images are 47 MB
        self.labels = data.labels.to(self.device)
        self.batch_size, self.train, self.drop_last = batch_size, train, drop_last
        self.augment = augment if train else None
        self.name, self.mean, self.std, self.classes = data.name, tuple(mean), tuple(std), data.classes
        shape = (1, -1, 1, 1)
        self._mean = torch.tensor(self.mean, device=self.device).view(shape)
        self._std = torch.tensor(self.std, device=self.device).view(shape)
        self.generator = torch.Generator().manual_seed(seed)  # CPU: same draws on every device

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator).to(self.device) if self.train else None
        for b in range(len(self)):
            index = slice(b * self.batch_size, (b + 1) * self.batch_size)
            idx = order[index] if order is not None else index
            x = self.images[idx].float().div_(255)
            if self.augment is not None:
                x = self.augment(x, self.generator)
            yield (x - self._mean) / self._std, self.labels[idx]


def make_loaders(data: str | tuple[ImageSet, ImageSet], *, path: str = "device", batch_size: int = 128,
                 test_batch_size: int = 1000, augment: Augment | None = None,
                 device: str | torch.device = "cpu", seed: int = 0, limit: int | None = None,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 root: str | None = None, **options):
    """Train and test loaders for a data set name (e.g. "mnist") or a (train, test) pair.

    Normalisation comes from the training set's own statistics unless given.
    `limit` keeps only the first images of each split (quick runs).
    """
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    train, test = (load(data, "train", root), load(data, "test", root)) if isinstance(data, str) else data
    if limit:
        train, test = train.subset(limit), test.subset(min(limit, len(test)))
    if mean is None or std is None:
        s = stats(train)
        mean, std = s.mean, s.std
    cls = DeviceLoader if path == "device" else ClassicLoader
    common = dict(mean=mean, std=std, device=device, **options)
    return (cls(train, batch_size, train=True, augment=augment, seed=seed, **common),
            cls(test, test_batch_size, train=False, seed=seed, **common))
