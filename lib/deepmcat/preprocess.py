"""Canonical preprocessing: any unit → a fixed (frames, size, size) float32 tensor.

In-plane: the physical field of view is scaled so its longer side fills ``size`` pixels (aspect ratio and
anisotropic pixel spacing respected), then centred and zero-padded. Through time/slices: ``frames`` evenly
spaced frames (a single image repeats). Intensity: robust percentiles; signed images (flow phase, CT) keep
their sign and are scaled to [-1, 1], the others to [0, 1]. With ``centre_crop`` the central part of the
field of view follows as a second set of frames, at the same size (a second scale).
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import CenterSpatialCrop, Resize, SpatialPad

from deepmcat.config import PreprocessConfig
from deepmcat.io import UnitPixels, sample_frames


def is_signed(values: np.ndarray, low: float, high: float) -> bool:
    """Signed data (phase, velocity, CT) has substantial mass on both sides of zero."""
    return low < 0 < high and -low > 0.25 * high


def normalise_intensity(frames: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    finite = frames[np.isfinite(frames)]
    if finite.size == 0:
        return np.zeros_like(frames, dtype=np.float32)
    low, high = np.percentile(finite, [cfg.low_percentile, cfg.high_percentile])
    frames = np.nan_to_num(frames, nan=low, posinf=high, neginf=low)
    if is_signed(finite, low, high):
        scale = max(-low, high)
        return np.clip(frames / scale, -1.0, 1.0).astype(np.float32)
    if high <= low:
        return np.zeros_like(frames, dtype=np.float32)
    return np.clip((frames - low) / (high - low), 0.0, 1.0).astype(np.float32)


def canonical(pixels: UnitPixels, cfg: PreprocessConfig) -> np.ndarray:
    """The canonical (channels, size, size) tensor of one unit: ``frames`` channels per scale."""
    arr = pixels.array
    if arr.ndim != 3 or min(arr.shape) < 1:
        raise ValueError(f"expected a (frames, rows, cols) array, got shape {arr.shape}")
    if not 0 <= cfg.centre_crop < 1:
        raise ValueError(f"centre_crop must be in [0, 1), not {cfg.centre_crop}")
    frames = arr[sample_frames(arr.shape[0], cfg.frames)].astype(np.float32, copy=False)
    frames = normalise_intensity(frames, cfg)
    views = [fit_square(frames, pixels.spacing, cfg.size)]
    if cfg.centre_crop > 0:
        views.append(fit_square(centre(frames, pixels.spacing, cfg.centre_crop), pixels.spacing, cfg.size))
    return np.concatenate(views).astype(np.float32, copy=False)


def centre(frames: np.ndarray, spacing: tuple[float, float], fraction: float) -> np.ndarray:
    """The central square of ``fraction`` of the field of view's longer side (in millimetres, so that
    anisotropic pixels crop the same physical square), clipped to the image."""
    rows, cols = frames.shape[1:]
    side = fraction * max(rows * spacing[0], cols * spacing[1])
    keep = [max(1, min(n, int(round(side / sp)))) for n, sp in ((rows, spacing[0]), (cols, spacing[1]))]
    return CenterSpatialCrop(roi_size=keep)(frames)


def fit_square(frames: np.ndarray, spacing: tuple[float, float], size: int) -> np.ndarray:
    """Scale the physical field of view so its longer side fills ``size`` pixels, centred and zero-padded."""
    rows, cols = frames.shape[1:]
    extent = np.array([rows * spacing[0], cols * spacing[1]])
    target = np.maximum(1, np.round(extent / extent.max() * size)).astype(int)
    mode = "area" if (target <= (rows, cols)).all() else "bilinear"
    resized = Resize(spatial_size=tuple(int(t) for t in target), mode=mode)(torch.as_tensor(np.asarray(frames)))
    padded = SpatialPad(spatial_size=(size, size), mode="constant")(resized)
    return torch.as_tensor(padded).numpy().astype(np.float32, copy=False)
