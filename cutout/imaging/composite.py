"""Putting a cut-out on a new background, with colour decontamination of the edge.

Public, stable API (used by the nodes, the dataset CLI and the HTTP API)::

    composite_background(rgb, alpha, background="transparent", *, color2=None, angle=90.0,
                         fit="cover", blur_radius=24.0, checker_size=16,
                         decontaminate=True, clear_fill="black") -> torch.Tensor
    parse_color("white" | "#RRGGBB" | "#RGB" | "rgb(…)" | "r,g,b" | (r, g, b)) -> (r, g, b) floats 0..1
    estimate_foreground(rgb, alpha, method="blur_fusion") -> rgb

``rgb`` is ``[B,H,W,3]`` float 0..1, ``alpha`` ``[B,H,W]`` with 1 = subject (a ``[H,W,3]`` /
``[H,W]`` pair is a batch of one). ``background`` is one of:

* ``"transparent"``: returns straight RGBA ``[B,H,W,4]`` (colours decontaminated; black where
  alpha is 0 unless ``clear_fill`` says otherwise, see ``imaging.clear``);
* a colour (``"white"``, ``"#00ff00"``, ``(1.0, 1.0, 1.0)``, …): a solid background; with
  ``color2`` a linear gradient from ``background`` to ``color2``, ``angle`` degrees
  (0 = left → right, 90 = top → bottom);
* ``"blur"``: the photo itself, blurred (``blur_radius`` px) with the subject taken out first,
  so it does not leave a halo;
* ``"checkerboard"``: a grey preview checkerboard (``checker_size`` px squares);
* an IMAGE tensor ``[1 or B,h,w,3|4]``: resized to the photo with ``fit`` = cover | contain |
  stretch (contain pads with ``color2`` or black).

Every mode but transparent returns RGB ``[B,H,W,3]``.

Decontamination: in semi-transparent pixels (0 < alpha < 1) the photo's colour is a mix of
subject and old background; naive compositing carries the old background's colour (a green
or dark fringe). ``estimate_foreground`` recovers the subject's own colour there with
blur-fusion (Forte & Pitié 2021, two passes, radius 90 then 6 px), in torch, chosen over
pymatting's multi-level method (Germer et al. 2020) for its speed at equal-or-better error
(docs/quality.md). Opaque and fully transparent pixels keep the photo's colour.
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import torch
import torch.nn.functional as F

from .clear import DEFAULT_CLEAR_FILL, check_clear_fill, fill_clear, fill_clear_rgba8
from .kernels import block_mean, box_filter
from .tensors import to_rgba

ColorLike = Union[str, Sequence[float]]
FIT_MODES = ("cover", "contain", "stretch")
FG_METHODS = ("blur_fusion", "ml")
BAND_EPS = 0.5 / 255  # alpha this close to 0 or 1 counts as transparent / opaque (invisible in 8 bits)


def edge_band(a: torch.Tensor) -> torch.Tensor:
    """Where a frame's alpha is neither transparent nor opaque: the only pixels decontamination changes."""
    return (a > BAND_EPS) & (a < 1 - BAND_EPS)


