"""Mask Refine (Cutout): levels, grow/shrink, holes, islands, edge refinement, feather,
temporal smoothing, invert — in that fixed order, each off by default."""

from __future__ import annotations

from .. import comfy_glue
from ..imaging.refine_chain import EDGE_MODES, GUIDED_DEFAULTS, ORDER, TEMPORAL_MODES
from ..imaging.refine_chain import refine_masks as _refine_masks
from .common import CATEGORY, MASK_CONVENTION, advanced_inputs, checked_widgets

DISPLAY_NAME = "Mask Refine (Cutout)"


def refine_masks(mask, image=None, **options):
    """``imaging.refine_chain.refine_masks`` with this node's name, ComfyUI's Cancel and (for
    motion-compensated smoothing) a progress bar."""
    options.setdefault("node", DISPLAY_NAME)
    options.setdefault("check_interrupt", comfy_glue.check_interrupt)
    if options.get("temporal_mode") == "motion" and options.get("temporal", 0) > 0 and "on_frame" not in options:
        frames = max(getattr(t, "shape", (1,))[0] for t in (mask, image) if t is not None)
        bar = comfy_glue.Progress(frames)
        options["on_frame"] = lambda: bar.update(1)
    return _refine_masks(mask, image, **options)


@advanced_inputs("black_point", "white_point", "guided_radius", "guided_eps", "guided_size", "matting_band",
                 "matting_max_megapixels")
@checked_widgets(DISPLAY_NAME)
class CutoutMaskRefine:
    SEARCH_ALIASES = ["refine mask", "mask cleanup", "matting", "feather mask", "grow mask", "fill holes",
                      "guided filter", "edge refinement", "cutout", "rembg", "remove background"]
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
                                                  "frame's mask with its neighbours (weight strength^distance; "
                                                  "how: temporal_mode). 0 = off."}),
                "invert": ("BOOLEAN", {"default": False, "tooltip": "Swap subject and background (1 − mask), last."}),
            },
            "optional": {
                "image": ("IMAGE", {"tooltip": "The photo(s) the mask was made from: the guide for edge "
                                               "refinement and temporal smoothing. Batch 1 or the mask's batch."}),
                "temporal_mode": (TEMPORAL_MODES, {"default": "colour",
                                                   "tooltip": "How temporal smoothing finds the same pixel in the "
                                                              "neighbouring frames. 'colour': the same position, "
                                                              "2 frames each side, weighted down where the colour "
                                                              "changed (with IMAGE). 'motion': the neighbours' masks "
                                                              "follow the optical flow of the frames (needs IMAGE, "
                                                              "5 frames each side, about 0.07 s of CPU per 480p "
                                                              "frame): removes much more flicker on moving subjects."}),
            },
        }

    def run(self, mask, black_point=0.0, white_point=1.0, threshold=0.0, fill_holes=False, remove_islands=0.0,
            grow=0, edge_refinement="off", guided_radius=GUIDED_DEFAULTS["radius"],
            guided_eps=GUIDED_DEFAULTS["eps"], guided_size=GUIDED_DEFAULTS["work_size"], matting_band=10,
            matting_max_megapixels=1.0, feather=0.0, temporal=0.0, invert=False, image=None,
            temporal_mode="colour"):
        m = refine_masks(mask, image, black_point=black_point, white_point=white_point, threshold=threshold,
                         fill_holes=fill_holes, remove_islands=remove_islands, grow=grow,
                         edge_refinement=edge_refinement, guided_radius=guided_radius, guided_eps=guided_eps,
                         guided_size=guided_size, matting_band=matting_band,
                         matting_max_megapixels=matting_max_megapixels, feather=feather, temporal=temporal,
                         temporal_mode=temporal_mode, invert=invert)
        return (m, m.unsqueeze(-1).expand(-1, -1, -1, 3))
