"""Canonical tensors: shape, frame sampling, intensity normalisation, aspect ratio."""

from __future__ import annotations

import numpy as np
import pytest

from deepmcat.config import PreprocessConfig
from deepmcat.io import UnitPixels
from deepmcat.preprocess import canonical, centre, fit_square, percentiles, sample_frames

CFG = PreprocessConfig(frames=8, size=32, centre_crop=0.0)  # the whole field of view: one scale


@pytest.mark.parametrize("shape", [(1, 64, 64), (25, 208, 187), (3, 5, 400), (50, 1, 1)])
def test_any_unit_becomes_the_fixed_shape(shape):
    rng = np.random.default_rng(0)
    out = canonical(UnitPixels(rng.random(shape).astype(np.float32) * 1000, (1.4, 1.4)), CFG)
    assert out.shape == (8, 32, 32) and out.dtype == np.float32
    assert np.isfinite(out).all()


@pytest.mark.parametrize("seed", range(4))
def test_resizing_padding_and_cropping_agree_with_monai(seed):
    """The numpy resize (kept free of MONAI and torch for fast worker start-up) is MONAI's Resize +
    SpatialPad and CenterSpatialCrop: shrinking (area), enlarging (bilinear), mixed, odd and even sizes."""
    import torch
    from monai.transforms import CenterSpatialCrop, Resize, SpatialPad

    rng = np.random.default_rng(seed)
    for _ in range(40):
        rows, cols = (int(n) for n in rng.integers(1, 260, 2))
        spacing = tuple(float(v) for v in rng.uniform(0.4, 2.5, 2))
        size = int(rng.choice([31, 32, 64, 96]))
        frames = rng.random((3, rows, cols)).astype(np.float32)
        extent = np.array([rows * spacing[0], cols * spacing[1]])
        target = tuple(int(t) for t in np.maximum(1, np.round(extent / extent.max() * size)))
        mode = "area" if target[0] <= rows and target[1] <= cols else "bilinear"
        resized = Resize(spatial_size=target, mode=mode)(torch.as_tensor(frames))
        expected = np.asarray(SpatialPad(spatial_size=(size, size), mode="constant")(resized))
        np.testing.assert_allclose(fit_square(frames, spacing, size), expected, atol=2e-5, rtol=0)
        fraction = float(rng.uniform(0.05, 0.95))
        side = fraction * extent.max()
        keep = [max(1, min(n, int(round(side / sp)))) for n, sp in ((rows, spacing[0]), (cols, spacing[1]))]
        np.testing.assert_array_equal(centre(frames, spacing, fraction),
                                      np.asarray(CenterSpatialCrop(roi_size=keep)(frames)))


def test_tail_percentiles_are_numpys_bit_for_bit():
    rng = np.random.default_rng(0)
    for trial in range(400):
        n = int(rng.integers(1, 40)) if trial % 3 == 0 else int(rng.integers(40, 300_000))
        values = [rng.normal(size=n), rng.integers(0, 4, n), rng.gamma(2, 300, n).round(), -np.sort(rng.random(n))][
            trial % 4].astype(np.float32)
        q = (float(rng.choice([0.0, 0.5, 1.0, 2.0])), float(rng.choice([98.0, 99.0, 99.5, 100.0])))
        expected = np.percentile(values, q)
        got = percentiles(values, q)
        assert got.dtype == expected.dtype and np.array_equal(got, expected), (n, q)


def test_frame_sampling_is_even_and_repeats_single_images():
    assert list(sample_frames(1, 4)) == [0, 0, 0, 0]
    assert list(sample_frames(9, 5)) == [0, 2, 4, 6, 8]
    assert list(sample_frames(3, 6)) == [0, 0, 1, 1, 2, 2]


def test_magnitude_is_scaled_to_unit_range_by_percentiles():
    arr = np.linspace(0, 4000, 8 * 32 * 32, dtype=np.float32).reshape(8, 32, 32)
    arr[0, 0, 0] = 1e6  # one outlier must not squash the rest
    out = canonical(UnitPixels(arr, (1.0, 1.0)), CFG)
    assert out.min() == 0.0 and out.max() == 1.0
    assert 0.4 < out.mean() < 0.6


def test_signed_phase_keeps_its_sign():
    arr = np.linspace(-1000, 1000, 8 * 32 * 32, dtype=np.float32).reshape(8, 32, 32)
    out = canonical(UnitPixels(arr, (1.0, 1.0)), CFG)
    assert out.min() == -1.0 and out.max() == 1.0
    assert out[0].mean() < 0 < out[-1].mean()


def test_anisotropic_spacing_keeps_the_physical_aspect_ratio():
    # 32 rows x 32 cols, rows spaced 2 mm and cols 1 mm: 64 mm tall, 32 mm wide → width is half the height
    out = canonical(UnitPixels(np.ones((1, 32, 32), np.float32) * 5 + np.eye(32)[None], (2.0, 1.0)), CFG)
    filled_cols = np.flatnonzero(out[0].sum(axis=0) > 0)
    filled_rows = np.flatnonzero(out[0].sum(axis=1) > 0)
    assert len(filled_rows) == 32 and 15 <= len(filled_cols) <= 17


