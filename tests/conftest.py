"""Shared fixtures: small generated data, and the real MNIST where it is present."""
from __future__ import annotations

import os

import pytest
import torch

from kit import data
from kit.formats import ImageSet


def make_imageset(n: int = 64, channels: int = 1, size: int = 12, classes: int = 4, seed: int = 0) -> ImageSet:
    """Random images whose class is readable from their brightness, so a model can learn it."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    base = (labels.float() + 0.5) / classes * 200
    noise = torch.randint(0, 40, (n, channels, size, size), generator=g).float()
    images = (base.view(-1, 1, 1, 1) + noise).clamp(0, 255).to(torch.uint8)
    return ImageSet("toy", images, labels, tuple(f"c{i}" for i in range(classes)))


@pytest.fixture
def toy() -> ImageSet:
    return make_imageset()


@pytest.fixture
def toy_rgb() -> ImageSet:
    return make_imageset(channels=3, size=16)


@pytest.fixture
def mnist_root():
    """The data root holding real MNIST; skipped where it is absent, except in CI, which must have it."""
    if data.is_present("mnist"):
        return data.data_root()
    if os.environ.get("CI"):
        pytest.fail("CI must fetch MNIST first: python -m kit data fetch mnist")
    pytest.skip("real MNIST is not on this machine (python -m kit data fetch mnist)")


@pytest.fixture(autouse=True)
def _forget_fitted_trainers():
    """Each test starts and ends with no remembered trainers (kit.setup forgets them per notebook likewise)."""
    from kit import integrity
    from kit.train import Trainer

    Trainer.forget_fitted()
    integrity.forget()  # and no change of the kit a test made (and undid) is named in another's record
    yield
    Trainer.forget_fitted()
    integrity.forget()
