"""The ``quality`` settings: which looks a frame gets, and the function that runs them.

``fast`` is one look at the whole frame (the pack's plain pass); ``best`` merges in the
mirrored look unless the two disagree about what the subject is, each model the way the catalog
says (``look_merge``). The other strategies (the other
U²-Net fused in when its weights are on disk, a zoom pass on each subject's box) are here to be measured (bench/quality.py); docs/quality.md
says why no setting uses them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from . import confidence as conf
from .passes import Deferred, keep_side, looks, to_mask
from .zoom import merge_box, subject_boxes


@dataclass(frozen=True)
class Plan:
    """What one setting does to a frame."""

    flip: bool = False  # merge in the mirrored look
    fuse: bool = False  # average in the partner model's look, when its weights are on disk
    partner_weight: float = 0.5  # the partner's share of the fused map
    merge: str = "mean"  # how looks at the same pixels are merged: passes.MERGES, or CATALOG_MERGE
    min_agreement: float = 0.0  # a look is merged only if its IoU with the first look reaches this
    zoom: bool = False  # a second look at each subject's box
    zoom_margin: float = 0.15  # each side of the box grows by this share of its size
    zoom_max_area: float = 0.7  # no zoom when the boxes cover more of the frame than this
    zoom_weight: float = 0.5  # the zoom look's share inside the box (1 = replace)
    zoom_flip: bool = False  # the zoom look is mirrored and averaged too
    zoom_fuse: bool = False  # the partner model looks at the box too
    zoom_min_agreement: float = 0.0  # the zoom look is kept only if it agrees this much with the first
    max_boxes: int = 3  # subjects zoomed at most, the largest first
    guided: bool = False  # guided upsampling (as ``refine_edges``) whatever the caller asked

    def looks_per_frame(self, fused: bool) -> int:
        """Network runs a frame costs at most (progress bars count these)."""
        first = (2 if self.flip else 1) * (2 if self.fuse and fused else 1)
        box = (2 if self.zoom_flip else 1) * (2 if self.zoom_fuse and fused else 1)
        return first + (self.max_boxes * box if self.zoom else 0)


# Only what held up on the held-out photos is used: the zoom pass and the model fusion raised
# the tuning photos but lost on the held-out ones (docs/quality.md), so no setting uses them.
# CATALOG_MERGE: the model's own merge, the catalog's ``look_merge`` (u2net's log-odds mean, u2netp's "agree").
CATALOG_MERGE = "catalog"
QUALITIES: dict[str, Plan] = {
    "fast": Plan(),
    # Two looks of one subject differ along its edge; below IoU 0.7 they disagree on what the
    # subject is, and the first look (fast's answer) is kept (docs/quality.md).
    "best": Plan(flip=True, merge=CATALOG_MERGE, min_agreement=0.7),
}
# "auto" (the default everywhere) is each model's own default, the catalog's ``auto_quality``: u2net's
# plain pass (and u2net-int8's) fell below rembg's IoU on the held-out photos, its mirrored pair did not
# (docs/quality.md).
AUTO = "auto"
CHOICES = (AUTO, *QUALITIES)
DEFAULT_QUALITY = AUTO

# The model whose look is fused in by the settings that fuse (both must be on disk).
PARTNERS = {"u2net": "u2netp", "u2netp": "u2net"}


def partner_session(session, quality: str | Plan = "fast"):
    """The loaded partner of ``session``'s model when ``quality`` fuses and its weights are on
    disk (never downloaded for this), else None."""
    name = PARTNERS.get(session.name)
    plan = plan_for(quality, session.name)
    if name is None or not (plan.fuse or plan.zoom_fuse):
        return None
    from ..models import weights
    from ..models.catalog import get_spec
    from ..models.session import STORE, get_session

    device = "cpu" if session.providers[:1] == ["CPUExecutionProvider"] else "gpu"
    if not STORE.loaded(name, device) and weights.find_verified(get_spec(name)) is None:
        return None
    return get_session(name, device)


@dataclass
class FrameResult:
    mask: "torch.Tensor | Deferred"  # [H,W] float32 0..1 (a ``passes.Deferred`` one when asked to defer)
    confidence: float  # 0..1, low = doubtful (see confidence.score)
    passes: int  # network runs this frame took
    small: torch.Tensor | None = None  # the photo as the network saw it [1,3,s,s] (square: not the photo's aspect)
    agreement: float = 1.0  # least IoU between the first look and each other look at the frame (1 with one look)


def auto_quality(model: str) -> str:
    """The setting ``auto`` means for ``model`` (``fast`` for a name outside the catalog)."""
    from ..models.catalog import CATALOG

    spec = CATALOG.get(model)
    return spec.auto_quality if spec is not None else "fast"


def auto_summary() -> str:
    """What ``auto`` does, for tooltips and help texts: "best for u2net, u2net-int8; fast for every other model"."""
    from ..models.catalog import CATALOG

    by = {}
    for spec in CATALOG.values():
        if spec.auto_quality != "fast":
            by.setdefault(spec.auto_quality, []).append(spec.name)
    return "; ".join([f"{q} for {', '.join(names)}" for q, names in by.items()] + ["fast for every other model"])


def plan_for(quality: str | Plan, model: str = "") -> Plan:
    """The plan of a setting name (``auto``: ``model``'s default) or a ``Plan`` as it is, its
    merge made ``model``'s own (``CATALOG_MERGE``)."""
    if not isinstance(quality, Plan):
        if quality == AUTO:
            quality = auto_quality(model)
        try:
            quality = QUALITIES[quality]
        except KeyError:
            raise ValueError(f"unknown quality '{quality}'; expected one of {', '.join(CHOICES)}") from None
    if quality.merge != CATALOG_MERGE:
        return quality
    from ..models.catalog import CATALOG

    spec = CATALOG.get(model)
    return replace(quality, merge=spec.look_merge if spec is not None else "logodds")


def predict_frame_quality(session, frame: torch.Tensor, quality: str | Plan = "fast", refine_edges: bool = False,
                          partner=None, on_pass=None, small: torch.Tensor | None = None,
                          defer: bool = False) -> FrameResult:
    """One sanitised ``[H,W,3]`` frame -> its mask and confidence under a quality setting.

    ``partner``: a loaded session of the model fused in (``PARTNERS``), or None to skip fusion.
    ``on_pass``: called after each network run (progress; Cancel is checked before each run).
    ``small``: the frame already shrunk to the network's size (``passes.look``). ``defer``: the
    mask is a ``passes.Deferred`` when nothing full-size is left to merge (no zoom, no guided
    upsampling), so the caller may upsample it elsewhere.
    Work memory: a few maps of the network's size plus the one full-size mask being built.
    """
    plan = plan_for(quality, getattr(session, "name", ""))
    refine = refine_edges or plan.guided
    h, w = frame.shape[:2]
    sessions = [session] + ([partner] if plan.fuse and partner is not None else [])
    mean_map, maps, small = looks(sessions, frame, plan.flip, on_pass, plan.partner_weight, plan.merge,
                                  plan.min_agreement, small)
    passes = len(maps)
    agreements = [conf.binary_iou(m, mean_map) for m in maps] if len(maps) > 1 else []
    pairwise = min((conf.binary_iou(m, maps[0]) for m in maps[1:]), default=1.0)
    mask = to_mask(mean_map, small, frame, refine, defer=defer and not plan.zoom)
    if plan.merge == "agree" and mean_map is not maps[0]:  # the outline stays the first look's
        later = isinstance(mask, Deferred)
        first = to_mask(maps[0], small, frame, refine, defer=later)
        mask = mask.then(lambda m: keep_side(m, first.resolve())) if later else keep_side(mask, first)
    if plan.zoom:
        zoom_sessions = [session] + ([partner] if plan.zoom_fuse and partner is not None else [])
        sh, sw = mean_map.shape[-2:]
        for box in subject_boxes(mean_map, h, w, plan.zoom_margin, plan.zoom_max_area, plan.max_boxes):
            y0, x0, y1, x1 = box
            crop = frame[y0:y1, x0:x1]
            zmap, zmaps, zsmall = looks(zoom_sessions, crop, plan.zoom_flip, on_pass, plan.partner_weight,
                                        plan.merge, plan.min_agreement)
            passes += len(zmaps)
            # agreement of the zoom look with what the first look saw in that box, on the small grid
            first = mean_map[..., y0 * sh // h:max(y0 * sh // h + 1, y1 * sh // h),
                             x0 * sw // w:max(x0 * sw // w + 1, x1 * sw // w)]
            agree = conf.binary_iou(F.interpolate(first, size=zmap.shape[-2:], mode="bilinear",
                                                  align_corners=False), zmap)
            agreements.append(agree)
            if agree >= plan.zoom_min_agreement:  # else the zoom saw another subject: keep the first look
                merge_box(mask, to_mask(zmap, zsmall, crop, refine), box, plan.zoom_weight)
    return FrameResult(mask, conf.score(mean_map, agreements), passes, small, pairwise)
