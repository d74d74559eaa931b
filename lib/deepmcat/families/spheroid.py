"""The "spheroid" phantom family, written on 2026-12-08 apart from the classic, torso, blob, contour and shell
families, to be held out from the choices made after it. The left ventricle is a truncated prolate spheroid
whose wall thickens as it contracts, the right ventricle a crescent wrapped round it, the aorta a tube with a
real arch (a half torus) that a sagittal-oblique "candy cane" cine follows, inside a chest with arms beside it.
Contrast is computed at 3 T from T1 / T2 / proton density, with gadolinium shortening T1 by its concentration
(late enhancement, and a first-pass perfusion series whose blood and muscle brighten in turn). Images are made
in k-space: the acquired matrix is a central part of the displayed one (zero-filled interpolation, Gibbs
ringing), some acquisitions are partial-Fourier, and the noise is complex (Rician in magnitude, a random
phase outside the body in velocity images). Categories the other families lack: the aortic arch cine and
T2-prepared images of one slice; first-pass perfusion (3 slices, one image a heartbeat, drifting with breathing)
and a derived T1 map (pixel values in ms, one or three slices) are drawn here from the contrast agent's
kinetics and the tissues' T1. Vendor G writes the short-axis cine a series per slice, flow magnitude and phase as two series
and LGE as one stack; vendor H writes the cine stack as one series, flow as one series of two image types,
perfusion as multi-frame files and LGE a series per slice, with 16-bit pixels.

Coordinates are patient LPS millimetres (x to the patient's left, y posterior, z superior).
"""

from __future__ import annotations

import numpy as np

from deepmcat.families.torso import Plane, Series

CATEGORIES = ("sax_cine", "two_chamber", "three_chamber", "four_chamber", "arch_cine", "flow_magnitude",
              "flow_phase", "perfusion", "t2_prep", "t1_map", "lge", "scout")
#: tissue: (T1 ms, T2 ms, proton density) at 3 T, and the gadolinium concentration (mM) ten minutes after
#: injection (extracellular space: scar holds most, blood has washed out)
TISSUE = {"air": (1.0, 1.0, 0.0, 0.0), "fat": (380.0, 130.0, 0.9, 0.05), "muscle": (1420.0, 32.0, 0.7, 0.1),
          "lung": (1500.0, 30.0, 0.12, 0.1), "liver": (810.0, 34.0, 0.72, 0.2), "bone": (700.0, 40.0, 0.35, 0.05),
          "myo": (1200.0, 45.0, 0.76, 0.15), "blood": (1900.0, 270.0, 0.92, 0.35), "scar": (1250.0, 60.0, 0.8, 0.6)}
#: gadolinium relaxivity, per mM per ms
R1 = 0.0045
DESCRIPTIONS = {
    "G": {"sax_cine": "cine_tfi_sax_retro", "two_chamber": "cine_tfi_2ch", "three_chamber": "cine_tfi_3ch",
          "four_chamber": "cine_tfi_4ch", "arch_cine": "cine_tfi_candycane", "flow_magnitude": "flow_AAo_venc150",
          "flow_phase": "flow_AAo_venc150_P", "perfusion": "perf_SR_3sl", "t2_prep": "T2prep_bSSFP",
          "t1_map": "MOLLI_T1MAP", "lge": "PSIR_MAG_sax", "scout": "AAhead_scout"},
    "H": {"sax_cine": "FIESTA CINE SA", "two_chamber": "FIESTA 2CV", "three_chamber": "FIESTA 3CV",
          "four_chamber": "FIESTA 4CV", "arch_cine": "FIESTA AO ARCH", "flow_magnitude": "2D PC Ao",
          "flow_phase": "2D PC Ao", "perfusion": "FGRE perf", "t2_prep": "T2 map prep", "t1_map": "T1 map",
          "lge": "MDE SA", "scout": "3pl loc"},
}
MAGNITUDE = ["ORIGINAL", "PRIMARY", "M", "ND"]


def _unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def _inside(level: np.ndarray, size: float, edge: float = 1.2) -> np.ndarray:
    """Soft indicator of ``level`` < 1 (a normalised shape function) for a shape of ``size`` mm."""
    return 1 / (1 + np.exp(np.clip((level - 1) * size / edge, -40, 40)))


