"""Readers for the on-disk formats the kit's data sets come in.

Each reader turns files into an `ImageSet`: every image as one uint8 tensor
(N x C x H x W) and every label as one int64 tensor. Keeping a whole data set as
one tensor is what lets the device-resident path put it on the GPU in one copy.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


class FormatError(ValueError):
    """A file is not in the format its reader expects."""


@dataclass(frozen=True)
class ImageSet:
    """A labelled image data set held in memory."""

    name: str
    images: torch.Tensor  # uint8, N x C x H x W
    labels: torch.Tensor  # int64, N
    classes: tuple[str, ...]

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise FormatError(
                f"{self.name}: images must be a uint8 tensor N x C x H x W, "
                f"got {self.images.dtype} with shape {tuple(self.images.shape)}"
            )
        if self.labels.shape != (len(self.images),):
            raise FormatError(
                f"{self.name}: {len(self.images)} images but labels of shape "
                f"{tuple(self.labels.shape)}"
            )
        if len(self.labels) and not 0 <= int(self.labels.min()) <= int(self.labels.max()) < len(self.classes):
            raise FormatError(f"{self.name}: labels must lie in 0..{len(self.classes) - 1}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image."""
        return tuple(self.images.shape[1:])

    def subset(self, n: int | Sequence[int]) -> "ImageSet":
        """The first `n` images, or the images at the given indices (quick runs, tests)."""
        index = slice(0, n) if isinstance(n, int) else torch.as_tensor(n)
        return ImageSet(self.name, self.images[index], self.labels[index], self.classes)

    def __repr__(self) -> str:
        return f"ImageSet({self.name!r}, {len(self)} images of {self.shape}, {len(self.classes)} classes)"


# --- MNIST and Fashion-MNIST: the idx format --------------------------------------

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (the format of MNIST and Fashion-MNIST) into an array."""
    path = Path(path)
    raw = path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise FormatError(f"{path}: not an idx file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = header + int(np.prod(dims)) * dtype.itemsize
    if len(raw) != expected:
        raise FormatError(f"{path}: idx header promises {expected} bytes for shape {dims}, file has {len(raw)}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def read_idx_pair(name: str, images: Path, labels: Path, classes: Sequence[str]) -> ImageSet:
    x = torch.from_numpy(read_idx(images).copy())
    y = torch.from_numpy(read_idx(labels).astype(np.int64))
    return ImageSet(name, x.unsqueeze(1), y, tuple(classes))


# --- CIFAR-10: pickled batches (the "python version" archive) ----------------------

CIFAR10_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="latin1")
    except Exception as e:  # pickle raises many types on garbage
        raise FormatError(f"{path}: not a CIFAR-10 batch ({type(e).__name__}: {e})") from e
    # Real batches were pickled by Python 2; keys may come back as bytes.
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}


def read_cifar10(folder: str | Path, split: str = "train") -> ImageSet:
    """Read CIFAR-10 from its `cifar-10-batches-py` folder."""
    folder = Path(folder)
    if split not in CIFAR10_BATCHES:
        raise ValueError(f"split must be one of {sorted(CIFAR10_BATCHES)}, got {split!r}")
    meta = _unpickle(folder / "batches.meta")
    images, labels = [], []
    for name in CIFAR10_BATCHES[split]:
        batch = _unpickle(folder / name)
        if "data" not in batch or "labels" not in batch:
            raise FormatError(f"{folder / name}: a CIFAR-10 batch needs 'data' and 'labels', has {sorted(batch)}")
        images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch["labels"], dtype=np.int64))
    return ImageSet(
        "cifar10",
        torch.from_numpy(np.concatenate(images)),
        torch.from_numpy(np.concatenate(labels)),
        tuple(meta["label_names"]),
    )


# --- Image folders: root/<class>/**/<image>, and TinyImageNet ----------------------

def _decode(paths: Sequence[Path], mode: str, size: tuple[int, int] | None) -> torch.Tensor:
    arrays = []
    for p in paths:
        with Image.open(p) as im:
            im = im.convert(mode)
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
        if arrays and a.shape != arrays[0].shape:
            raise FormatError(
                f"{p}: image is {a.shape[:2]} but {paths[0]} is {arrays[0].shape[:2]}; "
                "pass size=(H, W) to resize them all"
            )
        arrays.append(a.reshape(a.shape[0], a.shape[1], -1))
    if not arrays:
        return torch.zeros(0, 3 if mode == "RGB" else 1, *(size or (1, 1)), dtype=torch.uint8)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def read_image_folder(root: str | Path, *, mode: str = "RGB", size: tuple[int, int] | None = None,
                      name: str | None = None) -> ImageSet:
    """Read a torchvision-style ImageFolder tree: one sub-folder per class, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder (an ImageFolder tree has one sub-folder per class)")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        raise FormatError(f"{root}: no class sub-folders found")
    paths, labels = [], []
    for label, cls in enumerate(classes):
        for p in sorted((root / cls).rglob("*")):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(p)
                labels.append(label)
    if not paths:
        raise FormatError(f"{root}: no images with suffix {', '.join(IMAGE_SUFFIXES)}")
    return ImageSet(name or root.name, _decode(paths, mode, size), torch.tensor(labels), tuple(classes))


def read_tiny_imagenet(folder: str | Path, split: str = "train") -> ImageSet:
    """Read TinyImageNet's layout: train/<wnid>/images/*.JPEG, val/images + val_annotations.txt."""
    folder = Path(folder)
    wnids_file = folder / "wnids.txt"
    if not wnids_file.exists():
        raise FormatError(f"{folder}: not a TinyImageNet folder (no wnids.txt)")
    wnids = sorted(w.strip() for w in wnids_file.read_text().split() if w.strip())
    index = {w: i for i, w in enumerate(wnids)}
    if split == "train":
        pairs = [(p, index[w]) for w in wnids for p in sorted((folder / "train" / w / "images").glob("*"))
                 if p.suffix.lower() in IMAGE_SUFFIXES]
    elif split in ("val", "test"):
        # TinyImageNet's own test split has no labels; its labelled val split is the test set.
        ann = folder / "val" / "val_annotations.txt"
        if not ann.exists():
            raise FormatError(f"{folder}: val/val_annotations.txt is missing")
        pairs = []
        for line in ann.read_text().splitlines():
            if line.strip():
                file, wnid = line.split("\t")[:2]
                if wnid not in index:
                    raise FormatError(f"{ann}: {file} has class {wnid}, which is not in wnids.txt")
                pairs.append((folder / "val" / "images" / file, index[wnid]))
    else:
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    if not pairs:
        raise FormatError(f"{folder}: no {split} images found")
    words = folder / "words.txt"
    names = dict(line.split("\t", 1) for line in words.read_text().splitlines() if "\t" in line) if words.exists() else {}
    classes = tuple(names.get(w, w).split(",")[0].strip() for w in wnids)
    images = _decode([p for p, _ in pairs], "RGB", None)
    return ImageSet("tiny-imagenet", images, torch.tensor([l for _, l in pairs]), classes)
