"""Batched MR augmentation on the training device (rotated, flipped random resized crop, random intensity
curve, gamma, bias field, noise, cine phase).

Written with torch's affine_grid/grid_sample so that a whole batch is warped in one call on the GPU (MONAI's
per-sample Rand* transforms would run item by item in the data loader, the CPU bottleneck here).
"""

from __future__ import annotations

import math
import torch
import torch.nn.functional as F

from deepmcat.config import AugmentConfig


def augment(x: torch.Tensor, cfg: AugmentConfig | None = None, generator: torch.Generator | None = None,
            views: int = 1) -> torch.Tensor:
    """x: (batch, views x frames, H, W) canonical tensors, values in [0, 1] or signed [-1, 1]; the frames of
    each view (scale) are rolled alike."""
    cfg = cfg or AugmentConfig()
    b, f, h, w = x.shape
    dev = x.device

    def rand(*shape):
        return torch.rand(*shape, generator=generator, device="cpu").to(dev)

    x = intensity_curve(x, cfg, rand)

    angle = (rand(b) * 2 - 1) * math.radians(cfg.rotate_deg)
    area = cfg.crop_area[0] + rand(b) * (cfg.crop_area[1] - cfg.crop_area[0])
    log_aspect = math.log(cfg.crop_aspect[0]) + rand(b) * math.log(cfg.crop_aspect[1] / cfg.crop_aspect[0])
    limit = max(1.0, cfg.crop_area[1]) ** 0.5
    sx = (area * torch.exp(log_aspect)).sqrt().clamp(max=limit)
    sy = (area / torch.exp(log_aspect)).sqrt().clamp(max=limit)
    # a crop stays inside the image; a window larger than the image (area > 1: a wider field of view) keeps
    # the whole image inside it
    shift = (rand(b, 2) * 2 - 1) * torch.stack([1 - sx, 1 - sy], 1).abs()
    cos, sin = torch.cos(angle), torch.sin(angle)
    sx = torch.where(rand(b) < cfg.flip, -sx, sx)  # a mirrored view: patient orientation differs between sites
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
    per_view = f // views
    if roll.any() and per_view > 1:
        shifts = (rand(b) * per_view).long()
        frame = torch.arange(f, device=dev)[None]
        idx = frame - frame % per_view + (frame % per_view + shifts[:, None]) % per_view
        rolled = torch.gather(x, 1, idx[:, :, None, None].expand(-1, -1, h, w))
        x = torch.where(roll[:, None, None, None], rolled, x)
    return x


def intensity_curve(x: torch.Tensor, cfg: AugmentConfig, rand) -> torch.Tensor:
    """A random piecewise-linear intensity curve per image (on |x|, sign kept), applied with probability
    ``cfg.curve``: tissue contrast differs between sequences, vendors and sites, so the network should rely
    on shape and motion more than on which tissue is brighter. A share ``cfg.curve_monotone`` of the curves
    keeps the order of intensities; the others may swap it."""
    b = x.shape[0]
    knots = cfg.curve_knots
    if cfg.curve <= 0 or knots < 2:
        return x
    steps = rand(b, knots - 1) + 0.05
    monotone = torch.cat([torch.zeros(b, 1, device=x.device), steps.cumsum(1)], 1)
    monotone = monotone / monotone[:, -1:]
    free = rand(b, knots)
    free = (free - free.amin(1, keepdim=True)) / (free.amax(1, keepdim=True) - free.amin(1, keepdim=True) + 1e-6)
    values = torch.where(rand(b, 1) < cfg.curve_monotone, monotone, free)
    identity = torch.linspace(0, 1, knots, device=x.device).expand(b, -1)
    values = torch.where(rand(b, 1) < cfg.curve, values, identity).to(x.dtype)
    pos = x.abs().clamp(0, 1).reshape(b, -1) * (knots - 1)
    low = pos.floor().long().clamp(max=knots - 2)
    frac = pos - low
    mapped = torch.gather(values, 1, low) * (1 - frac) + torch.gather(values, 1, low + 1) * frac
    return torch.sign(x) * mapped.reshape(x.shape)  # zero (padding, no signal) stays zero