def _segment_distance(p: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    d = end - start
    s = np.clip(((p - start) @ d) / float(d @ d), 0, 1)
    return np.linalg.norm(p - start - s[..., None] * d, axis=-1)


def contraction(t) -> np.ndarray:
    """Share of systolic contraction at cardiac phase t in [0, 1): zero from 0.7 of the cycle on."""
    t = np.asarray(t, float)
    return np.where(t < 0.7, np.sin(np.pi * t / 0.7) ** 2, 0.0)


class Heart:
    """One subject's chest and heart (LPS mm): the left ventricle's base centre, its long axis (base to apex)
    and the septal direction (toward the right ventricle)."""

    def __init__(self, rng: np.random.Generator):
        self.chest = (rng.uniform(150, 190), rng.uniform(100, 130))
        self.fat = rng.uniform(5, 20)
        self.arms = rng.random() < 0.6
        self.base = np.array([18.0, -20.0, 0.0]) + rng.normal(0, 5, 3)
        self.long = _unit(np.array([0.6, -0.45, -0.6]) + rng.normal(0, 0.08, 3))
        toward_rv = np.array([-0.75, -0.55, 0.3])
        self.septal = _unit(toward_rv - self.long * (toward_rv @ self.long))
        self.length = rng.uniform(75, 95)
        self.radius = rng.uniform(22, 30)
        self.wall = rng.uniform(7, 11)
        self.scar = rng.uniform(0, 2 * np.pi) if rng.random() < 0.7 else None
        self.root = self.base + self.septal * 0.45 * self.radius - self.long * 6 + np.array([0, -6.0, 4.0])
        self.ascending = _unit(np.array([-0.2, -0.25, 1.0]) + rng.normal(0, 0.05, 3))
        self.aorta_r = rng.uniform(13, 17)
        self.arch_top = self.root + self.ascending * rng.uniform(45, 65)
        self.arch_dir = _unit(np.array([0.35, 1.0, 0.0]) + rng.normal(0, 0.1, 3) * [1, 1, 0])
        self.arch_r = rng.uniform(22, 30)
        self.arch_centre = self.arch_top + self.arch_dir * self.arch_r
        self.pulmonary = (self.base + self.septal * 1.1 * self.radius - self.long * 4 + np.array([0, -14.0, 0]),
                          _unit(np.array([0.45, 0.5, 0.75])))

    @property
    def across(self) -> np.ndarray:
        return np.cross(self.long, self.septal)

    def body(self, p: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """The still tissues at points ``p`` (..., 3), painted in order."""
        a, b = self.chest
        x, y, z = p[..., 0], p[..., 1], p[..., 2]
        layers = [("fat", _inside(np.hypot(x / a, y / b), min(a, b))),
                  ("muscle", _inside(np.hypot(x / (a - self.fat), y / (b - self.fat)), min(a, b)))]
        if self.arms:
            for side in (-1, 1):
                r = np.hypot(x - side * (a + 48), y)
                layers += [("fat", _inside(r / 40, 40)), ("muscle", _inside(r / 33, 33)), ("bone", _inside(r / 9, 9))]
        for side in (-1, 1):
            lung = np.sqrt(((x - side * 0.45 * a) / (0.36 * a)) ** 2 + ((y - 10) / (0.7 * b)) ** 2
                           + ((z - 30) / 120) ** 2)
            layers.append(("lung", _inside(lung, 0.36 * a)))
        liver = np.sqrt(((x + 40) / 105) ** 2 + ((y - 5) / (0.75 * b)) ** 2 + ((z + 115) / 75) ** 2)
        layers += [("liver", _inside(liver, 75)), ("bone", _inside(np.hypot(x, y - (b - 32)) / 17, 17))]
        return layers

    def heart(self, p: np.ndarray, t: float) -> list[tuple[str, np.ndarray]]:
        """The heart and great vessels at phase t, as (tissue, mask) layers; the cavities are named
        ``blood_rv`` and ``blood_lv`` so that first-pass perfusion can fill them in turn."""
        c = contraction(t)
        q = p - self.base
        along = q @ self.long
        side = q @ self.septal
        across = q @ self.across
        radial = np.hypot(side, across)
        length, radius = self.length * (1 - 0.12 * c), self.radius * (1 - 0.33 * c)
        wall = self.wall * (1 + 0.5 * c)
        epi = _inside(np.hypot(along / (length + wall), radial / (radius + wall)), radius + wall) * (along > -3)
        endo = _inside(np.hypot(along / length, radial / radius), radius) * (along > 0)
        rv_side = side - 0.9 * self.radius
        rv = _inside(np.sqrt((along / (0.8 * length)) ** 2 + (rv_side / (1.55 * radius + 4)) ** 2
                             + (across / (1.3 * radius + 4)) ** 2), radius) * (along > -2)
        rv_wall = _inside(np.sqrt((along / (0.8 * length + 3)) ** 2 + (rv_side / (1.55 * radius + 7)) ** 2
                                  + (across / (1.3 * radius + 7)) ** 2), radius) * (along > -4)
        atrium_r = 21 * (1 + 0.15 * c)
        la = _inside(np.linalg.norm(p - (self.base - self.long * 24 + np.array([0, 22.0, 6.0])), axis=-1) / atrium_r,
                     atrium_r)
        ra = _inside(np.linalg.norm(p - (self.base - self.long * 18 + self.septal * 1.5 * self.radius), axis=-1)
                     / atrium_r, atrium_r)
        layers = [("myo", rv_wall * (1 - epi)), ("blood_rv", rv * (1 - epi)), ("myo", epi), ("blood_lv", endo),
                  ("blood", la), ("blood", ra)]
        if self.scar is not None:
            angle = np.arctan2(across, side)
            patch = np.exp(-((np.angle(np.exp(1j * (angle - self.scar)))) / 0.45) ** 2) * (along > 0.3 * length)
            layers.append(("scar", epi * (1 - endo) * patch))
        return layers + [("blood", v) for v in self.vessels(p)]

    def vessels(self, p: np.ndarray) -> list[np.ndarray]:
        """Masks of the ascending aorta, its arch, the descending aorta and the pulmonary trunk."""
        r = self.aorta_r
        ascending = _inside(_segment_distance(p, self.root, self.arch_top) / r, r)
        q = p - self.arch_centre
        up = np.array([0.0, 0.0, 1.0])
        u1, u2 = q @ -self.arch_dir, q @ up
        normal = _unit(np.cross(self.arch_dir, up))
        ring = np.hypot(np.hypot(u1, u2) - self.arch_r, q @ normal)
        arch = _inside(np.where(u2 >= 0, ring, 1e3) / r, r)
        top = self.arch_centre + self.arch_dir * self.arch_r
        descending = _inside(_segment_distance(p, top, top - up * 260) / (0.8 * r), 0.8 * r)
        start, direction = self.pulmonary
        trunk = _inside(_segment_distance(p, start, start + direction * 40) / 12.0, 12.0)
        return [ascending, arch, descending, trunk]


def relaxation(tissue: str, gadolinium: float = 0.0) -> tuple[float, float, float]:
    """(T1, T2, proton density) of a tissue (``blood_lv`` and ``blood_rv`` are blood) at a gadolinium
    concentration in mM."""
    t1, t2, pd, _ = TISSUE["blood" if tissue.startswith("blood") else tissue]
    return 1 / (1 / t1 + R1 * gadolinium), t2, pd


def signal(sequence: str, t1: float, t2: float, pd: float, *, flip: float = 50.0, ti: float = 0.0,
           prep: float = 0.0) -> float:
    """Signal of a tissue: bSSFP, spoiled gradient echo, inversion recovery (magnitude), saturation recovery
    (perfusion, ``ti`` the saturation delay) and T2-prepared bSSFP (``prep`` ms of T2 preparation)."""
    a = np.deg2rad(flip)
    if sequence == "bssfp":
        return pd * np.sin(a) / (1 + np.cos(a) + (1 - np.cos(a)) * t1 / t2)
    if sequence == "gre":
        e1 = np.exp(-6.0 / t1)
        return pd * np.sin(a) * (1 - e1) / (1 - np.cos(a) * e1)
    if sequence == "ir":
        return abs(pd * (1 - 2 * np.exp(-ti / t1)))
    if sequence == "sr":
        return pd * (1 - np.exp(-ti / t1))
    if sequence == "t2prep":
        return pd * np.exp(-prep / t2) * (0.4 + 0.6 * (1 - np.exp(-1500 / t1)))
    raise ValueError(f"unknown sequence {sequence!r}")


def contrast(sequence: str, gadolinium: dict[str, float] | None = None, **kw) -> dict[str, float]:
    """Every tissue's signal for one sequence (``gadolinium``: mM per tissue, default none)."""
    gadolinium = gadolinium or {}
    names = [*TISSUE, "blood_lv", "blood_rv"]
    return {n: (signal(sequence, *relaxation(n, gadolinium.get(n, 0.0)), **kw) if n != "air" else 0.0) for n in names}


def _paint(image: np.ndarray, layers, values: dict[str, float]) -> np.ndarray:
    for tissue, mask in layers:
        image = image * (1 - mask) + values[tissue] * mask
    return image


def render(heart: Heart, plane: Plane, phases, values, offset=None) -> np.ndarray:
    """(frames, rows, cols) true signal; ``values`` one contrast for all frames or one per frame, ``offset``
    (frames, 3) a breathing shift of the anatomy per frame."""
    points = plane.points()
    frames, still = [], None
    for f, t in enumerate(phases):
        p = points if offset is None else points - offset[f]
        v = values[f] if isinstance(values, list) else values
        if still is None or offset is not None or isinstance(values, list):
            still = _paint(np.zeros(plane.shape), heart.body(p), v)
        frames.append(_paint(still, heart.heart(p, t), v))
    return np.stack(frames)


class Receiver:
    """One acquisition's k-space: the central share of lines kept in each direction (zero-filled to the
    displayed matrix), optional partial Fourier along the phase-encoding rows, complex noise, a coil bias."""

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int], snr: float, kept=(0.5, 0.9)):
        self.rng, self.snr = rng, snr
        rows, cols = shape
        keep_r, keep_c = int(rows * rng.uniform(*kept)), int(cols * rng.uniform(max(kept[0], 0.6), 1.0))
        mask = np.zeros(shape, bool)
        r0, c0 = (rows - keep_r) // 2, (cols - keep_c) // 2
        mask[r0:r0 + keep_r, c0:c0 + keep_c] = True
        if rng.random() < 0.4:  # partial Fourier: the first eighth to quarter of the kept rows not acquired
            mask[r0:r0 + int(keep_r * rng.uniform(0.12, 0.25))] = False
        self.mask = np.fft.ifftshift(mask)
        y, x = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
        self.bias = np.exp(rng.uniform(-0.3, 0.3) * x + rng.uniform(-0.3, 0.3) * y - rng.uniform(0, 0.4) * y * y)

    def __call__(self, images: np.ndarray, phase: np.ndarray | None = None) -> np.ndarray:
        """Magnitude images, or with ``phase`` (radians, per pixel) the complex images."""
        signal = images * self.bias
        if phase is not None:
            signal = signal * np.exp(1j * phase)
        kspace = np.fft.fft2(signal, axes=(-2, -1))
        sigma = float(np.percentile(np.abs(images), 99)) / self.snr * np.sqrt(images[0].size / self.mask.sum())
        scale = sigma * np.sqrt(images[0].size)
        noise = self.rng.normal(0, scale, kspace.shape) + 1j * self.rng.normal(0, scale, kspace.shape)
        out = np.fft.ifft2((kspace + noise) * self.mask, axes=(-2, -1))
        return out if phase is not None else np.abs(out).astype(np.float32)


