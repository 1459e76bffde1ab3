"""After the network: mask post-processing, refinement, decontamination and background.

``finish`` is the ONE place where the service calls the pack's Mask Refine / Composite
Background code (``imaging.refine``, ``imaging.composite``). Those modules are imported
lazily; where one is missing from this build, a minimal fallback is used for what has an
obvious answer (transparent or a solid colour) and anything else is refused with a 501 that
names the missing piece, never silently skipped.

Order (documented in docs/notes-service.md): mask -> ppm -> refine -> [om: the mask is the
result] -> decontaminate -> background (transparent / bgc / colour) -> pixels.
"""

from __future__ import annotations

import inspect
import logging

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ApiError
from .imageio import to_uint8
from .params import Options

log = logging.getLogger("comfyui_cutout")

NODE = "Cutout API"


def _missing(feature: str, where: str) -> ApiError:
    return ApiError(501, "feature_unavailable", f"{feature} needs {where}, which this build of the pack does "
                    "not include", feature=feature)


def _refine_module():
    try:
        from ..imaging import refine  # Mask Refine's functions (guided filter, matting)
    except ImportError:
        return None
    return refine


def _composite_module():
    try:
        from ..imaging import composite  # Composite Background's functions
    except ImportError:
        return None
    return composite


# --- rembg's post_process_mask, in torch (opening with a 3x3 cross, Gaussian sigma 2, threshold) ---

def _symmetric_pad(x: torch.Tensor, r: int) -> torch.Tensor:
    """Pad the last two dims by r with scipy's 'reflect' (edge sample repeated)."""
    def pad(t, dim):
        n = t.shape[dim]
        k = min(r, n)
        lo = t.narrow(dim, 0, k).flip(dim)
        hi = t.narrow(dim, n - k, k).flip(dim)
        out = torch.cat([lo, t, hi], dim)
        while out.shape[dim] < n + 2 * r:  # tiny images: keep reflecting
            out = torch.cat([out.narrow(dim, 0, 1), out, out.narrow(dim, out.shape[dim] - 1, 1)], dim)
        return out
    return pad(pad(x, -1), -2)


def _cross(x: torch.Tensor, op) -> torch.Tensor:
    p = _symmetric_pad(x, 1)
    h, w = x.shape[-2:]
    parts = [p[..., 1:h + 1, 1:w + 1], p[..., 0:h, 1:w + 1], p[..., 2:h + 2, 1:w + 1],
             p[..., 1:h + 1, 0:w], p[..., 1:h + 1, 2:w + 2]]
    out = parts[0]
    for q in parts[1:]:
        out = op(out, q)
    return out


def post_process_mask(mask: torch.Tensor) -> torch.Tensor:
    """rembg's ``post_process`` on a float mask ``[B,H,W]``: a hard 0/1 mask with a smooth outline."""
    m = torch.round(mask.double() * 255.0)
    m = _cross(_cross(m, torch.minimum), torch.maximum)  # grey opening with skimage's disk(1)
    sigma, radius = 2.0, 8  # scipy's gaussian_filter truncates at 4 sigma
    xs = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (xs / sigma) ** 2)
    k = k / k.sum()
    b, h, w = m.shape
    t = _symmetric_pad(m.unsqueeze(1), radius)
    t = F.conv2d(t, k.view(1, 1, 1, -1))
    t = F.conv2d(t, k.view(1, 1, -1, 1))
    # rembg blurs 8-bit values, stores the blur back into uint8 (truncation), then thresholds at 127
    return (torch.floor(t[:, 0]) >= 127).float()


def _call(fn, *args, **kwargs):
    """Call ``fn`` with the keyword arguments it accepts (Mask Refine's knobs may differ in name)."""
    accepted = inspect.signature(fn).parameters
    return fn(*args, **{k: v for k, v in kwargs.items() if k in accepted})


SPECIAL_BACKGROUNDS = ("blur", "checkerboard")  # need Composite Background's composite_background


def features() -> dict:
    """What this build can do (the page greys out the rest; the API answers 501 for it)."""
    refine, comp = _refine_module(), _composite_module()
    has_composite = comp is not None and hasattr(comp, "composite_background")
    return {
        "refine": ["none"] + [name for name, fn in (("guided", "guided_filter"), ("matting", "matte"))
                              if refine is not None and hasattr(refine, fn)],
        "decontaminate": comp is not None and hasattr(comp, "estimate_foreground"),
        "backgrounds": ["transparent", "colour"] + (list(SPECIAL_BACKGROUNDS) if has_composite else []),
    }


