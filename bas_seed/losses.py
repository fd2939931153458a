"""BAS training losses (paper §3.2, §3.4, §5.5; reference facts §1.2) and the CAM baseline's loss, as pure functions.

Shapes: B images, C = num_fg foreground classes. ``labels`` is a (B, C) float multi-hot, ``picked`` a (B,) long
index 0..C-1 of the class whose generator map M_f gets L_frg / L_bas / L_ac in this step.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def mcls_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 9 (the reference's ``cross_entropy``): every positive class i of an image gets a softmax CE over
    {its own logit} and all negative logits, with i as target; the loss is (1/B) * the sum over all positives.

    -log(e^{y_i} / (sum_{j in neg} e^{y_j} + e^{y_i})) = logaddexp(y_i, logsumexp(y_neg)) - y_i.
    """
    if logits.shape != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} differ in shape")
    positive = labels > 0.5
    negative_lse = torch.logsumexp(logits.masked_fill(positive, float("-inf")), dim=1, keepdim=True)
    per_class = torch.logaddexp(logits, negative_lse) - logits
    return (per_class * positive).sum() / logits.shape[0]


def pick_classes(labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One ground-truth class per image, uniformly among its positives (the reference's ``get_p_label``)."""
    if (labels.sum(dim=1) <= 0).any():
        raise ValueError("every training image needs at least one foreground label to pick M_f from")
    return torch.multinomial((labels > 0.5).float(), 1, generator=generator).squeeze(1)


def picked_scores(scores: torch.Tensor, picked: torch.Tensor) -> torch.Tensor:
    """(B, C) scores -> (B,) the score of each image's picked class."""
    return scores.gather(1, picked.view(-1, 1)).squeeze(1)


def frg_loss(cam: torch.Tensor, fg_map: torch.Tensor, picked: torch.Tensor) -> torch.Tensor:
    """Eq. 5-6: softmax CE of GAP(F.detach() * M_f) for the picked class; the gradient reaches M_f only."""
    masked_scores = (cam.detach() * fg_map).mean(dim=(2, 3))
    return F.cross_entropy(masked_scores, picked)


def ac_loss(fg_map: torch.Tensor) -> torch.Tensor:
    """Eq. 4: the mean of M_f over its pixels, averaged over the batch."""
    return fg_map.mean()


def bas_ratio(score: torch.Tensor, bg_score: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-element S^b / (S + eps) after ReLU on the pooled scores, S detached; where S^b > S the ratio is replaced
    by the constant 1 (no gradient there), as in the reference (not a clamp)."""
    s = F.relu(score.detach())
    s_b = F.relu(bg_score)
    ratio = s_b / (s + eps)
    return torch.where(s_b > s, torch.ones_like(ratio), ratio)


def bas_loss(score: torch.Tensor, bg_score: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Eq. 3 for the picked class of each image: the batch mean of ``bas_ratio`` ((B,) scores S and S^b)."""
    return bas_ratio(score, bg_score, eps).mean()


def agnostic_bas_loss(scores: torch.Tensor, agnostic_bg_scores: torch.Tensor, labels: torch.Tensor,
                      eps: float = 1e-8) -> torch.Tensor:
    """§5.5: the class-agnostic map is M_f of every class present; L_bas summed over those classes, batch mean.

    ``scores`` (B, C) are the full-image scores S, ``agnostic_bg_scores`` (B, C) those of F2 on the features erased
    with 1 - the agnostic map.
    """
    ratios = bas_ratio(scores, agnostic_bg_scores, eps)
    return (ratios * (labels > 0.5)).sum() / scores.shape[0]


def bas_training_loss(out: dict, labels: torch.Tensor, picked: torch.Tensor, *, alpha: float, beta: float,
                      lam: float, eps: float = 1e-8, agnostic_bas_weight: float = 1.0,
                      agnostic_area_weight: float = 1.2) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 10, L = L_mcls + alpha L_frg + beta L_ac + lam L_bas, plus (when the net has the class-agnostic map)
    lam * agnostic_bas_weight * L_bas^agn + agnostic_area_weight * L_ac^agn. lam = 0 is Table 6's FPM baseline:
    no background-suppression term at all, for either map.

    ``out`` is ``BASNet.forward``'s dict; everything is computed in float32. Returns (total, unweighted terms).
    """
    scores = out["scores"].float()
    fg_map = out["fg_map"].float()
    terms = {
        "mcls": mcls_loss(scores, labels),
        "frg": frg_loss(out["cam"].float(), fg_map, picked),
        "ac": ac_loss(fg_map),
        "bas": bas_loss(picked_scores(scores, picked), picked_scores(out["bg_scores"].float(), picked), eps),
    }
    total = terms["mcls"] + alpha * terms["frg"] + beta * terms["ac"] + lam * terms["bas"]
    if "agnostic_map" in out:
        terms["agnostic_bas"] = agnostic_bas_loss(scores, out["agnostic_bg_scores"].float(), labels, eps)
        terms["agnostic_ac"] = ac_loss(out["agnostic_map"].float())
        total = (total + lam * agnostic_bas_weight * terms["agnostic_bas"]
                 + agnostic_area_weight * terms["agnostic_ac"])
    return total, terms


def cam_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """IRN's CAM training loss: multilabel soft-margin (mean over classes, then over the batch)."""
    return F.multilabel_soft_margin_loss(logits.float(), labels)
