"""Cropping a cut-out to its subject, for training sets.

A LoRA learns more from a frame the subject fills: ``crop_box`` gives the subject's bounding
box grown by a margin and, optionally, widened to a square or to the nearest of a set of
aspect-ratio buckets. The box only ever grows from the subject's box (the subject is never cut)
and stays inside the frame (nothing is upscaled or padded); where the frame is too narrow for
the asked ratio the box takes the whole side and the ratio is as close as the frame allows.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

SUBJECT_THRESHOLD = 0.1  # alpha at or above this is subject (below: haze the model was unsure of)


def parse_aspect(text: str | None) -> tuple[float, ...] | None:
    """``None``/'free' -> None; 'square' -> (1.0,); '1:1,4:3,3:4' -> width/height ratios."""
    t = (text or "free").strip().lower()
    if t in ("", "free", "none"):
        return None
    if t == "square":
        return (1.0,)
    out = []
    for part in t.split(","):
        try:
            w, h = (float(v) for v in part.split(":"))
        except ValueError:
            raise ValueError(f"aspect '{part}': expected W:H such as 4:3 (or 'square', 'free')") from None
        if not (w > 0 and h > 0 and math.isfinite(w / h)):
            raise ValueError(f"aspect '{part}': W and H must be positive")
        out.append(w / h)
    return tuple(out)


def subject_box(alpha: torch.Tensor, threshold: float = SUBJECT_THRESHOLD) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1), end-exclusive, of the pixels with alpha >= ``threshold``; None if none."""
    on = alpha >= threshold
    rows = on.any(1).nonzero()
    if rows.numel() == 0:
        return None
    cols = on.any(0).nonzero()
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _grow(lo: int, hi: int, want: int, limit: int) -> tuple[int, int]:
    """Widen [lo, hi) to ``want`` (at most ``limit``) around its centre, shifted to stay in [0, limit)."""
    want = min(max(want, hi - lo), limit)
    lo2 = lo - (want - (hi - lo)) // 2
    lo2 = min(max(0, lo2), limit - want)
    return lo2, lo2 + want


def crop_box(alpha: torch.Tensor, margin: float = 0.1, aspect: Sequence[float] | None = None,
             threshold: float = SUBJECT_THRESHOLD) -> tuple[int, int, int, int]:
    """The crop (x0, y0, x1, y1) of a frame with subject ``alpha`` [H,W].

    ``margin``: added on every side, as a fraction of the subject box's longer side. ``aspect``:
    width/height ratios the crop may take (the one nearest the grown box, among those the frame
    allows, is chosen); None = the grown box as it is. No subject: the whole frame.
    """
    h, w = alpha.shape
    box = subject_box(alpha, threshold)
    if box is None:
        return 0, 0, w, h
    x0, y0, x1, y1 = box
    m = int(round(max(0.0, margin) * max(x1 - x0, y1 - y0)))
    x0, x1 = _grow(x0, x1, x1 - x0 + 2 * m, w)
    y0, y1 = _grow(y0, y1, y1 - y0 + 2 * m, h)
    if aspect:
        bw, bh = x1 - x0, y1 - y0

        def fitted(r: float) -> tuple[int, int]:  # the smallest box of ratio r holding bw x bh, clipped
            return min(w, max(bw, math.ceil(bh * r))), min(h, max(bh, math.ceil(bw / r)))

        best = min(aspect, key=lambda r: (abs(math.log(fitted(r)[0] / fitted(r)[1] / r)),
                                          fitted(r)[0] * fitted(r)[1]))
        tw, th = fitted(best)
        x0, x1 = _grow(x0, x1, tw, w)
        y0, y1 = _grow(y0, y1, th, h)
    return x0, y0, x1, y1


def subject_share(alpha: torch.Tensor, box: tuple[int, int, int, int] | None = None) -> float:
    """How much of the frame (or of ``box``) the subject covers: mean alpha, 0..1."""
    if box is not None:
        x0, y0, x1, y1 = box
        alpha = alpha[y0:y1, x0:x1]
    return float(alpha.float().mean()) if alpha.numel() else 0.0
