"""Augmentation, described once and applied two ways.

An `Augment` says what to do (rotate by up to ±N degrees, shift, scale, crop,
flip). The classic path turns it into per-image torchvision transforms on PIL
images; the device-resident path applies it to a whole batch at once with
`affine_grid`/`grid_sample` and tensor indexing. Both work on pixels in [0, 1]
before normalisation and fill uncovered pixels with 0 (black).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augment:
    rotation: float = 0.0  # degrees: each image turns by a uniform angle in [-rotation, rotation]
    translate: float = 0.0  # fraction of width/height: shift uniform in [-translate, translate]
    scale: tuple[float, float] = (1.0, 1.0)  # zoom range
    crop_padding: int = 0  # pad by this many pixels, then crop back at a random offset (CIFAR)
    hflip: bool = False  # flip left-right with probability 1/2 (never for digits)

    def __post_init__(self):
        if self.rotation < 0 or not 0 <= self.translate < 1 or self.crop_padding < 0:
            raise ValueError(f"Augment needs rotation >= 0, 0 <= translate < 1 and crop_padding >= 0; got {self}")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"Augment scale must be (low, high) with 0 < low <= high, got {self.scale}")

    @property
    def is_affine(self) -> bool:
        return self.rotation > 0 or self.translate > 0 or self.scale != (1.0, 1.0)

    # --- classic path: per-image torchvision transforms on PIL images --------------
    def torchvision(self, size: tuple[int, int]) -> list:
        """The same augmentation as per-image torchvision transforms (PIL in, PIL out)."""
        from torchvision import transforms as T

        steps = []
        if self.crop_padding:
            steps.append(T.RandomCrop(size, padding=self.crop_padding, fill=0))
        if self.is_affine:
            steps.append(T.RandomAffine(
                degrees=self.rotation,
                translate=(self.translate, self.translate) if self.translate else None,
                scale=self.scale if self.scale != (1.0, 1.0) else None,
                interpolation=T.InterpolationMode.BILINEAR,
                fill=0,
            ))
        if self.hflip:
            steps.append(T.RandomHorizontalFlip())
        return steps

    # --- device-resident path: the whole batch at once ------------------------------
    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a float batch N x C x H x W (pixels in [0, 1]) on whatever device it is on.

        Random numbers are drawn on the CPU from `generator`, so a seed gives the
        same augmentation on every device.
        """
        n = x.shape[0]
        if self.crop_padding:
            x = random_crop(x, self.crop_padding, generator)
        if self.is_affine:
            x = random_affine(x, self.rotation, self.translate, self.scale, generator)
        if self.hflip:
            flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x


def _uniform(n: int, low: float, high: float, generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float32)


def random_affine(x: torch.Tensor, degrees: float, translate: float, scale: tuple[float, float],
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Rotate, shift and zoom every image of a batch by its own random amount."""
    n, _, h, w = x.shape
    angles = _uniform(n, -degrees, degrees, generator)
    zooms = _uniform(n, scale[0], scale[1], generator)
    shifts = torch.stack([_uniform(n, -translate, translate, generator) * w,
                          _uniform(n, -translate, translate, generator) * h], 1)
    return affine(x, angles, shifts, zooms)


def affine(x: torch.Tensor, angles: torch.Tensor, shifts: torch.Tensor, zooms: torch.Tensor) -> torch.Tensor:
    """Rotate each image by `angles` (degrees, counter-clockwise), zoom it, then shift it by
    `shifts` (N x 2: pixels right, pixels down), filling uncovered pixels with 0."""
    n, _, h, w = x.shape
    a = angles.float() * (math.pi / 180)
    cos, sin = torch.cos(a) / zooms, torch.sin(a) / zooms
    # affine_grid wants the inverse map (output -> input) in coordinates that span
    # [-1, 1] on both axes; h / w terms keep a rotation a rotation on non-square images.
    tx, ty = shifts[:, 0] * 2 / w, shifts[:, 1] * 2 / h
    theta = torch.stack([
        torch.stack([cos, -sin * h / w, -(cos * tx - sin * ty * h / w)], 1),
        torch.stack([sin * w / h, cos, -(sin * tx * w / h + cos * ty)], 1),
    ], 1).to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad every image by `padding`, then cut it back to size at its own random offset."""
    n, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4).permute(0, 2, 3, 1)  # N x H' x W' x C: index rows and columns
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]
    images = torch.arange(n, device=x.device)[:, None, None]
    return padded[images, rows, cols].permute(0, 3, 1, 2)
