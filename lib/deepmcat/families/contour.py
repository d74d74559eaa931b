"""The "contour" phantom family, written apart from the classic, torso and blob families to be held out from
every choice made on them. Each view is drawn in 2-D from contours given in polar or long-axis coordinates
(a Fourier-perturbed ventricle, bullet-shaped long-axis chambers, superellipse torso, lungs, spine, liver),
with anatomy turned in the image by up to ±20° from each view's conventional orientation, and the scan
planes' 3-D orientation following a jittered cardiac long axis. Images are formed by truncating k-space (the
acquired resolution, with its ringing) at a display matrix zero-filled up to twice that, multiplying by a
surface-coil profile and adding complex noise (Rician magnitude). Categories the other families lack: first
pass perfusion (three short-axis slices, 35-55 dynamics of contrast arriving), black-blood T2-weighted
images, and a T1 map that is a derived parametric image rather than its inversion series. Series structure:
vendor C writes cine, tagging and perfusion as enhanced multi-frame files and flow magnitude and velocity
as two series; vendor D writes a file per image, perfusion as a series per slice and flow as one series.
"""

from __future__ import annotations

import numpy as np

from deepmcat.families.torso import Plane, Series

CATEGORIES = ("short_axis_cine", "vla_cine", "hla_cine", "three_chamber_cine", "flow_magnitude", "flow_velocity",
              "tagging", "t1_map", "lge", "survey", "perfusion", "dark_blood")
TISSUES = ("body", "fat", "lung", "liver", "spine", "blood", "myo", "scar")
#: per contrast, each tissue's (low, high) relative signal; "t1" holds T1 in ms (the parametric map)
CONTRASTS = {
    "ssfp": {"body": (0.22, 0.32), "fat": (0.75, 0.95), "lung": (0.02, 0.06), "liver": (0.25, 0.35),
             "spine": (0.4, 0.55), "blood": (0.8, 1.0), "myo": (0.18, 0.28), "scar": (0.18, 0.28)},
    "gre": {"body": (0.3, 0.4), "fat": (0.6, 0.8), "lung": (0.02, 0.05), "liver": (0.3, 0.4),
            "spine": (0.35, 0.5), "blood": (0.35, 0.5), "myo": (0.25, 0.35), "scar": (0.25, 0.35)},
    "lge": {"body": (0.15, 0.25), "fat": (0.5, 0.7), "lung": (0.01, 0.03), "liver": (0.2, 0.3),
            "spine": (0.3, 0.4), "blood": (0.4, 0.55), "myo": (0.0, 0.04), "scar": (0.8, 1.0)},
    "dark": {"body": (0.35, 0.45), "fat": (0.85, 1.0), "lung": (0.02, 0.05), "liver": (0.4, 0.5),
             "spine": (0.5, 0.6), "blood": (0.0, 0.04), "myo": (0.4, 0.55), "scar": (0.5, 0.6)},
    "t1": {"body": (850, 950), "fat": (250, 350), "lung": (1100, 1400), "liver": (550, 650),
           "spine": (600, 800), "blood": (1500, 1700), "myo": (950, 1050), "scar": (1100, 1300)},
}
DESCRIPTIONS = {
    "C": {"short_axis_cine": "CINE_SA_stack", "vla_cine": "CINE_VLA", "hla_cine": "CINE_HLA",
          "three_chamber_cine": "CINE_3CH", "flow_magnitude": "PC_AAo_M", "flow_velocity": "PC_AAo_P",
          "tagging": "TAG_SA", "t1_map": "T1MAP_SA", "lge": "LGE_SA", "survey": "SURVEY",
          "perfusion": "PERF_SA", "dark_blood": "BB_T2W"},
    "D": {"short_axis_cine": "sa bssfp", "vla_cine": "2ch bssfp", "hla_cine": "4ch bssfp",
          "three_chamber_cine": "3ch bssfp", "flow_magnitude": "aorta flow", "flow_velocity": "aorta flow",
          "tagging": "grid tagging", "t1_map": "t1 map", "lge": "late gad psir", "survey": "tri-pilot",
          "perfusion": "first pass", "dark_blood": "t2 stir"},
}


