"""What a transparent output stores under alpha = 0.

Invisible in any viewer, but it is what a trainer sees: kohya's sd-scripts load training
images with Pillow's ``convert("RGB")`` (alpha dropped) unless ``--alpha_mask`` is given, so
the colour kept under alpha = 0 is what a LoRA learns. The default is black (what ``rembg``
stores; no background survives, and it compresses to almost nothing). ``"bleed"`` spreads the
subject's edge colours outward instead (clean edges for tools that resample straight RGBA
without premultiplying); ``"photo"`` keeps the photo's own pixels, for kohya's
``--alpha_mask`` masked loss, where the model sees the whole photo and the alpha only weights
the loss. Semi-transparent and opaque pixels are never changed here. docs/dataset.md has the
measurements behind the default.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CLEAR_FILLS = ("black", "bleed", "photo")
DEFAULT_CLEAR_FILL = "black"


def check_clear_fill(fill: str) -> str:
    """``fill`` if it is one of ``CLEAR_FILLS``, else ValueError naming the choices."""
    if fill not in CLEAR_FILLS:
        raise ValueError(f"clear fill {fill!r} unknown; expected one of {', '.join(CLEAR_FILLS)}")
    return fill


def clear_pixels(alpha: torch.Tensor) -> torch.Tensor:
    """Where ``alpha`` (``[H,W]``, float 0..1 or uint8) is 0 once stored in 8 bits."""
    if alpha.dtype == torch.uint8:
        return alpha == 0
    return alpha < 0.5 / 255


def fill_clear(rgb: torch.Tensor, alpha: torch.Tensor, fill: str = DEFAULT_CLEAR_FILL) -> torch.Tensor:
    """Overwrite, in place, the colour of the pixels of ``rgb`` (``[H,W,3]``, float 0..1 or
    uint8; may be a strided view such as an RGBA's colour channels) that ``alpha`` makes fully
    transparent; returns ``rgb``."""
    check_clear_fill(fill)
    if fill == "photo":
        return rgb
    clear = clear_pixels(alpha)
    if fill == "black":
        rgb.masked_fill_(clear[..., None], 0)
        return rgb
    if not bool(clear.any()) or bool(clear.all()):
        if bool(clear.all()):
            rgb.zero_()
        return rgb
    bled = _push_pull(rgb, ~clear)
    rgb.copy_(torch.where(clear[..., None], bled.to(rgb.dtype), rgb))
    return rgb


def fill_clear_rgba8(rgba: torch.Tensor, fill: str = DEFAULT_CLEAR_FILL) -> torch.Tensor:
    """``fill_clear`` for a uint8 RGBA ``[H,W,4]``, in place; returns it. Black, on a contiguous
    image, clears whole pixels as 32-bit words in one pass (their alpha byte is 0 already)."""
    check_clear_fill(fill)
    if fill == "black" and rgba.is_contiguous():
        rgba.view(torch.int32)[..., 0].masked_fill_(rgba[..., 3] == 0, 0)
        return rgba
    fill_clear(rgba[..., :3], rgba[..., 3], fill)
    return rgba


def _push_pull(rgb: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Colours of the ``known`` pixels spread into the others (push-pull: a pyramid of
    known-weighted means, then each unknown pixel takes the finest level that has data).
    Linear in the pixel count; returns float ``[H,W,3]`` in ``rgb``'s scale."""
    x = rgb.permute(2, 0, 1)[None].float()
    w = known[None, None].float()
    levels = []
    c = x * w
    while True:
        levels.append((c, w))
        if min(c.shape[-2:]) <= 1:
            break
        c = F.avg_pool2d(c, 2, ceil_mode=True)
        w = F.avg_pool2d(w, 2, ceil_mode=True)
    c, w = levels[-1]
    est = c.sum((-2, -1), keepdim=True) / w.sum((-2, -1), keepdim=True).clamp_min(1e-12)
    est = est.expand_as(c)
    for c, w in reversed(levels):
        up = F.interpolate(est, size=c.shape[-2:], mode="bilinear", align_corners=False) \
            if est.shape[-2:] != c.shape[-2:] else est
        est = torch.where(w > 0, c / w.clamp_min(1e-12), up)
    return est[0].permute(1, 2, 0)
