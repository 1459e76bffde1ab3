"""Crop to Subject (Cutout): IMAGE + MASK -> the crop around the subject, its MASK and the box."""

from __future__ import annotations

from ..imaging.crop import crop_box, parse_aspect
from ..imaging.tensors import CutoutInputError, as_image, as_mask
from .common import CATEGORY, MASK_CONVENTION, checked_widgets

DISPLAY_NAME = "Crop to Subject (Cutout)"
ASPECTS = ("free", "square", "buckets")


@checked_widgets(DISPLAY_NAME)
class CutoutCropToSubject:
    DESCRIPTION = (
        "Crops images to the subject's box plus a margin, for training sets where the subject should fill the "
        "frame. Never upscales and never cuts into the subject; one crop for the whole batch (the union of the "
        "frames' subjects), so a batch stays one size."
    )
    SEARCH_ALIASES = ["crop to subject", "auto crop", "crop mask", "lora dataset", "square crop", "rembg", "cutout"]
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE", "MASK", "INT", "INT", "INT", "INT")
    RETURN_NAMES = ("image", "mask", "x", "y", "width", "height")
    OUTPUT_TOOLTIPS = (
        "The cropped images [B,h,w,C] (RGB or RGBA, as given).",
        "The cropped mask [B,h,w]. " + MASK_CONVENTION,
        "Left edge of the crop in the input, pixels.",
        "Top edge of the crop in the input, pixels.",
        "Width of the crop, pixels (core ImageCrop takes the same x, y, width, height).",
        "Height of the crop, pixels.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "Images [B,H,W,C], e.g. Remove Background's cut-out or the photo."}),
                "mask": ("MASK", {"tooltip": "Subject mask [B,H,W] (or [H,W] for the whole batch), same size as the "
                                             "images. " + MASK_CONVENTION}),
                "margin": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 10.0, "step": 0.01,
                                     "tooltip": "Space around the subject on every side, as a fraction of the "
                                                "subject box's longer side (0.1 = 10 %)."}),
                "aspect": (list(ASPECTS), {"default": "free", "tooltip": "free: the subject's box as it is; square; "
                                           "buckets: the nearest ratio of 'buckets' that the image allows."}),
            },
            "optional": {
                "buckets": ("STRING", {"default": "1:1,4:3,3:4,16:9,9:16", "tooltip": "Aspect ratios W:H, comma-"
                                       "separated, for aspect = buckets (e.g. your trainer's bucket shapes)."}),
            },
        }

    def run(self, image, mask, margin=0.1, aspect="free", buckets="1:1,4:3,3:4,16:9,9:16"):
        as_image(image, DISPLAY_NAME, "image")  # checks the IMAGE; the crop keeps an alpha channel if there is one
        img = image.detach() if image.requires_grad else image
        b, h, w = img.shape[:3]
        m = as_mask(mask, DISPLAY_NAME, "mask", batch=b, size=(h, w))
        try:
            ratios = parse_aspect({"free": "free", "square": "square"}.get(aspect, buckets))
        except ValueError as e:
            raise CutoutInputError(DISPLAY_NAME, "buckets", str(e), "ratios such as 1:1,4:3,3:4") from None
        x0, y0, x1, y1 = crop_box(m.amax(0), margin, ratios)
        return (img[:, y0:y1, x0:x1].contiguous(), m[:, y0:y1, x0:x1].contiguous(), x0, y0, x1 - x0, y1 - y0)


NODES = {"CutoutCropToSubject": CutoutCropToSubject}
NAMES = {"CutoutCropToSubject": DISPLAY_NAME}
