"""The contrastive term of DeepMCAT's training: views of one acquisition group are positives of each other."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def group_contrastive(z1: torch.Tensor, z2: torch.Tensor, groups: torch.Tensor, temperature: float = 0.2,
                      studies: torch.Tensor | None = None) -> torch.Tensor:
    """Contrastive loss over two views of a batch where every view of the same *group* is a positive.

    Groups are acquisition groups (units of one DICOM series with one image type: the slices of a short-axis
    stack, the planes of a scout), known from the headers without any label. With every unit its own group
    this is SimCLR's NT-Xent; with series groups it is the supervised-contrastive form (Khosla et al. 2020)
    fed by DICOM structure, which makes features invariant to slice position within an acquisition.

    With ``studies``, an anchor's negatives are only the other acquisitions of its own study (examination):
    those are other categories, while another subject's acquisition may well be the same category, and
    pushing it away would teach patient identity instead of category.
    """
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    g = torch.cat([groups, groups])
    sim = z @ z.t() / temperature
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    positives = (g[:, None] == g[None, :]) & ~self_mask
    if studies is not None:  # negatives only from the anchor's own study, where it has any in this batch
        s = torch.cat([studies, studies])
        same = s[:, None] == s[None, :]
        has_negatives = (same & ~positives & ~self_mask).any(dim=1, keepdim=True)
        sim = sim.masked_fill(has_negatives & ~same & ~positives, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    return -(log_prob.masked_fill(~positives, 0).sum(1) / positives.sum(1)).mean()
