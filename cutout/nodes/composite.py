"""Composite Background (Cutout): put the subject on a colour, gradient, image, blur, checkerboard,
or keep it transparent; edge colours decontaminated."""

from __future__ import annotations

import torch

from ..imaging.composite import FIT_MODES, parse_color
from ..options import Background, CutoutOptions
from ..pipeline import composite
from ..imaging.tensors import CutoutInputError, as_image, as_mask, sanitize
from .common import CATEGORY, MASK_CONVENTION, advanced_inputs, checked_widgets

DISPLAY_NAME = "Composite Background (Cutout)"
MODES = ["transparent", "color", "gradient", "image", "blur", "checkerboard"]


@advanced_inputs("angle", "blur_radius")
@checked_widgets(DISPLAY_NAME)
class CutoutCompositeBackground:
    SEARCH_ALIASES = ["composite", "replace background", "change background", "background color", "green screen",
                      "cutout", "rembg", "remove background", "matting"]
    DESCRIPTION = (
        "Puts the subject on a new background: transparent (RGBA out), a colour, a two-colour gradient, "
        "another image, the photo itself blurred, or a checkerboard preview. The colour of semi-transparent "
        "edge pixels is decontaminated (the old background's tint is removed) unless switched off. "
        + MASK_CONVENTION
    )
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("image", "mask")
    OUTPUT_TOOLTIPS = (
        "The composite [B,H,W,3] (RGB); RGBA [B,H,W,4] with straight alpha when the background is 'transparent'.",
        "The subject mask used [B,H,W]. " + MASK_CONVENTION,
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "The photo (RGB) or a cut-out (RGBA, e.g. from Remove Background)."}),
                "background": (MODES, {"default": "color",
                                       "tooltip": "transparent: RGBA output. color: solid 'color'. gradient: "
                                                  "'color' → 'color2' along 'angle'. image: the "
                                                  "background_image input. blur: the photo blurred behind the "
                                                  "subject. checkerboard: a transparency preview."}),
                "color": ("STRING", {"default": "#FFFFFF",
                                     "tooltip": "Background colour: a name (white, black, green …), #RRGGBB, #RGB, "
                                                "rgb(r, g, b) or r,g,b. First colour of the gradient."}),
                "color2": ("STRING", {"default": "#000000",
                                      "tooltip": "Second colour of the gradient; padding colour of fit = contain."}),
                "angle": ("FLOAT", {"default": 90.0, "min": -360.0, "max": 360.0, "step": 1.0,
                                    "tooltip": "Gradient direction in degrees: 0 = left → right, "
                                               "90 = top → bottom."}),
                "fit": (list(FIT_MODES), {"default": "cover",
                                          "tooltip": "How background_image is sized to the photo: cover (fill, "
                                                     "crop the overflow), contain (fit inside, pad with color2), "
                                                     "stretch."}),
                "blur_radius": ("FLOAT", {"default": 24.0, "min": 1.0, "max": 512.0, "step": 1.0,
                                          "tooltip": "Blur radius in pixels for background = blur."}),
                "decontaminate": ("BOOLEAN", {"default": True,
                                              "tooltip": "Estimate the subject's true colour in semi-transparent "
                                                         "edge pixels (no green or dark fringe from the old "
                                                         "background). Off = the photo's colours."}),
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "Subject mask [B,H,W] (batch 1 is used for every image). Optional "
                                             "when the image is RGBA: its alpha is used (with a mask, the mask is "
                                             "capped by it: what the image made transparent stays transparent). " + MASK_CONVENTION}),
                "background_image": ("IMAGE", {"tooltip": "Background for background = image: batch 1 (used for "
                                                          "every frame) or the same batch as image; any size."}),
            },
        }

    def run(self, image, background="color", color="#FFFFFF", color2="#000000", angle=90.0, fit="cover",
            blur_radius=24.0, decontaminate=True, mask=None, background_image=None):
        node = DISPLAY_NAME
        rgb = as_image(image, node, "image")  # a view: frames are sanitised one by one below
        b, h, w, _ = rgb.shape
        if mask is None:
            if isinstance(image, torch.Tensor) and image.shape[-1] == 4:
                alpha = sanitize(image[..., 3] if image.dim() == 4 else image[None, ..., 3])
            else:
                raise CutoutInputError(node, "mask", "is not connected and the image has no alpha channel",
                                       "a MASK, or an RGBA image (e.g. Remove Background's image output)")
        else:
            alpha = as_mask(mask, node, "mask", batch=b, size=(h, w))
            if isinstance(image, torch.Tensor) and image.shape[-1] == 4:  # the image's own alpha is kept
                alpha = torch.minimum(alpha, sanitize(image[..., 3] if image.dim() == 4 else image[None, ..., 3]))
        alpha = alpha.to(rgb.device)

        if background not in MODES:
            raise CutoutInputError(node, "background", f"is {background!r}", " / ".join(MODES))

        def colour(name, value):
            try:
                return parse_color(value)
            except ValueError as e:
                raise CutoutInputError(node, name, f"is {value!r} ({e})",
                                       "a colour name, #RRGGBB, #RGB, rgb(r, g, b) or r,g,b") from None

        bg_image = None
        if background == "image":
            if background_image is None:
                raise CutoutInputError(node, "background_image", "is not connected but background is 'image'",
                                       "an IMAGE to put behind the subject")
            bg_image = as_image(background_image, node, "background_image", sanitize_values=True)
            if bg_image.shape[0] not in (1, b):
                raise CutoutInputError(node, "background_image", f"has a batch of {bg_image.shape[0]} images but "
                                       f"image has {b}", f"1 background (used for every image) or {b}")
        extra = {}
        if background in ("color", "gradient"):
            extra["color"] = colour("color", color)
        if background in ("gradient", "image"):
            extra["color2"] = colour("color2", color2)
        try:
            bg = Background(background, angle=float(angle), fit=fit, blur_radius=float(blur_radius), image=bg_image,
                            **extra)
        except ValueError as e:
            raise CutoutInputError(node, "fit", f"is {fit!r} ({e})", " / ".join(FIT_MODES)) from None
        out = composite(rgb, alpha, CutoutOptions(decontaminate=decontaminate, background=bg))
        # the MASK used, without a copy when it is already a plain [B,H,W] tensor (ComfyUI node
        # outputs are never modified in place; a copy would keep 1/3 of an IMAGE alive for nothing)
        return (out, alpha.contiguous())
