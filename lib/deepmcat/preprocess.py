"""Canonical preprocessing: any unit → a fixed (frames, size, size) float32 tensor.

In-plane: the physical field of view is scaled so its longer side fills ``size`` pixels (aspect ratio and
anisotropic pixel spacing respected), then centred and zero-padded. Through time/slices: ``frames`` evenly
spaced frames (a single image repeats). Intensity: robust percentiles; signed images (flow phase, CT) keep
their sign and are scaled to [-1, 1], the others to [0, 1]. With ``centre_crop`` the central part of the
field of view follows as a second set of frames, at the same size (a second scale).

Resizing, padding and cropping follow MONAI's ``Resize`` (``area`` when shrinking, ``bilinear`` otherwise),
``SpatialPad`` and ``CenterSpatialCrop`` exactly (tests/test_preprocess.py compares them), written as two small
matrix products in numpy: this module then imports neither MONAI nor torch, so that a decoding worker
process starts in ~0.3 s rather than the ~10 s of ``import monai`` (measured on the 2-core machine).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from threadpoolctl import ThreadpoolController

from deepmcat.config import PreprocessConfig
from deepmcat.io import UnitPixels, sample_frames


def is_signed(values: np.ndarray, low: float, high: float) -> bool:
    """Signed data (phase, velocity, CT) has substantial mass on both sides of zero."""
    return low < 0 < high and -low > 0.25 * high


#: values in the strided sample that places the tail thresholds of :func:`percentiles`
TAIL_SAMPLE = 4096


def percentiles(values: np.ndarray, q: tuple[float, ...]) -> np.ndarray:
    """``np.percentile(values, q)`` (linear), bit for bit (tests compare them), ~20x faster for the extreme
    percentiles used here: numpy partitions all ~250,000 values of a unit around six ranks (~2.6 ms, the
    largest part of a unit's preprocessing); here only the tails holding the ranks are partitioned."""
    n = values.size
    virtual = (n - 1) * np.true_divide(np.asarray(q, np.float64), 100)  # numpy's own arithmetic, step by step
    below = np.clip(np.floor(virtual), 0, n - 1).astype(np.intp)
    above = np.minimum(below + 1, n - 1)
    ranks = sorted(set(below.tolist()) | set(above.tolist()))
    value_at = dict(zip(ranks, _order_statistics(values, ranks)))
    a = np.array([value_at[r] for r in below], values.dtype)
    b = np.array([value_at[r] for r in above], values.dtype)
    gamma = virtual - below
    diff = b - a
    out = np.asanyarray(a + diff * gamma)
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5, casting="unsafe")  # numpy's _lerp
    return out


