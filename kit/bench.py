"""Time the two data paths side by side: `python -m kit bench`.

Both paths train the same model (kit.CompactNet) with the same augmentation
(a random rotation of ±7°), the same batch size, seed and epochs, in one
process, on one device. The printed ratio is measured, never assumed; the last
figures are also written to benchmarks/RESULTS.md with the device they came from.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from kit.data import load, stats
from kit.files import write_text
from kit.loaders import make_loaders
from kit.models import CompactNet
from kit.train import Trainer, pick_device, set_seed
from kit.transforms import Augment

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "RESULTS.md"


@dataclass(frozen=True)
class Timing:
    path: str
    train_seconds: float  # per epoch
    test_seconds: float  # per epoch
    images_per_second: float  # training images
    test_acc: float


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_path(path: str, train_set, test_set, *, device, epochs: int, batch_size: int, rotation: float,
              seed: int) -> Timing:
    s = stats(train_set)
    set_seed(seed)
    train, test = make_loaders((train_set, test_set), path=path, batch_size=batch_size, device=device, seed=seed,
                               mean=s.mean, std=s.std, augment=Augment(rotation=rotation) if rotation else None)
    trainer = Trainer(CompactNet(), train, test, epochs=epochs, lr=0.05, scheduler="onecycle",
                      scheduler_args={"max_lr": 0.1}, device=device, verbose=False, progress=False)
    train_time = test_time = 0.0
    for epoch in range(1, epochs + 1):
        _sync(device)
        start = time.perf_counter()
        trainer.train_epoch(epoch)
        _sync(device)
        middle = time.perf_counter()
        _, acc = trainer.test_epoch(epoch)
        _sync(device)
        train_time += middle - start
        test_time += time.perf_counter() - middle
    return Timing(path, train_time / epochs, test_time / epochs, len(train_set) * epochs / train_time, acc)


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA)"
    return f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {os.cpu_count()} cores"


def bench(device: str = "auto", epochs: int = 1, batch_size: int = 128, rotation: float = 7.0, seed: int = 0,
          limit: int | None = None, root=None, results: Path | None = RESULTS) -> dict[str, Timing]:
    device = pick_device(device)
    train_set, test_set = load("mnist", "train", root), load("mnist", "test", root)
    if limit:
        train_set, test_set = train_set.subset(limit), test_set.subset(min(limit, len(test_set)))
    where = describe(device)
    print(f"device: {where}; torch {torch.__version__}")
    print(f"CompactNet on {len(train_set):,} MNIST images, batch {batch_size}, rotation ±{rotation:g}°, "
          f"{epochs} epoch(s) per path\n")
    print(f"{'path':>8}  {'train s/epoch':>13}  {'test s/epoch':>12}  {'train img/s':>11}  {'test acc':>8}")
    timings = {}
    for path in ("classic", "device"):
        t = timings[path] = time_path(path, train_set, test_set, device=device, epochs=epochs,
                                      batch_size=batch_size, rotation=rotation, seed=seed)
        print(f"{path:>8}  {t.train_seconds:13.2f}  {t.test_seconds:12.2f}  {t.images_per_second:11,.0f}  {t.test_acc:7.2f}%")
    ratio = timings["device"].images_per_second / timings["classic"].images_per_second
    print(f"\ndevice-resident / classic training throughput: {ratio:.2f}x")
    if results is not None:
        _write(results, where, timings, ratio, epochs, batch_size, rotation, len(train_set))
        print(f"written to {results}")
    return timings


def _write(path: Path, where: str, timings: dict[str, Timing], ratio: float, epochs: int, batch_size: int,
           rotation: float, n: int) -> None:
    rows = "\n".join(
        f"| {t.path} | {t.train_seconds:.2f} | {t.test_seconds:.2f} | {t.images_per_second:,.0f} | {t.test_acc:.2f}% |"
        for t in timings.values())
    text = (f"# Last measured benchmark\n\nWritten by `python -m kit bench` on "
            f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.\n\n"
            f"- device: {where}\n- torch {torch.__version__}\n"
            f"- kit.CompactNet on {n:,} MNIST training images, batch {batch_size}, random rotation ±{rotation:g}°, "
            f"{epochs} epoch(s) per path, one process\n\n"
            f"| path | train s/epoch | test s/epoch | train img/s | test accuracy |\n|---|---:|---:|---:|---:|\n"
            f"{rows}\n\n**device-resident / classic training throughput: {ratio:.2f}×**\n")
    write_text(path, text)
