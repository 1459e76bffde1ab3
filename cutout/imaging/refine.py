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

from .masks import box_filter, grow
from .model_io import shrink
from .tensors import nchw

log = logging.getLogger("comfyui_cutout")


def guided_coefficients(guide: torch.Tensor, p: torch.Tensor, radius: int, eps: float):
    """Guided-filter coefficients at the resolution of the inputs.

    ``guide`` [N,3,h,w], ``p`` [N,1,h,w] -> (a [N,3,h,w], b [N,1,h,w]), already box-averaged
    (the "mean_a, mean_b" of He et al.), so that q = Σ a·I + b.
    """
    mean_i = box_filter(guide, radius)
    mean_p = box_filter(p, radius)
    cov_ip = box_filter(guide * p, radius) - mean_i * mean_p
    # 3×3 covariance of the guide per pixel (+ eps on the diagonal)
    idx = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    prods = torch.stack([guide[:, i] * guide[:, j] for i, j in idx], 1)
    var = box_filter(prods, radius) - torch.stack([mean_i[:, i] * mean_i[:, j] for i, j in idx], 1)
    sxx, sxy, sxz, syy, syz, szz = var.unbind(1)
    sxx, syy, szz = sxx + eps, syy + eps, szz + eps
    # inverse through the adjugate (symmetric matrix), all per pixel
    c00 = syy * szz - syz * syz
    c01 = sxz * syz - sxy * szz
    c02 = sxy * syz - sxz * syy
    c11 = sxx * szz - sxz * sxz
    c12 = sxy * sxz - sxx * syz
    c22 = sxx * syy - sxy * sxy
    det = sxx * c00 + sxy * c01 + sxz * c02
    cx, cy, cz = cov_ip.unbind(1)
    a0 = (c00 * cx + c01 * cy + c02 * cz) / det
    a1 = (c01 * cx + c11 * cy + c12 * cz) / det
    a2 = (c02 * cx + c12 * cy + c22 * cz) / det
    a = torch.stack([a0, a1, a2], 1)
    b = mean_p - (a * mean_i).sum(1, keepdim=True)
    return box_filter(a, radius), box_filter(b, radius)


# chosen on shared/eval/dev (bench/refine_quality.py, docs/notes-refine.md); Mask Refine's defaults
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


STRIP_ROWS = 32  # rows of a full-resolution result per step: its temporaries stay in the CPU cache


class RowUpsampler:
    """Bilinear upsampling of small maps ``[1,C,h,w]`` to ``H×W`` (as ``F.interpolate(...,
    align_corners=False)``), handed out a strip of rows at a time.

    Upsampling C planes to 12 MP and then combining them costs several full-resolution passes;
    widening the small maps first (small) and interpolating rows strip by strip lets the caller
    combine each strip while it is in the cache, and write each result pixel once.
    """

    def __init__(self, small: torch.Tensor, height: int, width: int):
        h = small.shape[-2]
        if small.shape[-1] != width:
            small = F.interpolate(small, size=(h, width), mode="bilinear", align_corners=False)
        self.wide = small[0].permute(1, 0, 2).contiguous()  # [h,C,W]: one source row = one block
        src = ((torch.arange(height, dtype=torch.float64, device=small.device) + 0.5) * (h / height)
               - 0.5).clamp_(min=0)
        self.i0 = src.floor().long().clamp_(max=h - 1)
        self.i1 = (self.i0 + 1).clamp_(max=h - 1)
        self.wt = (src - self.i0).float()[:, None, None]

    def rows(self, y0: int, y1: int) -> torch.Tensor:
        """Rows ``y0:y1`` of the upsampled maps, ``[y1-y0, C, W]``."""
        return torch.lerp(self.wide[self.i0[y0:y1]], self.wide[self.i1[y0:y1]], self.wt[y0:y1])


def apply_coefficients(ab: torch.Tensor, photo: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """q = Σ a_c·I_c + b at full resolution, the coefficients ``ab`` [1,4,h,w] upsampled bilinearly
    to the photo ``[H,W,3]``; clamped to 0..1 and written into ``out`` [H,W] (12 MP: 0.12 -> 0.075 s
    with ``RowUpsampler`` strips instead of four upsampled planes)."""
    H, W = out.shape
    up = RowUpsampler(ab, H, W)
    photo = photo.float()
    for y0 in range(0, H, STRIP_ROWS):
        y1 = min(H, y0 + STRIP_ROWS)
        c = up.rows(y0, y1)  # [r,4,W]
        q = out[y0:y1]
        q.copy_(c[:, 3])
        p = photo[y0:y1]
        q.addcmul_(c[:, 0], p[..., 0]).addcmul_(c[:, 1], p[..., 1]).addcmul_(c[:, 2], p[..., 2])
        q.clamp_(0.0, 1.0)
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
