"""Mask Refine (Cutout): levels, grow/shrink, holes, islands, edge refinement, feather,
temporal smoothing, invert — in that fixed order, each off by default."""

from __future__ import annotations

import logging

import torch

from .. import comfy_glue
from ..imaging import masks as M
from ..imaging.refine import guided_filter, matte, temporal_smooth
from ..imaging.tensors import CutoutInputError, as_image, as_mask
from .common import CATEGORY, MASK_CONVENTION

log = logging.getLogger("comfyui_cutout")

DISPLAY_NAME = "Mask Refine (Cutout)"

# Guided-filter defaults, chosen on shared/eval/dev (bench/refine_quality.py, docs/notes-refine.md)
GUIDED_DEFAULTS = {"radius": 1, "eps": 1e-4, "work_size": 320}

EDGE_MODES = ["off", "guided filter", "matting"]

ORDER = ("levels → fill holes → remove islands → grow/shrink → edge refinement → feather → "
         "temporal smoothing → invert")


def refine_masks(mask: torch.Tensor, image: torch.Tensor | None = None, *, black_point: float = 0.0,
                 white_point: float = 1.0, threshold: float = 0.0, fill_holes: bool = False,
                 remove_islands: float = 0.0, grow: int = 0, edge_refinement: str = "off",
                 guided_radius: int = GUIDED_DEFAULTS["radius"], guided_eps: float = GUIDED_DEFAULTS["eps"],
                 guided_size: int = GUIDED_DEFAULTS["work_size"], matting_band: int = 10,
                 matting_max_megapixels: float = 1.0, feather: float = 0.0, temporal: float = 0.0,
                 invert: bool = False, node: str = DISPLAY_NAME) -> torch.Tensor:
    """All of Mask Refine as one function (MASK [B,H,W], optional IMAGE guide) -> MASK [B,H,W]."""
    guide = None
    if image is not None:
        guide = as_image(image, node, "image", sanitize_values=True)  # one NaN pixel must not poison the filter
    b_img = guide.shape[0] if guide is not None else None
    size = tuple(guide.shape[1:3]) if guide is not None else None
    m = as_mask(mask, node, "mask")
    if guide is not None:
        if guide.shape[0] not in (1, m.shape[0]) and m.shape[0] != 1:
            raise CutoutInputError(node, "image", f"has a batch of {guide.shape[0]} images but the mask batch "
                                   f"has {m.shape[0]}", f"1 image or {m.shape[0]} images")
        n = max(guide.shape[0], m.shape[0])
        m = as_mask(m, node, "mask", batch=n, size=size)
        if guide.shape[0] != n:
            guide = guide.expand(n, -1, -1, -1)
        guide = guide.to(m.device)
    elif edge_refinement != "off":
        raise CutoutInputError(node, "image", f"is missing but edge_refinement is '{edge_refinement}'",
                               "the photo the mask was made from (connect the IMAGE input)")
    del b_img
    if m is mask:  # as_mask may hand back the caller's tensor; never modify it
        m = m.clone()

    if black_point != 0.0 or white_point != 1.0 or threshold > 0.0:
        m = M.levels(m, black_point, white_point, threshold)
    comfy_glue.check_interrupt()
    if fill_holes:
        m = M.fill_holes(m)
    if remove_islands > 0:
        m = M.remove_islands(m, remove_islands)
    if grow:
        m = M.grow(m, grow)
    comfy_glue.check_interrupt()
    if edge_refinement == "guided filter":
        m = guided_filter(guide, m, guided_radius, guided_eps, guided_size)
    elif edge_refinement == "matting":
        m = matte(guide, m, matting_band, matting_max_megapixels, node=node)
    elif edge_refinement != "off":
        raise CutoutInputError(node, "edge_refinement", f"is '{edge_refinement}'", " / ".join(EDGE_MODES))
    if feather > 0:
        m = M.feather(m, feather)
    if temporal > 0:
        m = temporal_smooth(m, temporal, guide)
    if invert:
        m = M.invert(m)
    return m.contiguous()  # a broadcast (expanded) batch becomes real frames


