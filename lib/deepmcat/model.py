"""The network: a MONAI ResNet backbone, a per-epoch cluster head and a contrastive projection head."""

from __future__ import annotations

import torch
from monai.networks.nets import ResNet
from torch import nn

from deepmcat.config import ModelConfig


class DeepMCATNet(nn.Module):
    """Backbone features for clustering; ``head`` predicts pseudo-labels, ``projector`` serves the
    contrastive term. 2-D: the canonical tensor's channels (frames, per scale) are input channels; 3-D: they
    are depth with one channel."""

    def __init__(self, channels: int, cfg: ModelConfig, n_clusters: int = 2, views: int = 1):
        super().__init__()
        if cfg.spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, not {cfg.spatial_dims}")
        if cfg.stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, not {cfg.stem_stride}")
        if cfg.motion and (cfg.spatial_dims != 2 or channels % views):
            raise ValueError(f"motion channels need the 2-D network and {channels} channels in {views} scales")
        self.spatial_dims = cfg.spatial_dims
        self.views = views if cfg.motion else 0
        if self.views:
            channels += views
        self.backbone = ResNet(
            block="basic",
            layers=list(cfg.layers),
            block_inplanes=list(cfg.widths),
            spatial_dims=cfg.spatial_dims,
            n_input_channels=channels if cfg.spatial_dims == 2 else 1,
            feed_forward=False,
            conv1_t_stride=cfg.stem_stride,
            no_max_pool=cfg.stem_stride > 1,
        )
        self.feature_dim = cfg.widths[-1]
        self.projector = nn.Sequential(
            nn.Linear(self.feature_dim, self.feature_dim), nn.ReLU(inplace=True), nn.Linear(self.feature_dim, 64)
        )
        self.head = nn.Linear(self.feature_dim, n_clusters)
        if self.spatial_dims == 2:
            # channels-last convolutions (oneDNN's preferred layout): the demo's training took 243 s instead of
            # 295 s on this project's 2-core CPU (README, "The main job"); the layout changes, not the values
            self.to(memory_format=torch.channels_last)

    def reset_head(self, n_clusters: int) -> None:
        """DeepCluster re-initialises the classifier every epoch: cluster ids are arbitrary."""
        device = next(self.parameters()).device
        self.head = nn.Linear(self.feature_dim, n_clusters).to(device)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, channels, H, W) canonical tensors → (batch, feature_dim)."""
        if self.spatial_dims == 3:
            x = x.unsqueeze(1)
        else:
            if self.views:
                x = torch.cat([x, temporal_spread(x, self.views)], dim=1)
            x = x.contiguous(memory_format=torch.channels_last)
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return f, self.head(f), self.projector(f)


def temporal_spread(x: torch.Tensor, views: int) -> torch.Tensor:
    """(batch, views, H, W): each scale's standard deviation over its frames, in two passes. Equal to
    ``Tensor.std(unbiased=False)`` over that dimension, whose CPU kernel took ~0.09 s a batch of 64 here (a
    strided reduction), ~75 % more training time; this takes ~0.02 s (2-core machine)."""
    scales = x.unflatten(1, (views, -1))
    return (scales - scales.mean(dim=2, keepdim=True)).square().mean(dim=2).sqrt()
