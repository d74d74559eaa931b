"""Synthetic cardiac MR series for demos, tests and benchmarks (UK Biobank-like protocol).

Every subject gets its own anatomy (body size, heart size, position, rotation, ejection fraction, heart
rate); every series its own matrix size, field of view, frame count, coil bias, noise level and, now and
then, an artefact (ghosting, wrap-around, banding, spike). Categories differ by anatomy, plane, contrast and
dynamics, not by image size or frame count: those are drawn from ranges shared across categories.

The renderer paints soft-edged ellipses (partial volume) in anatomical millimetres onto the image grid;
static tissue is painted once per series and the beating heart once per frame inside its bounding box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

CATEGORIES: tuple[str, ...] = (
    "cine_sax",
    "cine_2ch",
    "cine_3ch",
    "cine_4ch",
    "cine_lvot",
    "flow_magnitude",
    "flow_phase",
    "tagging_sax",
    "t1_map",
    "scout",
    "aortic_distensibility",
    "lge",
)

# tissue intensities per contrast (arbitrary units; t1map in milliseconds)
CONTRASTS: dict[str, dict[str, float]] = {
    "ssfp": dict(air=0, fat=0.85, muscle=0.28, lung=0.04, liver=0.32, blood=1.0, myo=0.22, spine=0.45, scar=0.22),
    "gre": dict(air=0, fat=0.7, muscle=0.3, lung=0.04, liver=0.3, blood=0.45, myo=0.3, spine=0.35, scar=0.3),
    "tag": dict(air=0, fat=0.6, muscle=0.35, lung=0.05, liver=0.35, blood=0.55, myo=0.4, spine=0.4, scar=0.4),
    "t1map": dict(air=0, fat=350, muscle=1000, lung=0, liver=650, blood=1550, myo=950, spine=700, scar=1300),
    "lge": dict(air=0, fat=0.8, muscle=0.25, lung=0.05, liver=0.35, blood=0.55, myo=0.03, spine=0.4, scar=0.9),
}


@dataclass
class Subject:
    """Per-subject anatomy, drawn once and shared by all of its series."""

    body_w: float
    body_d: float
    fat: float
    heart_scale: float
    heart_shift: tuple[float, float]
    heart_angle: float
    ef: float
    rr_ms: float
    has_scar: bool
    scar_angle: float


def draw_subject(rng: np.random.Generator) -> Subject:
    return Subject(
        body_w=rng.uniform(290, 390),
        body_d=rng.uniform(190, 260),
        fat=rng.uniform(6, 22),
        heart_scale=rng.normal(1.0, 0.09),
        heart_shift=(rng.normal(0, 12), rng.normal(0, 10)),
        heart_angle=rng.normal(0, 12),
        ef=rng.uniform(0.45, 0.7),
        rr_ms=rng.uniform(750, 1150),
        has_scar=bool(rng.random() < 0.35),
        scar_angle=rng.uniform(0, 360),
    )


@dataclass
class Ellipse:
    cx: float
    cy: float
    a: float
    b: float
    tissue: str
    angle: float = 0.0  # degrees
    edge: float = 1.2  # mm of partial volume


@dataclass
class Grid:
    """Anatomical millimetre coordinates of every pixel of an image after the in-plane pose."""

    x: np.ndarray
    y: np.ndarray
    spacing: tuple[float, float]
    pose: tuple[float, float, float]  # tx, ty, angle (deg)

    @classmethod
    def make(cls, rows: int, cols: int, spacing: tuple[float, float], pose: tuple[float, float, float]) -> "Grid":
        yy, xx = np.meshgrid(
            (np.arange(rows) - rows / 2) * spacing[0], (np.arange(cols) - cols / 2) * spacing[1], indexing="ij"
        )
        tx, ty, ang = pose
        c, s = math.cos(math.radians(ang)), math.sin(math.radians(ang))
        xx, yy = xx - tx, yy - ty
        return cls((c * xx + s * yy).astype(np.float32), (-s * xx + c * yy).astype(np.float32), spacing, pose)

    def window(self, e: Ellipse) -> tuple[slice, slice]:
        """Pixel rows/cols that can hold the ellipse (its bounding circle, mapped to the image)."""
        tx, ty, ang = self.pose
        c, s = math.cos(math.radians(ang)), math.sin(math.radians(ang))
        px, py = c * e.cx - s * e.cy + tx, s * e.cx + c * e.cy + ty
        radius = max(e.a, e.b) + 3 * e.edge
        rows, cols = self.x.shape
        r0 = int((py - radius) / self.spacing[0] + rows / 2)
        r1 = int((py + radius) / self.spacing[0] + rows / 2) + 2
        c0 = int((px - radius) / self.spacing[1] + cols / 2)
        c1 = int((px + radius) / self.spacing[1] + cols / 2) + 2
        return slice(max(r0, 0), max(min(r1, rows), 0)), slice(max(c0, 0), max(min(c1, cols), 0))


def paint(img: np.ndarray, grid: Grid, shapes: list[Ellipse], values: dict[str, float]) -> None:
    """Paint soft-edged ellipses in order (later ones cover earlier ones)."""
    for e in shapes:
        rs, cs = grid.window(e)
        if rs.start >= rs.stop or cs.start >= cs.stop:
            continue
        x, y = grid.x[rs, cs] - e.cx, grid.y[rs, cs] - e.cy
        c, s = math.cos(math.radians(e.angle)), math.sin(math.radians(e.angle))
        u, v = c * x + s * y, -s * x + c * y
        rho = np.sqrt((u / e.a) ** 2 + (v / e.b) ** 2)
        mask = np.clip(0.5 - (rho - 1.0) * (0.5 * (e.a + e.b)) / (2 * e.edge), 0.0, 1.0)
        region = img[rs, cs]
        region += mask * (values[e.tissue] - region)


# ------------------------------------------------------------------------------------------ anatomy


def contraction(t: float) -> float:
    """0 at end-diastole, 1 at end-systole (about a third into the cycle), smooth."""
    phase = (t % 1.0) / 0.38 if t % 1.0 < 0.38 else 1.0 - ((t % 1.0) - 0.38) / 0.62
    return 0.5 - 0.5 * math.cos(math.pi * max(0.0, min(1.0, phase)))


def torso(subj: Subject, level: str = "heart") -> list[Ellipse]:
    """Static cross-section of the chest: skin fat, muscle, lungs, spine, liver (lower levels)."""
    w, d = subj.body_w / 2, subj.body_d / 2
    shapes = [
        Ellipse(0, 0, w, d, "fat", edge=2),
        Ellipse(0, 0, w - subj.fat, d - subj.fat, "muscle", edge=2),
        Ellipse(-0.48 * w, 0.08 * d, 0.36 * w, 0.68 * d, "lung", angle=8),
        Ellipse(0.48 * w, 0.08 * d, 0.36 * w, 0.68 * d, "lung", angle=-8),
        Ellipse(0, 0.78 * d, 18, 16, "spine"),
    ]
    if level == "low":
        shapes.append(Ellipse(-0.35 * w, 0.25 * d, 0.45 * w, 0.55 * d, "liver", angle=-15))
    return shapes


def sax_heart(subj: Subject, t: float, level: float) -> list[Ellipse]:
    """Short-axis heart: LV ring and RV crescent; ``level`` 0 = base, 1 = apex."""
    k = subj.heart_scale * (1.0 - 0.55 * level**1.5)
    c = contraction(t)
    lv = 26 * k * (1 - 0.42 * subj.ef * c)
    wall = 8 * k * (1 + 0.45 * c)
    rv = 1.0 - 0.5 * level
    hx, hy = subj.heart_shift
    shapes = [
        Ellipse(hx - 28 * k, hy - 4, (lv + 16 * rv) * 1.25, (lv + 6) * 1.0, "myo", angle=-20),
        Ellipse(hx - 30 * k, hy - 4, (lv + 12 * rv) * 1.15, (lv + 2) * 0.85, "blood", angle=-20),
        Ellipse(hx, hy, lv + wall, lv + wall, "myo"),
        Ellipse(hx, hy, lv, lv * 0.97, "blood"),
    ]
    if subj.has_scar:
        a = math.radians(subj.scar_angle)
        shapes.append(Ellipse(hx + (lv + wall / 2) * math.cos(a), hy + (lv + wall / 2) * math.sin(a), wall * 0.6,
                              wall * 1.4, "scar", angle=subj.scar_angle + 90))
    # papillary muscles
    shapes += [Ellipse(hx + lv * 0.45, hy + lv * 0.4, 3.5 * k, 3.5 * k, "myo"),
               Ellipse(hx - lv * 0.2, hy + lv * 0.55, 3.5 * k, 3.5 * k, "myo")]
    return shapes


def lax_heart(subj: Subject, t: float, view: str) -> list[Ellipse]:
    """Long-axis views in a frame whose x runs base → apex; the pose rotates it into the image."""
    k = subj.heart_scale
    c = contraction(t)
    lv_len, lv_w = 48 * k * (1 - 0.18 * subj.ef * c), 22 * k * (1 - 0.4 * subj.ef * c)
    wall = 8 * k * (1 + 0.45 * c)
    atrium = 19 * k * (1 + 0.25 * c)
    sh: list[Ellipse] = []
    if view == "4ch":
        sh += [Ellipse(36 * k, 20 * k, lv_len + wall, lv_w + wall, "myo"),
               Ellipse(30 * k, -22 * k, lv_len * 0.85 + 4, lv_w * 0.8 + 4, "myo"),
               Ellipse(36 * k, 20 * k, lv_len, lv_w, "blood"),
               Ellipse(30 * k, -22 * k, lv_len * 0.85, lv_w * 0.8, "blood"),
               Ellipse(-24 * k, 20 * k, atrium + 2, atrium * 0.9 + 2, "myo"),
               Ellipse(-24 * k, -22 * k, atrium + 2, atrium * 0.95 + 2, "myo"),
               Ellipse(-24 * k, 20 * k, atrium, atrium * 0.9, "blood"),
               Ellipse(-24 * k, -22 * k, atrium, atrium * 0.95, "blood")]
    elif view == "2ch":
        sh += [Ellipse(36 * k, 0, lv_len + wall, lv_w + wall, "myo"),
               Ellipse(36 * k, 0, lv_len, lv_w, "blood"),
               Ellipse(-26 * k, 3, atrium + 2, atrium + 2, "myo"),
               Ellipse(-26 * k, 3, atrium, atrium, "blood"),
               Ellipse(-40 * k, 26 * k, 8, 6, "blood")]  # appendage/coronary sinus
    elif view == "3ch":
        sh += [Ellipse(36 * k, 6, lv_len + wall, lv_w + wall, "myo"),
               Ellipse(36 * k, 6, lv_len, lv_w, "blood"),
               Ellipse(-24 * k, 22 * k, atrium + 2, atrium * 0.85 + 2, "myo"),
               Ellipse(-24 * k, 22 * k, atrium, atrium * 0.85, "blood"),
               Ellipse(-22 * k, -16 * k, 30 * k, 12 * k, "blood", angle=-35),  # aortic root
               Ellipse(25 * k, -30 * k, 30 * k, 8 * k, "blood", angle=-10)]  # RV outflow sliver
    elif view == "lvot":
        sh += [Ellipse(34 * k, 0, lv_len * 0.95 + wall, lv_w + wall, "myo"),
               Ellipse(34 * k, 0, lv_len * 0.95, lv_w, "blood"),
               Ellipse(-42 * k, -8 * k, 55 * k, 13 * k, "blood", angle=-62),  # ascending aorta
               Ellipse(-20 * k, 24 * k, atrium * 0.8, atrium * 0.7, "blood"),
               Ellipse(-95 * k, -50 * k, 14 * k, 14 * k, "blood")]  # arch
    return sh


def great_vessels(subj: Subject, t: float, flow: bool) -> list[Ellipse]:
    """Transverse plane at the pulmonary artery: ascending and descending aorta, pulmonary trunk."""
    k = subj.heart_scale
    c = contraction(t)
    dist = 1.0 + 0.08 * c  # aortic distension in systole
    hx, hy = subj.heart_shift
    shapes = [Ellipse(hx + 5, hy - 30, 38 * k, 26 * k, "muscle"),  # mediastinal tissue
              Ellipse(hx - 6, hy - 20, 15 * k * dist, 15 * k * dist, "blood"),
              Ellipse(hx + 22, hy + 58, 11 * k * dist, 11 * k * dist, "blood"),
              Ellipse(hx + 28, hy - 38, 13 * k, 11 * k, "blood", angle=30)]
    if flow:  # slice through the atria below the valve
        shapes += [Ellipse(hx - 18, hy + 16, 20 * k, 14 * k, "blood"), Ellipse(hx + 24, hy + 18, 18 * k, 12 * k, "blood")]
    return shapes


def scout_shapes(subj: Subject, plane: str) -> list[Ellipse]:
    """Large-FOV localiser through the whole chest and upper abdomen."""
    w, d = subj.body_w / 2, subj.body_d / 2
    if plane == "axial":
        return torso(subj, "low") + [Ellipse(subj.heart_shift[0] + 10, -0.2 * d, 45, 38, "blood", angle=-30)]
    if plane == "coronal":
        return [Ellipse(0, 0, w, 260, "fat", edge=2), Ellipse(0, 0, w - subj.fat, 260 - subj.fat, "muscle", edge=2),
                Ellipse(-0.45 * w, -70, 0.38 * w, 120, "lung"), Ellipse(0.45 * w, -70, 0.38 * w, 120, "lung"),
                Ellipse(-0.3 * w, 110, 0.5 * w, 80, "liver"),
                Ellipse(0.12 * w + subj.heart_shift[0], 10, 55, 45, "myo", angle=-25),
                Ellipse(0.12 * w + subj.heart_shift[0], 10, 42, 33, "blood", angle=-25),
                Ellipse(0, -200, 50, 60, "muscle")]
    return [Ellipse(0, 0, d, 260, "fat", edge=2), Ellipse(0, 0, d - subj.fat, 260 - subj.fat, "muscle", edge=2),
            Ellipse(0.1 * d, -60, 0.6 * d, 120, "lung"), Ellipse(-0.35 * d, 20, 50, 42, "blood"),
            Ellipse(0.1 * d, 130, 0.7 * d, 70, "liver"), Ellipse(0.82 * d, 0, 14, 240, "spine")]


# --------------------------------------------------------------------------------------- acquisition


@dataclass
class SeriesSpec:
    """One series as it will be written: frames[slice][frame] images plus what the header needs."""

    category: str
    description: str
    images: np.ndarray  # (slices, frames, rows, cols) float32, physical values
    spacing: tuple[float, float]
    slice_gap: float
    plane: str
    image_type: list[str] = field(default_factory=lambda: ["ORIGINAL", "PRIMARY", "M", "ND"])
    signed: bool = False
    trigger_ms: np.ndarray | None = None
    #: series that share one SeriesInstanceUID (flow magnitude and phase)
    group: str | None = None


def _matrix(rng: np.random.Generator, fov_range: tuple[float, float]) -> tuple[int, int, tuple[float, float]]:
    cols = int(rng.choice([128, 144, 160, 176, 192, 208]))
    rows = int(round(cols * rng.uniform(0.75, 1.0) / 8) * 8)
    fov = rng.uniform(*fov_range)
    sp = fov / cols
    return rows, cols, (sp, sp)


def _finish(img: np.ndarray, rng: np.random.Generator, sigma: float, bias: np.ndarray, artefact: str) -> np.ndarray:
    """Coil bias, artefact, Rician noise on a (frames, rows, cols) magnitude stack."""
    out = img * bias
    if artefact == "ghost":
        out = out + 0.18 * np.roll(out, out.shape[1] // 3, axis=1)
    elif artefact == "wrap":
        out = out + 0.6 * np.roll(out, out.shape[2] // 2, axis=2) * (np.arange(out.shape[2]) < out.shape[2] // 6)
    elif artefact == "banding":
        rows = np.arange(out.shape[1])[None, :, None]
        out = out * (1 - 0.9 * np.exp(-((rows - rng.uniform(0.2, 0.8) * out.shape[1]) / 3.0) ** 2))
    elif artefact == "spike":
        yy, xx = np.mgrid[: out.shape[1], : out.shape[2]]
        out = out + 0.05 * np.cos(2 * math.pi * (xx * rng.uniform(0.05, 0.3) + yy * rng.uniform(0.05, 0.3)))
    n1 = rng.normal(0, sigma, out.shape).astype(np.float32)
    n2 = rng.normal(0, sigma, out.shape).astype(np.float32)
    return np.sqrt((out + n1) ** 2 + n2**2)


def _bias(grid: Grid, rng: np.random.Generator) -> np.ndarray:
    ang = rng.uniform(0, 2 * math.pi)
    rows, cols = grid.x.shape
    yy, xx = np.mgrid[:rows, :cols]
    cx, cy = cols / 2 + 0.7 * cols * math.cos(ang), rows / 2 + 0.7 * rows * math.sin(ang)
    width = rng.uniform(0.6, 1.1) * max(rows, cols)
    return (0.55 + 0.6 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * width**2))).astype(np.float32)


def render(
    subj: Subject, category: str, rng: np.random.Generator, n_slices: int = 1
) -> list[SeriesSpec]:
    """Render one acquisition of ``category`` for ``subj`` (two series for flow: magnitude and phase)."""
    cine = category not in ("t1_map", "scout", "lge")
    n_frames = int(rng.integers(12, 31)) if cine else 1
    times = np.arange(n_frames) / n_frames
    rows, cols, spacing = _matrix(rng, (280, 400) if category != "scout" else (380, 500))
    pose = (rng.normal(0, 10), rng.normal(0, 10), rng.normal(0, 8))
    artefact = str(rng.choice(["none"] * 7 + ["ghost", "wrap", "banding", "spike"]))
    sigma = float(rng.uniform(0.015, 0.05))
    contrast = {"flow_magnitude": "gre", "flow_phase": "gre", "tagging_sax": "tag", "t1_map": "t1map",
                "lge": "lge"}.get(category, "ssfp")
    values = CONTRASTS[contrast]
    lax_view = {"cine_2ch": "2ch", "cine_3ch": "3ch", "cine_4ch": "4ch", "cine_lvot": "lvot"}.get(category)
    lax_angle = {"2ch": 35, "3ch": 20, "4ch": 25, "lvot": 50}.get(lax_view or "", 0) + subj.heart_angle

    scout_planes = ["coronal", "sagittal", "axial"]
    stack = []
    for s in range(n_slices):
        level = s / max(1, n_slices - 1) if n_slices > 1 else float(rng.uniform(0.2, 0.7))
        if category == "scout":
            plane = scout_planes[s % 3]
            static, dynamic = scout_shapes(subj, plane), lambda t: []
        elif lax_view:
            static = torso(subj, "low")
            grid_pose = (subj.heart_shift[0], subj.heart_shift[1], lax_angle)
            dynamic = lambda t, v=lax_view, gp=grid_pose: [  # noqa: E731
                Ellipse(*_to_pose(e, gp), e.a, e.b, e.tissue, e.angle + gp[2], e.edge) for e in lax_heart(subj, t, v)]
        elif category in ("flow_magnitude", "flow_phase", "aortic_distensibility"):
            static = torso(subj)
            dynamic = lambda t, f=category != "aortic_distensibility": great_vessels(subj, t, f)  # noqa: E731
        else:
            static = torso(subj, "low" if level > 0.6 else "heart")
            dynamic = lambda t, lv=level: sax_heart(subj, t, lv)  # noqa: E731
        grid = Grid.make(rows, cols, spacing, pose)
        base = np.zeros((rows, cols), np.float32)
        paint(base, grid, static, values)
        frames = np.repeat(base[None], n_frames, axis=0)
        for f, t in enumerate(times):
            paint(frames[f], grid, dynamic(t), values)
        if category == "tagging_sax":
            lam = rng.uniform(6, 9)
            g = (0.5 + 0.5 * np.cos(2 * math.pi * grid.x / lam)) * (0.5 + 0.5 * np.cos(2 * math.pi * grid.y / lam))
            depth = 0.85 * np.exp(-times / 0.7)
            frames = frames * (1 - depth[:, None, None] * (1 - g[None] ** 0.5))
        if category in ("flow_magnitude", "flow_phase"):
            frames = _flow_inflow(frames, grid, subj, times)
        stack.append(frames)
    images = np.stack(stack)  # (slices, frames, rows, cols)
    bias = _bias(Grid.make(rows, cols, spacing, pose), rng)

    if contrast == "t1map":  # a fitted map: smooth, no Rician floor, values in ms, air masked to 0
        noisy = images + rng.normal(0, 25, images.shape).astype(np.float32) * (images > 0)
        images = np.clip(noisy, 0, 4000)
    else:
        images = np.stack([_finish(sl, rng, sigma, bias, artefact) for sl in images])
    trigger = times * subj.rr_ms
    desc = DESCRIPTIONS[category]
    spec = SeriesSpec(category, desc, images.astype(np.float32), spacing, 8.0 if n_slices > 1 else 0.0,
                      _PLANES[category], trigger_ms=trigger)
    if category == "flow_phase":
        spec.images = _phase_images(stack, grid, subj, times, rng, images)
        spec.signed = True
        spec.image_type = ["ORIGINAL", "PRIMARY", "P", "ND"]
    return [spec]


def _to_pose(e: Ellipse, pose: tuple[float, float, float]) -> tuple[float, float]:
    c, s = math.cos(math.radians(pose[2])), math.sin(math.radians(pose[2]))
    return c * e.cx - s * e.cy + pose[0], s * e.cx + c * e.cy + pose[1]


def _vessel_masks(grid: Grid, subj: Subject, t: float) -> tuple[np.ndarray, np.ndarray]:
    asc, desc = great_vessels(subj, t, True)[1:3]
    masks = []
    for e in (asc, desc):
        m = np.zeros(grid.x.shape, np.float32)
        paint(m, grid, [e], {e.tissue: 1.0})
        masks.append(m)
    return masks[0], masks[1]


def _velocity(t: np.ndarray) -> np.ndarray:
    return 0.1 + 0.85 * np.exp(-(((t - 0.18) / 0.09) ** 2))


def _flow_inflow(frames: np.ndarray, grid: Grid, subj: Subject, times: np.ndarray) -> np.ndarray:
    """Through-plane flow brightens the aorta in GRE magnitude images (inflow enhancement)."""
    out = frames.copy()
    for f, t in enumerate(times):
        asc, desc = _vessel_masks(grid, subj, t)
        out[f] += (asc + desc) * 0.5 * float(_velocity(np.array(t)))
    return out


def _phase_images(stack, grid: Grid, subj: Subject, times: np.ndarray, rng: np.random.Generator,
                  magnitude: np.ndarray) -> np.ndarray:
    """Signed velocity maps (-1..1 of VENC): still tissue ≈ 0, aorta ±v(t), noise ∝ 1/magnitude."""
    out = np.zeros_like(magnitude)
    for s in range(magnitude.shape[0]):
        for f, t in enumerate(times):
            asc, desc = _vessel_masks(grid, subj, t)
            v = float(_velocity(np.array(t)))
            mag = magnitude[s, f] / max(float(magnitude[s, f].max()), 1e-6)
            noise = rng.normal(0, 1, mag.shape) * 0.03 / np.maximum(mag, 0.03)
            air = mag < 0.08
            phase = asc * v - desc * 0.8 * v + noise
            phase[air] = rng.uniform(-1, 1, int(air.sum()))
            out[s, f] = np.clip(phase, -1, 1)
    return out


DESCRIPTIONS = {
    "cine_sax": "CINE_segmented_SAX",
    "cine_2ch": "CINE_segmented_LAX_2Ch",
    "cine_3ch": "CINE_segmented_LAX_3Ch",
    "cine_4ch": "CINE_segmented_LAX_4Ch",
    "cine_lvot": "CINE_segmented_LVOT",
    "flow_magnitude": "flow_250_tp_AoV_bh_ePAT@c",
    "flow_phase": "flow_250_tp_AoV_bh_ePAT@c_P",
    "tagging_sax": "cine_tagging_3sl_SAX_b1s",
    "t1_map": "ShMOLLI_192i_SAX_b2s_SAX_T1MAP",
    "scout": "Localiser",
    "aortic_distensibility": "CINE_segmented_Ao_dist",
    "lge": "LGE_PSIR_SAX",
}

_PLANES = {
    "cine_sax": "sax", "cine_2ch": "lax", "cine_3ch": "lax", "cine_4ch": "lax", "cine_lvot": "lax",
    "flow_magnitude": "axial", "flow_phase": "axial", "tagging_sax": "sax", "t1_map": "sax", "scout": "scout",
    "aortic_distensibility": "axial", "lge": "sax",
}


def protocol(rng: np.random.Generator, balanced: bool) -> list[tuple[str, int]]:
    """(category, number of slice positions) acquired for one subject.

    Balanced: one unit of every category. Imbalanced (UK Biobank-like): a full short-axis stack, three
    tagging slices, three scout planes, one of each other view, and LGE in about a third of subjects.
    """
    if balanced:  # flow phase comes with its magnitude series
        return [(c, 1) for c in CATEGORIES if c != "flow_phase"]
    plan = [("cine_sax", int(rng.integers(9, 14))), ("tagging_sax", 3), ("scout", 3)]
    plan += [(c, 1) for c in ("cine_2ch", "cine_3ch", "cine_4ch", "cine_lvot", "flow_magnitude", "t1_map",
                              "aortic_distensibility")]
    if rng.random() < 0.33:
        plan.append(("lge", int(rng.integers(3, 6))))
    return plan


def subject_series(seed: int, subject: int, balanced: bool) -> list[SeriesSpec]:
    """All series of one subject; deterministic in (seed, subject)."""
    rng = np.random.default_rng([seed, subject])
    subj = draw_subject(rng)
    series: list[SeriesSpec] = []
    for category, n_slices in protocol(rng, balanced):
        state = rng.bit_generator.state
        specs = render(subj, category, rng, n_slices)
        series.extend(specs)
        if category == "flow_magnitude":  # the phase series of the same acquisition
            rng.bit_generator.state = state
            phase = render(subj, "flow_phase", rng, n_slices)[0]
            phase.group = specs[0].group = f"flow-{subject}"
            series.append(phase)
    return series