def parse_color(color: ColorLike) -> tuple[float, float, float]:
    """A colour as an (r, g, b) tuple of floats 0..1.

    Accepts CSS/X11 names (``"white"``, ``"black"``, ``"green"`` …), ``#RGB``, ``#RRGGBB``
    (the ``#`` is optional), ``rgb(…)``/``hsl(…)``, ``"r,g,b"`` with 0..255 integers or 0..1
    floats, and a sequence of three numbers (0..1 floats, or 0..255 if any is above 1).
    Raises ``ValueError`` naming what was not understood.
    """
    if not isinstance(color, str):
        vals = [float(v) for v in color]
        if len(vals) != 3:
            raise ValueError(f"colour {color!r}: expected 3 numbers (r, g, b)")
        return _normalise(vals)
    s = color.strip()
    if not s:
        raise ValueError("colour is empty; expected a name like 'white' or a hex code like '#RRGGBB'")
    hexpart = s[1:] if s.startswith("#") else s
    if len(hexpart) in (3, 6) and all(c in "0123456789abcdefABCDEF" for c in hexpart):
        if len(hexpart) == 3:
            hexpart = "".join(c * 2 for c in hexpart)
        return tuple(int(hexpart[i:i + 2], 16) / 255.0 for i in (0, 2, 4))
    if "," in s and "(" not in s:
        try:
            return _normalise([float(v) for v in s.split(",")])
        except ValueError:
            pass
    from PIL import ImageColor

    try:
        rgb = ImageColor.getrgb(s)
    except ValueError:
        raise ValueError(f"colour {color!r} not understood; expected a name like 'white', "
                         "a hex code like '#RRGGBB', 'rgb(r, g, b)' or 'r,g,b'") from None
    return tuple(v / 255.0 for v in rgb[:3])


def _normalise(vals: list[float]) -> tuple[float, float, float]:
    if len(vals) != 3:
        raise ValueError(f"colour {vals!r}: expected 3 numbers (r, g, b)")
    if any(v < 0 for v in vals) or any(v > 255 for v in vals):
        raise ValueError(f"colour {vals!r}: numbers must be 0..1 or 0..255")
    if any(v > 1 for v in vals):
        vals = [v / 255.0 for v in vals]
    return tuple(vals)


# ----------------------------------------------------------------------------- foreground