def _inside(distance: np.ndarray, edge: float = 0.8) -> np.ndarray:
    """Soft mask of a signed distance (negative inside, mm): anti-aliased edges."""
    return 1 / (1 + np.exp(np.clip(distance / edge, -50, 50)))


def _superellipse(x, y, a, b, p) -> np.ndarray:
    """Approximate signed distance (mm) to the superellipse |x/a|^p + |y/b|^p = 1."""
    level = (np.abs(x / a) ** p + np.abs(y / b) ** p) ** (1 / p)
    return (level - 1) * min(a, b)


def _circle(x, y, cx, cy, r) -> np.ndarray:
    return np.hypot(x - cx, y - cy) - r


def _bullet(u, v, length, radius) -> np.ndarray:
    """Signed distance to a long-axis chamber: a half-ellipse from the valve plane (u = 0) to the apex
    (u = length), cut flat at the valve plane."""
    ellipse = (np.sqrt((u / length) ** 2 + (v / radius) ** 2) - 1) * radius
    return np.maximum(ellipse, -u)


def contraction(t: np.ndarray | float) -> np.ndarray | float:
    """Share of systolic contraction at cardiac phase t in [0, 1): a peak at 35 % of the cycle."""
    return np.exp(-(((np.asarray(t) - 0.35) / 0.17) ** 2))


