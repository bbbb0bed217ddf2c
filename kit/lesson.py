"""What every lesson notebook starts with: `setup = kit.setup(epochs=..., seed=..., device=..., quick=...)`.

One call instead of a set-up block repeated in every notebook: it settles the
device, the seed and the smoke-run mode, prints what the run will use (the
habit of MONAI's print_config), and carries that context to the loaders
(`setup.loaders(...)`) and to the record (`setup.result(...)`).

`python -m kit run` tells a notebook where to write its record through the
environment (KIT_METRICS), so no machine's path lands in an executed report;
the test suite sets KIT_QUICK=1, which turns every notebook into a smoke run
that records nothing.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch

from kit import integrity
from kit.data import DataError, splits
from kit.loaders import make_loaders
from kit.record import Budget, Environment, Record, result
from kit.train import Trainer, pick_device, set_seed

QUICK_IMAGES = 2_000  # images per split in a smoke run
RECORD_ENV = "KIT_METRICS"  # set by `python -m kit run`: the file this notebook's record goes to
QUICK_ENV = "KIT_QUICK"  # set by the test suite: every notebook a smoke run


@dataclass
class Setup:
    """The context of one notebook's run, as `kit.setup` settled it."""

    epochs: int
    seed: int
    device: torch.device
    quick: bool
    limit: int | None  # images per split (smoke runs), None for all
    record_path: str | None
    environment: Environment

    def loaders(self, data, *, seed: int | None = None, **options):
        """`kit.make_loaders` on this run's device, seed and image limit (see its options)."""
        return make_loaders(data, device=self.device, seed=self.seed if seed is None else seed, limit=self.limit,
                            **options)

    def splits(self, name: str, root=None, *, fallback: str | None = None):
        """The train and test splits of a data set (kit.data.splits) for this run: a smoke run keeps the first
        QUICK_IMAGES of each (generated ones where the data set is absent). With `fallback`, a full run on a
        machine where `name` cannot be had uses that data set instead, and says so."""
        try:
            return splits(name, root, quick=self.quick, quick_images=QUICK_IMAGES)
        except DataError as e:
            if fallback is None or self.quick:
                raise
            print(f"{name} is not on this machine and cannot be downloaded here; this run uses {fallback} instead "
                  f"({type(e).__name__})")
            return splits(fallback, root, quick=self.quick, quick_images=QUICK_IMAGES)

    def result(self, runs, budget: Budget | None, **options) -> Record:
        """Record the run(s) and print the Result as `kit check` reads it (see kit.record.result)."""
        return result(runs, budget=budget, quick=self.quick, path=self.record_path, environment=self.environment,
                      **options)


def setup(*, epochs: int = 15, seed: int = 0, device: str = "auto", quick: bool = False) -> Setup:
    """Settle a notebook's run: device, seed (and cuDNN's deterministic algorithms), smoke-run mode.

    Introduced in 01_setup. In a smoke run (`quick`, or KIT_QUICK=1 from the test suite)
    the notebook trains 1 epoch on the first QUICK_IMAGES images of each split.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a whole number of at least 1, got {epochs!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be a whole number, got {seed!r}")
    in_tests = os.environ.get(QUICK_ENV) == "1"
    quick = bool(quick) or in_tests
    device = pick_device(device)
    set_seed(seed)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False  # the same numbers on a rerun
    Trainer.forget_fitted()
    integrity.forget()
    env = Environment.here(device)
    s = Setup(epochs=1 if quick else epochs, seed=seed, device=device, quick=quick,
              limit=QUICK_IMAGES if quick else None,
              record_path=os.environ.get(RECORD_ENV) or None, environment=env)  # set by `kit run` alone
    what = f"{s.epochs} epoch{'s' * (s.epochs != 1)}"
    if quick:
        what = f"smoke run: {what} on {QUICK_IMAGES:,} images of each split (its numbers are not results)"
    print(f"{what}; seed {seed}; {env.describe()}")
    if device.type == "cpu" and "google.colab" in sys.modules:
        print("In Colab, Runtime > Change runtime type > GPU trains these models many times faster.")
    return s
