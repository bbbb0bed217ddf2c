"""Augmentation, described once and applied two ways.

An `Augment` says what to do (rotate by up to ±N degrees, shift, scale, crop,
flip). The classic path turns it into per-image torchvision transforms on PIL
images, or an albumentations pipeline on numpy arrays; the device-resident path draws every random choice of an epoch on the
device in one call (`plan`), then applies it to whole batches with
`affine_grid`/`grid_sample` and tensor indexing (`apply`). Both work on pixels
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
    def changes_images(self) -> bool:
        return self.is_affine or self.crop_padding > 0 or self.hflip

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

    # --- classic path, albumentations: per-image transforms on numpy arrays -------------
    def albumentations(self, size: tuple[int, int]):
        """The same augmentation as an albumentations pipeline (H x W x C uint8 array in and out)."""
        import albumentations as A
        import cv2

        if int(A.__version__.split(".")[0]) < 2:
            raise ImportError(f"the kit needs albumentations 2 or newer, this is {A.__version__}: "
                              "pip install -U albumentations")
        h, w = size
        steps = []
        if self.crop_padding:
            p = self.crop_padding
            steps += [A.PadIfNeeded(h + 2 * p, w + 2 * p, border_mode=cv2.BORDER_CONSTANT, fill=0),
                      A.RandomCrop(h, w)]
        if self.is_affine:
            t = self.translate
            steps.append(A.Affine(rotate=(-self.rotation, self.rotation), translate_percent=(-t, t) if t else None,
                                  scale=tuple(self.scale), interpolation=cv2.INTER_LINEAR,
                                  border_mode=cv2.BORDER_CONSTANT, fill=0, p=1.0))
        if self.hflip:
            steps.append(A.HorizontalFlip(p=0.5))
        return A.Compose(steps)

    # --- device-resident path: whole batches at once ----------------------------------
    def plan(self, n: int, size: tuple[int, int], generator: torch.Generator | None = None,
             device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """Every random choice for `n` images of `size` (H, W), drawn on `device` in one call.

        Returns the affine matrices ("theta", n x 2 x 3), crop offsets ("crop", n x 2) and flips
        ("flip", n), each only where its range is not zero. Slice it to a batch and `apply` it.
        """
        h, w = size
        parts = {"angle": self.rotation > 0, "dx": self.translate > 0, "dy": self.translate > 0,
                 "zoom": self.scale != (1.0, 1.0), "crop_y": self.crop_padding > 0, "crop_x": self.crop_padding > 0,
                 "flip": self.hflip}
        names = [k for k, wanted in parts.items() if wanted]
        if not names:
            return {}
        u = dict(zip(names, torch.rand(len(names), n, generator=generator, device=device)))
        plan = {}
        if self.is_affine:
            between = lambda key, low, high: low + (high - low) * u[key] if key in u else None  # noqa: E731
            angles = between("angle", -self.rotation, self.rotation)
            zooms = between("zoom", *self.scale)
            shifts = None
            if "dx" in u:
                shifts = torch.stack([between("dx", -self.translate, self.translate) * w,
                                      between("dy", -self.translate, self.translate) * h], 1)
            plan["theta"] = affine_matrices(n, (h, w), angles, shifts, zooms, device)
        if self.crop_padding:
            span = 2 * self.crop_padding + 1
            plan["crop"] = torch.stack([u["crop_y"], u["crop_x"]], 1).mul(span).long().clamp_(max=span - 1)
        if self.hflip:
            plan["flip"] = u["flip"] < 0.5
        return plan

    def apply(self, x: torch.Tensor, plan: dict[str, torch.Tensor]) -> torch.Tensor:
        """Apply a plan's choices (sliced to this batch) to a float batch N x C x H x W. Uncovered pixels are 0."""
        if "crop" in plan:
            x = crop(x, self.crop_padding, plan["crop"])
        if "theta" in plan:
            grid = F.affine_grid(plan["theta"].to(x.dtype), list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if "flip" in plan:
            x = torch.where(plan["flip"][:, None, None, None], x.flip(3), x)
        return x

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment one float batch N x C x H x W (pixels in [0, 1]) on whatever device it is on."""
        return self.apply(x, self.plan(x.shape[0], tuple(x.shape[-2:]), generator, x.device))


def affine_matrices(n: int, size: tuple[int, int], angles: torch.Tensor | None = None,
                    shifts: torch.Tensor | None = None, zooms: torch.Tensor | None = None,
                    device: str | torch.device = "cpu") -> torch.Tensor:
    """The n x 2 x 3 matrices for `affine_grid` that rotate each image by `angles` (degrees,
    counter-clockwise), zoom it by `zooms`, then shift it by `shifts` (n x 2: pixels right, pixels down).
    A part that is None is left out."""
    h, w = size
    a = (angles.float() if angles is not None else torch.zeros(n, device=device)) * (math.pi / 180)
    z = zooms.float() if zooms is not None else torch.ones(n, device=device)
    cos, sin = torch.cos(a) / z, torch.sin(a) / z
    # affine_grid wants the inverse map (output -> input) in coordinates that span
    # [-1, 1] on both axes; h / w terms keep a rotation a rotation on non-square images.
    if shifts is not None:
        tx, ty = shifts[:, 0].float() * 2 / w, shifts[:, 1].float() * 2 / h
    else:
        tx = ty = torch.zeros(n, device=a.device)
    return torch.stack([
        torch.stack([cos, -sin * h / w, -(cos * tx - sin * ty * h / w)], 1),
        torch.stack([sin * w / h, cos, -(sin * tx * w / h + cos * ty)], 1),
    ], 1)


def affine(x: torch.Tensor, angles: torch.Tensor, shifts: torch.Tensor, zooms: torch.Tensor) -> torch.Tensor:
    """Rotate each image by `angles` (degrees, counter-clockwise), zoom it, then shift it by
    `shifts` (N x 2: pixels right, pixels down), filling uncovered pixels with 0."""
    theta = affine_matrices(x.shape[0], tuple(x.shape[-2:]), angles.to(x.device), shifts.to(x.device),
                            zooms.to(x.device))
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def crop(x: torch.Tensor, padding: int, offsets: torch.Tensor) -> torch.Tensor:
    """Zero-pad every image by `padding`, then cut it back to size at its own offset (N x 2: rows, columns)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4).permute(0, 2, 3, 1)  # N x H' x W' x C: index rows and columns
    rows = (offsets[:, :1] + torch.arange(h, device=x.device))[:, :, None]
    cols = (offsets[:, 1:] + torch.arange(w, device=x.device))[:, None, :]
    images = torch.arange(n, device=x.device)[:, None, None]
    return padded[images, rows, cols].permute(0, 3, 1, 2)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad every image by `padding`, then cut it back to size at its own random offset."""
    if padding == 0:
        return x
    offsets = torch.randint(0, 2 * padding + 1, (x.shape[0], 2), generator=generator, device=x.device)
    return crop(x, padding, offsets)
