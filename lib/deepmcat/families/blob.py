"""The "blob" phantom family, written apart from the classic and torso families: each view is drawn in 2-D
from soft-edged Gaussian blobs over a textured body (no 3-D model), with intensities from a per-subject
random tissue lookup per contrast, Gaussian (not Rician) noise with motion ghosts, 16-bit storage, signed
phase pixels, 10-50 frames and fields of view of 250-450 mm. Series structure: multi-frame files per slice
position for cine, one file per image otherwise; flow magnitude and phase in one series; five-slice scouts.
Held out until 2026-12-07 (nothing in the defaults was chosen on it before), a design family since.
"""

from __future__ import annotations

import numpy as np

from deepmcat.families.torso import Plane, Series

CATEGORIES = ("sa_cine", "two_chamber", "three_chamber", "four_chamber", "lvot", "flow_mag", "flow_vel",
              "tag_grid", "t1_mapping", "late_enhancement", "scout", "aorta_cine")
#: tissues drawn, and per contrast a (low, high) range of each one's relative intensity
TISSUE_RANGES = {
    "bright_blood": {"body": (0.25, 0.4), "fat": (0.7, 0.9), "blood": (0.85, 1.0), "myo": (0.15, 0.28)},
    "dark_blood": {"body": (0.3, 0.45), "fat": (0.8, 1.0), "blood": (0.02, 0.08), "myo": (0.35, 0.5)},
    "gradient": {"body": (0.3, 0.4), "fat": (0.5, 0.7), "blood": (0.4, 0.6), "myo": (0.25, 0.35)},
    "enhanced": {"body": (0.2, 0.3), "fat": (0.5, 0.7), "blood": (0.45, 0.6), "myo": (0.0, 0.05)},
}


def _grid(shape: tuple[int, int], fov: float) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = shape
    spacing = fov / cols
    y = (np.arange(rows) - rows / 2) * spacing
    x = (np.arange(cols) - cols / 2) * spacing
    return np.meshgrid(y, x, indexing="ij")


def _blob(y, x, cy, cx, ry, rx, angle=0.0, edge=2.0) -> np.ndarray:
    """A soft-edged ellipse (1 inside, 0 outside, ``edge`` mm of transition)."""
    c, s = np.cos(angle), np.sin(angle)
    u, v = (x - cx) * c + (y - cy) * s, -(x - cx) * s + (y - cy) * c
    r = np.sqrt((u / rx) ** 2 + (v / ry) ** 2)
    return 1 / (1 + np.exp((r - 1) * min(rx, ry) / edge))


def _texture(shape, rng, scale: float) -> np.ndarray:
    """Smooth random texture: white noise low-passed in the Fourier domain."""
    noise = rng.standard_normal(shape)
    fy, fx = np.meshgrid(np.fft.fftfreq(shape[0]), np.fft.fftfreq(shape[1]), indexing="ij")
    smooth = np.real(np.fft.ifft2(np.fft.fft2(noise) * np.exp(-(fy**2 + fx**2) * (scale**2))))
    return smooth / (smooth.std() + 1e-6)


