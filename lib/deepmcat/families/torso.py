"""The "torso" phantom family: a 3-D torso and beating heart, sliced along the real cardiac planes, with
tissue T1 / T2 / proton density put through the signal equations of the sequences that acquire each
category. Written independently of :mod:`deepmcat.phantoms` (the "classic" family) to test whether what was
tuned on one generator holds on another: other anatomy, contrast, fields of view, frame counts and series
structure (vendor A: one series per short-axis slice and flow magnitude and phase in one series; vendor B:
one series per stack, multi-frame cine files, flow in two series).

Coordinates are patient LPS millimetres (x to the patient's left, y posterior, z superior).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CATEGORIES = ("cine_sax", "cine_2ch", "cine_3ch", "cine_4ch", "cine_lvot", "flow_magnitude", "flow_phase",
              "tagging_sax", "t1_molli", "lge_sax", "localizer", "aortic_distensibility")

# tissue: (T1 ms, T2 ms, proton density); post-contrast T1 for the late-enhancement images
TISSUES = ("air", "fat", "muscle", "lung", "liver", "bone", "myocardium", "blood", "scar")
NATIVE = {"air": (1, 1, 0.0), "fat": (260, 85, 0.9), "muscle": (870, 47, 0.7), "lung": (1200, 40, 0.12),
          "liver": (580, 45, 0.75), "bone": (550, 50, 0.55), "myocardium": (950, 50, 0.75),
          "blood": (1450, 250, 0.95), "scar": (1000, 60, 0.8)}
POST_CONTRAST_T1 = {"fat": 250, "muscle": 600, "lung": 700, "liver": 400, "bone": 420, "myocardium": 450,
                    "blood": 320, "scar": 260}


def _unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def _frame(axis: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An orthonormal frame (axis, a, b) with a random rotation about ``axis``."""
    helper = np.array([0.0, 0.0, 1.0]) if abs(axis[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    a = _unit(np.cross(axis, helper))
    b = np.cross(axis, a)
    t = rng.uniform(0, 2 * np.pi)
    return axis, np.cos(t) * a + np.sin(t) * b, -np.sin(t) * a + np.cos(t) * b


def _ellipsoid(p: np.ndarray, centre, axes, radii) -> np.ndarray:
    """Inside an ellipsoid with orthonormal ``axes`` (3 vectors) and ``radii``: (..., 3) points → bool."""
    d = p - centre
    return sum((d @ ax / r) ** 2 for ax, r in zip(axes, radii)) <= 1.0


def _distance(p: np.ndarray, points: list[np.ndarray]) -> np.ndarray:
    """Distance of points ``p`` (..., 3) from the polyline ``points``."""
    best = np.full(p.shape[:-1], np.inf)
    for a, b in zip(points[:-1], points[1:]):
        ab = b - a
        t = np.clip(((p - a) @ ab) / (ab @ ab), 0, 1)
        best = np.minimum(best, np.linalg.norm(p - (a + t[..., None] * ab), axis=-1))
    return best


def _tube(p: np.ndarray, points: list[np.ndarray], radius: float) -> np.ndarray:
    """Inside a tube of ``radius`` around the polyline ``points``."""
    return _distance(p, points) <= radius


@dataclass
class Body:
    """One subject's anatomy: sizes, positions and the heart's axes, drawn once."""

    torso: tuple[float, float]
    fat: float
    heart: np.ndarray  # LV centre
    long_axis: np.ndarray  # base → apex
    septal: np.ndarray  # LV → RV direction, perpendicular to the long axis
    lv_length: float
    lv_radius: float
    wall: float
    aortic_root: np.ndarray
    aorta_path: list[np.ndarray]
    aorta_radius: float
    scar: bool
    heart_rate: float
    t1_scale: dict[str, float] = field(default_factory=dict)

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "Body":
        heart = np.array([rng.uniform(10, 35), rng.uniform(-35, -10), rng.uniform(-10, 25)])
        long_axis = _unit(np.array([0.62, -0.45, -0.64]) + rng.normal(0, 0.08, 3))
        septal = _unit(np.cross(long_axis, [0.0, 0.0, 1.0]))
        if septal[0] > 0:  # the right ventricle lies to the patient's right
            septal = -septal
        length, radius = rng.uniform(38, 50), rng.uniform(20, 27)
        # The aortic valve sits beside the mitral valve, toward the septum and anterior-superior, so the
        # 3-chamber plane (apex, mitral and aortic valves) lies between the 4- and 2-chamber planes.
        toward = np.radians(rng.uniform(35, 60))
        beside = septal * np.cos(toward) - np.cross(long_axis, septal) * np.sin(toward)
        root = heart - long_axis * length * 0.75 + beside * rng.uniform(14, 20)
        top = root + np.array([-10.0, 5, rng.uniform(55, 75)])
        arch = top + np.array([18.0, 35, 18])
        descending_top = np.array([heart[0] - 5, heart[1] + 85, top[2] - 5])
        aorta = [root, top, arch, descending_top, descending_top - np.array([0, 0, 260.0])]
        return cls(torso=(rng.uniform(150, 195), rng.uniform(105, 135)), fat=rng.uniform(8, 25), heart=heart,
                   long_axis=long_axis, septal=septal, lv_length=length, lv_radius=radius,
                   wall=rng.uniform(8, 12), aortic_root=root, aorta_path=aorta, aorta_radius=rng.uniform(12, 17),
                   scar=bool(rng.random() < 0.5), heart_rate=rng.uniform(55, 90),
                   t1_scale={t: rng.uniform(0.92, 1.08) for t in TISSUES})

    def static_labels(self, p: np.ndarray) -> np.ndarray:
        """Tissue index (into :data:`TISSUES`) of what does not move, at points ``p`` (..., 3)."""
        out = np.zeros(p.shape[:-1], np.int8)
        ax, ay = self.torso
        body = (p[..., 0] / ax) ** 2 + (p[..., 1] / ay) ** 2 <= 1
        inner = (p[..., 0] / (ax - self.fat)) ** 2 + (p[..., 1] / (ay - self.fat)) ** 2 <= 1
        out[body] = TISSUES.index("fat")
        out[inner] = TISSUES.index("muscle")
        eye = np.eye(3)
        for side in (-1, 1):
            lung = _ellipsoid(p, [side * ax * 0.45, 10, 45], eye, [ax * 0.33, ay * 0.6, 115])
            out[lung & inner] = TISSUES.index("lung")
        out[_ellipsoid(p, [-ax * 0.35, 5, -120], eye, [ax * 0.55, ay * 0.65, 75]) & inner] = TISSUES.index("liver")
        out[_tube(p, [np.array([0, ay * 0.72, -400.0]), np.array([0, ay * 0.72, 400.0])], 17)] = TISSUES.index("bone")
        return out

    def cardiac_labels(self, p: np.ndarray, base: np.ndarray, aorta_distance: np.ndarray, phase: float
                       ) -> np.ndarray:
        """``base`` (static labels at ``p``) with the heart and aorta drawn in at cardiac ``phase`` in [0, 1)."""
        squeeze = np.sin(np.pi * phase) ** 2  # 0 at end-diastole, 1 at end-systole
        out = base.copy()
        u, v = self.long_axis, self.septal
        w = np.cross(u, v)
        eye = np.eye(3)
        length = self.lv_length * (1 - 0.08 * squeeze)
        cavity = self.lv_radius * (1 - 0.32 * squeeze)
        wall = self.wall * (1 + 0.45 * squeeze)
        outer = [length + wall, cavity + wall, cavity + wall]
        out[_ellipsoid(p, self.heart, (u, v, w), [r + 5 for r in outer])] = TISSUES.index("fat")
        rv_centre = self.heart + v * (cavity + wall * 0.6) - u * 4
        rv_radii = [length * 0.85, cavity * 0.75 + 6, cavity * 1.05]
        out[_ellipsoid(p, rv_centre, (u, v, w), [r + 4 for r in rv_radii])] = TISSUES.index("myocardium")
        out[_ellipsoid(p, rv_centre, (u, v, w), rv_radii)] = TISSUES.index("blood")
        out[_ellipsoid(p, self.heart, (u, v, w), outer)] = TISSUES.index("myocardium")
        if self.scar:
            wedge = _ellipsoid(p, self.heart - v * (cavity + wall / 2) + u * 10, (u, v, w), [18, wall, 14])
            out[wedge & (out == TISSUES.index("myocardium"))] = TISSUES.index("scar")
        out[_ellipsoid(p, self.heart, (u, v, w), [length, cavity, cavity])] = TISSUES.index("blood")
        atrium_base = self.heart - u * (self.lv_length + 12)
        atria = 20 * (1 - 0.2 * (1 - squeeze))
        out[_ellipsoid(p, atrium_base + np.array([8.0, 22, 6]), eye, [atria, atria * 0.8, atria])] = \
            TISSUES.index("blood")
        out[_ellipsoid(p, atrium_base - v * 30 + np.array([0, 8.0, 0]), eye, [atria, atria, atria * 1.1])] = \
            TISSUES.index("blood")
        aorta = self.aorta_radius * (1 + 0.12 * squeeze)
        out[aorta_distance <= aorta + 2.5] = TISSUES.index("muscle")
        out[aorta_distance <= aorta] = TISSUES.index("blood")
        return out

    def labels(self, p: np.ndarray, phases: np.ndarray) -> np.ndarray:
        """(frames, ...) tissue indices at points ``p`` for each cardiac phase. Only points near the heart or
        the aorta are redrawn per phase."""
        static = self.static_labels(p)
        outside = static == TISSUES.index("air")
        aorta_distance = _distance(p, self.aorta_path)
        near = ((np.linalg.norm(p - self.heart, axis=-1) < self.lv_length + 75) | (aorta_distance < 30)) & ~outside
        frames = np.repeat(static[None], len(phases), axis=0)
        if near.any():
            for f, phase in enumerate(phases):
                frames[f][near] = self.cardiac_labels(p[near], static[near], aorta_distance[near], float(phase))
        return frames

    def t1(self, tissue: str, contrast: bool) -> float:
        base = POST_CONTRAST_T1.get(tissue, NATIVE[tissue][0]) if contrast else NATIVE[tissue][0]
        return base * self.t1_scale[tissue]


# ---------------------------------------------------------------------------------------------- contrast


def signal(body: Body, sequence: str, *, flip: float, tr: float = 4.0, te: float = 2.0, ti: float = 0.0,
           contrast_agent: bool = False) -> np.ndarray:
    """Signal of every tissue (indexed like :data:`TISSUES`) for one sequence: balanced SSFP, spoiled
    gradient echo, or inversion recovery (magnitude, read out with a small flip)."""
    a = np.deg2rad(flip)
    out = np.zeros(len(TISSUES))
    for i, tissue in enumerate(TISSUES):
        _, t2, pd = NATIVE[tissue]
        t1 = body.t1(tissue, contrast_agent)
        e1, e2 = np.exp(-tr / t1), np.exp(-tr / t2)
        if sequence == "bssfp":
            s = np.sin(a) * (1 - e1) * np.sqrt(e2) / (1 - (e1 - e2) * np.cos(a) - e1 * e2)
        elif sequence == "spgr":
            s = np.sin(a) * (1 - e1) / (1 - np.cos(a) * e1) * np.exp(-te / t2)
        elif sequence == "ir":
            s = abs(1 - 2 * np.exp(-ti / t1)) * np.exp(-te / t2)
        else:
            raise ValueError(f"unknown sequence {sequence}")
        out[i] = pd * s
    return out


# --------------------------------------------------------------------------------------------- geometry


@dataclass
class Plane:
    """An imaging plane: centre, row and column directions, matrix and pixel spacing."""

    centre: np.ndarray
    row: np.ndarray
    col: np.ndarray
    shape: tuple[int, int]
    spacing: float

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row, self.col)

    def points(self) -> np.ndarray:
        rows, cols = self.shape
        i = (np.arange(rows) - rows / 2 + 0.5) * self.spacing
        j = (np.arange(cols) - cols / 2 + 0.5) * self.spacing
        return self.centre + j[None, :, None] * self.row + i[:, None, None] * self.col

    def shifted(self, mm: float) -> "Plane":
        return Plane(self.centre + self.normal * mm, self.row, self.col, self.shape, self.spacing)

    @property
    def origin(self) -> np.ndarray:
        """Position of the first pixel's centre (DICOM ImagePositionPatient)."""
        rows, cols = self.shape
        return self.centre + (-cols / 2 + 0.5) * self.spacing * self.row + (-rows / 2 + 0.5) * self.spacing * self.col


def plane_through(centre, normal, rng: np.random.Generator, fov: tuple[float, float], up=None) -> Plane:
    """A plane of random matrix and field of view; in-plane rotation random unless ``up`` gives the column
    direction's rough sense."""
    normal = _unit(normal)
    if up is None:
        _, row, col = _frame(normal, rng)
    else:
        col = _unit(np.asarray(up, float) - normal * (np.asarray(up, float) @ normal))
        row = np.cross(col, normal)
    cols = int(rng.choice([128, 144, 160, 176, 192]))
    rows = int(round(cols * rng.uniform(0.78, 1.0) / 8) * 8)
    return Plane(np.asarray(centre, float) + rng.normal(0, 12, 3), row, col, (rows, cols), rng.uniform(*fov) / cols)


def views(body: Body, rng: np.random.Generator) -> dict[str, Plane]:
    """The standard cardiac planes of this body (each with its own matrix and field of view)."""
    u, v = body.long_axis, body.septal
    w = np.cross(u, v)
    fov = (300, 400)
    aorta_dir = _unit(body.aorta_path[1] - body.aorta_path[0])
    lvot_in_plane = _unit(body.aortic_root - body.heart)
    return {
        "sax": plane_through(body.heart, u, rng, fov, up=-v + w * 0.3),
        "4ch": plane_through(body.heart - u * 5, w, rng, fov, up=u),
        "2ch": plane_through(body.heart, v, rng, fov, up=u),
        "3ch": plane_through(body.heart, np.cross(u, lvot_in_plane), rng, fov, up=u),
        "lvot": plane_through((body.heart + body.aortic_root) / 2, np.cross(aorta_dir, w), rng, fov,
                              up=-aorta_dir),
        "flow": plane_through(body.aorta_path[0] + aorta_dir * 25, aorta_dir, rng, (280, 360)),
        "aorta_axial": plane_through(body.aorta_path[1] - np.array([0, 0, 20.0]), [0, 0, 1], rng, (300, 380),
                                     up=[0, 1, 0]),
    }


# ----------------------------------------------------------------------------------------------- series


@dataclass
class Series:
    """One series as acquired: per slice position its plane and (frames, rows, cols) physical images."""

    category: str
    description: str
    planes: list[Plane]
    images: list[np.ndarray]
    trigger_ms: np.ndarray
    image_type: list[str]
    signed: bool = False
    #: series written with one SeriesInstanceUID (vendor A's flow magnitude and phase)
    group: str | None = None
    multiframe: bool = False
    #: "12bit" (magnitude up to 4095, phase rescaled from unsigned) or "16bit" (up to 30000, signed phase)
    storage: str = "12bit"
    #: written as enhanced multi-frame DICOM whatever the format asked (the contour family's vendor C)
    enhanced: bool = False


DESCRIPTIONS = {
    "A": {"cine_sax": "sBTFE_SA_slice", "cine_2ch": "sBTFE_2CH", "cine_3ch": "sBTFE_3CH", "cine_4ch": "sBTFE_4CH",
          "cine_lvot": "sBTFE_LVOT", "flow_magnitude": "Q-flow AAo", "flow_phase": "Q-flow AAo",
          "tagging_sax": "CSPAMM_SA", "t1_molli": "MOLLI 5(3)3", "lge_sax": "LGE_PSIR_SA", "localizer": "Survey",
          "aortic_distensibility": "AoDist_TFE"},
    "B": {"cine_sax": "CINE_tf2d_SAX", "cine_2ch": "CINE_tf2d_2CH", "cine_3ch": "CINE_tf2d_3CH",
          "cine_4ch": "CINE_tf2d_4CH", "cine_lvot": "CINE_tf2d_LVOT", "flow_magnitude": "flow_Ao_MAG",
          "flow_phase": "flow_Ao_P", "tagging_sax": "grid_tag_SA", "t1_molli": "MOLLI_T1", "lge_sax": "de_IR_SA",
          "localizer": "localizer_3pl", "aortic_distensibility": "Ao_distens_gre"},
}


def finish(images: np.ndarray, rng: np.random.Generator, snr: float) -> np.ndarray:
    """Smooth coil bias and Rician noise on a (frames, rows, cols) magnitude stack."""
    _, rows, cols = images.shape
    y, x = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
    cy, cx, width = rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0.6, 1.5)
    bias = 0.65 + 0.25 * (rng.uniform(-1, 1) * x + rng.uniform(-1, 1) * y) + 0.6 * np.exp(
        -((x - cx) ** 2 + (y - cy) ** 2) / width**2)
    clean = images * np.clip(bias, 0.2, None)
    sigma = float(np.percentile(clean, 99)) / snr
    noise = rng.normal(0, sigma, (2,) + clean.shape)
    return np.sqrt((clean + noise[0]) ** 2 + noise[1] ** 2).astype(np.float32)


