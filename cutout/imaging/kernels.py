"""The low-level image kernels shared by the public imaging functions.

Shrink and upsample (``model_io``, ``refine``), the box filter (``masks``, ``composite``,
``refine``), the strip upsampler and the guided-filter coefficients (``refine``,
``model_io``). Plain torch on ``[N,C,H,W]``; nothing here imports another imaging module,
so every public module can sit on top of this one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DOWN_MODE = "bilinear"  # antialiased; chosen on the eval photos (docs/quality.md)
PRE_SHRINK_TO = 3  # see pre_shrink
SEPARABLE_FROM = 4  # see upsample
UP_MODE = "bicubic"  # clamped afterwards; best MAE and edge-band error on the eval set
STRIP_ROWS = 32  # rows of a full-resolution result per step: its temporaries stay in the CPU cache


# ----------------------------------------------------------------------------- shrink / upsample

def shrink(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Area-style shrink of ``[N,C,H,W]`` to ``height``×``width``: box pre-shrink (large
    inputs), then antialiased bilinear. Never enlarges a side that is already small enough."""
    if tuple(x.shape[-2:]) == (height, width):
        return x
    x = pre_shrink(x, height, width)
    return F.interpolate(x, size=(height, width), mode=DOWN_MODE, antialias=True, align_corners=False)