class View:
    """One subject's drawing of one view: what is where, and how it beats."""

    def __init__(self, kind: str, rng: np.random.Generator, subject: dict):
        self.kind, self.subject = kind, subject
        self.fov = rng.uniform(250, 450)
        cols = int(rng.choice([96, 128, 160, 192, 224, 256]))
        self.shape = (int(round(cols * rng.uniform(0.7, 1.0) / 4) * 4), cols)
        self.angle = rng.uniform(-np.pi, np.pi)
        self.offset = rng.normal(0, 15, 2)
        self.texture = _texture(self.shape, rng, rng.uniform(20, 60))

    def draw(self, phase: float, intensity: dict[str, float]) -> np.ndarray:
        y, x = _grid(self.shape, self.fov)
        s = self.subject
        squeeze = np.sin(np.pi * phase) ** 2
        img = intensity["body"] * (1 + 0.08 * self.texture) * _blob(y, x, 0, 0, s["body"][0], s["body"][1], edge=3)
        img += (intensity["fat"] - intensity["body"]) * (
            _blob(y, x, 0, 0, s["body"][0], s["body"][1], edge=2)
            - _blob(y, x, 0, 0, s["body"][0] - s["fat"], s["body"][1] - s["fat"], edge=2))
        cy, cx = self.offset
        a = self.angle
        r = s["heart"] * (1 - 0.25 * squeeze)
        wall = s["wall"] * (1 + 0.4 * squeeze)

        def chamber(dy, dx, ry, rx, angle=a):
            yy = cy + dy * np.cos(a) + dx * np.sin(a)
            xx = cx - dy * np.sin(a) + dx * np.cos(a)
            nonlocal img
            outer = _blob(y, x, yy, xx, ry + wall, rx + wall, angle)
            inner = _blob(y, x, yy, xx, ry, rx, angle)
            img = img * (1 - outer) + intensity["myo"] * (outer - inner) + intensity["blood"] * inner

        if self.kind == "sa":
            chamber(0, 0, r, r)
            chamber(0, r * 1.6, r * 0.8, r * 0.55)
        elif self.kind in ("two", "three", "four", "lvot"):
            long = s["length"] * (1 - 0.1 * squeeze)
            chamber(0, 0, long, r)
            if self.kind in ("four", "three"):
                chamber(-long * 0.9, r * 0.4, r * 0.75, r * 0.75)
            if self.kind == "four":
                chamber(r * 0.2, r * 1.8, long * 0.85, r * 0.6)
                chamber(-long * 0.9, r * 2.0, r * 0.7, r * 0.7)
            if self.kind in ("three", "lvot"):
                chamber(-long * 0.8, -r * 0.9, s["aorta"] * 2.2, s["aorta"], a + 0.6)
        elif self.kind in ("flow", "aorta"):
            grow = 1 + 0.15 * squeeze
            for dy, dx, k in ((0, 0, 1.0), (s["heart"] * 2.2, s["heart"] * 1.2, 0.8)):
                chamber(dy, dx, s["aorta"] * k * grow, s["aorta"] * k * grow)
        elif self.kind == "scout":
            chamber(0, 0, s["length"] * 1.2, s["heart"] * 1.4)
        return img.astype(np.float32)