def _order_statistics(values: np.ndarray, ranks: list[int]) -> list:
    """The ``ranks``-th smallest values (0-based). A strided sample places a threshold just beyond each
    tail's ranks; the values past it are partitioned alone when they are enough, else all of them are."""
    n = values.size
    step = max(1, n // TAIL_SAMPLE)
    sample = np.sort(values[::step])
    found = {}
    for side in ([r for r in ranks if r < n // 2], [r for r in ranks if r >= n // 2]):
        if not side:
            continue
        if side[0] < n // 2:
            need = max(side) + 1
            tail = values[values <= sample[min(sample.size - 1, need // step + 8)]]
        else:
            need = n - min(side)
            tail = values[values >= sample[max(0, sample.size - 1 - need // step - 8)]]
        if tail.size < need:
            tail = values
        shift = 0 if side[0] < n // 2 else n - tail.size
        parted = np.partition(tail, [r - shift for r in side])
        found.update({r: parted[r - shift] for r in side})
    return [found[r] for r in ranks]


def normalise_intensity(frames: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    all_finite = bool(np.isfinite(frames).all())
    finite = frames.ravel() if all_finite else frames[np.isfinite(frames)]
    if finite.size == 0:
        return np.zeros_like(frames, dtype=np.float32)
    low, high = percentiles(finite, (cfg.low_percentile, cfg.high_percentile))
    if not all_finite:
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
    frames = arr[sample_frames(arr.shape[0], cfg.frames)].astype(np.float32, copy=False)
    frames = normalise_intensity(frames, cfg)
    views = [fit_square(frames, pixels.spacing, cfg.size)]
    if cfg.centre_crop > 0:
        views.append(fit_square(centre(frames, pixels.spacing, cfg.centre_crop), pixels.spacing, cfg.size))
    return np.concatenate(views).astype(np.float32, copy=False)


def centre(frames: np.ndarray, spacing: tuple[float, float], fraction: float) -> np.ndarray:
    """The central square of ``fraction`` of the field of view's longer side (in millimetres, so that
    anisotropic pixels crop the same physical square), clipped to the image; centred as MONAI's
    ``CenterSpatialCrop``."""
    rows, cols = frames.shape[1:]
    side = fraction * max(rows * spacing[0], cols * spacing[1])
    keep = [max(1, min(n, int(round(side / sp)))) for n, sp in ((rows, spacing[0]), (cols, spacing[1]))]
    (r0, c0) = (max(n // 2 - k // 2, 0) for n, k in zip((rows, cols), keep))
    return frames[:, r0 : r0 + keep[0], c0 : c0 + keep[1]]


def fit_square(frames: np.ndarray, spacing: tuple[float, float], size: int) -> np.ndarray:
    """Scale the physical field of view so its longer side fills ``size`` pixels, centred and zero-padded."""
    rows, cols = frames.shape[1:]
    extent = np.array([rows * spacing[0], cols * spacing[1]])
    target = np.maximum(1, np.round(extent / extent.max() * size)).astype(int)
    mode = "area" if (target <= (rows, cols)).all() else "bilinear"
    row_weights, col_weights = _resize_weights(rows, int(target[0]), mode), _resize_weights(cols, int(target[1]), mode)
    with _blas().limit(limits=1, user_api="blas"):  # the same bits in every process (see _blas)
        resized = row_weights @ frames @ col_weights.T
    out = np.zeros((frames.shape[0], size, size), np.float32)
    r0, c0 = ((size - int(t)) // 2 for t in target)  # symmetric padding: the odd pixel goes after
    out[:, r0 : r0 + target[0], c0 : c0 + target[1]] = resized
    return out


@lru_cache(maxsize=1)
def _blas() -> ThreadpoolController:
    """BLAS kept to one thread for the resize: OpenBLAS sums a product in another order with more threads,
    so a tensor decoded in this process and one decoded by a worker would differ in the last bits (and a
    worker per core gains nothing from more: the demo's units took 2.4 s on 2 workers with 2 BLAS threads
    each, 1.4 s with one). Limiting costs ~45 us a call."""
    return ThreadpoolController()


@lru_cache(maxsize=256)
def _resize_weights(n_in: int, n_out: int, mode: str) -> np.ndarray:
    """(n_out, n_in) float32 weights of torch's 1-D resize as MONAI's ``Resize`` calls it: ``area`` averages
    input cells [floor(i·n_in/n_out), ceil((i+1)·n_in/n_out)); ``bilinear`` (align_corners=False) samples
    at (i + ½)·n_in/n_out − ½, clamped at 0. Both are separable, so a 2-D resize is R · image · Cᵀ."""
    weights = np.zeros((n_out, n_in), np.float64)
    rows = np.arange(n_out)
    if mode == "area":
        for i in rows:
            start, end = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
            weights[i, start:end] = 1.0 / (end - start)
    else:
        # in float32, as torch computes it, so that the weights agree to the last bit or so
        scale = np.float32(n_in) / np.float32(n_out)
        source = np.maximum(scale * (rows.astype(np.float32) + np.float32(0.5)) - np.float32(0.5), np.float32(0))
        low = np.minimum(source.astype(int), n_in - 1)
        frac = (source - low.astype(np.float32)).astype(np.float64)
        np.add.at(weights, (rows, low), 1.0 - frac)
        np.add.at(weights, (rows, np.minimum(low + 1, n_in - 1)), frac)
    weights = weights.astype(np.float32)
    weights.flags.writeable = False
    return weights