def _blur(x: torch.Tensor, r: int) -> torch.Tensor:
    """Box mean of ``[N,C,H,W]``; large radii are computed on a shrunk copy (they are smooth anyway)."""
    h, w = x.shape[-2:]
    s = max(1, r // 8)
    if s == 1:
        return box_filter(x, r)
    hs, ws = max(1, math.ceil(h / s)), max(1, math.ceil(w / s))
    small = F.interpolate(x, size=(hs, ws), mode="bilinear", antialias=True, align_corners=False)
    small = box_filter(small, max(1, round(r / s)))
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


COARSE_RADIUS, FINE_RADIUS = 90, 6
STRIP_PIXELS = 1 << 20  # full-resolution pixels per strip of the final step


def _unit(x: torch.Tensor) -> torch.Tensor:
    """Colours as float 0..1 (uint8 frames are converted piece by piece, never whole)."""
    return x.float().mul_(1 / 255) if x.dtype == torch.uint8 else x.float()


def _pool_stats(img: torch.Tensor, a: torch.Tensor, s: int) -> torch.Tensor:
    """Area-downscale (factor ``s``, ceil) of [α, I·α, I·(1−α), I] for one frame
    (``img`` [H,W,3], ``a`` [H,W]) -> [1,10,ceil(H/s),ceil(W/s)].

    Only α, I·α and I are pooled (I·(1−α) = I − I·α is linear). The product I·α is formed and
    pooled a band of rows at a time, so it never exists at full size; each band is turned into
    planar channels ([3,rows,W], converted from uint8 on the way) first, and averaged by
    ``kernels.block_mean`` (strided adds: faster on planes, and faster than ``avg_pool2d``)."""
    a = a.float()
    h, w = a.shape
    if s == 1:
        img = _unit(img)
        ia = img * a[..., None]
        a_l, ia_l, i_l = a[None, None], ia.permute(2, 0, 1)[None], img.permute(2, 0, 1)[None]
        return torch.cat([a_l, ia_l, i_l - ia_l, i_l], 1).contiguous()

    def pool(x):  # [C,rows,W] -> [1,C,ceil(rows/s),ceil(W/s)]
        return block_mean(x, s)[None]

    hs = -(-h // s)
    out = torch.empty((1, 10, hs, -(-w // s)), dtype=torch.float32, device=img.device)
    step = max(s, (STRIP_PIXELS // max(1, w)) // s * s)  # whole blocks of s rows per band
    for y0 in range(0, h, step):
        y1 = min(h, y0 + step)
        r0, r1 = y0 // s, -(-y1 // s)
        it = torch.empty((3, y1 - y0, w), dtype=torch.float32, device=img.device)
        it.copy_(img[y0:y1].permute(2, 0, 1))
        if img.dtype == torch.uint8:
            it.mul_(1 / 255)
        at = a[y0:y1][None]
        out[:, 0:1, r0:r1] = pool(at)
        out[:, 1:4, r0:r1] = pool(it * at)
        out[:, 7:10, r0:r1] = pool(it)
    torch.sub(out[:, 7:10], out[:, 1:4], out=out[:, 4:7])
    return out


TILE = 64  # full-resolution px per side of the tiles the final blur-fusion step is run on


def band_tiles(band: torch.Tensor, tile: int = TILE) -> torch.Tensor:
    """Which ``tile``×``tile`` tiles of ``band`` [H,W] (bool) hold a band pixel: bool [ceil(H/t), ceil(W/t)]."""
    h, w = band.shape
    ny, nx = -(-h // tile), -(-w // tile)
    b = band.view(torch.uint8)
    if ny * tile != h or nx * tile != w:
        b = F.pad(b, (0, nx * tile - w, 0, ny * tile - h))
    return b.reshape(ny, tile, nx * tile).amax(1).view(ny, nx, tile).amax(2).bool()


def _runs(flags: list) -> list[tuple[int, int]]:
    """[(start, end)) of the runs of True in ``flags``."""
    runs, start = [], None
    for j, f in enumerate(flags + [False]):
        if f and start is None:
            start = j
        elif not f and start is not None:
            runs.append((start, j))
            start = None
    return runs


def _blur_fusion_tiled(img: torch.Tensor, a: torch.Tensor, band: torch.Tensor,
                       work_megapixels: float = 1.0, out: torch.Tensor | None = None,
                       over: torch.Tensor | None = None, prefilled: bool = False) -> torch.Tensor:
    """Blur-fusion on one frame (``img`` [H,W,3], ``a`` [H,W]), computed only where it matters.

    Both blur passes (radius 90 and 6 px at full resolution) only produce smooth estimates
    F̂, B̂ of the local foreground / background colour: they are computed on an area-downscaled
    copy of at most ``work_megapixels`` (the radius-90 pass on a further ≈ 11× smaller one).
    The final blur-fusion step F = F̂ + α(I − αF̂ − (1−α)B̂) then runs at full resolution, with
    F̂, B̂ bilinearly upsampled, only on the ``TILE``² tiles that hold band pixels (runs of them
    along each row of tiles; the others keep what ``out`` has). Cost bound: the coarse work is fixed by
    ``work_megapixels``, the rest is a fixed number of element-wise passes per pixel, so the
    worst case (the whole frame is edge band) is linear in the pixel count, with ≈ 1 MP of
    temporaries beyond the frame. Writes ``img`` with the band pixels replaced into ``out``
    (default: a new tensor; ``out`` may be ``img`` itself, or hold a copy of it already:
    ``prefilled``). ``img`` and ``out`` may be uint8 (0..255): converted tile by tile.

    With ``over`` (a background [H,W,3], possibly a broadcast view) the caller has already put
    the naive composite lerp(over, img, α) into ``out``; only its band pixels are rewritten,
    as lerp(over, F, α): the decontaminated composite without a full-size foreground copy."""
    h, w = a.shape
    s2 = max(1, math.ceil(math.sqrt(h * w / (work_megapixels * 1e6))))
    st = _pool_stats(img, a, s2)  # [1,10,h2,w2]
    a_l, i_l = st[:, :1], st[:, 7:10]
    # pass 1, radius 90 (full-res px), on a further downscaled copy of the pooled stats
    r1 = COARSE_RADIUS / s2
    s1 = max(1, int(r1 // 8))
    p1 = block_mean(st[0, :7], s1)[None] if s1 > 1 else st[:, :7]
    p1 = box_filter(p1, max(1, round(r1 / s1)))
    if s1 > 1:
        p1 = F.interpolate(p1, size=st.shape[-2:], mode="bilinear", align_corners=False)
    ba = p1[:, :1]
    f_hat = p1[:, 1:4] / (ba + 1e-5)
    b_hat = (p1[:, 4:7] / ((1 - ba) + 1e-5)).clamp(0, 1)
    fg1 = (f_hat + a_l * (i_l - a_l * f_hat - (1 - a_l) * b_hat)).clamp(0, 1)
    # pass 2, radius 6 (full-res px)
    r2 = max(1, round(FINE_RADIUS / s2))
    q = box_filter(torch.cat([a_l, fg1 * a_l, b_hat * (1 - a_l)], 1), r2)
    bq = q[:, :1]
    f_hat2 = (q[:, 1:4] / (bq + 1e-5)).clamp(0, 1)
    b_hat2 = (q[:, 4:7] / ((1 - bq) + 1e-5)).clamp(0, 1)
    # F = F̂ + α(I − αF̂ − (1−α)B̂) = lerp(B̂, I, α) + (1 − α²)(F̂ − B̂): upsample B̂ and D = F̂ − B̂
    # (linear, so upsampling D equals the difference of the upsampled estimates)
    coarse = [b_hat2, f_hat2 - b_hat2]
    hs, ws = b_hat2.shape[-2:]
    if out is None:
        out = torch.empty_like(img)
    # out already holds the pixels outside the band: it is img itself, or the caller's naive composite
    prefilled = prefilled or out.data_ptr() == img.data_ptr() or over is not None
    if s2 == 1:
        coarse = [c[0].permute(1, 2, 0) for c in coarse]  # [H,W,3]
    else:  # channels-last so that each upsampled strip is a contiguous [rows,W,3]
        coarse = [c.contiguous(memory_format=torch.channels_last) for c in coarse]
    # the final step, on the runs of tiles that hold band pixels (elsewhere out keeps what it has)
    tiles = band_tiles(band, TILE).tolist()
    for i, row in enumerate(tiles):
        y0, y1 = i * TILE, min(h, (i + 1) * TILE)
        done = 0
        for j0, j1 in _runs(row):
            x0, x1 = j0 * TILE, min(w, j1 * TILE)
            if not prefilled:  # the tiles without band pixels keep the photo
                out[y0:y1, done:x0].copy_(img[y0:y1, done:x0])
            done = x1
            if s2 == 1:
                bb, dd = (c[y0:y1, x0:x1] for c in coarse)
            else:
                # coarse rows/cols covering the window plus one on each side; bilinear
                # (align_corners=False) at an exact integer scale maps local and global coords alike
                c0, c1 = max(0, y0 // s2 - 1), min(hs, -(-y1 // s2) + 1)
                k0, k1 = max(0, x0 // s2 - 1), min(ws, -(-x1 // s2) + 1)
                bb, dd = (F.interpolate(c[:, :, c0:c1, k0:k1], scale_factor=s2, mode="bilinear",
                                        align_corners=False)[0].permute(1, 2, 0)
                          [y0 - c0 * s2:y1 - c0 * s2, x0 - k0 * s2:x1 - k0 * s2] for c in coarse)
            it = _unit(img[y0:y1, x0:x1])
            at = a[y0:y1, x0:x1, None].float()
            e = torch.lerp(bb, it, at)
            e.addcmul_(dd, 1 - at * at)
            to8 = out.dtype == torch.uint8
            if over is not None or not to8:
                e.clamp_(0, 1)
            if over is not None:
                e = torch.lerp(over[y0:y1, x0:x1].to(e.dtype), e, at)
            if to8:  # clamp(e, 0, 1) * 255 + 0.5, truncated: rounded (the clamp after: one pass less)
                e = e.mul_(255).add_(0.5)
                if over is None:
                    e.clamp_(0.5, 255.5)
            src = out[y0:y1, x0:x1] if prefilled else img[y0:y1, x0:x1]
            torch.where(band[y0:y1, x0:x1, None], e.to(out.dtype), src, out=out[y0:y1, x0:x1])
        if not prefilled:
            out[y0:y1, done:].copy_(img[y0:y1, done:])
    return out


def _crop_box(band: torch.Tensor, margin: int):
    """Bounding box (y0, y1, x0, x1) of ``band`` [H,W] grown by ``margin``, or None if empty."""
    rows = band.any(1).nonzero()
    if rows.numel() == 0:
        return None
    cols = band.any(0).nonzero()
    h, w = band.shape
    return (max(0, rows[0].item() - margin), min(h, rows[-1].item() + 1 + margin),
            max(0, cols[0].item() - margin), min(w, cols[-1].item() + 1 + margin))


def estimate_foreground(rgb: torch.Tensor, alpha: torch.Tensor, method: str = "blur_fusion",
                        work_megapixels: float = 1.0, out: torch.Tensor | None = None) -> torch.Tensor:
    """The subject's own colour ``[B,H,W,3]`` in the band 0 < alpha < 1; elsewhere ``rgb``.

    (Alpha within half an 8-bit step of 0 or 1 counts as outside the band.)
    ``method``: ``"blur_fusion"`` (torch, default) or ``"ml"`` (pymatting's multi-level
    ``estimate_foreground_ml``, CPU, needs pymatting). One frame at a time. Blur-fusion's smooth
    colour estimates are computed at ≤ ``work_megapixels`` and its final per-pixel step at full
    resolution, only on the tiles that hold band pixels, so its cost follows the edge; the worst case (the whole frame is band) is a fixed number of passes per
    pixel and ≈ 1 MP of temporaries beyond the frame. ``out`` (same shape as ``rgb``, may be a strided view such
    as an RGBA tensor's colour channels) receives the result instead of a new tensor.
    """
    if method not in FG_METHODS:
        raise ValueError(f"foreground method {method!r}; expected one of {FG_METHODS}")
    single = rgb.dim() == 3
    if single:
        rgb, alpha = rgb[None], alpha[None]
        out = None if out is None else out[None]
    if out is None:
        out = torch.empty_like(rgb)
    for i in range(rgb.shape[0]):
        a = alpha[i]
        band = edge_band(a)
        if method == "blur_fusion":
            if band.any():
                _blur_fusion_tiled(rgb[i], a, band, work_megapixels, out=out[i])
            else:
                out[i] = rgb[i]
            continue
        out[i] = rgb[i]
        box = _crop_box(band, 32)
        if box is None:
            continue
        y0, y1, x0, x1 = box
        from pymatting import estimate_foreground_ml

        img = rgb[i, y0:y1, x0:x1]
        fg = estimate_foreground_ml(img.cpu().double().numpy(), a[y0:y1, x0:x1].cpu().double().numpy())
        fg = torch.from_numpy(fg).float().clamp(0, 1).to(rgb.device)
        b = band[y0:y1, x0:x1, None]
        out[i, y0:y1, x0:x1] = torch.where(b, fg.to(out.dtype), img)
    return out[0] if single else out


# ----------------------------------------------------------------------------- backgrounds

def _solid(color: ColorLike, b: int, h: int, w: int, device) -> torch.Tensor:
    c = torch.tensor(parse_color(color), dtype=torch.float32, device=device)
    return c.view(1, 1, 1, 3).expand(b, h, w, 3)


def _gradient(c1: ColorLike, c2: ColorLike, angle: float, b: int, h: int, w: int, device) -> torch.Tensor:
    a = torch.tensor(parse_color(c1), dtype=torch.float32, device=device)
    z = torch.tensor(parse_color(c2), dtype=torch.float32, device=device)
    th = math.radians(angle)
    dx, dy = math.cos(th), math.sin(th)
    ys = torch.linspace(0, 1, h, device=device)[:, None] * (h - 1)
    xs = torch.linspace(0, 1, w, device=device)[None, :] * (w - 1)
    proj = xs * dx + ys * dy
    lo, hi = proj.min(), proj.max()
    t = ((proj - lo) / (hi - lo).clamp_min(1e-6))[..., None]
    g = a + (z - a) * t
    return g[None].expand(b, h, w, 3)


def _checkerboard(b: int, h: int, w: int, size: int, device) -> torch.Tensor:
    size = max(1, int(size))
    ys = torch.arange(h, device=device)[:, None] // size
    xs = torch.arange(w, device=device)[None, :] // size
    cell = ((ys + xs) % 2).float()
    g = 0.8 + 0.2 * cell  # light greys, as image editors show transparency
    return g[None, :, :, None].expand(b, h, w, 3)


def fit_image(bg: torch.Tensor, h: int, w: int, fit: str = "cover", pad: ColorLike = "black") -> torch.Tensor:
    """Resize a background ``[N,h0,w0,3]`` to ``h×w``: cover (fill, crop the overflow), contain
    (fit inside, pad with ``pad``) or stretch."""
    if fit not in FIT_MODES:
        raise ValueError(f"fit {fit!r}; expected one of {FIT_MODES}")
    x = bg[..., :3].permute(0, 3, 1, 2).float()
    h0, w0 = x.shape[-2:]
    if fit == "stretch" or (h0, w0) == (h, w):
        out = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False) \
            if (h0, w0) != (h, w) else x
        return out.permute(0, 2, 3, 1).clamp(0, 1)
    scale = max(h / h0, w / w0) if fit == "cover" else min(h / h0, w / w0)
    nh, nw = max(1, round(h0 * scale)), max(1, round(w0 * scale))
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    if fit == "cover":
        y0, x0 = (nh - h) // 2, (nw - w) // 2
        return x[:, :, y0:y0 + h, x0:x0 + w].permute(0, 2, 3, 1)
    canvas = _solid(pad, x.shape[0], h, w, x.device).clone()
    y0, x0 = (h - nh) // 2, (w - nw) // 2
    canvas[:, y0:y0 + nh, x0:x0 + nw] = x.permute(0, 2, 3, 1)
    return canvas


def _blurred_backdrop(rgb: torch.Tensor, alpha: torch.Tensor, radius: float) -> torch.Tensor:
    """The photo blurred with the subject left out (normalised convolution): no subject halo."""
    r = max(1, int(round(radius)))
    x = rgb.permute(0, 3, 1, 2).float()
    wgt = (1 - alpha.float())[:, None]
    out = []
    for i in range(x.shape[0]):
        s = _blur(torch.cat([x[i:i + 1] * wgt[i:i + 1], wgt[i:i + 1], x[i:i + 1]], 1), r)
        w = s[:, 3:4]
        plain = s[:, 4:7]
        mixed = s[:, :3] / w.clamp_min(1e-3)
        trust = (w / 0.05).clamp(0, 1)  # where the subject covers everything, fall back to a plain blur
        out.append(mixed * trust + plain * (1 - trust))
    return torch.cat(out).permute(0, 2, 3, 1).clamp(0, 1)


def cutout_rgba8(rgb8: torch.Tensor, alpha: torch.Tensor, decontaminate: bool = True,
                 clear_fill: str = DEFAULT_CLEAR_FILL) -> torch.Tensor:
    """``composite_background(rgb, alpha, "transparent")`` for one uint8 frame, in uint8:
    ``rgb8`` [H,W,3] uint8, ``alpha`` [H,W] float 0..1 -> RGBA uint8 [H,W,4] (alpha rounded).

    What files are made of (the dataset job, Save Image Folder): no float copy of the frame, and
    decontamination touches only the band of the 8-bit alpha. Same pixels as the float path
    within one 8-bit level."""
    check_clear_fill(clear_fill)
    a = alpha.float().clamp(0, 1)
    h, w = a.shape
    out = torch.empty((h, w, 4), dtype=torch.uint8)
    out[..., 3].copy_(a.mul(255).add_(0.5))  # 0.5..255.5, copy_ truncates: rounded
    out[..., :3].copy_(rgb8)
    if decontaminate:
        band = (out[..., 3] - 1) < 254  # 1..254 (uint8 wraps 0 to 255)
        if bool(band.any()):
            _blur_fusion_tiled(rgb8, a, band, out=out[..., :3], prefilled=True)
    return fill_clear_rgba8(out, clear_fill)


def composite_background(rgb: torch.Tensor, alpha: torch.Tensor, background="transparent", *,
                         color2: ColorLike | None = None, angle: float = 90.0, fit: str = "cover",
                         blur_radius: float = 24.0, checker_size: int = 16,
                         decontaminate: bool = True, clear_fill: str = DEFAULT_CLEAR_FILL) -> torch.Tensor:
    """Composite the subject (``rgb`` [B,H,W,3], ``alpha`` [B,H,W], 1 = subject) over ``background``.

    See the module docstring for the accepted ``background`` values. Returns RGBA
    ``[B,H,W,4]`` (straight alpha) for ``"transparent"``, else RGB ``[B,H,W,3]``; float 0..1.
    A background IMAGE batch must be 1 (used for every frame) or B. ``clear_fill`` (transparent
    only): what the colour channels hold where alpha is 0 (``imaging.clear``; default black, never
    the photo unless ``"photo"`` is asked for).
    """
    single = rgb.dim() == 3
    if single:
        rgb, alpha = rgb[None], alpha[None]
    rgb = rgb[..., :3]
    b, h, w, _ = rgb.shape
    if alpha.shape != (b, h, w):
        raise ValueError(f"alpha has shape {list(alpha.shape)}; expected {[b, h, w]} to match rgb")
    alpha = alpha.to(rgb.dtype).clamp(0, 1)

    if isinstance(background, str) and background.strip().lower() == "transparent":
        check_clear_fill(clear_fill)
        out = to_rgba(estimate_foreground(rgb, alpha) if decontaminate else rgb, alpha)
        for i in range(b):
            fill_clear(out[i, ..., :3], alpha[i], clear_fill)
        return out[0] if single else out
    if isinstance(background, torch.Tensor):
        bg = background if background.dim() == 4 else background[None]
        if bg.shape[0] not in (1, b):
            raise ValueError(f"background has a batch of {bg.shape[0]} images; expected 1 or {b}")
        bg = fit_image(bg.to(rgb.device), h, w, fit, color2 if color2 is not None else "black")
        if bg.shape[0] == 1 and b > 1:
            bg = bg.expand(b, -1, -1, -1)
    elif isinstance(background, str) and background.strip().lower() == "blur":
        bg = _blurred_backdrop(rgb, alpha, blur_radius)
    elif isinstance(background, str) and background.strip().lower() == "checkerboard":
        bg = _checkerboard(b, h, w, checker_size, rgb.device)
    elif color2 is not None:
        bg = _gradient(background, color2, angle, b, h, w, rgb.device)
    else:
        bg = _solid(background, b, h, w, rgb.device)
    bg = bg.to(rgb.dtype)
    out = torch.lerp(bg, rgb, alpha[..., None])
    if decontaminate:  # the band pixels again, with the subject's estimated colour (no full-size copy)
        for i in range(b):
            a = alpha[i]
            band = edge_band(a)
            if band.any():
                _blur_fusion_tiled(rgb[i], a, band, out=out[i], over=bg[i])
    return (out[0] if single else out).clamp_(0, 1)