class CutoutMaskRefine:
    DESCRIPTION = (
        "Cleans up a subject mask. Every operation is off by default and they run in this fixed order: "
        + ORDER + ". Edge refinement and the motion check of temporal smoothing use the optional IMAGE "
        "(the photo the mask was made from). " + MASK_CONVENTION
    )
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("MASK", "IMAGE")
    RETURN_NAMES = ("mask", "preview")
    OUTPUT_TOOLTIPS = (
        "The refined mask [B,H,W] (size of the IMAGE input when one is connected). " + MASK_CONVENTION,
        "The refined mask as a grey IMAGE (white = subject), for Preview Image.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "mask": ("MASK", {"tooltip": "Masks [B,H,W] to refine. " + MASK_CONVENTION}),
                "black_point": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                          "tooltip": "Levels: mask values at or below this become 0 (raise it to "
                                                     "drop faint, semi-transparent pixels). 0 = off."}),
                "white_point": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                          "tooltip": "Levels: mask values at or above this become 1 (lower it to "
                                                     "make semi-transparent pixels solid). Values between the black "
                                                     "and white points are stretched linearly. 1 = off."}),
                "threshold": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                        "tooltip": "Hard threshold after levels: values ≥ threshold become 1, the "
                                                   "rest 0 (a hard-edged mask). 0 = off."}),
                "fill_holes": ("BOOLEAN", {"default": False,
                                           "tooltip": "Fill background regions enclosed by the subject (regions "
                                                      "that do not touch the image border become subject)."}),
                "remove_islands": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1e7, "step": 0.001,
                                             "tooltip": "Remove subject specks smaller than this: below 1 it is a "
                                                        "fraction of the image area (0.001 = 0.1 %), from 1 up a "
                                                        "number of pixels. 0 = off."}),
                "grow": ("INT", {"default": 0, "min": -512, "max": 512, "step": 1,
                                 "tooltip": "Grow the subject by this many pixels (round brush); negative "
                                            "values shrink it. 0 = off."}),
                "edge_refinement": (EDGE_MODES, {"default": "off",
                                                 "tooltip": "Re-fit the mask edge to the photo (needs IMAGE). "
                                                            "'guided filter': fast, any size. 'matting': closed-form "
                                                            "matting on an automatic trimap, slow, for hair and fur; "
                                                            "capped by matting_max_megapixels."}),
                "guided_radius": ("INT", {"default": GUIDED_DEFAULTS["radius"], "min": 1, "max": 64,
                                          "tooltip": "Guided filter window radius, in pixels of the working size "
                                                     "(guided_size). Larger = smoother, less detailed edges."}),
                "guided_eps": ("FLOAT", {"default": GUIDED_DEFAULTS["eps"], "min": 1e-6, "max": 1.0,
                                         "step": 1e-5, "round": False,
                                         "tooltip": "Guided filter regularisation. Small follows the photo's edges "
                                                    "closely; large stays close to the input mask."}),
                "guided_size": ("INT", {"default": GUIDED_DEFAULTS["work_size"], "min": 0, "max": 8192,
                                        "step": 32,
                                        "tooltip": "Long side (px) at which the guided filter's coefficients are "
                                                   "computed before being applied at full resolution (320 matches "
                                                   "U²-Net's input). 0 = full resolution (slow)."}),
                "matting_band": ("INT", {"default": 10, "min": 1, "max": 256,
                                         "tooltip": "Matting: width in pixels of the unknown band of the automatic "
                                                    "trimap (sure regions are shrunk by this much)."}),
                "matting_max_megapixels": ("FLOAT", {"default": 1.0, "min": 0.05, "max": 64.0, "step": 0.05,
                                                     "tooltip": "Matting: larger images are shrunk to this size "
                                                                "for the solve (logged) and the alpha upsampled."}),
                "feather": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 256.0, "step": 0.5,
                                      "tooltip": "Blur the mask edge; the soft edge is about 1.3 × this many pixels "
                                                 "wide. 0 = off."}),
                "temporal": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.05,
                                       "tooltip": "For batches that are consecutive video frames: average each "
                                                  "frame's mask with its 2 neighbours on each side (weight "
                                                  "strength^distance). With IMAGE connected, pixels whose colour "
                                                  "changed between frames are left alone. 0 = off."}),
                "invert": ("BOOLEAN", {"default": False, "tooltip": "Swap subject and background (1 − mask), last."}),
            },
            "optional": {
                "image": ("IMAGE", {"tooltip": "The photo(s) the mask was made from: the guide for edge "
                                               "refinement and temporal smoothing. Batch 1 or the mask's batch."}),
            },
        }

    def run(self, mask, black_point=0.0, white_point=1.0, threshold=0.0, fill_holes=False, remove_islands=0.0,
            grow=0, edge_refinement="off", guided_radius=GUIDED_DEFAULTS["radius"],
            guided_eps=GUIDED_DEFAULTS["eps"], guided_size=GUIDED_DEFAULTS["work_size"], matting_band=10,
            matting_max_megapixels=1.0, feather=0.0, temporal=0.0, invert=False, image=None):
        m = refine_masks(mask, image, black_point=black_point, white_point=white_point, threshold=threshold,
                         fill_holes=fill_holes, remove_islands=remove_islands, grow=grow,
                         edge_refinement=edge_refinement, guided_radius=guided_radius, guided_eps=guided_eps,
                         guided_size=guided_size, matting_band=matting_band,
                         matting_max_megapixels=matting_max_megapixels, feather=feather, temporal=temporal,
                         invert=invert)
        return (m, m.unsqueeze(-1).expand(-1, -1, -1, 3))
