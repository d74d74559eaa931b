"""The "shell" phantom family, written apart from the classic, torso, blob and contour families to be held out
from every choice made on them (2026-12-07: nothing in the defaults was chosen on it). Anatomy is 3-D: the
ventricles are half-ellipsoid shells, the atria spheres, the great vessels straight tubes, inside an elliptic
body with lungs, liver and spine. Each image averages three sub-planes across its slice thickness (partial
volume), some are folded by phase-encoding wrap-around, bSSFP images can carry a dark off-resonance band, and
noise grows toward the image centre (a parallel-imaging g-factor). Categories the other families lack: a
right-ventricular outflow cine, a multi-echo T2* series of one slice (echoes, not cardiac phases), and a
black-blood axial stack of 10-20 static slices. Vendor E writes cine as single-frame files, flow magnitude
and phase in one series, and LGE as a magnitude inversion-recovery image; vendor F writes cine as enhanced
multi-frame files, flow in two series, and LGE as a phase-sensitive (PSIR) image whose background is grey.

Coordinates are patient LPS millimetres (x to the patient's left, y posterior, z superior).
"""

from __future__ import annotations

import numpy as np

from deepmcat.families.torso import Plane, Series

CATEGORIES = ("sax_cine", "lax_2c", "lax_3c", "lax_4c", "rvot_cine", "flow_mag", "flow_pha", "t2star",
              "molli", "lge", "haste_axial", "tri_pilot")
#: tissue: (T1 ms, T2 ms, proton density, T1 ms after contrast)
TISSUES = {"air": (1, 1, 0.0, 1), "body": (900, 45, 0.7, 560), "fat": (300, 70, 0.95, 280),
           "lung": (1300, 35, 0.15, 650), "liver": (600, 40, 0.75, 380), "spine": (620, 50, 0.6, 400),
           "myo": (1000, 45, 0.78, 430), "blood": (1600, 240, 0.9, 300), "scar": (1100, 55, 0.8, 250)}
NAMES = {"E": {"sax_cine": "cine_sax_retro", "lax_2c": "cine_2c", "lax_3c": "cine_3c", "lax_4c": "cine_4c",
               "rvot_cine": "cine_rvot", "flow_mag": "flow_asc_ao", "flow_pha": "flow_asc_ao",
               "t2star": "T2star_multiecho", "molli": "MOLLI_pre", "lge": "LGE_IR_SA", "haste_axial": "HASTE_tra_db",
               "tri_pilot": "localizer_3pl"},
         "F": {"sax_cine": "SSFP SAX", "lax_2c": "SSFP 2CH", "lax_3c": "SSFP 3CH", "lax_4c": "SSFP 4CH",
               "rvot_cine": "SSFP RVOT", "flow_mag": "PC Ao mag", "flow_pha": "PC Ao vel", "t2star": "T2* ME-GRE",
               "molli": "T1 MOLLI 5-3", "lge": "PSIR SAX", "haste_axial": "BB axial stack",
               "tri_pilot": "3-plane loc"}}


def _unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def _soft(level: np.ndarray, scale: float, edge: float = 1.0) -> np.ndarray:
    """1 inside (``level`` < 1), 0 outside, a transition of ``edge`` mm at a shape of size ``scale`` mm."""
    return 1 / (1 + np.exp(np.clip((level - 1) * scale / edge, -40, 40)))


def systole(t) -> np.ndarray:
    """Share of contraction at cardiac phase t in [0, 1): peak at a third of the cycle."""
    return np.exp(-(((np.asarray(t, float) - 0.33) / 0.16) ** 2))


