"""Readers for the on-disk formats the kit's data sets come in.

Each reader turns files into an `ImageSet`: every image as one uint8 tensor
(N x C x H x W) and every label as one int64 tensor. Keeping a whole data set as
one tensor is what lets the device-resident path put it on the GPU in one copy.
"""
from __future__ import annotations

import math
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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

    def subset(self, n: int | Sequence[int]) -> ImageSet:
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
    # Hidden folders (.ipynb_checkpoints, .DS_Store's kin) are not classes: counted, they would shift every label.
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise FormatError(f"{root}: no class sub-folders found")
    paths, labels = [], []
    for label, cls in enumerate(classes):
        found = [p for p in sorted((root / cls).rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES
                 and not any(part.startswith(".") for part in p.relative_to(root / cls).parts)]
        if not found:
            raise FormatError(f"{root / cls}: a class folder with no images ({', '.join(IMAGE_SUFFIXES)}); "
                              "add its images or remove the folder, since every class after it would change its label")
        paths += found
        labels += [label] * len(found)
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
    return ImageSet("tiny-imagenet", images, torch.tensor([label for _, label in pairs]), classes)


# --- Writers: small data sets in the real on-disk formats --------------------------
# Tests, and smoke runs on machines without the real data, write these and read
# them back through the readers above, so the reading code is exercised as it is.

def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array as an idx file."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    Path(path).write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_idx_pair(folder: str | Path, prefix: str, data: ImageSet) -> None:
    """`prefix`-images-idx3-ubyte and `prefix`-labels-idx1-ubyte, as MNIST names them ('train', 't10k')."""
    if data.shape[0] != 1:
        raise FormatError(f"{data.name}: idx files hold one-channel images, got {data.shape[0]} channels")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / f"{prefix}-images-idx3-ubyte", data.images[:, 0].numpy())
    write_idx(folder / f"{prefix}-labels-idx1-ubyte", data.labels.numpy().astype(np.uint8))


def write_cifar10(folder: str | Path, train: ImageSet, test: ImageSet) -> None:
    """CIFAR-10's `cifar-10-batches-py` layout: five pickled training batches, one test batch, batches.meta."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(train.classes), "num_cases_per_batch": math.ceil(len(train) / 5)}, f, protocol=2)
    parts = [(name, train.subset(range(i, len(train), 5))) for i, name in enumerate(CIFAR10_BATCHES["train"])]
    for name, part in [*parts, ("test_batch", test)]:
        batch = {b"data": part.images.reshape(len(part), -1).numpy(), b"labels": part.labels.tolist(),
                 b"batch_label": name.encode()}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)


def write_image_folder(root: str | Path, data: ImageSet) -> None:
    """An ImageFolder tree: root/<class>/<index>.png."""
    root = Path(root)
    for i, (image, label) in enumerate(zip(data.images, data.labels)):
        folder = root / data.classes[int(label)].replace("/", "-")
        folder.mkdir(parents=True, exist_ok=True)
        _save(image, folder / f"{i:05d}.png")


def write_tiny_imagenet(folder: str | Path, train: ImageSet, val: ImageSet) -> None:
    """TinyImageNet's layout: wnids.txt, train/<wnid>/images/*.JPEG, val/images/ with val_annotations.txt.

    The classes of `train` are taken as the wnids.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wnids.txt").write_text("\n".join(train.classes) + "\n")
    for i, (image, label) in enumerate(zip(train.images, train.labels)):
        wnid = train.classes[int(label)]
        _save(image, folder / "train" / wnid / "images" / f"{wnid}_{i}.JPEG")
    lines = []
    for i, (image, label) in enumerate(zip(val.images, val.labels)):
        _save(image, folder / "val" / "images" / f"val_{i}.JPEG")
        lines.append(f"val_{i}.JPEG\t{val.classes[int(label)]}\t0\t0\t{val.shape[2] - 1}\t{val.shape[1] - 1}")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")


def _save(image: torch.Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = image.permute(1, 2, 0).numpy()
    # PNG bytes whatever the suffix: lossless, so a test can compare pixels exactly
    Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).save(path, format="PNG")


def generated(name: str, n: int, shape: tuple[int, int, int], classes: Sequence[str], seed: int = 0) -> ImageSet:
    """Random images whose class shows in their brightness, so that a model can learn something from them."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randperm(n, generator=g) % len(classes)
    base = (labels.float() + 0.5) / len(classes) * 200
    noise = torch.randint(0, 56, (n, *shape), generator=g).float()
    images = (base.view(-1, 1, 1, 1) + noise).clamp(0, 255).to(torch.uint8)
    return ImageSet(name, images, labels, tuple(classes))
