"""Batched MR augmentation on the training device (rotated random resized crop, gamma, bias field, noise,
cine phase).

Written with torch's affine_grid/grid_sample so that a whole batch is warped in one call on the GPU (MONAI's
per-sample Rand* transforms would run item by item in the data loader, the CPU bottleneck here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    rotate_deg: float = 15.0
    #: random resized crop (SimCLR): fraction of the field of view's area kept, and aspect-ratio range
    crop_area: tuple[float, float] = (0.35, 1.0)
    crop_aspect: tuple[float, float] = (0.75, 1.333)
    gamma: tuple[float, float] = (0.7, 1.5)
    bias: float = 0.3
    noise: float = 0.03
    #: probability of starting the cine at another cardiac phase (frames rolled)
    roll_frames: float = 0.5


def augment(x: torch.Tensor, cfg: AugmentConfig | None = None, generator: torch.Generator | None = None
            ) -> torch.Tensor:
    """x: (batch, frames, H, W) canonical tensors, values in [0, 1] or signed [-1, 1]."""
    cfg = cfg or AugmentConfig()
    b, f, h, w = x.shape
    dev = x.device

    def rand(*shape):
        return torch.rand(*shape, generator=generator, device="cpu").to(dev)

    angle = (rand(b) * 2 - 1) * math.radians(cfg.rotate_deg)
    area = cfg.crop_area[0] + rand(b) * (cfg.crop_area[1] - cfg.crop_area[0])
    log_aspect = math.log(cfg.crop_aspect[0]) + rand(b) * math.log(cfg.crop_aspect[1] / cfg.crop_aspect[0])
    sx = (area * torch.exp(log_aspect)).sqrt().clamp(max=1.0)
    sy = (area / torch.exp(log_aspect)).sqrt().clamp(max=1.0)
    shift = (rand(b, 2) * 2 - 1) * torch.stack([1 - sx, 1 - sy], 1)  # the crop stays inside the image
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos * sx, -sin * sy, shift[:, 0]], 1),
                         torch.stack([sin * sx, cos * sy, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, (b, f, h, w), align_corners=False)
    x = F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)

    gamma = cfg.gamma[0] + rand(b, 1, 1, 1) * (cfg.gamma[1] - cfg.gamma[0])
    x = torch.sign(x) * x.abs().clamp_min(1e-6) ** gamma

    yy = torch.linspace(-1, 1, h, device=dev).view(1, 1, h, 1)
    xx = torch.linspace(-1, 1, w, device=dev).view(1, 1, 1, w)
    coef = (rand(b, 3, 1, 1) * 2 - 1) * cfg.bias
    x = x * (1 + coef[:, :1] * xx + coef[:, 1:2] * yy + coef[:, 2:] * xx * yy)

    x = x + torch.randn(x.shape, generator=generator).to(dev) * cfg.noise * rand(b, 1, 1, 1)

    roll = rand(b) < cfg.roll_frames
    if roll.any() and f > 1:
        shifts = (rand(b) * f).long()
        idx = (torch.arange(f, device=dev)[None] + shifts[:, None]) % f
        rolled = torch.gather(x, 1, idx[:, :, None, None].expand(-1, -1, h, w))
        x = torch.where(roll[:, None, None, None], rolled, x)
    return x