def _plane(centre, normal, down, rng: np.random.Generator, fov: tuple[float, float], vendor: str,
           turn: float = 10.0) -> Plane:
    """A plane through ``centre`` whose image columns run along ``down``, turned by up to ``turn`` degrees;
    vendor G displays 192 or 256 columns, vendor H 224 or 256, with a rectangular field of view."""
    normal = _unit(normal)
    col = _unit(np.asarray(down, float) - normal * (np.asarray(down, float) @ normal))
    row = np.cross(col, normal)
    a = np.deg2rad(rng.uniform(-turn, turn))
    row, col = np.cos(a) * row + np.sin(a) * col, -np.sin(a) * row + np.cos(a) * col
    cols = int(rng.choice((192, 256) if vendor == "G" else (224, 256)))
    rows = int(round(cols * rng.uniform(0.7, 0.9) / 16) * 16)
    return Plane(np.asarray(centre, float) + rng.normal(0, 6, 3), row, col, (rows, cols), rng.uniform(*fov) / cols)


def _first_pass(dynamics: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Gadolinium (mM) per dynamic in the right and left ventricular blood and the myocardium: gamma-variate
    boluses, the left one a few beats after the right, muscle a damped copy of the left."""
    def bolus(start: float, peak: float) -> np.ndarray:
        k = np.clip(np.arange(dynamics) - start, 0, None) / 3.0
        return peak * k ** 2 * np.exp(2 - k) / 4  # 1 at its peak, two time constants after the start

    arrival = rng.uniform(3, 7)
    right = bolus(arrival, rng.uniform(5, 8))
    left = bolus(arrival + rng.uniform(3, 5), rng.uniform(4, 6))
    muscle = 0.15 * bolus(arrival + rng.uniform(5, 7), 1.0) * left.max() + 0.02 * np.arange(dynamics) / dynamics
    return {"blood_rv": right, "blood_lv": left, "myo": muscle, "scar": 0.5 * muscle,
            "blood": 0.6 * left + 0.4 * right}


def subject_series(seed: int, subject: int, balanced: bool) -> list[Series]:
    """All series of one spheroid-family subject; deterministic in (seed, subject)."""
    rng = np.random.default_rng([seed, subject, 2612])
    heart = Heart(rng)
    vendor = "G" if rng.random() < 0.5 else "H"
    names = DESCRIPTIONS[vendor]
    storage = "12bit" if vendor == "G" else "16bit"
    rr = 60000 / rng.uniform(50, 95)
    snr = rng.uniform(15, 40)
    u, s, w = heart.long, heart.septal, heart.across
    n_cine = 25 if vendor == "G" else int(rng.choice((20, 24, 30)))
    phases = np.arange(n_cine) / n_cine
    cine_values = contrast("bssfp", flip=rng.uniform(40, 60))
    out: list[Series] = []

    def want(p: float) -> bool:
        return balanced or rng.random() < p

    def series(category, planes, phases_, values, trigger, *, image_type=MAGNITUDE, kept=(0.5, 0.9), offset=None,
               **kw) -> Series:
        images = []
        for plane in planes:
            receive = Receiver(rng, plane.shape, snr, kept)
            images.append(receive(render(heart, plane, phases_, values, offset)))
        return Series(category, names[category], planes, images, np.asarray(trigger, float), list(image_type),
                      storage=storage, **kw)

    def sax() -> Plane:
        """A short-axis plane through the middle of the left ventricle (its own matrix and turn)."""
        return _plane(heart.base + u * 0.5 * heart.length, u, -w + 0.3 * s, rng, (320, 400), vendor)

    cine_trigger = phases * rr
    n_sax = 1 if balanced else int(rng.integers(8, 14))
    first = sax()
    gap = heart.length * 0.9 / max(n_sax - 1, 1)
    stack = [first.shifted((k - (n_sax - 1) / 2) * gap) for k in range(n_sax)] if n_sax > 1 else [first]
    if vendor == "G":  # a series per short-axis slice
        out += [series("sax_cine", [plane], phases, cine_values, cine_trigger) for plane in stack]
    else:
        out.append(series("sax_cine", stack, phases, cine_values, cine_trigger))
    centre = heart.base + u * 0.45 * heart.length
    towards_aorta = heart.root - centre
    long_axis = {"two_chamber": s, "four_chamber": w,
                 "three_chamber": np.cross(u, _unit(towards_aorta - u * (towards_aorta @ u)))}
    for category, normal in long_axis.items():
        if want(0.9):
            out.append(series(category, [_plane(centre, normal, u, rng, (320, 400), vendor)], phases, cine_values,
                              cine_trigger))
    if want(0.5):  # the arch in one sagittal-oblique plane, head up
        normal = np.cross(heart.arch_dir, [0.0, 0.0, 1.0])
        plane = _plane(heart.arch_centre - np.array([0, 0, 30.0]), normal, [0.0, 0.0, -1.0], rng, (340, 420), vendor)
        out.append(series("arch_cine", [plane], phases, cine_values, cine_trigger))
    # through-plane flow in the ascending aorta: magnitude brightened by inflow, velocity as phase
    n_flow = int(rng.integers(20, 36))
    flow_t = np.arange(n_flow) / n_flow
    plane = _plane(heart.root + heart.ascending * 25, heart.ascending, [0.0, 1.0, 0.0], rng, (300, 360), vendor, 20)
    points = plane.points()
    true = render(heart, plane, flow_t, contrast("gre", flip=15))
    up, down = (heart.vessels(points)[k] for k in (0, 2))
    systole = np.exp(-((flow_t - 0.25) / 0.12) ** 2)[:, None, None] * rng.uniform(0.5, 0.85)
    velocity = systole * (up - 0.65 * down)[None]  # of VENC
    complex_images = Receiver(rng, plane.shape, snr, (0.5, 0.8))(true * (1 + 1.5 * np.abs(velocity)),
                                                                 np.pi * velocity)
    group = f"flow-{subject}" if vendor == "H" else None
    out.append(Series("flow_magnitude", names["flow_magnitude"], [plane],
                      [np.abs(complex_images).astype(np.float32)], flow_t * rr, list(MAGNITUDE), group=group,
                      storage=storage))
    phase = (np.angle(complex_images) / np.pi).astype(np.float32)
    out.append(Series("flow_phase", names["flow_phase"], [plane], [phase], flow_t * rr,
                      ["ORIGINAL", "PRIMARY", "P", "ND"], signed=True, group=group, storage=storage))
    mid = sax()
    if want(0.35):  # first pass: three slices, one saturation-recovery image per beat, breathing drift
        dynamics = int(rng.integers(40, 61))
        gd = _first_pass(dynamics, rng)
        values = [contrast("sr", {k: v[d] for k, v in gd.items()}, ti=rng.uniform(90, 120)) for d in range(dynamics)]
        breathing = np.zeros((dynamics, 3))
        breathing[:, 2] = 7 * np.sin(2 * np.pi * np.arange(dynamics) / rng.uniform(3.5, 5.5))
        middle = sax()
        planes = [middle.shifted(k * 0.25 * heart.length) for k in (-1, 0, 1)]
        out.append(series("perfusion", planes, np.full(dynamics, 0.3), values, [0.3 * rr], kept=(0.45, 0.6),
                          offset=breathing, multiframe=vendor == "H"))
    if want(0.35):  # T2-prepared bSSFP of one mid slice at rising preparation times
        preps = (0.0, 25.0, 55.0) if vendor == "G" else (0.0, 20.0, 40.0, 60.0)
        values = [contrast("t2prep", prep=p) for p in preps]
        out.append(series("t2_prep", [mid], np.full(len(preps), 0.75), values, [0.75 * rr]))
    if want(0.5):  # the T1 map derived from a MOLLI fit: pixels are T1 in ms, air zero
        values = {n: (relaxation(n)[0] / 3000 if n != "air" else 0.0) for n in [*TISSUE, "blood_lv", "blood_rv"]}
        planes = [mid] if vendor == "G" else [mid.shifted(k * 0.25 * heart.length) for k in (-1, 0, 1)]
        out.append(series("t1_map", planes, [0.75], values, [0.75 * rr], image_type=["DERIVED", "PRIMARY", "MAP", "T1"],
                          kept=(0.7, 0.9)))
    if want(0.4):  # late enhancement: inversion time nulling the myocardium, ten minutes after gadolinium
        gd = {n: TISSUE["blood" if n.startswith("blood") else n][3] for n in [*TISSUE, "blood_lv", "blood_rv"]}
        ti = relaxation("myo", gd["myo"])[0] * np.log(2) * rng.uniform(0.92, 1.08)
        values = contrast("ir", gd, ti=ti)
        n_lge = 1 if balanced else int(rng.integers(6, 12))
        lge_first = sax()
        lge_gap = heart.length * 0.85 / max(n_lge - 1, 1)
        planes = [lge_first.shifted((k - (n_lge - 1) / 2) * lge_gap) for k in range(n_lge)]
        if vendor == "G":
            out.append(series("lge", planes, [0.7], values, [0.7 * rr]))
        else:  # a series per slice, one image each
            out += [series("lge", [plane], [0.7], values, [0.7 * rr]) for plane in planes]
    # scout: a large field of view through the chest in the three main planes
    pilots = []
    per_plane = 1 if vendor == "G" or balanced else 3
    for normal, down in (([0, 0, 1.0], [0, 1.0, 0]), ([0, 1.0, 0], [0, 0, -1.0]), ([1.0, 0, 0], [0, 0, -1.0])):
        base = _plane(heart.base, normal, down, rng, (420, 500), vendor, 0)
        pilots += [base.shifted((k - (per_plane - 1) / 2) * 15) for k in range(per_plane)]
    out.append(series("scout", pilots, [0.0], contrast("bssfp", flip=30), [0.0], kept=(0.4, 0.6)))
    return out
