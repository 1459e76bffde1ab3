"""How sure a frame's mask is, from what the passes already computed (no extra network run).

Two signs of a doubtful mask: the looks disagree (mirrored, other model, zoomed), and many
pixels sit between subject and background. Both are measured on the small maps, so the
score costs next to nothing.
"""

from __future__ import annotations

import torch


def binary_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    p, q = a > 0.5, b > 0.5
    union = (p | q).sum().item()
    return 1.0 if union == 0 else (p & q).sum().item() / union


def unsure_share(m: torch.Tensor, lo: float = 0.1, hi: float = 0.9) -> float:
    """Pixels strictly between ``lo`` and ``hi``, per pixel of subject (> 0.5); 1 when there is no subject."""
    subject = (m > 0.5).sum().item()
    if subject == 0:
        return 1.0
    return min(1.0, ((m > lo) & (m < hi)).sum().item() / subject)


def score(small_map: torch.Tensor, agreements: list[float]) -> float:
    """0..1, higher = more likely a good mask: the least agreement between two looks (1 with one
    look) times one minus the share of unsure pixels of ``small_map``, the small map the mask is
    upsampled from (the looks merged; the first look's own map when it is the only one)."""
    agree = min(agreements) if agreements else 1.0
    return float(agree * (1.0 - unsure_share(small_map)))
