"""Configuration: one dataclass per concern, serialised with every model so predictions are reproducible."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar


#: what :func:`deepmcat.preprocess.canonical` makes of the same settings: raise it when that changes, so that
#: tensors cached by an earlier version (:mod:`deepmcat.cache`) are made anew
PREPROCESS_VERSION = 1


@dataclass
class PreprocessConfig:
    """How any unit becomes the canonical (frames, size, size) tensor."""

    frames: int = 8
    size: int = 64
    #: intensity percentiles mapped to [0, 1] (or, for signed images, |.| to [-1, 1])
    low_percentile: float = 1.0
    high_percentile: float = 99.0
    #: multi-scale input: besides the whole field of view, the central square of this fraction of its longer
    #: side at the same ``size`` (second set of ``frames`` channels): the heart fills a tenth of a torso
    #: field of view but most of a zoomed one. 0: the whole field of view only (about a quarter less
    #: training time; 0.5 chosen on the design families, ``benchmarks/README.md``)
    centre_crop: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.centre_crop < 1:
            raise ValueError(f"centre_crop must be in [0, 1) (0: no second scale), not {self.centre_crop}")

    @property
    def views(self) -> int:
        """Scales the tensor holds, each ``frames`` channels."""
        return 2 if self.centre_crop > 0 else 1

    @property
    def channels(self) -> int:
        return self.frames * self.views


@dataclass
class ModelConfig:
    """The backbone: a MONAI ResNet, 2-D with frames as channels or 3-D with frames as depth."""

    spatial_dims: int = 2
    #: residual blocks per stage (4 stages): [1, 1, 1, 1] is ResNet-10, [2, 2, 2, 2] ResNet-18
    layers: tuple[int, ...] = (1, 1, 1, 1)
    widths: tuple[int, ...] = (16, 32, 64, 128)
    #: the stem's downsampling: 1 = a 7 x 7 convolution at full resolution, then max-pooling (ResNet's);
    #: 2 = the convolution strided, no max-pooling (same feature-map sizes, a quarter of the stem's work,
    #: which dominates this small network)
    stem_stride: int = 1
    #: each scale's temporal standard deviation (how much the pixel moves over the frames or slices) as one
    #: more input channel: the 2-D stem sums frames linearly and cannot form it itself. Off: on 2026-12-07 it
    #: lifted the design families (blob 0.708 -> 0.788 purity) but lost LGE on the held-out contour family in
    #: every seed (0.991 -> 0.953; benchmarks/README.md, "Motion channels")
    motion: bool = False


@dataclass
class ClusterConfig:
    """Feature post-processing and faiss k-means (DeepCluster's recipe, scaled down for small sets)."""

    #: number of final clusters (categories)
    clusters: int = 12
    #: pseudo-label clusters used while training; 0 means 4 x clusters (over-clustering)
    train_clusters: int = 0
    pca_dim: int = 16
    #: PCA whitening (DeepCluster's eigen power -0.5), applied only when there are at least
    #: ``whiten_min_points`` points per dimension. Off: it gives the weakest of the 16 directions the weight
    #: of the strongest, and on the design families it cost classic 0.05-0.09 purity (16 and 40 subjects)
    #: while it gave torso 0.03 or nothing (benchmarks/README.md, "Whitening")
    whiten: bool = False
    whiten_min_points: int = 10
    niter: int = 30
    #: k-means restarts, the lowest objective kept: cheap on acquisition means, and with few restarts a
    #: small category is often merged into a neighbour while a large one is split (benchmarks/README.md)
    nredo: int = 20
    #: fit PCA and k-means on acquisition means (one point per series and image type) rather than units
    by_acquisition: bool = True
    #: how the final ``clusters`` categories are cut (the pseudo-labels are always k-means): "spectral" (the
    #: acquisitions' nearest-neighbour graph, :func:`deepmcat.clustering.spectral_clusters`) or "kmeans"
    final_method: str = "spectral"
    #: neighbours each acquisition is joined to in that graph (10: chosen on the design families among 5-20)
    spectral_neighbours: int = 10
    #: the graph is built on at most this many acquisitions (a random sample beyond), all then assigned
    spectral_max_points: int = 20_000
    #: when a unit is assigned, its embedding is mixed with its acquisition's with this weight: the slices
    #: of one stack decide together, while a unit unlike the rest of its series can still go elsewhere
    acquisition_weight: float = 0.5
    #: weight of the series-structure coordinates (slices in the stack, frames per slice; standardised) next
    #: to the L2-normalised embedding in the final clustering and at inference (:mod:`deepmcat.structure`);
    #: 0 leaves them out. 0.3: chosen on the design families (benchmarks/README.md)
    structure_weight: float = 0.3
    #: frames per slice count up to this many in that structure: a 12-frame and a 30-frame flow series are one
    #: kind of acquisition, a 1-, 3- or 9-image series are not. Uncapped, the frame count split categories
    #: whose frame count varies (flow phase of 12-30 frames, the demo); 16 chosen on the design families
    #: among 0 (no cap), 8 and 16 (benchmarks/README.md, "Series structure")
    structure_depth_cap: int = 16
    #: weight of the scan plane's axis (:func:`deepmcat.structure.plane_axis`: two planes at angle θ lie
    #: ``2 sin²θ`` x weight² apart, squared) in the final clustering and at inference; 0 leaves it out.
    #: 0.3: chosen on the design families with the spectral final clustering (benchmarks/README.md)
    plane_weight: float = 0.3
    #: weight of the pair flag (:mod:`deepmcat.stacks`: the examination holds another image type acquired
    #: alike, as flow magnitude holds its phase) in the final clustering and at inference; 0 leaves it out.
    #: 0.6: on the design families torso 0.912 -> 0.941 purity, blob 0.693 -> 0.736, classic unchanged (1.0
    #: gains 0.001-0.008 more). A category paired in some examinations and not in others (LGE with and
    #: without a PSIR image) is split by it: the classic generator's flow phase, written at another
    #: orientation than its magnitude until 2026-12-07, lost 0.18 that way (benchmarks/README.md, "The pair
    #: flag")
    pair_weight: float = 0.6
    #: weight of the static flag (:func:`deepmcat.structure.is_static`: slices of a volume or one image, not
    #: times) in the final clustering and at inference; 0 leaves it out. With ``over_cluster`` 1.5: torso
    #: 0.972 -> 0.988 purity over 3 training seeds, late enhancement kept (it shared T1 mapping's cluster),
    #: blob 0.708 -> 0.717, held-out contour 0.991 -> 0.994. 0.8: the smallest of 0.5, 0.6, 0.8 and 1.0 that
    #: keeps torso's LGE; 0.8 and 1.0 score alike on every family, and at 1.0 a model retrained with
    #: clinicians' categories answered one of their series with another category (benchmarks/README.md,
    #: "Over-cluster, then merge")
    static_weight: float = 0.8
    #: the final cut first makes this many times ``clusters`` clusters of the nearest-neighbour graph, then
    #: joins the pair most connected in the graph and alike in series structure until ``clusters`` remain
    #: (:func:`deepmcat.clustering.merge_clusters`): a cut straight into ``clusters`` split a large category
    #: (flow magnitude turned two ways) rather than cut off a small one; 1 cuts straight
    over_cluster: float = 1.5
    #: a unit whose novelty score (:mod:`deepmcat.novelty`: mean squared distance to its nearest training
    #: units) exceeds this percentile of the training units' scores against other examinations is answered
    #: "unknown" (a series when most of its units are); 0 switches the flag off. 99: on the design families
    #: 3.1 % of known series of unseen examinations called unknown, half the left-out categories' series
    #: caught (benchmarks/README.md, "Which score says unknown")
    unknown_percentile: float = 99.0
    #: nearest training units the novelty score averages over
    unknown_neighbours: int = 5
    #: how much more the series-structure coordinates weigh in the novelty score than in the clustering.
    #: 2: on the design families (6 categories left out in turn on each) the series AUROC rose on all three
    #: (0.816 -> 0.837 mean), 0.94 of package images caught instead of 0.85, fewer false unknowns
    #: (benchmarks/README.md, "Which score says unknown")
    unknown_structure_scale: float = 2.0
    #: training units kept in a published model as the novelty reference (a random sample beyond it)
    unknown_reference: int = 20_000

    def __post_init__(self) -> None:
        if self.final_method not in ("spectral", "kmeans"):
            raise ValueError(f"unknown final_method {self.final_method!r}: use spectral or kmeans")
        if self.spectral_neighbours < 1 or self.spectral_max_points < 2:
            raise ValueError(f"spectral_neighbours must be at least 1 and spectral_max_points 2, not "
                             f"{self.spectral_neighbours} and {self.spectral_max_points}")
        if not self.unknown_structure_scale > 0:
            raise ValueError(f"unknown_structure_scale must be positive, not {self.unknown_structure_scale}")
        if not self.over_cluster >= 1:
            raise ValueError(f"over_cluster must be at least 1 (1: no merging), not {self.over_cluster}")

    def n_train_clusters(self, n_samples: int) -> int:
        k = self.train_clusters or 4 * self.clusters
        return max(2, min(k, n_samples // 2))


@dataclass
class AugmentConfig:
    """The two views of each unit in training (``deepmcat.augment``): what the features must not depend on."""

    rotate_deg: float = 15.0
    #: probability of a mirrored view
    flip: float = 0.0
    #: random resized crop (SimCLR): the window's area relative to the field of view (above 1: zoomed out,
    #: zero-padded), and its aspect-ratio range
    crop_area: tuple[float, float] = (0.35, 1.0)
    crop_aspect: tuple[float, float] = (0.75, 1.333)
    #: probability of a random intensity curve, its knots, and the share of curves that keep intensity order
    curve: float = 0.0
    curve_knots: int = 6
    curve_monotone: float = 0.5
    gamma: tuple[float, float] = (0.7, 1.5)
    bias: float = 0.3
    noise: float = 0.03
    #: probability of starting the cine at another cardiac phase (frames rolled)
    roll_frames: float = 0.5


@dataclass
class TrainConfig:
    """The DeepCluster alternation: epochs, optimisation, sampling, augmentation, hardware."""

    #: DeepCluster epochs (clustering + pseudo-label training); measured: on small collections most of
    #: the quality comes from the contrastive warm-up (benchmarks/README.md)
    epochs: int = 5
    #: self-supervised contrastive warm-up epochs before the first clustering
    warmup_epochs: int = 45
    batch_size: int = 64
    #: "sgd" (DeepCluster's) or "adamw"
    optimizer: str = "sgd"
    lr: float = 0.05
    #: "cosine" decays the learning rate from ``lr`` towards 0 over all epochs; "constant" keeps it
    lr_schedule: str = "cosine"
    momentum: float = 0.9
    weight_decay: float = 1e-5
    #: contrastive negatives: "study" uses only other acquisitions of the anchor's own examination (other
    #: subjects' acquisitions of the same category are not pushed away; anchors without any fall back to
    #: the whole batch), "batch" every other unit in the batch (SimCLR)
    negatives: str = "study"
    #: weight of the pseudo-label cross-entropy next to the contrastive term in the clustering epochs
    cluster_weight: float = 0.5
    #: sample pseudo-label clusters uniformly (the paper's answer to imbalance)
    uniform_sampling: bool = True
    augment: bool = True
    device: str = "auto"
    amp: bool = True
    seed: int = 0


@dataclass
class DeepMCATConfig:
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    #: the flat settings the command line and the app take, and the part of the config each belongs to
    FLAT: ClassVar[dict[str, str]] = {
        "frames": "preprocess", "size": "preprocess", "centre_crop": "preprocess", "clusters": "cluster",
        "train_clusters": "cluster", "epochs": "train", "warmup_epochs": "train", "batch_size": "train",
        "device": "train", "seed": "train", "uniform_sampling": "train"}

    #: what a saved config meant by a setting it does not name: it was written before the setting existed,
    #: by code that worked without it (a model trained on one scale must not be read at two)
    BEFORE: ClassVar[dict[str, dict]] = {"preprocess": {"centre_crop": 0.0}}

    def to_dict(self) -> dict:
        return asdict(self)

    def override(self, **flat) -> "DeepMCATConfig":
        """A copy with flat settings (``clusters=12, frames=8, ...``; None values skipped) put where they
        belong; an unknown key raises ValueError."""
        unknown = set(flat) - set(self.FLAT)
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}: known are {sorted(self.FLAT)}")
        data = self.to_dict()
        for key, value in flat.items():
            if value is not None:
                data[self.FLAT[key]][key] = value
        return DeepMCATConfig.from_dict(data)

    @classmethod
    def from_saved(cls, data: dict) -> "DeepMCATConfig":
        """The config a model was published with: what it does not name is what the code that wrote it did
        (:attr:`BEFORE`), not today's default."""
        return cls.from_dict({part: {**cls.BEFORE.get(part, {}), **data.get(part, {})}
                              for part in set(data) | set(cls.BEFORE)})

    @classmethod
    def from_dict(cls, data: dict) -> "DeepMCATConfig":
        parts = {}
        for f in fields(cls):
            sub_cls = f.default_factory  # type: ignore[misc]
            known = {g.name for g in fields(sub_cls)}
            values = {k: v for k, v in data.get(f.name, {}).items() if k in known}
            for k, v in values.items():
                if isinstance(v, list):
                    values[k] = tuple(v)
            parts[f.name] = sub_cls(**values)
        return cls(**parts)