class Anatomy:
    """One subject's body and heart: sizes, axes and positions (LPS mm)."""

    def __init__(self, rng: np.random.Generator):
        self.body = (rng.uniform(140, 185), rng.uniform(95, 125))  # half-widths: left-right, anterior-posterior
        self.fat = rng.uniform(6, 22)
        self.centre = np.array([15.0, -10.0, 0.0]) + rng.normal(0, 6, 3)
        self.long = _unit(np.array([0.55, -0.5, -0.65]) + rng.normal(0, 0.1, 3))  # base to apex
        septum = np.array([-1.0, -0.3, 0.2])  # toward the right ventricle
        self.septum = _unit(septum - self.long * (septum @ self.long))
        self.length, self.radius, self.wall = rng.uniform(75, 95), rng.uniform(23, 30), rng.uniform(8, 12)
        self.rv_scale = rng.uniform(1.05, 1.35)
        self.aorta_r = rng.uniform(12, 17)
        up = np.array([0.0, 0.0, 1.0])
        self.aorta_root = self.centre + self.septum * 0.45 * self.radius + up * 0.1 * self.length
        self.aorta_dir = _unit(up * 1.0 - self.septum * 0.35 + np.array([0.0, -0.2, 0.0]))
        self.pulmonary_root = self.centre + self.septum * 1.6 * self.radius - self.long * 0.1 * self.length
        self.pulmonary_dir = _unit(up * 0.9 + np.array([0.5, 0.35, 0.0]))
        self.descending = self.centre + np.array([-5.0, 70.0, 0.0])
        self.scar = (rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.3)) if rng.random() < 0.65 else None

    def chest(self, p: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """(tissue, soft mask) of what does not beat, from back to front, at points ``p`` (..., 3)."""
        x, y, z = p[..., 0] - self.centre[0], p[..., 1] - self.centre[1], p[..., 2] - self.centre[2]
        a, b = self.body
        body_level = np.hypot(x / a, (y - 15) / b)
        out = [("body", _soft(body_level, b, 2.0)),
               ("fat", _soft(body_level, b, 2.0) - _soft(np.hypot(x / (a - self.fat), (y - 15) / (b - self.fat)), b))]
        for side in (-1, 1):
            lung = np.sqrt(((x - side * 0.5 * a) / (0.38 * a)) ** 2 + ((y - 10) / (0.7 * b)) ** 2
                           + ((z - 30) / 130) ** 2)
            out.append(("lung", _soft(lung, 0.38 * a, 2.0)))
        liver = np.sqrt(((x + 0.3 * a) / (0.6 * a)) ** 2 + ((y - 5) / (0.75 * b)) ** 2 + ((z + 110) / 70) ** 2)
        out += [("liver", _soft(liver, 70, 2.0)), ("spine", _soft(np.hypot(x + 10, y - 0.8 * b) / 15, 15))]
        return out

    def heart(self, p: np.ndarray, t: float) -> list[tuple[str, np.ndarray]]:
        """(tissue, soft mask) of the heart and great vessels, from back to front, at cardiac phase ``t``."""
        k = float(systole(t))
        d = p - self.centre
        along = d @ self.long + 0.25 * self.length  # from the base plane toward the apex
        across = d - (d @ self.long)[..., None] * self.long
        length, radius, wall = self.length * (1 - 0.1 * k), self.radius * (1 - 0.3 * k), self.wall * (1 + 0.4 * k)

        def cavity(reach: float, r: float, offset: float = 0.0) -> np.ndarray:
            """A half-ellipsoid from the base plane to ``reach`` mm, radius ``r``, moved ``offset`` mm toward
            the septum."""
            level = np.sqrt((np.maximum(along, 0) / reach) ** 2
                            + (np.linalg.norm(across - offset * self.septum, axis=-1) / r) ** 2)
            return _soft(np.where(along < 0, 1 + np.abs(along) / 2, level), r)

        lv_outer, lv_blood = cavity(length + wall, radius + wall), cavity(length, radius)
        rv_offset, rv_r = radius + 0.6 * wall, radius * self.rv_scale * (1 - 0.2 * k)
        rv_outer, rv_blood = cavity(0.8 * length + 3, rv_r + 3, rv_offset), cavity(0.8 * length, rv_r, rv_offset)
        out = [("myo", np.maximum(lv_outer, rv_outer)), ("blood", rv_blood * (1 - lv_outer))]
        if self.scar is not None:
            angle = np.arctan2(across @ np.cross(self.long, self.septum), across @ self.septum)
            sector = np.cos(angle - self.scar[0]) > np.cos(self.scar[1] / 2)
            out.append(("scar", np.clip(cavity(length + 0.5 * wall, radius + 0.5 * wall) - lv_blood, 0, 1) * sector))
        out.append(("blood", lv_blood))
        atrium = 0.55 * self.radius * (1 + 0.25 * k)
        for centre in (self.centre - self.long * 0.55 * self.length,
                       self.centre - self.long * 0.5 * self.length + self.septum * 1.5 * self.radius):
            out.append(("blood", _soft(np.linalg.norm(p - centre, axis=-1) / atrium, atrium)))
        for root, direction, r in ((self.aorta_root, self.aorta_dir, self.aorta_r * (1 + 0.08 * k)),
                                   (self.pulmonary_root, self.pulmonary_dir, 0.9 * self.aorta_r),
                                   (self.descending, np.array([0.0, 0.0, 1.0]), 0.75 * self.aorta_r)):
            out.append(("blood", self.tube(p, root, direction, r)))
        return out

    @staticmethod
    def tube(p: np.ndarray, root: np.ndarray, direction: np.ndarray, r: float, reach: float = 130.0) -> np.ndarray:
        """A straight vessel of radius ``r`` from ``root`` along ``direction`` (``reach`` mm, both ways for the
        descending aorta's root at mid-chest)."""
        d = p - root
        along = d @ direction
        radial = np.linalg.norm(d - along[..., None] * direction, axis=-1)
        return _soft(radial / r, r) * _soft(np.abs(along - reach / 2) / (reach / 2), reach / 2, 3.0)


def long_axis_normals(body: Anatomy) -> dict[str, np.ndarray]:
    """The long-axis cines' plane normals: the 2-chamber plane holds the long axis across the septum, the
    4-chamber plane the long axis through both ventricles, the 3-chamber plane the long axis and the aortic
    root (between those two), the RVOT plane the pulmonary trunk and the right ventricle."""
    u, s = body.long, body.septum
    aorta_in_plane = _unit(body.aorta_root - (body.centre + u * 0.4 * body.length))
    return {"lax_2c": s, "lax_4c": np.cross(u, s), "lax_3c": np.cross(u, aorta_in_plane),
            "rvot_cine": np.cross(body.pulmonary_dir, _unit(body.pulmonary_root - body.centre))}


def _plane(centre, normal, down, rng: np.random.Generator, fov: tuple[float, float],
           matrices=(160, 192, 208, 224, 256)) -> Plane:
    """A plane through ``centre``; the image's downward (column) direction follows ``down``, turned by up to
    15°."""
    normal = _unit(normal)
    col = _unit(np.asarray(down, float) - normal * (np.asarray(down, float) @ normal))
    row = np.cross(col, normal)
    turn = np.deg2rad(rng.uniform(-15, 15))
    row, col = np.cos(turn) * row + np.sin(turn) * col, -np.sin(turn) * row + np.cos(turn) * col
    cols = int(rng.choice(matrices))
    rows = int(round(cols * rng.uniform(0.72, 1.0) / 8) * 8)
    return Plane(np.asarray(centre, float) + rng.normal(0, 8, 3), row, col, (rows, cols), rng.uniform(*fov) / cols)


def signal(sequence: str, tissue: str, *, flip: float = 50.0, tr: float = 3.5, te: float = 1.5, ti: float = 0.0,
           contrast: bool = False) -> float:
    """Steady-state signal of ``tissue`` for bSSFP, spoiled GRE, inversion recovery (magnitude or phase
    sensitive), multi-echo GRE and black-blood T2-weighted fast spin echo."""
    t1, t2, pd, t1_post = TISSUES[tissue]
    t1 = t1_post if contrast else t1
    a = np.deg2rad(flip)
    if sequence == "bssfp":
        return pd * np.sin(a) / (1 + np.cos(a) + (1 - np.cos(a)) * t1 / t2)
    if sequence == "gre":
        e1 = np.exp(-tr / t1)
        return pd * np.sin(a) * (1 - e1) / (1 - np.cos(a) * e1) * np.exp(-te / (0.6 * t2))
    if sequence in ("ir", "psir"):
        value = pd * (1 - 2 * np.exp(-ti / t1))
        return abs(value) if sequence == "ir" else value
    if sequence == "echo":  # at 1.5 T fat and water are out of phase at 2.3 ms, in phase again at 4.6 ms
        beat = abs(np.cos(np.pi * te / 4.6)) if tissue == "fat" else 1.0
        return pd * np.exp(-te / (0.5 * t2)) * beat
    if sequence == "haste":
        return 0.0 if tissue == "blood" else pd * np.exp(-80 / t2) * (1 - np.exp(-2000 / t1))
    raise ValueError(f"unknown sequence {sequence!r}")


def _paint(image: np.ndarray, layers: list[tuple[str, np.ndarray]], values: dict[str, float]) -> np.ndarray:
    for tissue, mask in layers:
        image = image * (1 - mask) + values[tissue] * mask
    return image


def render(anatomy: Anatomy, plane: Plane, phases: np.ndarray, values: dict[str, float], thickness: float,
           wrap: bool = False) -> np.ndarray:
    """(frames, rows, cols) images: each the mean of three sub-planes across ``thickness``, optionally folded
    along the columns (phase-encoding wrap of a body wider than the field of view)."""
    rows, cols = plane.shape
    extra = rows // 4 if wrap else 0
    big = Plane(plane.centre, plane.row, plane.col, (rows + 2 * extra, cols), plane.spacing)
    points = big.points()
    shifts = [points + plane.normal * shift for shift in (-thickness / 3, 0.0, thickness / 3)]
    chests = [_paint(np.full(big.shape, values["air"]), anatomy.chest(p), values) for p in shifts]
    frames = []
    for t in phases:
        img = sum(_paint(chest, anatomy.heart(p, t), values) for chest, p in zip(chests, shifts)) / 3
        if extra:
            core = img[extra:extra + rows].copy()
            core[-extra:] += img[:extra]
            core[:extra] += img[-extra:]
            img = core
        frames.append(img)
    return np.stack(frames)


def acquire(images: np.ndarray, rng: np.random.Generator, snr: float, band: bool = False) -> np.ndarray:
    """Signal → magnitude as stored: smooth coil bias, an optional dark off-resonance band, and Rician noise
    that grows toward the centre (parallel imaging)."""
    _, rows, cols = images.shape
    y, x = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
    bias = 1 + rng.uniform(-0.25, 0.25) * x + rng.uniform(-0.25, 0.25) * y - rng.uniform(0, 0.3) * (x**2 + y**2)
    out = images * bias
    if band:
        angle, where = rng.uniform(0, np.pi), rng.uniform(-0.6, 0.6)
        out = out * (1 - 0.85 * np.exp(-(((x * np.cos(angle) + y * np.sin(angle)) - where) / 0.04) ** 2))
    sigma = float(np.percentile(np.abs(out), 99)) / snr * (1 + 0.8 * np.exp(-(x**2 + y**2) / 0.2))
    return np.hypot(out + rng.normal(0, 1, out.shape) * sigma, rng.normal(0, 1, out.shape) * sigma).astype(np.float32)


def subject_series(seed: int, subject: int, balanced: bool) -> list[Series]:
    """All series of one shell-family subject; deterministic in (seed, subject)."""
    rng = np.random.default_rng([seed, subject, 7411])
    body = Anatomy(rng)
    vendor = "E" if rng.random() < 0.5 else "F"
    names = NAMES[vendor]
    rr = 60000 / rng.uniform(55, 100)
    snr = rng.uniform(12, 35)
    u, s = body.long, body.septum
    w = np.cross(u, s)
    feet = np.array([0.0, 0.0, -1.0])
    n_cine = int(rng.integers(22, 36)) if vendor == "E" else int(rng.integers(14, 21))
    cine_phases = np.arange(n_cine) / n_cine
    flip = rng.uniform(45, 75)
    bssfp = {t: signal("bssfp", t, flip=flip) for t in TISSUES}
    mag = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    out: list[Series] = []

    def want(p: float) -> bool:
        return balanced or rng.random() < p

    def stack(plane: Plane, n: int, gap: float) -> list[Plane]:
        return [plane.shifted((k - (n - 1) / 2) * gap) for k in range(n)]

    def add(category, planes, phases, values, *, trigger=None, image_type=mag, band=False, **kw):
        thickness = rng.uniform(6, 10)
        wrap = rng.random() < 0.3
        images = [acquire(render(body, p, phases, values, thickness, wrap), rng, snr, band) for p in planes]
        out.append(Series(category, names[category], planes, images,
                          phases * rr if trigger is None else np.asarray(trigger, float), list(image_type), **kw))

    cine = {"multiframe": vendor == "F", "enhanced": vendor == "F"}
    fov = (320, 400)
    sax = _plane(body.centre + u * 0.2 * body.length, u, -w + 0.4 * s, rng, fov)
    add("sax_cine", stack(sax, 1 if balanced else int(rng.integers(8, 14)), rng.uniform(8, 10)), cine_phases,
        bssfp, band=rng.random() < 0.3, **cine)
    for category, normal in long_axis_normals(body).items():
        if want(0.85):
            centre = body.pulmonary_root if category == "rvot_cine" else body.centre + u * 0.2 * body.length
            add(category, [_plane(centre, normal, -u if category != "rvot_cine" else feet, rng, fov)], cine_phases,
                bssfp, band=rng.random() < 0.3, **cine)
    # flow through the ascending aorta: magnitude brightened by inflow, velocity / VENC in the lumen
    n_flow = int(rng.integers(20, 41))
    flow_phases = np.arange(n_flow) / n_flow
    plane = _plane(body.aorta_root + body.aorta_dir * 30, body.aorta_dir, [0.0, 1.0, 0.0], rng, (300, 380))
    gre = {t: signal("gre", t, flip=20, tr=5.0, te=2.5) for t in TISSUES}
    base = render(body, plane, flow_phases, gre, 6.0)
    points = plane.points()
    lumen_up = Anatomy.tube(points, body.aorta_root, body.aorta_dir, body.aorta_r)
    lumen_down = Anatomy.tube(points, body.descending, np.array([0.0, 0.0, 1.0]), 0.75 * body.aorta_r)
    curve = systole(flow_phases)[:, None, None] * rng.uniform(0.5, 0.9)
    velocity = curve * (lumen_up - 0.7 * lumen_down)[None]
    magnitude = acquire(base * (1 + 2.0 * np.abs(velocity)), rng, snr)
    weight = np.clip(magnitude / np.percentile(magnitude, 65), 0, 1)
    phase = (weight * (velocity + rng.normal(0, 0.03, velocity.shape))
             + (1 - weight) * rng.uniform(-1, 1, velocity.shape))
    group = f"flow-{subject}" if vendor == "E" else None
    out.append(Series("flow_mag", names["flow_mag"], [plane], [magnitude], flow_phases * rr, list(mag), group=group))
    out.append(Series("flow_pha", names["flow_pha"], [plane], [np.clip(phase, -1, 1).astype(np.float32)],
                      flow_phases * rr, ["ORIGINAL", "PRIMARY", "P", "NONE"], signed=True, group=group))
    mid = sax.shifted(rng.normal(0, 5))
    if want(0.45):  # multi-echo gradient echo of one mid-ventricular slice
        echoes = 2.0 + 2.3 * np.arange(int(rng.integers(6, 13)))
        images = np.concatenate([render(body, mid, np.array([0.7]), {t: signal("echo", t, te=te) for t in TISSUES},
                                        8.0) for te in echoes])
        out.append(Series("t2star", names["t2star"], [mid], [acquire(images, rng, snr)], echoes, list(mag)))
    if want(0.45):  # MOLLI: inversion-recovery images of one slice at rising inversion times
        inversion = np.sort(rng.uniform(100, 3800, int(rng.integers(7, 12))))
        images = np.concatenate([render(body, mid, np.array([0.75]), {t: signal("ir", t, ti=ti) for t in TISSUES},
                                        8.0) for ti in inversion])
        out.append(Series("molli", names["molli"], [mid], [acquire(images, rng, snr)], inversion,
                          ["ORIGINAL", "PRIMARY", "M", "MOLLI"]))
    if want(0.35):  # LGE: myocardium nulled after contrast; vendor F phase-sensitive, air grey
        ti = TISSUES["myo"][3] * np.log(2) * rng.uniform(0.9, 1.1)
        kind = "psir" if vendor == "F" else "ir"
        values = {t: signal(kind, t, ti=ti, contrast=True) for t in TISSUES}
        if kind == "psir":
            values = {t: 0.5 + 0.5 * v for t, v in values.items()}
        add("lge", stack(sax, 1 if balanced else int(rng.integers(6, 12)), rng.uniform(8, 10)), np.array([0.75]),
            values, trigger=[0.75 * rr])
    if want(0.4):  # black-blood HASTE: an axial stack through the chest, one image per slice
        axial = _plane(body.centre + np.array([0, 0, 20.0]), [0, 0, 1.0], [0, 1.0, 0], rng, (340, 420))
        add("haste_axial", stack(axial, 1 if balanced else int(rng.integers(10, 21)), rng.uniform(6, 8)),
            np.array([0.8]), {t: signal("haste", t) for t in TISSUES}, trigger=[0.8 * rr])
    # three-plane localizer: one to three slices in each orientation, one series, a large field of view
    pilots = []
    for normal, direction in (([0, 0, 1.0], [0, 1.0, 0]), ([0, 1.0, 0], feet), ([1.0, 0, 0], feet)):
        base = _plane(body.centre, normal, direction, rng, (420, 500), matrices=(128, 160, 192))
        pilots += stack(base, 1 if balanced else int(rng.integers(1, 4)), 12.0)
    add("tri_pilot", pilots, np.array([0.0]), {t: signal("bssfp", t, flip=35) for t in TISSUES}, trigger=[0.0])
    return out