def _degrade(images: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Intensity inhomogeneity, a faint motion ghost along the phase direction, Gaussian noise."""
    f, rows, cols = images.shape
    y = np.linspace(-1, 1, rows)[:, None]
    x = np.linspace(-1, 1, cols)[None, :]
    field_ = 1 + rng.uniform(-0.3, 0.3) * x + rng.uniform(-0.3, 0.3) * y + rng.uniform(-0.2, 0.2) * x * y
    out = images * field_
    out = out + rng.uniform(0, 0.12) * np.roll(out, rows // rng.integers(3, 6), axis=1)
    return np.abs(out + rng.normal(0, sigma, out.shape)).astype(np.float32)


def _planes(n: int, rng: np.random.Generator, view: View, normal=None) -> list[Plane]:
    normal = np.asarray(normal if normal is not None else rng.normal(0, 1, 3), float)
    normal /= np.linalg.norm(normal)
    helper = np.array([1.0, 0, 0]) if abs(normal[0]) < 0.9 else np.array([0, 1.0, 0])
    row = np.cross(helper, normal)
    row /= np.linalg.norm(row)
    col = np.cross(normal, row)
    gap = rng.uniform(7, 12)
    return [Plane(normal * gap * (k - (n - 1) / 2), row, col, view.shape, view.fov / view.shape[1])
            for k in range(n)]


def subject_series(seed: int, subject: int, balanced: bool) -> list[Series]:
    """All series of one blob-family subject; deterministic in (seed, subject)."""
    rng = np.random.default_rng([seed, subject, 31337])
    body = (rng.uniform(110, 150), rng.uniform(150, 210))
    s = {"body": body, "fat": rng.uniform(6, 20), "heart": rng.uniform(18, 28), "wall": rng.uniform(6, 11),
         "length": rng.uniform(40, 55), "aorta": rng.uniform(10, 16)}
    contrast = {name: {t: rng.uniform(*r) for t, r in ranges.items()} for name, ranges in TISSUE_RANGES.items()}
    sigma = rng.uniform(0.015, 0.05)
    rr = 60000 / rng.uniform(50, 100)
    n_cine = int(rng.integers(10, 51))
    out: list[Series] = []
    mag = ["ORIGINAL", "PRIMARY", "M", "NONE"]

    def cine(kind, category, n_slices, frames, tissue, multiframe=True, extra=None, normal=None):
        view = View(kind, rng, s)
        planes = _planes(n_slices, rng, view, normal)
        phases = np.arange(frames) / frames
        images = []
        for k in range(n_slices):
            stack = np.stack([view.draw(p, contrast[tissue]) for p in phases])
            if extra is not None:
                stack = extra(stack, view, phases)
            images.append(_degrade(stack * (1 - 0.1 * k / max(1, n_slices)), rng, sigma))
        out.append(Series(category, category.replace("_", " ").upper(), planes, images, phases * rr, list(mag),
                          multiframe=multiframe and frames > 1))

    def want(p):
        return balanced or rng.random() < p

    cine("sa", "sa_cine", 1 if balanced else int(rng.integers(8, 15)), n_cine, "bright_blood")
    for kind, category in (("two", "two_chamber"), ("three", "three_chamber"), ("four", "four_chamber"),
                           ("lvot", "lvot")):
        if want(0.85):
            cine(kind, category, 1, n_cine, "bright_blood")
    if want(0.7):
        cine("aorta", "aorta_cine", 1, int(rng.integers(10, 51)), "gradient", normal=[0, 0, 1.0])
    if want(0.5):
        spacing = rng.uniform(5, 8)

        def tags(stack, view, phases):
            y, x = _grid(view.shape, view.fov)
            lines = np.maximum(np.cos(np.pi * y / spacing) ** 8, np.cos(np.pi * x / spacing) ** 8)
            depth = 0.8 * np.exp(-phases * rr / 800)
            return stack * (1 - depth[:, None, None] * lines[None])

        cine("sa", "tag_grid", 1 if balanced else int(rng.integers(1, 4)), int(rng.integers(10, 30)), "gradient",
             multiframe=False, extra=tags)
    if want(0.45):
        n_ti = int(rng.integers(7, 12))
        view = View("sa", rng, s)
        ti = np.sort(rng.uniform(100, 4000, n_ti))
        t1 = {"body": 900, "fat": 280, "blood": 1500, "myo": 1000}
        frames = np.stack([view.draw(0.0, {t: contrast["gradient"][t] * abs(1 - 2 * np.exp(-x / t1[t]))
                                           for t in t1}) for x in ti])
        out.append(Series("t1_mapping", "T1 MAPPING", _planes(1, rng, view), [_degrade(frames, rng, sigma)], ti,
                          ["ORIGINAL", "PRIMARY", "M", "T1"]))
    if want(0.3):
        cine("sa", "late_enhancement", 1 if balanced else int(rng.integers(2, 9)), 1, "enhanced", multiframe=False)
    # flow: magnitude and signed velocity in one series
    view = View("flow", rng, s)
    n_flow = int(rng.integers(15, 45))
    phases = np.arange(n_flow) / n_flow
    planes = _planes(1, rng, view)
    magnitude = _degrade(np.stack([view.draw(p, contrast["gradient"]) for p in phases]), rng, sigma)
    y, x = _grid(view.shape, view.fov)
    cy, cx = view.offset
    lumen = _blob(y, x, cy, cx, s["aorta"], s["aorta"])
    curve = np.clip(np.sin(2 * np.pi * phases), 0, None) * rng.uniform(0.4, 0.9)
    velocity = curve[:, None, None] * lumen[None] + rng.normal(0, 0.04, magnitude.shape)
    velocity = np.where(magnitude > np.percentile(magnitude, 30), velocity, rng.uniform(-1, 1, magnitude.shape))
    out.append(Series("flow_mag", "FLOW AO", planes, [magnitude], phases * rr, list(mag), group=f"flow-{subject}"))
    out.append(Series("flow_vel", "FLOW AO", planes, [np.clip(velocity, -1, 1).astype(np.float32)], phases * rr,
                      ["ORIGINAL", "PRIMARY", "VELOCITY", "NONE"], signed=True, group=f"flow-{subject}"))
    # scout: five slices of one orientation, or one of each of three
    n_scout = 1 if balanced else 5
    cine("scout", "scout", n_scout, 1, "bright_blood", multiframe=False)
    for series in out:
        series.storage = "16bit"
    return out