def shrink_u8(x8: torch.Tensor, height: int, width: int, band_pixels: int = 1 << 18) -> torch.Tensor:
    """``shrink`` of a uint8 ``[N,H,W,C]`` frame, as float 0..1 ``[N,C,height,width]``: the same values as
    shrinking the frame made float first, without that full-size float copy (the box pre-shrink
    converts and pools ``band_pixels``-sized bands of whole blocks of rows)."""
    h, w = x8.shape[1:3]
    ky, kx = _pre_shrink_factors(h, w, height, width)
    if (ky, kx) == (1, 1) or (h, w) == (height, width):
        return shrink(x8.permute(0, 3, 1, 2).to(torch.float32).div_(255.0), height, width)
    rows = max(ky, band_pixels // max(1, w) // ky * ky)
    parts = [F.avg_pool2d(x8[:, y0:y0 + rows].permute(0, 3, 1, 2).to(torch.float32).div_(255.0), (ky, kx),
                          ceil_mode=True, count_include_pad=False) for y0 in range(0, h, rows)]
    return shrink(torch.cat(parts, 2), height, width)  # pre-shrunk: no second box pass


def _pre_shrink_factors(h: int, w: int, height: int, width: int) -> tuple[int, int]:
    return max(1, h // (PRE_SHRINK_TO * height)), max(1, w // (PRE_SHRINK_TO * width))


def pre_shrink(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Integer-factor box average so that each side stays ≥ ``PRE_SHRINK_TO`` × its target (large photos only).

    One cheap pass leaves the antialiased bilinear a 3–6× shrink instead of a ~25-tap kernel
    over every pixel, with the same masks (docs/performance.md). A partial last block
    (``ceil_mode``) is averaged over the pixels it has and placed as a whole one, so nothing is
    cropped: an offset of at most k − 1 source pixels at the right/bottom border.
    """
    ky, kx = _pre_shrink_factors(*x.shape[-2:], height, width)
    if ky == 1 and kx == 1:
        return x
    return F.avg_pool2d(x, (ky, kx), ceil_mode=True, count_include_pad=False)


def upsample(t: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bicubic upsampling of a small map ``[N,C,h,w]`` to the photo's size.

    Up to ``SEPARABLE_FROM``× per side: PyTorch's plain bicubic (Keys a = -0.75, chosen on the
    eval photos). Beyond that the separable bicubic (``antialias=True``, two 1-D passes, as in
    PIL): at such factors the two give nearly the same mask and the 2-D kernel costs twice as
    much (docs/performance.md).
    """
    h, w = t.shape[-2:]
    separable = height >= SEPARABLE_FROM * h and width >= SEPARABLE_FROM * w
    return F.interpolate(t, size=(height, width), mode=UP_MODE, align_corners=False, antialias=separable)


def block_mean(x: torch.Tensor, s: int) -> torch.Tensor:
    """Mean of each ``s``×``s`` block of ``[C,H,W]`` (last blocks cut by the border: of the pixels they
    have), i.e. ``avg_pool2d(x, s, stride=s, ceil_mode=True)``, by adding strided views: several
    times faster on the CPU than ``avg_pool2d``, equal to rounding (float sums in another order)."""
    if s == 1:
        return x
    h, w = x.shape[-2:]
    sums = _block_sums(_block_sums(x, s, -2), s, -1)
    rows = torch.full((-(-h // s),), float(s), device=x.device)
    cols = torch.full((-(-w // s),), float(s), device=x.device)
    rows[-1], cols[-1] = h - (rows.numel() - 1) * s, w - (cols.numel() - 1) * s
    return sums.div_(rows[:, None] * cols[None, :])


def _block_sums(x: torch.Tensor, s: int, dim: int) -> torch.Tensor:
    """Sums of ``s`` consecutive entries along ``dim`` (-1 or -2; the last group may be shorter)."""
    n = x.shape[dim]
    full = n - n % s
    shape = list(x.shape)
    shape[dim] = -(-n // s)
    out = torch.empty(shape, dtype=x.dtype, device=x.device)
    head = out.narrow(dim, 0, full // s)
    blocks = x.narrow(dim, 0, full).unflatten(dim, (full // s, s))  # the entries of a group: axis ``dim``
    head.copy_(blocks.select(dim, 0))
    for k in range(1, s):
        head += blocks.select(dim, k)
    if full < n:
        out.narrow(dim, full // s, 1).copy_(x.narrow(dim, full, n - full).sum(dim, keepdim=True))
    return out


class RowUpsampler:
    """Bilinear upsampling of small maps ``[1,C,h,w]`` to ``H×W`` (as ``F.interpolate(...,
    align_corners=False)``), handed out a strip of rows at a time.

    Upsampling C planes to full size and then combining them costs several full-resolution
    passes; widening the small maps first and interpolating rows strip by strip lets the caller
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


# ----------------------------------------------------------------------------- box filter

def _box_sum_1d(x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """Sum over the window [i−r, i+r] along ``dim`` (clipped at the borders), via cumsum."""
    n = x.shape[dim]
    if r <= 0:
        return x
    r = min(r, n)  # a window wider than the axis sums the whole axis
    x = x.movedim(dim, -1)
    acc = torch.float64 if x.device.type == "cpu" else x.dtype
    c = F.pad(x.to(acc), (r + 1, r)).cumsum(-1)
    s = (c[..., 2 * r + 1:] - c[..., : n]).to(x.dtype)
    return s.movedim(-1, dim)


def _box_count_1d(n: int, r: int, device) -> torch.Tensor:
    i = torch.arange(n, device=device)
    return ((i + r).clamp(max=n - 1) - (i - r).clamp(min=0) + 1).float()


def box_filter(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over a (2r+1)² window of the last two dims; the window is clipped at the borders
    (each pixel is the mean of the pixels that exist). Small radii add shifted views of a padded
    copy (separable; faster than ``avg_pool2d`` on the CPU), large ones use running sums (cost
    independent of ``r``)."""
    if r <= 0:
        return x
    h, w = x.shape[-2], x.shape[-1]
    count = _box_count_1d(h, r, x.device)[:, None] * _box_count_1d(w, r, x.device)[None, :]
    if r <= 12:
        p = F.pad(x, (r, r))  # zeros: the clipped window's sum, divided by its own count below
        acc = p[..., :, 0:w].clone()
        for i in range(1, 2 * r + 1):
            acc += p[..., :, i:i + w]
        p = F.pad(acc, (0, 0, r, r))
        acc = p[..., 0:h, :].clone()
        for i in range(1, 2 * r + 1):
            acc += p[..., i:i + h, :]
        return acc.div_(count.to(acc.dtype))
    s = _box_sum_1d(_box_sum_1d(x, r, -1), r, -2)
    return s / count.to(s.dtype)


# ----------------------------------------------------------------------------- guided filter

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


def apply_coefficients(ab: torch.Tensor, photo: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """q = Σ a_c·I_c + b at full resolution, the coefficients ``ab`` [1,4,h,w] upsampled bilinearly
    to the photo ``[H,W,3]`` strip by strip (``RowUpsampler``); clamped to 0..1 and written into
    ``out`` [H,W]."""
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