def _parse_background(spec: str):
    """'transparent' -> None; 'blur'/'checkerboard' -> the name; a colour ('#rrggbb', a CSS name, 'r,g,b') -> RGB 0..1."""
    text = spec.strip()
    low = text.lower()
    if low == "transparent":
        return None
    comp = _composite_module()
    if low in SPECIAL_BACKGROUNDS:
        if comp is None or not hasattr(comp, "composite_background"):
            raise _missing(f"background={low}", "Composite Background (imaging.composite.composite_background)")
        return low
    if comp is not None and hasattr(comp, "parse_color"):
        try:
            return tuple(float(c) for c in comp.parse_color(text)[:3])
        except ValueError as e:
            raise ApiError(400, "bad_parameter", f"parameter 'background' is '{spec}': {e}",
                           parameter="background") from None
    from PIL import ImageColor  # fallback while Composite Background is not in this build

    if "," in text:
        parts = text.split(",")
        if len(parts) == 3 and all(p.strip().isdigit() and int(p) <= 255 for p in parts):
            return tuple(int(p) / 255.0 for p in parts)
    try:
        c = ImageColor.getrgb(text)
        return tuple(v / 255.0 for v in c[:3])
    except ValueError:
        raise ApiError(400, "bad_parameter", f"parameter 'background' is '{spec}'; expected 'transparent', "
                       "'#rrggbb', a colour name such as 'white', or 'r,g,b'", parameter="background") from None


def finish(rgb: torch.Tensor, pixels: np.ndarray, mask: torch.Tensor, opts: Options) -> np.ndarray:
    """The result's pixels (uint8 ``[H,W]`` mask, ``[H,W,3]`` or ``[H,W,4]``) for one image.

    ``rgb`` is the decoded IMAGE ``[1,H,W,3]``, ``pixels`` the same as uint8, ``mask`` the
    network's MASK ``[1,H,W]`` (1 = subject).
    """
    background = _parse_background(opts.background)  # validate before any slow work
    comp = _composite_module()
    if opts.decontaminate and (comp is None or not hasattr(comp, "estimate_foreground")):
        raise _missing("decontaminate (dc)", "Composite Background (imaging.composite.estimate_foreground)")

    if opts.ppm:
        mask = post_process_mask(mask)
    if opts.refine != "none":
        refine = _refine_module()
        if opts.refine == "guided":
            if refine is None or not hasattr(refine, "guided_filter"):
                raise _missing("refine=guided", "Mask Refine (imaging.refine.guided_filter)")
            mask = _call(refine.guided_filter, rgb, mask)
        else:
            if refine is None or not hasattr(refine, "matte"):
                raise _missing("refine=matting (a=true)", "Mask Refine (imaging.refine.matte)")
            mask = _call(refine.matte, rgb, mask, band=opts.ae, lo=opts.ab / 255.0, hi=opts.af / 255.0,
                         node=NODE)
    if opts.om:
        return to_uint8(mask[0])

    if background is not None and comp is not None and hasattr(comp, "composite_background"):
        out = _call(comp.composite_background, rgb, mask, background, decontaminate=opts.decontaminate)
        return to_uint8(out[0])
    if background is not None:  # fallback: opaque RGB on a solid colour, fg * a + bg * (1 - a)
        a = mask[0].unsqueeze(-1).double()
        fg = torch.from_numpy(pixels).double() / 255.0
        bg = torch.tensor(background, dtype=torch.float64).view(1, 1, 3)
        return to_uint8(fg * a + bg * (1.0 - a))

    if opts.decontaminate:
        colour = to_uint8(comp.estimate_foreground(rgb, mask)[0])
    else:
        colour = pixels  # the original pixels, untouched
    rgba = np.dstack([colour, to_uint8(mask[0])])
    if opts.bgc is not None:  # rembg: Image.alpha_composite(colour background, cut-out)
        from PIL import Image

        under = Image.new("RGBA", (rgba.shape[1], rgba.shape[0]), tuple(opts.bgc))
        return np.asarray(Image.alpha_composite(under, Image.fromarray(rgba, "RGBA")))
    return rgba
