"""Edge refinement against the photo, and temporal smoothing of video-frame masks.

* ``guided_filter``: the fast guided filter (He & Sun 2015): the linear coefficients are
  computed on a subsampled guide and mask, upsampled, and applied to the full-resolution
  photo, so the cost at full resolution is one bilinear upsample and a multiply-add.
  Colour guide (3×3 covariance per pixel), plain torch, CPU or GPU, vectorised over the batch.
* ``matte``: closed-form matting (Levin et al., via pymatting) on an automatic trimap,
  with a megapixel cap (downscales above it and logs so).
* ``temporal_smooth``: each frame averaged with its neighbours, neighbours weighted down
  where the photo changed (real motion), so still parts stop flickering and moving parts
  do not ghost. A pixel that is the same in every frame keeps its value exactly.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F

from .kernels import STRIP_ROWS, RowUpsampler, apply_coefficients, guided_coefficients, shrink
from .masks import grow
from .tensors import nchw

log = logging.getLogger("comfyui_cutout")


# chosen on the eval photos (docs/quality.md); Mask Refine's defaults
GUIDED_DEFAULTS = {"radius": 1, "eps": 1e-4, "work_size": 320}


def guided_filter(image: torch.Tensor, mask: torch.Tensor, radius: int = GUIDED_DEFAULTS["radius"],
                  eps: float = GUIDED_DEFAULTS["eps"], work_size: int = GUIDED_DEFAULTS["work_size"]) -> torch.Tensor:
    """Refine ``mask`` [B,H,W] along the edges of ``image`` [B,H,W,3] (fast guided filter).

    The coefficients are computed with the photo and mask shrunk so that the long side is
    ``work_size`` px (never enlarged), with a window of ``radius`` px *at that size*, then
    upsampled and applied to the full-resolution photo. ``eps`` is the regulariser: small
    follows the photo's edges closely, large stays close to the input mask.
    ``work_size`` = 0 computes at full resolution (the classic, slow guided filter).
    """
    b, h, w = mask.shape
    scale = 1.0 if work_size <= 0 else min(1.0, work_size / max(h, w))
    hs, ws = max(1, round(h * scale)), max(1, round(w * scale))
    out = torch.empty_like(mask)
    for i in range(b):  # one frame at a time: the full-resolution temporaries are per frame
        gs = shrink(nchw(image[i]).float(), hs, ws)
        ps = shrink(mask[i:i + 1, None].float(), hs, ws)
        a, bb = guided_coefficients(gs, ps, max(1, int(radius)), float(eps))
        apply_coefficients(torch.cat([a, bb], 1), image[i], out[i])
    return out


def auto_trimap(mask: torch.Tensor, band: int, lo: float = 0.05, hi: float = 0.95) -> torch.Tensor:
    """1 = sure subject (mask ≥ hi, shrunk by ``band`` px), 0 = sure background, 0.5 = unknown."""
    fg = (mask >= hi).float()
    bg = (mask <= lo).float()
    if band > 0:
        fg = grow(fg, -band)
        bg = grow(bg, -band)
    tri = torch.full_like(mask, 0.5)
    tri[bg > 0.5] = 0.0
    tri[fg > 0.5] = 1.0
    return tri


def matte(image: torch.Tensor, mask: torch.Tensor, band: int = 10, max_megapixels: float = 1.0,
          node: str = "Cutout") -> torch.Tensor:
    """Closed-form matting (pymatting ``estimate_alpha_cf``) on an automatic trimap.

    Above ``max_megapixels`` the photo and trimap are shrunk for the solve (logged) and the
    alpha is upsampled; only the unknown band of the full-resolution trimap takes the solved
    alpha, the sure regions keep the input mask. A trimap without sure subject or sure
    background returns the input mask unchanged, with a warning.
    """
    import numpy as np

    try:
        from pymatting import estimate_alpha_cf
    except ImportError as e:  # pragma: no cover - depends on the install
        raise RuntimeError(f"{node}: edge refinement 'matting' needs the pymatting package "
                           "(pip install pymatting)") from e

    b, h, w = mask.shape
    out = mask.clone()
    for i in range(b):
        tri = auto_trimap(mask[i:i + 1], band)[0]
        if not (tri == 1).any() or not (tri == 0).any():
            log.warning("%s: matting skipped on frame %d: the automatic trimap has no %s; "
                        "the mask is returned unchanged", node, i,
                        "sure subject" if not (tri == 1).any() else "sure background")
            continue
        unknown = tri == 0.5
        if not unknown.any():
            continue
        mp = h * w / 1e6
        scale = 1.0 if mp <= max_megapixels else math.sqrt(max_megapixels / mp)
        hs, ws = max(1, round(h * scale)), max(1, round(w * scale))
        img = nchw(image[i]).float()
        t = tri[None, None]
        if scale < 1.0:
            log.info("%s: matting frame %d at %dx%d instead of %dx%d (max_megapixels %.2f)",
                     node, i, ws, hs, w, h, max_megapixels)
            img = shrink(img, hs, ws)
            t = F.interpolate(t, size=(hs, ws), mode="nearest")
        img_np = img[0].permute(1, 2, 0).clamp(0, 1).cpu().double().numpy()
        tri_np = t[0, 0].cpu().double().numpy()
        if not (tri_np == 1).any() or not (tri_np == 0).any():
            log.warning("%s: matting skipped on frame %d: the shrunk trimap lost its sure regions", node, i)
            continue
        alpha = torch.from_numpy(np.ascontiguousarray(estimate_alpha_cf(img_np, tri_np))).float()
        alpha = alpha.clamp(0, 1).to(mask.device)[None, None]
        if scale < 1.0:
            alpha = F.interpolate(alpha, size=(h, w), mode="bilinear", align_corners=False)
        out[i] = torch.where(unknown, alpha[0, 0], mask[i])
    return out


def temporal_smooth(masks: torch.Tensor, strength: float, image: torch.Tensor | None = None,
                    radius: int = 2, motion_tolerance: float = 0.06) -> torch.Tensor:
    """Smooth a batch of consecutive video-frame masks along time.

    Frame t becomes the weighted mean of frames t−radius..t+radius with weight
    ``strength``^|d| for the neighbour d frames away (strength 0 = off, 1 = plain mean).
    With ``image`` (the frames), a neighbour's weight is also multiplied by
    exp(−(Δ/motion_tolerance)²), Δ = the mean colour change of that pixel (3×3 blurred)
    between the two frames, so that pixels that really moved keep their own mask.
    """
    n = masks.shape[0]
    if strength <= 0 or n < 2:
        return masks.clone()
    strength = min(float(strength), 1.0)
    h, w = masks.shape[-2:]
    small = None
    if image is not None:
        # the motion check is smooth by nature: colour change measured at 1/4 size (area)
        f = max(1, min(4, min(h, w) // 8))
        # frame by frame, as channels-last views (tensors.nchw): the fast pooling path
        small = torch.cat([F.avg_pool2d(nchw(image[i]).float(), f, stride=f, ceil_mode=True)
                           if f > 1 else nchw(image[i]).float() for i in range(n)])
    out = torch.empty_like(masks)
    for t in range(n):
        near = [(t + d, strength ** abs(d)) for d in range(-radius, radius + 1) if d != 0 and 0 <= t + d < n]
        if small is None:
            acc = masks[t].clone()
            wsum = torch.ones((), dtype=acc.dtype, device=acc.device)  # summed in acc's precision, same order
            for k, wgt in near:
                acc.add_(masks[k], alpha=wgt)
                wsum.add_(wgt)
            out[t] = acc.div_(wsum)
            continue
        # neighbour weights at the motion check's size, upsampled a strip of rows at a time
        wmaps = []
        for k, wgt in near:
            diff = (small[t] - small[k]).abs().mean(0)[None, None]
            diff = F.avg_pool2d(diff, 3, stride=1, padding=1, count_include_pad=False)
            wmaps.append(torch.exp(-(diff / motion_tolerance) ** 2) * wgt)
        up = RowUpsampler(torch.cat(wmaps, 1), h, w)
        for y0 in range(0, h, STRIP_ROWS):
            y1 = min(h, y0 + STRIP_ROWS)
            wk = up.rows(y0, y1)  # [r,K,W]
            acc = masks[t, y0:y1].clone()
            wsum = torch.ones_like(acc)
            for j, (k, _) in enumerate(near):  # same order for both: a pixel equal in every frame stays exact
                acc.addcmul_(wk[:, j], masks[k, y0:y1])
                wsum.add_(wk[:, j])
            out[t, y0:y1] = acc.div_(wsum)
    return out.clamp_(0.0, 1.0)
