"""Pair labels and IRN's losses (``GetAffinityLabelFromIndices``, ``AffinityDisplacementLoss`` and the loss
assembly of ``train_irn``), written against :mod:`irn.path_index`.

Shapes: B images, D directions (grouped order of the path index), S source pixels of the window.
"""
from __future__ import annotations

import torch

from irn.path_index import PathIndex, PathIndices, edge_to_affinity, pair_endpoints

IGNORE = 255
EPS = 1e-5  # the reference's +1e-5 inside the logs and in every average's denominator


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Losses are computed in float32 (or float64) even when the network ran under autocast."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def affinity_labels(labels: torch.Tensor, indices: PathIndices) -> dict[str, torch.Tensor]:
    """Pair masks of a stride-4 label map (B, h, w) (0 bg, 1..C-1 classes, 255 ignore) -> float (B, D, S) each:
    ``bg_pos`` equal labels, both 0; ``fg_pos`` equal labels > 0; ``neg`` different labels; pairs with a 255 end
    belong to none."""
    src, dst = pair_endpoints(labels.long(), indices)
    valid = (src != IGNORE) & (dst != IGNORE)
    equal = src == dst
    return {"bg_pos": (equal & valid & (src == 0)).float(),
            "fg_pos": (equal & valid & (src > 0)).float(),
            "neg": (~equal & valid).float()}


def masked_mean(values: torch.Tensor, mask: torch.Tensor, *, extra_divisor: float = 1.0) -> torch.Tensor:
    """sum(values * mask) / (extra_divisor * sum(mask) + 1e-5); ``mask`` broadcasts against ``values``."""
    return torch.sum(values * mask) / (extra_divisor * torch.sum(mask) + EPS)


def affinity_losses(edge_logits: torch.Tensor, pair_labels: dict[str, torch.Tensor],
                    indices: PathIndices) -> dict[str, torch.Tensor]:
    """Affinity ``1 - max(sigmoid(edge) on the path)``; positives ``-log(aff + 1e-5)`` averaged over bg_pos and over
    fg_pos separately and then halved together; negatives ``-log(1 + 1e-5 - aff)`` averaged over neg."""
    affinity = edge_to_affinity(torch.sigmoid(at_least_float32(edge_logits)), indices)
    pos_term = -torch.log(affinity + EPS)
    neg_term = -torch.log(1.0 + EPS - affinity)
    bg_pos = masked_mean(pos_term, pair_labels["bg_pos"])
    fg_pos = masked_mean(pos_term, pair_labels["fg_pos"])
    return {"pos": bg_pos / 2 + fg_pos / 2, "neg": masked_mean(neg_term, pair_labels["neg"]),
            "bg_pos": bg_pos, "fg_pos": fg_pos}


def pair_displacement(displacement: torch.Tensor, indices: PathIndices) -> torch.Tensor:
    """D(src) - D(dst) of every pair: displacement (B, 2, h, w) -> (B, 2, D, S)."""
    batch = displacement.shape[0]
    src, dst = pair_endpoints(displacement.reshape(batch * 2, *displacement.shape[2:]), indices)
    return (src - dst).view(batch, 2, *dst.shape[1:])


def displacement_losses(displacement: torch.Tensor, pair_labels: dict[str, torch.Tensor], path_index: PathIndex,
                        indices: PathIndices) -> dict[str, torch.Tensor]:
    """fg: |D(src) - D(dst) - (dy, dx)|_1 over fg_pos pairs; bg: |D(src) - D(dst)|_1 over bg_pos pairs; each summed
    over the two channels and divided by 2 * (number of pairs) + 1e-5 (the reference's normalisation)."""
    pair = pair_displacement(at_least_float32(displacement), indices)
    target = torch.as_tensor(path_index.directions, dtype=pair.dtype, device=pair.device).t()  # (2, D)
    fg_term = torch.abs(pair - target[None, :, :, None])
    bg_term = torch.abs(pair)
    return {"dp_fg": masked_mean(fg_term, pair_labels["fg_pos"].unsqueeze(1), extra_divisor=2.0),
            "dp_bg": masked_mean(bg_term, pair_labels["bg_pos"].unsqueeze(1), extra_divisor=2.0)}


def irn_loss(edge_logits: torch.Tensor, displacement: torch.Tensor, pair_labels: dict[str, torch.Tensor],
             path_index: PathIndex, indices: PathIndices) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """total = (pos + neg) / 2 + (dp_fg + dp_bg) / 2, and the terms (detached) for logging."""
    terms = {**affinity_losses(edge_logits, pair_labels, indices),
             **displacement_losses(displacement, pair_labels, path_index, indices)}
    total = (terms["pos"] + terms["neg"]) / 2 + (terms["dp_fg"] + terms["dp_bg"]) / 2
    return total, {k: v.detach() for k, v in terms.items()}