class Subject:
    """One subject's anatomy sizes, signal values per contrast, long axis and vendor."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.vendor = "C" if rng.random() < 0.5 else "D"
        self.body = (rng.uniform(150, 195), rng.uniform(100, 130), rng.uniform(2.4, 3.6))
        self.fat = rng.uniform(8, 25)
        self.lv = rng.uniform(22, 30)
        self.wall = rng.uniform(7, 12)
        self.length = rng.uniform(70, 95)
        self.rv = rng.uniform(1.0, 1.3)
        self.aorta = rng.uniform(12, 17)
        self.scar = (rng.uniform(0, 2 * np.pi), rng.uniform(0.6, 1.4)) if rng.random() < 0.6 else None
        self.values = {name: {t: rng.uniform(*ranges[t]) for t in TISSUES} for name, ranges in CONTRASTS.items()}
        axis = np.array([0.6, -0.45, -0.65]) + rng.normal(0, 0.08, 3)
        self.long_axis = axis / np.linalg.norm(axis)
        self.heart = np.array([25.0, -40.0, -10.0]) + rng.normal(0, 8, 3)
        self.snr = rng.uniform(15, 40)


class View:
    """One acquisition's 2-D drawing: display grid, acquired share of k-space, anatomy rotation and offset."""

    def __init__(self, kind: str, s: Subject, fov=(300.0, 420.0), matrices=(160, 192, 224, 256, 288, 320)):
        rng = s.rng
        self.kind, self.s = kind, s
        self.fov = rng.uniform(*fov)
        cols = int(rng.choice(matrices))
        self.shape = (int(round(cols * rng.uniform(0.75, 1.0) / 16) * 16), cols)
        #: acquired share of k-space per axis (the rest zero-filled): 0.5 is a 2 x interpolated display
        self.acquired = (rng.uniform(0.45, 0.9), rng.uniform(0.45, 0.9))
        self.turn = np.deg2rad(rng.uniform(-20, 20))
        self.offset = rng.normal(0, 12, 2)
        self.coil = (rng.uniform(120, 300), rng.uniform(0.2, 0.6))

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Anatomy coordinates (mm) of the display pixels, the anatomy turned and shifted in the image."""
        rows, cols = self.shape
        spacing = self.fov / cols
        y, x = np.meshgrid((np.arange(rows) - rows / 2) * spacing, (np.arange(cols) - cols / 2) * spacing,
                           indexing="ij")
        x, y = x - self.offset[1], y - self.offset[0]
        c, s = np.cos(self.turn), np.sin(self.turn)
        return c * x + s * y, -s * x + c * y

    def layers(self, t: float, level: float = 0.0) -> list[tuple[str, np.ndarray]]:
        """(tissue, soft mask) from back to front at cardiac phase ``t``; ``level`` in [-1, 1] moves a
        short-axis slice from base to apex."""
        x, y = self.grid()
        s, k = self.s, contraction(t)
        a, b, p = s.body
        out = [("body", _inside(_superellipse(x, y, a, b, p))),
               ("fat", _inside(_superellipse(x, y, a, b, p)) - _inside(_superellipse(x, y, a - s.fat, b - s.fat, p)))]
        if self.kind in ("sax", "axial"):
            out += [("lung", _inside(_circle(x / 1.3, y, -0.4 * a / 1.3, -0.05 * b, 0.45 * b))),
                    ("lung", _inside(_circle(x / 1.3, y, 0.45 * a / 1.3, -0.05 * b, 0.4 * b))),
                    ("spine", _inside(_circle(x, y, 0, 0.72 * b, 16)))]
            cx, cy = 0.25 * a, -0.15 * b
            scale = 1 - 0.35 * level if self.kind == "sax" else 1.0
            radius = s.lv * scale * (1 - 0.3 * k)
            angle = np.arctan2(y - cy, x - cx)
            endo = radius * (1 + 0.07 * np.cos(2 * angle + 0.6))
            wall = s.wall * (1 + 0.45 * k)
            r = np.hypot(x - cx, y - cy)
            epi = _inside(r - endo - wall)
            rv_centre = (cx - (radius + wall) * 0.9, cy - 0.2 * radius)
            rv = _inside(_circle(x, y, *rv_centre, radius * s.rv * (1 - 0.2 * k)))
            out += [("myo", np.maximum(epi, rv * _inside(_circle(x, y, *rv_centre, radius * s.rv + 3)))),
                    ("blood", rv * (1 - epi)), ("blood", _inside(r - endo))]
            if s.scar is not None:
                sector = np.cos(angle - s.scar[0]) > np.cos(s.scar[1] / 2)
                out.append(("scar", epi * (1 - _inside(r - endo)) * sector * _inside(r - endo - 0.6 * wall)))
            for shift in (0.5, -0.6):  # papillary muscles
                out.append(("myo", _inside(_circle(x, y, cx + 0.45 * radius * np.cos(shift + 2),
                                                   cy + 0.45 * radius * np.sin(shift + 2), 0.18 * radius))))
            return out
        if self.kind in ("vla", "hla", "3ch"):
            out += [("lung", _inside(_circle(x / 1.4, y, 0.3 * a / 1.4, -0.3 * b, 0.45 * b))),
                    ("liver", _inside(_superellipse(x - 0.1 * a, y - 0.75 * b, 0.5 * a, 0.35 * b, 2)))]
            u, v = x + 0.2 * s.length, y  # the valve plane left of centre, the apex to the right
            length, radius, wall = s.length * (1 - 0.12 * k), s.lv * (1 - 0.3 * k), s.wall * (1 + 0.45 * k)
            la = _inside(np.hypot((u + 0.35 * s.length) / (0.35 * s.length * (1 + 0.15 * k)), v / (0.9 * s.lv))
                         * 0.9 * s.lv - 0.9 * s.lv)
            out += [("myo", _inside(_bullet(u, v, length + wall, radius + wall))), ("blood", la),
                    ("blood", _inside(_bullet(u, v, length, radius)))]
            if self.kind == "hla":
                vr = v + radius + wall + s.lv * s.rv * 0.8
                out += [("myo", _inside(_bullet(u, vr, 0.8 * length + 3, s.lv * s.rv * 0.8 + 3))),
                        ("blood", _inside(_bullet(u, vr, 0.8 * length, s.lv * s.rv * 0.8))),
                        ("blood", _inside(np.hypot((u + 0.3 * s.length) / (0.3 * s.length), vr / s.lv) * s.lv
                                          - s.lv))]
            if self.kind == "3ch":  # the outflow tract and aortic root leaving the base upwards
                direction = np.array([-0.55, -0.85])
                along = u * direction[0] + (v + 0.5 * radius) * direction[1]
                across = -u * direction[1] + (v + 0.5 * radius) * direction[0]
                root = np.maximum(np.abs(across) - s.aorta, np.abs(along - 45) - 45)
                out += [("myo", _inside(root - 2.5)), ("blood", _inside(root))]
            if s.scar is not None and self.kind == "vla":
                out.append(("scar", _inside(_bullet(u, v, length + wall, radius + wall))
                            * (1 - _inside(_bullet(u, v, length + 0.4 * wall, radius + 0.4 * wall)))
                            * (v > 0) * (u > 0.4 * length)))
            return out
        if self.kind == "flow":  # through the ascending aorta: ascending, descending aorta, pulmonary trunk
            out += [("lung", _inside(_circle(x, y, -0.45 * a, 0, 0.42 * b))),
                    ("lung", _inside(_circle(x, y, 0.45 * a, 0, 0.42 * b))),
                    ("spine", _inside(_circle(x, y, 0, 0.72 * b, 16)))]
            for cx, cy, r in self.vessels():
                out.append(("blood", _inside(_circle(x, y, cx, cy, r * (1 + 0.08 * k)))))
            return out
        if self.kind in ("coronal", "sagittal"):
            out += [("lung", _inside(_superellipse(x, y + 0.2 * b, 0.8 * a, 0.55 * b, 2))),
                    ("liver", _inside(_superellipse(x + 0.2 * a, y - 0.6 * b, 0.6 * a, 0.3 * b, 2))),
                    ("myo", _inside(_circle(x / 1.3, y, 0.1 * a / 1.3, 0.05 * b, s.lv + s.wall + 10))),
                    ("blood", _inside(_circle(x / 1.3, y, 0.1 * a / 1.3, 0.05 * b, s.lv + 8)))]
            return out
        raise ValueError(f"unknown view {self.kind!r}")

    def vessels(self) -> list[tuple[float, float, float]]:
        a, b = self.s.body[:2]
        return [(0.05 * a, -0.25 * b, self.s.aorta), (0.05 * a, 0.5 * b, 0.75 * self.s.aorta),
                (0.25 * a, -0.3 * b, 0.9 * self.s.aorta)]

    def draw(self, t: float, values: dict[str, float], level: float = 0.0) -> np.ndarray:
        img = np.zeros(self.shape)
        for tissue, mask in self.layers(t, level):
            img = img * (1 - mask) + values[tissue] * mask
        return img

    def acquire(self, frames: np.ndarray, snr: float, rng: np.random.Generator, noise: bool = True) -> np.ndarray:
        """(frames, rows, cols) images as acquired: k-space truncated, then (unless ``noise`` is false: a
        parametric map) the surface-coil profile and Rician noise."""
        rows, cols = self.shape
        fy, fx = np.fft.fftfreq(rows), np.fft.fftfreq(cols)
        keep = (np.abs(fy)[:, None] <= 0.5 * self.acquired[0]) & (np.abs(fx)[None, :] <= 0.5 * self.acquired[1])
        out = np.real(np.fft.ifft2(np.fft.fft2(frames, axes=(1, 2)) * keep, axes=(1, 2)))
        if not noise:
            return np.abs(out).astype(np.float32)
        y = np.linspace(-1, 1, rows)[:, None] * np.cos(self.turn)
        reach, floor = self.coil
        out = out * (floor + np.exp(-(y + 1) * self.fov / reach))
        sigma = float(np.percentile(np.abs(out), 99)) / snr
        return np.hypot(out + rng.normal(0, sigma, out.shape), rng.normal(0, sigma, out.shape)).astype(np.float32)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def _planes(view: View, centre: np.ndarray, normal, n: int, gap: float) -> list[Plane]:
    """``n`` parallel planes ``gap`` mm apart through ``centre``, turned in-plane as the drawing is."""
    normal = _unit(normal)
    helper = np.array([0.0, 0.0, 1.0]) if abs(normal[2]) < 0.9 else np.array([0.0, 1.0, 0.0])
    col = _unit(helper - normal * (helper @ normal))
    row = np.cross(col, normal)
    c, s = np.cos(view.turn), np.sin(view.turn)
    row, col = c * row + s * col, -s * row + c * col
    spacing = view.fov / view.shape[1]
    return [Plane(centre + normal * gap * (k - (n - 1) / 2), row, col, view.shape, spacing) for k in range(n)]


def subject_series(seed: int, subject: int, balanced: bool) -> list[Series]:
    """All series of one contour-family subject; deterministic in (seed, subject)."""
    rng = np.random.default_rng([seed, subject, 5051])
    s = Subject(rng)
    names = DESCRIPTIONS[s.vendor]
    enhanced = s.vendor == "C"
    rr = 60000 / rng.uniform(55, 95)
    n_cine = int(rng.integers(20, 31))
    u = s.long_axis
    w = _unit(np.cross(u, [0.0, 0.0, 1.0]))
    normals = {"sax": u, "vla": w, "hla": np.cross(u, w), "3ch": np.cos(0.8) * w + np.sin(0.8) * np.cross(u, w)}
    out: list[Series] = []
    mag = ["ORIGINAL", "PRIMARY", "M", "NONE"]

    def want(p: float) -> bool:
        return balanced or rng.random() < p

    def series(category, kind, contrast, n_slices, phases, *, gap=10.0, normal=None, multi=True, extra=None,
               trigger=None, image_type=mag, values=None, noise=True):
        view = View(kind, s)
        planes = _planes(view, s.heart, normals.get(kind) if normal is None else normal, n_slices, gap)
        images = []
        for k in range(n_slices):
            level = 2 * k / (n_slices - 1) - 1 if n_slices > 1 else 0.0
            frames = np.stack([view.draw(t, (values or (lambda t: s.values[contrast]))(t), level) for t in phases])
            if extra is not None:
                frames = extra(frames, view, phases)
            images.append(view.acquire(frames, s.snr, rng, noise))
        out.append(Series(category, names[category], planes, images,
                          phases * rr if trigger is None else trigger, list(image_type),
                          enhanced=enhanced and multi and len(phases) > 1))
        return view, planes

    phases = np.arange(n_cine) / n_cine
    series("short_axis_cine", "sax", "ssfp", 1 if balanced else int(rng.integers(6, 13)), phases,
           gap=rng.uniform(8, 11))
    for kind, category in (("vla", "vla_cine"), ("hla", "hla_cine"), ("3ch", "three_chamber_cine")):
        if want(0.85):
            series(category, kind, "ssfp", 1, phases)
    # flow: magnitude brightened by inflow; velocity through the plane, + ascending, - descending
    n_flow = int(rng.integers(25, 41))
    flow_phases = np.arange(n_flow) / n_flow
    gre = s.values["gre"]
    view, planes = series("flow_magnitude", "flow", "gre", 1, flow_phases, normal=[-0.2, -0.25, 1.0],
                          values=lambda t: {**gre, "blood": gre["blood"] * (1 + 1.5 * contraction(t))})
    x, y = view.grid()
    velocity = np.zeros((n_flow,) + view.shape)
    for (cx, cy, r), sign in zip(view.vessels(), (1.0, -0.6, 0.7)):
        velocity += sign * _inside(_circle(x, y, cx, cy, r))[None] * contraction(flow_phases)[:, None, None]
    magnitude = out[-1].images[0]
    weight = np.clip(magnitude / np.percentile(magnitude, 70), 0, 1)
    phase = (weight * (0.8 * velocity + rng.normal(0, 0.03, velocity.shape))
             + (1 - weight) * rng.uniform(-1, 1, velocity.shape))
    group = f"flow-{subject}" if s.vendor == "D" else None
    out[-1].group = group
    out[-1].enhanced = False
    out.append(Series("flow_velocity", names["flow_velocity"], planes, [np.clip(phase, -1, 1).astype(np.float32)],
                      flow_phases * rr, ["ORIGINAL", "PRIMARY", "P", "NONE"], signed=True, group=group))
    if want(0.5):
        spacing, angle, grid = rng.uniform(6, 9), rng.uniform(0, np.pi), rng.random() < 0.5

        def stripes(frames, view, phases):
            x, y = view.grid()
            along = x * np.cos(angle) + y * np.sin(angle)
            lines = np.cos(np.pi * along / spacing) ** 2
            if grid:
                lines = np.minimum(lines, np.cos(np.pi * (-x * np.sin(angle) + y * np.cos(angle)) / spacing) ** 2)
            depth = 0.85 * np.exp(-phases * rr / 700)
            return frames * (1 - depth[:, None, None] * (1 - lines[None]))

        n_tag = int(rng.integers(10, 21))
        series("tagging", "sax", "gre", 1 if balanced else int(rng.integers(1, 4)), np.arange(n_tag) / n_tag * 0.7,
               gap=20.0, extra=stripes)
    if want(0.5):
        series("t1_map", "sax", "t1", 1 if balanced else int(rng.integers(1, 4)), np.array([0.7]), gap=15.0,
               multi=False, image_type=["DERIVED", "PRIMARY", "T1 MAP", "NONE"], noise=False,
               extra=lambda frames, view, phases: frames * (1 + 0.03 * rng.standard_normal(frames.shape)))
        out[-1].storage = "16bit"
    if want(0.35):
        series("lge", "sax", "lge", 1 if balanced else int(rng.integers(6, 13)), np.array([0.7]),
               gap=rng.uniform(8, 11), multi=False, trigger=np.array([0.7 * rr]))
    if want(0.4):
        n_dyn = int(rng.integers(35, 56))
        arrival = rng.uniform(6, 12)

        def first_pass(delay: float, width: float, height: float):
            def curve(t):
                d = np.maximum(t * n_dyn - arrival - delay, 0)
                return height * (d / width) ** 2 * np.exp(2 - 2 * d / width) / 1.0
            return curve

        blood, myo = first_pass(0, 6, 0.8), first_pass(4, 10, 0.25)
        base = {t: 0.1 * v for t, v in s.values["gre"].items()}
        n_perf = 1 if balanced else 3
        if s.vendor == "D":  # a series per slice
            for k in range(n_perf):
                series("perfusion", "sax", "gre", 1, np.arange(n_dyn) / n_dyn, trigger=np.arange(n_dyn) * rr,
                       values=lambda t: {**base, "blood": base["blood"] + blood(t), "myo": base["myo"] + myo(t)})
        else:
            series("perfusion", "sax", "gre", n_perf, np.arange(n_dyn) / n_dyn, gap=20.0,
                   trigger=np.arange(n_dyn) * rr,
                   values=lambda t: {**base, "blood": base["blood"] + blood(t), "myo": base["myo"] + myo(t)})
    if want(0.45):
        axial = rng.random() < 0.5
        series("dark_blood", "axial" if axial else "sax", "dark", 1 if balanced else int(rng.integers(1, 4)),
               np.array([0.9]), gap=12.0, normal=[0, 0, 1.0] if axial else None, multi=False)
    # survey: three slices in each of three orientations, one series
    survey = []
    for kind, normal in (("axial", [0, 0, 1.0]), ("coronal", [0, 1.0, 0]), ("sagittal", [1.0, 0, 0])):
        view = View(kind, s, fov=(400, 480), matrices=(128, 160, 192))
        for plane in _planes(view, s.heart, normal, 1 if balanced else 3, 15.0):
            survey.append((plane, view.acquire(view.draw(0.7, s.values["ssfp"])[None], s.snr * 0.7, rng)))
    out.append(Series("survey", names["survey"], [p for p, _ in survey], [i for _, i in survey], np.array([0.0]),
                      list(mag)))
    return out
