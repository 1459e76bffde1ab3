"""One look of the network at some pixels: the whole frame or a subject's box, plain or mirrored.

A look returns the network's stretched map on its own square grid plus the photo as the
network saw it, so several looks (mirrored, another model) are merged on that small grid and
upsampled once: cheap (a few maps of the network's size).

Merging: a look that disagrees with the first one about what the subject is (IoU at 0.5 below
``min_agreement``) is left out, since two looks cannot tell which of them is wrong and the first
is what ``fast`` gives; the others are averaged in log-odds (``merge="logodds"``), so a pixel
that one look is sure of and the other only leans towards stays near the sure value instead of
turning grey, or plainly (``"mean"``). ``"agree"`` moves no pixel across 0.5: where every look
puts a pixel on the same side their log-odds are added (two looks that agree make it surer),
elsewhere the first look stands, and ``keep_side`` then holds the full-size mask to the first
look's side too, so the subject is exactly ``fast``'s (for a model whose second look is as often
worse as better at finding the subject, docs/quality.md).
"""

from __future__ import annotations

import torch

from .. import comfy_glue
from ..imaging.model_io import guided_upsample, map_to_mask, model_map, normalise, shrink_for_model
from ..models.session import ModelSession, RunCancelled
from .confidence import binary_iou

LOGIT_EPS = 1e-4  # maps are clamped to [eps, 1 - eps] before the log-odds (the ends are 0 and 1)
MERGES = ("mean", "logodds", "agree")


def look(session: ModelSession, pixels: torch.Tensor, flip: bool = False,
         small: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``pixels`` [H,W,3] -> (map [1,1,s,s] 0..1, the shrunk photo [1,3,s,s]).

    ``flip``: the network looks at the mirrored photo and its answer is mirrored back (the
    shrink is symmetric, so the mirrored shrunk photo is the shrunk mirrored photo).
    ``small``: the shrunk photo when the caller already has it (same family size).
    """
    fam = session.family
    if small is None or small.shape[-1] != fam.size:
        small = shrink_for_model(pixels.unsqueeze(0), fam.size)
    x = small.flip(-1) if flip else small
    comfy_glue.check_interrupt()
    try:
        raw = session.run(normalise(x.contiguous(), fam.mean, fam.std), comfy_glue.cancel_hook())
    except RunCancelled:
        comfy_glue.check_interrupt()  # ComfyUI's own exception (and it clears the flag)
        raise
    m = model_map(raw, fam.logits)
    return (m.flip(-1) if flip else m), small


def looks(sessions: list[ModelSession], pixels: torch.Tensor, flip: bool, on_pass=None,
          partner_weight: float = 0.5, merge: str = "mean", min_agreement: float = 0.0,
          small: torch.Tensor | None = None):
    """Every session (and, with ``flip``, its mirrored look) on ``pixels``: their merged map on the
    first session's grid (``merge_maps``; a second session weighs ``partner_weight``), each single
    map (for the agreement score) and the first shrunk photo. ``small``: ``pixels`` already shrunk
    (``look``)."""
    maps, weights, small0 = [], [], None
    for k, s in enumerate(sessions):
        for f in ((False, True) if flip else (False,)):
            m, small = look(s, pixels, f, small)
            if small0 is None:
                small0 = small
            elif m.shape[-2:] != small0.shape[-2:]:  # a partner of another family size
                m = torch.nn.functional.interpolate(m, size=small0.shape[-2:], mode="bilinear",
                                                    align_corners=False)
            maps.append(m)
            weights.append(1.0 if k == 0 else partner_weight / (1.0 - partner_weight))
            if on_pass is not None:
                on_pass()
    return merge_maps(maps, weights, merge, min_agreement), maps, small0


def merge_maps(maps: list[torch.Tensor], weights: list[float], merge: str = "mean",
               min_agreement: float = 0.0) -> torch.Tensor:
    """One map from several looks at the same pixels (the module docstring says how)."""
    if merge not in MERGES:
        raise ValueError(f"unknown merge '{merge}'; expected one of {', '.join(MERGES)}")
    kept = [(m, wt) for i, (m, wt) in enumerate(zip(maps, weights))
            if i == 0 or min_agreement <= 0.0 or binary_iou(m, maps[0]) >= min_agreement]
    if len(kept) == 1:
        return kept[0][0]
    total = sum(wt for _, wt in kept)
    if merge == "mean":
        return sum(wt * m for m, wt in kept) / total
    logits = [wt * torch.logit(m, eps=LOGIT_EPS) for m, wt in kept]
    if merge == "logodds":
        return torch.sigmoid(sum(logits) / total)
    first = kept[0][0] > 0.5
    same = torch.stack([(m > 0.5) == first for m, _ in kept[1:]]).all(0)
    return torch.where(same, torch.sigmoid(sum(logits)), kept[0][0])


def keep_side(mask: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
    """``mask`` where it is on the same side of 0.5 as ``first`` (same size), else ``first``:
    the merged map's upsampling cannot move the subject's outline (``merge="agree"``)."""
    return torch.where((mask > 0.5) == (first > 0.5), mask, first)


def to_mask(small_map: torch.Tensor, small_photo: torch.Tensor, pixels: torch.Tensor,
            refine_edges: bool, defer: bool = False):
    """The small map -> ``[H,W]`` mask at ``pixels``' size (bicubic, or guided by the photo).

    ``defer`` (bicubic only): a ``Deferred`` that upsamples when asked, so that a caller can
    leave the full-size work to another thread (the folder job: off the network's)."""
    if refine_edges:
        return guided_upsample(small_map, small_photo, pixels.unsqueeze(0))[0]
    h, w = pixels.shape[:2]
    if defer:
        return Deferred(lambda: map_to_mask(small_map, h, w)[0])
    return map_to_mask(small_map, h, w)[0]


class Deferred:
    """Full-size work still to do on small inputs it holds (never the frame): ``resolve()`` does it once."""

    def __init__(self, make):
        self._make = make

    def resolve(self):
        if self._make is not None:
            self._value, self._make = self._make(), None
        return self._value

    def then(self, step) -> "Deferred":
        """A ``Deferred`` of ``step(this one's value)``."""
        return Deferred(lambda: step(self.resolve()))