def _render(body: Body, plane: Plane, phases: np.ndarray, table: np.ndarray) -> np.ndarray:
    return table[body.labels(plane.points(), phases)].astype(np.float32)


def _tags(plane: Plane, times_ms: np.ndarray, spacing: float) -> np.ndarray:
    """(frames, rows, cols) multiplicative tag grid fading with T1 recovery."""
    rows, cols = plane.shape
    y = (np.arange(rows) * plane.spacing)[:, None]
    x = (np.arange(cols) * plane.spacing)[None, :]
    line = np.maximum(np.exp(-(((x + 2) % spacing) - spacing / 2) ** 2 / 2.0),
                      np.exp(-(((y + 2) % spacing) - spacing / 2) ** 2 / 2.0))
    depth = 0.9 * np.exp(-times_ms / 900.0)
    return 1 - depth[:, None, None] * line[None]


def _velocity(body: Body, plane: Plane, phases: np.ndarray, peak: float) -> np.ndarray:
    """(frames, rows, cols) through-plane velocity (fraction of VENC): up the ascending aorta in systole,
    down the descending aorta."""
    p = plane.points()
    ascending = _tube(p, body.aorta_path[:2], body.aorta_radius * 1.15)
    descending = _tube(p, body.aorta_path[3:], body.aorta_radius * 1.15)
    curve = np.where(phases < 0.4, np.sin(np.pi * phases / 0.4) ** 2, -0.08 * np.sin(np.pi * (phases - 0.4) / 0.6))
    sign = float(np.sign(plane.normal @ (body.aorta_path[1] - body.aorta_path[0])) or 1)
    field_ = sign * (ascending.astype(np.float32) - 0.8 * descending)
    return peak * curve[:, None, None] * field_[None]