def test_nan_and_inf_pixels_are_neutralised():
    arr = np.random.default_rng(1).random((4, 16, 16)).astype(np.float32)
    arr[0, :4] = np.nan
    arr[1, 0, 0] = np.inf
    out = canonical(UnitPixels(arr, (1.0, 1.0)), CFG)
    assert np.isfinite(out).all()
    # NaN reads as the low end of the range, +inf as the high end; finite pixels are scaled as without them
    clean = arr.copy()
    clean[0, :4], clean[1, 0, 0] = 0.0, 1.0
    reference = canonical(UnitPixels(clean, (1.0, 1.0)), CFG)
    assert np.abs(out - reference).max() < 0.05 and out[0, :6].max() < 0.05


def test_constant_image_gives_zeros_not_nan():
    out = canonical(UnitPixels(np.full((2, 10, 10), 7.0, np.float32), (1.0, 1.0)), CFG)
    assert np.isfinite(out).all() and out.max() == 0.0


def test_augmentation_settings_do_what_they_say():
    """The random intensity curve keeps zero, sign and (when monotone) the order of intensities; a mirrored
    view is the image flipped; a zoomed-out view keeps the whole image inside the window."""
    import torch

    from deepmcat.augment import augment, intensity_curve
    from deepmcat.config import AugmentConfig

    gen = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.rand(*shape, generator=gen)

    x = torch.linspace(-1, 1, 2 * 8 * 16 * 16).reshape(2, 8, 16, 16)
    curved = intensity_curve(x, AugmentConfig(curve=1.0, curve_monotone=1.0), rand)
    flat = curved.flatten(1)
    assert torch.equal(torch.sign(curved), torch.sign(x)) and bool((curved.abs() <= 1 + 1e-6).all())
    for row, src in zip(flat, x.flatten(1)):  # |x| increasing → |curve(x)| never decreasing
        order = torch.argsort(src.abs())
        assert bool((torch.diff(row.abs()[order]) >= -1e-6).all())
    assert torch.equal(intensity_curve(x, AugmentConfig(curve=0.0), rand), x)
    swapped = intensity_curve(x.abs(), AugmentConfig(curve=1.0, curve_monotone=0.0), rand)
    assert not torch.allclose(swapped, x.abs())

    img = torch.zeros(1, 1, 16, 16)
    img[0, 0, 4:12, 2:5] = 1.0  # a bar on the left
    still = dict(rotate_deg=0.0, crop_area=(1.0, 1.0), crop_aspect=(1.0, 1.0), gamma=(1.0, 1.0), bias=0.0,
                 noise=0.0, roll_frames=0.0)
    mirrored = augment(img, AugmentConfig(flip=1.0, **still), torch.Generator().manual_seed(0))
    assert torch.allclose(mirrored, img.flip(-1), atol=1e-5)
    zoomed = augment(img, AugmentConfig(**dict(still, crop_area=(4.0, 4.0))), torch.Generator().manual_seed(0))
    assert 0 < float(zoomed.sum()) < float(img.sum()) and float(zoomed.amax()) > 0.2  # smaller, all still there


def test_centre_crop_adds_a_zoomed_scale_of_the_same_frames():
    """A 40 mm disc in a 256 mm field of view: the second set of channels shows the central 128 mm, where the
    disc is twice as wide; anisotropic pixels crop the same physical square."""
    cfg = PreprocessConfig(frames=4, size=64, centre_crop=0.5)
    yy, xx = np.mgrid[:128, :128]
    disc = ((yy - 64) ** 2 + (xx - 64) ** 2 < 10**2).astype(np.float32) * 100 + 1
    frames = np.stack([disc * (1 + t) for t in range(6)])
    out = canonical(UnitPixels(frames, (2.0, 2.0)), cfg)
    assert out.shape == (8, 64, 64) and cfg.channels == 8 and cfg.views == 2
    whole, zoomed = out[:4], out[4:]
    one_scale = PreprocessConfig(frames=4, size=64, centre_crop=0.0)
    assert np.allclose(whole, canonical(UnitPixels(frames, (2.0, 2.0)), one_scale))

    def width(img):
        return int((img[32] > 0.5).sum())

    assert abs(width(zoomed[0]) - 2 * width(whole[0])) <= 2
    squeezed = canonical(UnitPixels(frames[:, :, ::2], (2.0, 4.0)), cfg)  # half the columns, twice as wide
    assert abs(width(squeezed[4]) - width(zoomed[0])) <= 2
    with pytest.raises(ValueError, match="centre_crop"):  # refused by the config, before any unit is read
        PreprocessConfig(centre_crop=1.5)


def test_the_cine_roll_keeps_the_frames_of_each_scale_together():
    import torch

    from deepmcat.augment import augment
    from deepmcat.config import AugmentConfig

    still = AugmentConfig(rotate_deg=0.0, crop_area=(1.0, 1.0), crop_aspect=(1.0, 1.0), gamma=(1.0, 1.0), bias=0.0,
                          noise=0.0, roll_frames=1.0)
    x = torch.arange(8, dtype=torch.float32).repeat(6, 1)[:, :, None, None].expand(6, 8, 4, 4) / 8 + 0.01
    rolled = augment(x.contiguous(), still, torch.Generator().manual_seed(1), views=2)[:, :, 2, 2]
    for row in rolled:
        first, second = row[:4], row[4:]
        assert sorted(first.tolist()) == pytest.approx(sorted(x[0, :4, 0, 0].tolist()), abs=1e-4)
        assert torch.allclose(second - first, torch.full((4,), 0.5), atol=1e-4)  # the same shift in both
