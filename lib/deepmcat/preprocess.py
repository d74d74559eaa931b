"""Canonical preprocessing: any unit → a fixed (frames, size, size) float32 tensor.

In-plane: the physical field of view is scaled so its longer side fills ``size`` pixels (aspect ratio and
anisotropic pixel spacing respected), then centred and zero-padded. Through time/slices: ``frames`` evenly
spaced frames (a single image repeats). Intensity: robust percentiles; signed images (flow phase, CT) keep
their sign and are scaled to [-1, 1], the others to [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import Resize, SpatialPad

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
    """The canonical (frames, size, size) tensor of one unit."""
    arr = pixels.array
    if arr.ndim != 3 or min(arr.shape) < 1:
        raise ValueError(f"expected a (frames, rows, cols) array, got shape {arr.shape}")
    frames = arr[sample_frames(arr.shape[0], cfg.frames)].astype(np.float32, copy=False)
    frames = normalise_intensity(frames, cfg)
    rows, cols = frames.shape[1:]
    extent = np.array([rows * pixels.spacing[0], cols * pixels.spacing[1]])
    target = np.maximum(1, np.round(extent / extent.max() * cfg.size)).astype(int)
    mode = "area" if (target <= (rows, cols)).all() else "bilinear"
    resized = Resize(spatial_size=tuple(int(t) for t in target), mode=mode)(torch.from_numpy(frames))
    padded = SpatialPad(spatial_size=(cfg.size, cfg.size), mode="constant")(resized)
    return torch.as_tensor(padded).numpy().astype(np.float32, copy=False)
