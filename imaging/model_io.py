"""From a full-resolution frame to the network's square input, and from its output back.

Plain torch, no PIL round trip. The kernels were chosen on the real photos of
``shared/eval/dev`` (see README, "Preprocessing"): U²-Net is sensitive to how the photo is
shrunk to 320×320, and an antialiased bilinear shrink beat rembg's Lanczos-on-8-bit there.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

DOWN_MODE = "bilinear"  # antialiased; see README for the comparison
PRE_SHRINK_TO = 3  # see _pre_shrink
SEPARABLE_FROM = 4  # see _upsample
UP_MODE = "bicubic"  # clamped afterwards; best MAE and edge-band error on the eval set


def to_model_input(frames: torch.Tensor, size: int, mean, std) -> np.ndarray:
    """``[B,H,W,3]`` float 0..1 -> ``[B,3,size,size]`` float32, normalised as the family expects.

    Like rembg, each image is divided by its own maximum first (a dark photo is stretched).
    """
    x = frames.permute(0, 3, 1, 2).float()  # a channels-last view: no copy
    x = _pre_shrink(x, size)
    x = F.interpolate(x, size=(size, size), mode=DOWN_MODE, antialias=True, align_corners=False)
    # The rest is on 3×320² values: plain numpy (one thread). Tiny torch ops each start the
    # thread pool, which on a busy shared CPU costs more than the arithmetic (issue 7).
    a = x.numpy()
    peak = np.maximum(a.max(axis=(1, 2, 3), keepdims=True), np.float32(1e-6))
    out = np.empty(a.shape, dtype=np.float32)  # C-contiguous [B,3,size,size]
    np.divide(a, peak, out=out)
    out -= np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)
    out /= np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)
    return out


def _pre_shrink(x: torch.Tensor, size: int) -> torch.Tensor:
    """Integer-factor box average so that each side stays ≥ ``PRE_SHRINK_TO * size`` (large photos only).

    An antialiased bilinear shrink of a 12 MP photo reads every pixel with a ~25-tap kernel;
    averaging k×k blocks first (one cheap pass) leaves the final antialiased bilinear a
    3–6× shrink; masks of 12 MP photos stay the same (docs/notes-perf.md). Rows/columns
    that do not fill a whole block are averaged as a partial block (``ceil_mode``), so nothing
    is cropped; that last block is placed as a whole one, an offset of at most k − 1 source
    pixels at the right/bottom border (≤ 0.1 % of a 12 MP photo's side).
    """
    h, w = x.shape[-2:]
    ky, kx = max(1, h // (PRE_SHRINK_TO * size)), max(1, w // (PRE_SHRINK_TO * size))
    if ky == 1 and kx == 1:
        return x
    return F.avg_pool2d(x, (ky, kx), ceil_mode=True, count_include_pad=False)


def from_model_output(raw: np.ndarray, height: int, width: int, logits: bool,
                      device: torch.device | None = None) -> torch.Tensor:
    """Network output ``[B,1,h,w]`` (or ``[B,h,w]``) -> MASK ``[B,height,width]`` float32 0..1.

    Each map is stretched to 0..1 (min-max per image), as rembg does, then upsampled.
    """
    a = np.asarray(raw, dtype=np.float32)
    if a.ndim == 3:
        a = a[:, None]
    a = a[:, :1]
    if logits:
        a = torch.sigmoid(torch.from_numpy(np.ascontiguousarray(a))).numpy()
    # small-map arithmetic in numpy, as in to_model_input
    lo = a.min(axis=(1, 2, 3), keepdims=True)
    hi = a.max(axis=(1, 2, 3), keepdims=True)
    t = torch.from_numpy(np.ascontiguousarray((a - lo) / np.maximum(hi - lo, np.float32(1e-6))))
    if device is not None:
        t = t.to(device)
    if t.shape[-2:] != (height, width):
        t = _upsample(t, height, width)
    return snap_ends(t[:, 0])


def _upsample(t: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bicubic upsampling of the small map to the photo's size.

    Up to ``SEPARABLE_FROM``× per side this is PyTorch's plain bicubic (Keys a = -0.75, the
    kernel chosen on the eval photos). Beyond that (big photos: 12 MP is ~12× a 320 map) the
    separable bicubic (``antialias=True``: two 1-D passes, Keys a = -0.5 as in PIL) is used: at
    such factors the two kernels give masks that differ by ~1e-3 on average (measured on
    upscaled eval photos, docs/notes-perf.md) while the 2-D kernel costs twice as much.
    """
    h, w = t.shape[-2:]
    separable = height >= SEPARABLE_FROM * h and width >= SEPARABLE_FROM * w
    return F.interpolate(t, size=(height, width), mode=UP_MODE, align_corners=False, antialias=separable)


def snap_ends(m: torch.Tensor) -> torch.Tensor:
    """Clamp to 0..1 and make values within 1/255 of either end exact.

    Upsampling rarely lands exactly on 1.0, and 8-bit writers truncate (ComfyUI's SaveImage
    does ``astype(uint8)``), so a solid subject would otherwise be saved at alpha 254.
    """
    m = m.clamp_(0.0, 1.0)
    # masked_fill_ instead of boolean indexing: no nonzero() gather of the hit positions
    m.masked_fill_(m > 1.0 - 1.0 / 255.0, 1.0)
    m.masked_fill_(m < 1.0 / 255.0, 0.0)
    return m
