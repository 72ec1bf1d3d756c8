"""Training-time augmentation: small random affine distortions of handwritten characters.

With 161 meta-training characters, the backbone overfits their exact drawings; a random
rotation (+-10 degrees), scale (0.9..1.1), shear (+-0.1) and shift (+-2 pixels) per image
makes every episode show new variations of the strokes. Applied to support and query images
of meta-training episodes only, never at evaluation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine(images: torch.Tensor, generator: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Apply an independent random affine warp to each image of a batch [B, C, H, W] (bilinear, zero fill)."""
    b = images.shape[0]

    def uniform(scale: float) -> torch.Tensor:
        return (torch.rand(b, generator=generator) * 2 - 1) * scale * strength

    angle = uniform(math.radians(10))
    scale = 1 + uniform(0.1)
    shear = uniform(0.1)
    shift = torch.stack([uniform(2 / 14), uniform(2 / 14)], dim=1)  # in normalised coordinates: 2 px of 28
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin + shear, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], dim=1
    )
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid.to(images.device), mode="bilinear", padding_mode="zeros", align_corners=False)
