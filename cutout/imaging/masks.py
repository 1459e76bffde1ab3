"""Mask operations on ``[B,H,W]`` float 0..1 masks (1 = subject), vectorised over the batch.

Plain torch (CPU or GPU) except the connected-component steps (``fill_holes``,
``remove_islands``), which label one frame at a time with scipy on the CPU: there is no
fast connected-component labelling in torch, and iterated dilation needs as many passes
as the image is wide.

Every function returns a new tensor and leaves its input alone. Directions, pinned by
tests/test_masks.py:

* ``levels``: a higher black point removes faint pixels, a lower white point makes
  semi-transparent pixels opaque; ``threshold`` > 0 makes the mask hard (>= threshold -> 1).
* ``grow(mask, n)``: n > 0 grows the subject by n px (a disc of radius R becomes R + n),
  n < 0 shrinks it; the structuring element is a disc.
* ``fill_holes``: background regions that do not touch the image border become subject.
* ``remove_islands``: subject pieces smaller than ``min_size`` px become background.
* ``feather(mask, r)``: Gaussian-like blur (three box passes, on a shrunk copy when wide),
  edge about 1.3·r px wide.
* ``invert``: 1 − mask.
"""

from __future__ import annotations

import functools
import itertools
import math

import torch
import torch.nn.functional as F

from .kernels import box_filter


def levels(mask: torch.Tensor, black: float = 0.0, white: float = 1.0, threshold: float = 0.0) -> torch.Tensor:
    """Soft threshold: values ≤ ``black`` -> 0, ≥ ``white`` -> 1, linear between.
    ``threshold`` > 0 then makes it hard: ≥ threshold -> 1, else 0."""
    m = mask
    if black != 0.0 or white != 1.0:
        if white - black < 1e-6:  # degenerate range (or too narrow for float32): a hard cut at the black point
            m = (m > black).to(mask.dtype)
        else:  # one new tensor, the rest in place (each fresh full-size tensor costs page faults)
            m = torch.sub(m, black).mul_(1.0 / (white - black)).clamp_(0.0, 1.0)
    if threshold > 0.0:
        m = (m >= threshold).to(mask.dtype)
    return m if m is not mask else mask.clone()


def _disc_widths(r: int) -> list[int]:
    """Half-width of the disc of radius r on row offset d (d = 0..r)."""
    return [int(math.floor(math.sqrt(r * r - d * d) + 1e-9)) for d in range(r + 1)]


def _dilate_disc(m: torch.Tensor, r: int) -> torch.Tensor:
    """Grey-level dilation of ``[B,H,W]`` by a disc of radius ``r`` (max over the disc).

    Rows of the disc are horizontal runs; the run max is grown one pixel at a time while
    the row offset walks from the top of the disc to its middle, so the cost is about 4·r
    element-wise max passes and memory three frames.
    """
    b, h, w = m.shape
    widths = _disc_widths(r)
    out = m.clone()
    run = m.clone()
    cur = 0
    for d in range(r, -1, -1):
        while cur < widths[d]:
            cur += 1
            if cur < w:
                torch.maximum(run[..., cur:], m[..., :-cur], out=run[..., cur:])
                torch.maximum(run[..., :-cur], m[..., cur:], out=run[..., :-cur])
        if d == 0:
            torch.maximum(out, run, out=out)
        elif d < h:
            torch.maximum(out[:, d:], run[:, :-d], out=out[:, d:])
            torch.maximum(out[:, :-d], run[:, d:], out=out[:, :-d])
    return out