def subject_series(seed: int, subject: int, balanced: bool) -> list[Series]:
    """All series of one subject; deterministic in (seed, subject)."""
    rng = np.random.default_rng([seed, subject, 2027])
    body = Body.draw(rng)
    vendor = "A" if rng.random() < 0.5 else "B"
    names = DESCRIPTIONS[vendor]
    planes = views(body, rng)
    n_cine = int(rng.integers(16, 31))
    rr = 60000.0 / body.heart_rate
    cine_phases = np.arange(n_cine) / n_cine
    bssfp = signal(body, "bssfp", flip=rng.uniform(45, 70), tr=rng.uniform(2.8, 3.6))
    snr = rng.uniform(18, 45)
    mag = ["ORIGINAL", "PRIMARY", "M", "ND"]
    out: list[Series] = []

    def add(category, stack, phases, table, image_type=mag, trigger=None, **kw):
        images = [finish(_render(body, plane, phases, table), rng, snr) for plane in stack]
        out.append(Series(category, names[category], stack, images,
                          trigger if trigger is not None else phases * rr, list(image_type), **kw))

    def stack_along(plane: Plane, n: int, gap: float) -> list[Plane]:
        return [plane.shifted((k - (n - 1) / 2) * gap) for k in range(n)]

    def want(p: float) -> bool:
        return balanced or rng.random() < p

    n_sax = 1 if balanced else int(rng.integers(7, 12))
    sax = stack_along(planes["sax"], n_sax, rng.uniform(8, 10.5))
    if vendor == "A":  # one series per short-axis slice
        for plane in sax:
            add("cine_sax", [plane], cine_phases, bssfp)
    else:
        add("cine_sax", sax, cine_phases, bssfp, multiframe=True)
    for view in ("2ch", "3ch", "4ch", "lvot"):
        if want(0.9):
            add(f"cine_{view}", [planes[view]], cine_phases, bssfp, multiframe=vendor == "B")
    if want(0.6):
        n = int(rng.integers(20, 41))
        add("aortic_distensibility", [planes["aorta_axial"]], np.arange(n) / n,
            signal(body, "spgr", flip=rng.uniform(10, 18), tr=5.0, te=2.5))
    # flow: magnitude brightened by inflow, phase = velocity / VENC
    n_flow = int(rng.integers(20, 41))
    flow_phases = np.arange(n_flow) / n_flow
    peak = rng.uniform(0.45, 0.85)
    velocity = _velocity(body, planes["flow"], flow_phases, peak)
    spgr = signal(body, "spgr", flip=rng.uniform(15, 25), tr=5.0, te=2.8)
    magnitude = _render(body, planes["flow"], flow_phases, spgr) * (1 + 1.8 * np.abs(velocity))
    magnitude = finish(magnitude, rng, snr)
    noise_phase = rng.uniform(-1, 1, magnitude.shape)
    weight = np.clip(magnitude / np.percentile(magnitude, 60), 0, 1)
    phase = np.clip(weight * (velocity + rng.normal(0, 0.03, magnitude.shape)) + (1 - weight) * noise_phase, -1, 1)
    group = f"flow-{subject}" if vendor == "A" else None
    out.append(Series("flow_magnitude", names["flow_magnitude"], [planes["flow"]], [magnitude], flow_phases * rr,
                      mag, group=group))
    out.append(Series("flow_phase", names["flow_phase"], [planes["flow"]], [phase.astype(np.float32)],
                      flow_phases * rr, ["ORIGINAL", "PRIMARY", "P", "ND"], signed=True, group=group))
    if want(0.5):
        n_tag = int(rng.integers(12, 25))
        tag_phases = np.arange(n_tag) / n_tag * 0.8
        stack = stack_along(planes["sax"], 1 if balanced else int(rng.integers(1, 4)), 20.0)
        tags = _tags(stack[0], tag_phases * rr, rng.uniform(6, 9))
        spgr_tag = signal(body, "spgr", flip=rng.uniform(8, 14), tr=4.5, te=2.2)
        images = [finish(_render(body, plane, tag_phases, spgr_tag) * tags, rng, snr) for plane in stack]
        out.append(Series("tagging_sax", names["tagging_sax"], stack, images, tag_phases * rr, mag))
    if want(0.4):
        n_ti = int(rng.integers(7, 12))
        inversion = np.sort(rng.uniform(90, 3500, n_ti))
        plane = planes["sax"]
        diastole = np.zeros(1)
        images = np.concatenate([_render(body, plane, diastole, signal(body, "ir", flip=35, ti=ti, te=1.1))
                                 for ti in inversion])
        out.append(Series("t1_molli", names["t1_molli"], [plane], [finish(images, rng, snr)], inversion,
                          ["ORIGINAL", "PRIMARY", "M", "MOLLI"]))
    if want(0.3):
        ti = body.t1("myocardium", True) * np.log(2) * rng.uniform(0.92, 1.08)
        lge = signal(body, "ir", flip=25, ti=ti, te=1.3, contrast_agent=True)
        stack = stack_along(planes["sax"], 1 if balanced else int(rng.integers(1, 8)), rng.uniform(8, 10))
        add("lge_sax", stack, np.zeros(1), lge)
    # localizer: three orthogonal planes (1 to 3 slices each) in one series, large field of view
    shape, spacing = (256, 256), rng.uniform(400, 480) / 256
    localizer = []
    for normal, up in (([0, 0, 1.0], [0, 1.0, 0]), ([0, 1.0, 0], [0, 0, -1.0]), ([1.0, 0, 0], [0, 0, -1.0])):
        base = plane_through(body.heart + rng.normal(0, 15, 3), normal, rng, (400, 480), up=up)
        base = Plane(base.centre, base.row, base.col, shape, spacing)
        localizer += stack_along(base, 1 if balanced else int(rng.integers(1, 4)), 10.0)
    add("localizer", localizer, np.zeros(1), signal(body, "bssfp", flip=40, tr=3.0))
    return out
