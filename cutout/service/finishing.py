"""After the network: mask post-processing, refinement, decontamination and background.

``finish`` is the ONE place where the service calls the pack's Mask Refine / Composite
Background code (``imaging.refine``, ``imaging.composite``), the same functions the nodes and
the dataset CLI use (imported lazily, inside the function).

Order (documented in docs/api.md): mask -> ppm -> refine -> [om: the mask is the
result] -> decontaminate -> background (transparent / bgc / colour) -> pixels.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from .errors import ApiError
from .imageio import to_uint8
from .params import Options

log = logging.getLogger("comfyui_cutout")

NODE = "Cutout API"


SPECIAL_BACKGROUNDS = ("blur", "checkerboard")


def features() -> dict:
    """What this build can do (the page offers exactly this; Mask Refine and Composite Background are part of the pack)."""
    return {
        "refine": ["none", "guided", "matting"],
        "decontaminate": True,
        "backgrounds": ["transparent", "colour"] + list(SPECIAL_BACKGROUNDS),
    }


def _parse_background(spec: str):
    """'transparent' -> None; 'blur'/'checkerboard' -> the name; a colour -> RGB 0..1 (``imaging.composite.parse_color``)."""
    from ..imaging.composite import parse_color

    text = spec.strip()
    low = text.lower()
    if low == "transparent":
        return None
    if low in SPECIAL_BACKGROUNDS:
        return low
    try:
        return tuple(float(c) for c in parse_color(text)[:3])
    except ValueError as e:
        raise ApiError(400, "bad_parameter", f"parameter 'background' is '{spec}': {e}",
                       parameter="background") from None


def finish(rgb: torch.Tensor, pixels: np.ndarray, mask: torch.Tensor, opts: Options) -> np.ndarray:
    """The result's pixels (uint8 ``[H,W]`` mask, ``[H,W,3]`` or ``[H,W,4]``) for one image.

    ``rgb`` is the decoded IMAGE ``[1,H,W,3]``, ``pixels`` the same as uint8, ``mask`` the
    network's MASK ``[1,H,W]`` (1 = subject).
    """
    from ..imaging.clear import fill_clear
    from ..imaging.composite import composite_background, estimate_foreground
    from ..imaging.masks import post_process_mask
    from ..imaging.refine_chain import refine_masks

    background = _parse_background(opts.background)  # validate before any slow work
    if opts.ppm:
        mask = post_process_mask(mask)
    if opts.refine != "none":  # the same ordered function as the Mask Refine node and the CLI
        if opts.refine != "guided" and (opts.ab, opts.af) != (10, 240):
            log.warning("%s: ab/af are not used: Mask Refine's matting builds its trimap at 0.05 / 0.95", NODE)
        mode = "guided filter" if opts.refine == "guided" else "matting"
        mask = refine_masks(mask, rgb, edge_refinement=mode, matting_band=opts.ae, node=NODE)
    if opts.om:
        return to_uint8(mask[0])

    if background is not None:
        return to_uint8(composite_background(rgb, mask, background, decontaminate=opts.decontaminate)[0])

    if opts.decontaminate:
        colour = to_uint8(estimate_foreground(rgb, mask)[0])
    else:
        colour = pixels.copy()  # the original pixels (copied: the clear fill must not reach the caller's)
    alpha8 = to_uint8(mask[0])
    fill_clear(torch.from_numpy(colour), torch.from_numpy(alpha8), opts.clear_fill)
    rgba = np.dstack([colour, alpha8])
    if opts.bgc is not None:  # rembg: Image.alpha_composite(colour background, cut-out)
        from PIL import Image

        under = Image.new("RGBA", (rgba.shape[1], rgba.shape[0]), tuple(opts.bgc))
        return np.asarray(Image.alpha_composite(under, Image.fromarray(rgba, "RGBA")))
    return rgba
