"""One training epoch of kit.CompactNet on full MNIST with each data path, in one process.

Prints seconds per epoch, images per second, test accuracy, and the ratio of
the two paths, on the device picked by --device. Run:

    python benchmarks/one_epoch.py [--device auto|cpu|cuda] [--epochs 1]
"""
from __future__ import annotations

import argparse
import time

import torch

import kit


def one_run(path: str, train_set, test_set, mean, std, device, epochs: int, seed: int):
    kit.set_seed(seed)
    train, test = kit.make_loaders((train_set, test_set), path=path, batch_size=128, mean=mean, std=std,
                                   device=device, seed=seed)
    trainer = kit.Trainer(kit.CompactNet(), train, test, epochs=epochs, lr=0.05, scheduler="onecycle",
                          scheduler_args={"max_lr": 0.1}, device=device, verbose=False, progress=False)
    start = time.perf_counter()
    history = trainer.fit()
    seconds = (time.perf_counter() - start) / epochs
    return seconds, len(train_set) / seconds, history[-1].test_acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    device = kit.pick_device(args.device)
    train_set, test_set = kit.load("mnist", "train"), kit.load("mnist", "test")
    s = kit.stats(train_set)
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}; {args.epochs} epoch(s) of CompactNet, batch 128")
    results = {}
    for path in ("classic", "device"):
        results[path] = one_run(path, train_set, test_set, s.mean, s.std, device, args.epochs, args.seed)
        sec, ips, acc = results[path]
        print(f"{path:>8}: {sec:6.1f} s/epoch  {ips:8.0f} img/s  test accuracy {acc:.2f}%")
    print(f"device-resident path is {results['classic'][0] / results['device'][0]:.2f}x the classic pipeline")


if __name__ == "__main__":
    main()
