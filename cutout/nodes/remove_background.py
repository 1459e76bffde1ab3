"""Remove Background (Cutout): IMAGE -> RGBA cut-out + subject MASK."""

from __future__ import annotations

from ..imaging.clear import CLEAR_FILLS, DEFAULT_CLEAR_FILL
from ..options import CutoutOptions
from ..pipeline import cut_out
from ..quality import CHOICES as QUALITY_CHOICES, DEFAULT_QUALITY, auto_summary
from .common import (CATEGORY, CLEAR_FILL_TIP, MASK_CONVENTION, advanced_inputs, checked_widgets, device_input,
                     model_inputs, node_errors)

DISPLAY_NAME = "Remove Background (Cutout)"


@advanced_inputs("clear_fill")
@checked_widgets(DISPLAY_NAME)
class CutoutRemoveBackground:
    SEARCH_ALIASES = ["rembg", "remove background", "background removal", "remove bg", "cutout", "cut out",
                      "matting", "alpha matte", "transparent background", "segment subject", "u2net", "birefnet",
                      "isnet"]
    DESCRIPTION = (
        "Cuts the subject out of every image in the batch with a U²-Net-family ONNX model. "
        "Returns the RGBA cut-out (original colours, straight alpha, full resolution) and the subject mask. "
        "The model is loaded once per ComfyUI process and shared by every node and prompt."
    )
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE", "MASK", "FLOAT")
    RETURN_NAMES = ("image", "mask", "confidence")
    OUTPUT_IS_LIST = (False, False, True)
    OUTPUT_TOOLTIPS = (
        "RGBA cut-out [B,H,W,4]: straight alpha = mask, edge colours decontaminated (unless switched off), black where "
        "alpha is 0 (see clear_fill), same size as the input. "
        "SaveImage writes it as a transparent PNG.",
        "Subject mask [B,H,W], one per input image. " + MASK_CONVENTION,
        "One score per image, 0..1: how sure the mask is (agreement between the network's looks, share of "
        "unsure pixels). Low = check that cut-out first; it ranks the eval photos' IoU (docs/quality.md).",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "Images [B,H,W,C], any size and batch; RGB or RGBA (an "
                                               "existing alpha channel is kept: what was transparent stays "
                                               "transparent)."}),
                **model_inputs(),
            },
            "optional": {
                **device_input(),
                "decontaminate": ("BOOLEAN", {
                    "default": True,
                    "tooltip": "Replace the colour of semi-transparent edge pixels by the estimated subject "
                               "colour, so no fringe of the old background shows on a new one. Off = the "
                               "original photo's colours wherever alpha > 0.",
                }),
                "refine_edges": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "Fit the mask's edge to the photo while scaling the model's small output up to "
                               "full size (guided upsampling on the model's own grid). Lower edge error on real "
                               "photos (docs/quality.md); costs about 0.15 s more per 12 MP image on a "
                               "CPU. Stronger than Mask Refine's guided filter, which only sees the upscaled mask.",
                }),
                "clear_fill": (list(CLEAR_FILLS), {"default": DEFAULT_CLEAR_FILL, "tooltip": CLEAR_FILL_TIP}),
                "quality": (list(QUALITY_CHOICES), {
                    "default": DEFAULT_QUALITY,
                    "tooltip": "fast: one look at the photo at the model's size (320 px for U²-Net). best: also "
                               "looks at the mirrored photo and merges the two, or keeps the first look where "
                               "they see different subjects (2x the time; higher IoU, lower error; with u2netp "
                               "the outline stays fast's and only the error drops). auto: "
                               f"{auto_summary()} (docs/quality.md).",
                }),
            },
        }

    @node_errors(DISPLAY_NAME)
    def run(self, image, model, device="cpu", decontaminate=True, refine_edges=False, clear_fill=DEFAULT_CLEAR_FILL,
            quality=DEFAULT_QUALITY):
        opts = CutoutOptions(model=model, device=device, decontaminate=decontaminate, refine_edges=refine_edges,
                             clear_fill=clear_fill, quality=quality)
        result = cut_out(image, opts, node=DISPLAY_NAME)
        return (result.image, result.mask, result.confidence)