def grow(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Grow (``pixels`` > 0) or shrink (< 0) the subject by |pixels| with a round element."""
    n = int(pixels)
    if n == 0:
        return mask.clone()
    if n > 0:
        return _dilate_disc(mask, n)
    return 1.0 - _dilate_disc(1.0 - mask, -n)


def feather(mask: torch.Tensor, radius: float) -> torch.Tensor:
    """Blur the mask: three box passes of radius rb ≈ radius/2 (≈ a Gaussian of σ² = rb(rb+1)).

    From rb = 2 on, the same spread is reached on a copy shrunk ``f``× per side (area), then
    upsampled (bilinear): a blur that wide holds no detail the shrunk copy loses, and it is
    ``f``² times less work (docs/performance.md).
    ``_feather_plan`` picks ``f`` and the box passes so that the total spread matches the
    full-resolution one within 5 %; tests/test_masks.py compares the two.
    """
    if radius <= 0:
        return mask.clone()
    rb = max(1, int(round(radius / 2.0)))
    h, w = mask.shape[-2:]
    plan = _feather_plan(rb) if min(h, w) >= 8 * rb else None
    if plan is None:
        m = mask
        for _ in range(3):
            m = box_filter(m, rb)
        return m.clamp(0.0, 1.0)
    f, radii = plan
    lead = mask.shape[:-2]
    # a partial last block is averaged over the pixels it has and placed as a whole one
    # (an offset of < f/2 px on the right/bottom border only), as kernels.pre_shrink does
    small = F.avg_pool2d(mask.reshape(-1, 1, h, w), f, stride=f, ceil_mode=True)
    for r in radii:
        small = box_filter(small, r)
    up = F.interpolate(small, scale_factor=f, mode="bilinear", align_corners=False)
    if up.shape[-2:] == (h, w):
        return up.clamp_(0.0, 1.0).reshape(*lead, h, w)
    return torch.clamp(up[..., :h, :w], 0.0, 1.0).reshape(*lead, h, w)  # crop + clamp: one pass


@functools.lru_cache(maxsize=None)
def _feather_plan(rb: int):
    """(f, box radii at 1/f size) whose spread matches three full-size box passes of radius rb
    within 5 % in σ, with the largest f ≤ rb/2; None when there is none (rb = 1).

    Spread as variances: a box of radius r has r(r+1)/3, the area shrink (f²−1)/12 and the
    bilinear upsample's tent f²/6 (full-resolution px²); three passes of rb: rb(rb+1).
    """
    target = rb * (rb + 1)
    for f in range(max(2, rb // 2), 1, -1):
        best = None
        for k in (3, 2):
            for radii in itertools.combinations_with_replacement(range(1, 5), k):
                var = f * f * sum(r * (r + 1) / 3 for r in radii) + (f * f - 1) / 12 + f * f / 6
                err = abs(math.sqrt(var / target) - 1)
                if err <= 0.05 and (best is None or err < best[2]):
                    best = (f, radii, err)
        if best:
            return best[0], best[1]
    return None


def invert(mask: torch.Tensor) -> torch.Tensor:
    return 1.0 - mask


def _label(binary, structure=None):
    from scipy import ndimage  # only when connected components are asked for

    return ndimage.label(binary, structure=structure)


def _bbox(binary, margin: int):
    """(y0, y1, x0, x1) of the True pixels of a numpy array, grown by ``margin``."""
    import numpy as np

    rows = np.flatnonzero(binary.any(1))
    cols = np.flatnonzero(binary.any(0))
    h, w = binary.shape
    return (max(0, rows[0] - margin), min(h, rows[-1] + 1 + margin),
            max(0, cols[0] - margin), min(w, cols[-1] + 1 + margin))


def _near(binary: torch.Tensor) -> torch.Tensor:
    """Pixels within 2 px (5×5 square) of a True pixel of ``binary`` [h,w]: two separable
    max passes on uint8 (the same result as one 5×5 max, a fifth of the work)."""
    x = binary[None, None].to(torch.uint8) if binary.device.type == "cpu" else binary[None, None].float()
    try:
        x = F.max_pool2d(F.max_pool2d(x, (1, 5), stride=1, padding=(0, 2)), (5, 1), stride=1, padding=(2, 0))
    except RuntimeError:  # max_pool2d without a uint8 kernel on this torch build
        x = binary[None, None].float()
        x = F.max_pool2d(F.max_pool2d(x, (1, 5), stride=1, padding=(0, 2)), (5, 1), stride=1, padding=(2, 0))
    return x[0, 0] > 0


def fill_holes(mask: torch.Tensor, cut: float = 0.5) -> torch.Tensor:
    """Background regions (mask < ``cut``) that do not touch the border become 1.

    The filled region is grown by 2 px inside the subject so that the soft rim of a hole
    goes too (not only its inside).
    """
    import numpy as np

    out = mask.clone()
    for i in range(mask.shape[0]):
        bg = (mask[i] < cut).cpu().numpy()
        if not bg.any():
            continue
        labels, n = _label(bg)
        if n == 0:
            continue
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        keep = np.zeros(n + 1, dtype=bool)
        keep[border] = True
        keep[0] = True  # label 0 is the subject itself
        holes = ~keep[labels]
        if not holes.any():
            continue
        y0, y1, x0, x1 = _bbox(holes, 2)
        hole = torch.from_numpy(holes[y0:y1, x0:x1]).to(mask.device)
        near = _near(hole)
        # the hole itself and its soft rim (subject pixels next to it); never another background region
        sub = out[i, y0:y1, x0:x1]
        sub.masked_fill_(hole | (near & (mask[i, y0:y1, x0:x1] >= cut)), 1.0)
    return out


def remove_islands(mask: torch.Tensor, min_size: float, cut: float = 0.5) -> torch.Tensor:
    """Subject pieces (mask ≥ ``cut``, 8-connected) smaller than ``min_size`` become 0.

    ``min_size`` < 1 is a fraction of the image area (0.001 = 0.1 %), ≥ 1 a pixel count.
    The soft rim of a removed piece (mask < ``cut`` within 2 px) goes with it.
    """
    import numpy as np

    if min_size <= 0:
        return mask.clone()
    h, w = mask.shape[-2:]
    limit = min_size * h * w if min_size < 1 else min_size
    out = mask.clone()
    eight = np.ones((3, 3), dtype=bool)
    for i in range(mask.shape[0]):
        fg = (mask[i] >= cut).cpu().numpy()
        if not fg.any():
            continue
        labels, n = _label(fg, eight)
        # torch counts the int32 labels as they are (numpy would first widen them all)
        sizes = torch.bincount(torch.from_numpy(labels.ravel()), minlength=n + 1).numpy()
        small = sizes < limit
        small[0] = False
        if not small.any():
            continue
        drop_np = small[labels]
        y0, y1, x0, x1 = _bbox(drop_np, 2)
        drop = torch.from_numpy(drop_np[y0:y1, x0:x1]).to(mask.device)
        near = _near(drop)
        out[i, y0:y1, x0:x1].masked_fill_(drop | (near & (mask[i, y0:y1, x0:x1] < cut)), 0.0)
    return out


# --- rembg's post_process_mask (its `ppm` option), in torch: opening with a 3x3 cross, Gaussian σ 2, threshold ---

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
