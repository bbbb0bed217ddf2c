"""Two data paths behind one interface.

Both yield `(images, labels)` batches, normalised the same way, and both have
`len()`, `.name` (the data set's), `.mean`, `.std` and `.classes`, so the
Trainer cannot tell them apart.

- "classic": the torchvision way. A DataLoader with worker processes hands out
  one PIL image at a time, each transformed on the CPU, then copied to the device.
- "albumentations": the same DataLoader, with the augmentation as an albumentations
  pipeline on numpy arrays (the later CIFAR-10 lessons build theirs this way).
- "device": the whole data set sits on the training device as one uint8 tensor;
  a batch is an index into it and is augmented all at once on the device.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence

import torch
from PIL import Image

from kit.data import load, stats
from kit.formats import ImageSet
from kit.train import pick_device
from kit.transforms import Augment

PATHS = ("device", "classic", "albumentations")


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


TEST_BATCH = {"cpu": 256, "cuda": 2000, "mps": 1000}  # images per test batch; kit bench measured 256 fastest on a CPU
PRECOMPUTE_BYTES = 1 << 30  # keep a normalised float copy of a split that needs no augmentation, up to this size
BLOCK_BYTES = 1 << 28  # on a GPU, the float images of a block of batches prepared at once (see DeviceLoader)


class AlbumentationsDataset(torch.utils.data.Dataset):
    """An ImageSet served one numpy image at a time through an albumentations pipeline, then normalised."""

    def __init__(self, data: ImageSet, pipeline, mean: Sequence[float], std: Sequence[float]):
        self.data, self.pipeline = data, pipeline
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        image = self.data.images[i].permute(1, 2, 0).numpy()  # H x W x C, as albumentations wants it
        if self.pipeline is not None:
            image = self.pipeline(image=image)["image"]
        x = torch.from_numpy(image.reshape(image.shape[0], image.shape[1], -1)).permute(2, 0, 1).float() / 255
        return (x - self.mean) / self.std, int(self.data.labels[i])


class ClassicLoader:
    """The classic DataLoader pipeline: per-image transforms in worker processes, with torchvision (PIL images)
    or albumentations (numpy arrays)."""

    def __init__(self, data: ImageSet, batch_size: int, *, train: bool, mean: Sequence[float],
                 std: Sequence[float], augment: Augment | None = None, device: str | torch.device | None = "auto",
                 seed: int = 0, num_workers: int | None = None, library: str = "torchvision"):
        from torchvision import transforms as T

        workers = min(2, os.cpu_count() or 1) if num_workers is None else num_workers
        if library == "albumentations":
            pipeline = augment.albumentations(data.shape[1:]) if (train and augment) else None
            dataset = AlbumentationsDataset(data, pipeline, mean, std)
        elif library == "torchvision":
            steps = augment.torchvision(data.shape[1:]) if (train and augment) else []
            dataset = PILDataset(data, T.Compose([*steps, T.ToTensor(), T.Normalize(mean, std)]))
        else:
            raise ValueError(f"library must be 'torchvision' or 'albumentations', got {library!r}")
        self.device = pick_device(device)
        self.name, self.mean, self.std, self.classes, self.seed = data.name, tuple(mean), tuple(std), data.classes, seed
        self.batch_size, self.library = batch_size, library

        def seed_worker(worker: int) -> None:  # each worker its own, repeatable, stream of augmentations
            if library == "albumentations" and dataset.pipeline is not None:
                dataset.pipeline.set_random_seed(seed + worker)

        self.train = train  # made for training: the record says which loader a run trained and tested on
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, shuffle=train,
            num_workers=workers, persistent_workers=workers > 0,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(seed), worker_init_fn=seed_worker,
        )
        if workers == 0:
            seed_worker(0)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self.loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


class DeviceLoader:
    """The whole data set on the training device; batches drawn by index, augmented on the device.

    Each epoch costs the host nothing but launches: the shuffle and every augmentation's
    random choices are drawn on the device in one call, from a generator on the device
    seeded with `seed` (so a seed gives the same batches on the same kind of device).
    """

    def __init__(self, data: ImageSet, batch_size: int, *, train: bool, mean: Sequence[float],
                 std: Sequence[float], augment: Augment | None = None, device: str | torch.device | None = "auto",
                 seed: int = 0, drop_last: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.device = pick_device(device)
        self.batch_size, self.train, self.drop_last = batch_size, train, drop_last
        self.augment = augment if train and augment is not None and augment.changes_images else None
        self.name, self.mean, self.std, self.classes, self.seed = data.name, tuple(mean), tuple(std), data.classes, seed
        self.size = tuple(data.images.shape[-2:])
        shape = (1, -1, 1, 1)
        # pixels (0-255) to normalised values in one multiply-subtract: x / (255 std) - mean / std
        self._scale = (1 / (255 * torch.tensor(self.std))).view(shape).to(self.device)
        self._shift = (torch.tensor(self.mean) / torch.tensor(self.std)).view(shape).to(self.device)
        self.labels = data.labels.to(self.device)
        ready = self.augment is None and data.images.numel() * 4 <= PRECOMPUTE_BYTES
        # Without augmentation, normalise once: a batch is then an index into a ready tensor.
        self.images = self._normalise(data.images.to(self.device)) if ready else data.images.to(self.device)
        self.ready = ready
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def _normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.float().mul_(self._scale).sub_(self._shift)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def batches_per_block(self) -> int:
        """How many batches are gathered, augmented and normalised at once, then handed out a slice at a time.
        Each image comes out the same whatever the block (tests/test_loaders.py checks it bit for bit), so the
        block is what is fastest: one batch on a CPU, whose caches like small work (blocks of 4 to 160 batches
        were no faster on the 2-core CPU); on a GPU, where each launch costs as much as a small kernel (the
        loader's launches were a third of a captured step's 0.9 ms on an H200), as many as fit in BLOCK_BYTES."""
        if self.device.type == "cpu":
            return 1
        return max(1, BLOCK_BYTES // (4 * self.images[0].numel() * self.batch_size))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        order = plan = None
        if self.train:
            order = torch.randperm(n, generator=self.generator, device=self.device)
            if self.augment is not None:
                plan = self.augment.plan(n, self.size, self.generator, self.device)
        per_block = self.batches_per_block()
        for first in range(0, len(self), per_block):
            part = slice(first * self.batch_size, min(first + per_block, len(self)) * self.batch_size)
            index = order[part] if order is not None else part
            x, y = self.images[index], self.labels[index]
            if not self.ready:
                x = x.float()
                if plan is not None:  # on pixels 0-255: black stays 0, and interpolation does not mind the scale
                    x = self.augment.apply(x, {k: v[part] for k, v in plan.items()})
                x = x.mul_(self._scale).sub_(self._shift)
            for b in range(0, len(y), self.batch_size):
                yield x[b:b + self.batch_size], y[b:b + self.batch_size]


def make_loaders(data: str | tuple[ImageSet, ImageSet], *, path: str = "device", batch_size: int = 128,
                 test_batch_size: int | None = None, augment: Augment | None = None,
                 device: str | torch.device | None = "auto", seed: int = 0, limit: int | None = None,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 root: str | None = None, **options):
    """Train and test loaders for a data set name (e.g. "mnist") or a (train, test) pair, on one device.

    `device` "auto" picks a GPU where there is one, as the Trainer does; the Trainer then
    trains where the loaders put their batches. Normalisation comes from the training
    set's own statistics unless given. `test_batch_size` defaults to what is fastest on
    the device (TEST_BATCH). `limit` keeps only the first images of each split (quick runs).
    """
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    device = pick_device(device)
    train, test = (load(data, "train", root), load(data, "test", root)) if isinstance(data, str) else data
    if limit:
        train, test = train.subset(limit), test.subset(min(limit, len(test)))
    if mean is None or std is None:
        s = stats(train)
        mean, std = s.mean, s.std
    test_batch_size = test_batch_size or TEST_BATCH.get(device.type, 1000)
    cls = DeviceLoader if path == "device" else ClassicLoader
    if path == "albumentations":
        options = {**options, "library": "albumentations"}
    common = dict(mean=mean, std=std, device=device, **options)
    return (cls(train, batch_size, train=True, augment=augment, seed=seed, **common),
            cls(test, test_batch_size, train=False, seed=seed, **common))
