"""From a full-resolution frame to the network's square input, and from its output back.

Plain torch, no PIL round trip. U²-Net is sensitive to how the photo is shrunk to its
square input; the kernels (``imaging.kernels``) were chosen on the eval photos (docs/quality.md).
"""

from __future__ import annotations

import numpy as np
import torch

from .kernels import guided_coefficients, shrink, shrink_u8, upsample
from .tensors import unit_frame


def to_model_input(frames: torch.Tensor, size: int, mean, std) -> np.ndarray:
    """``[B,H,W,3]`` float 0..1 -> ``[B,3,size,size]`` float32, normalised as the family expects.

    Like rembg, each image is divided by its own maximum first (a dark photo is stretched).
    """
    return normalise(shrink_for_model(frames, size), mean, std)


def shrink_for_model(frames: torch.Tensor, size: int) -> torch.Tensor:
    """``[B,H,W,3]`` float 0..1 (or uint8 0..255) -> ``[B,3,size,size]`` float 0..1: the photo as the
    network sees it. An 8-bit frame is never made float at full size (``kernels.shrink_u8``)."""
    if frames.dtype == torch.uint8:
        return shrink_u8(frames, size, size)
    return shrink(frames.permute(0, 3, 1, 2).float(), size, size)  # a channels-last view: no copy


def normalise(x: torch.Tensor, mean, std) -> np.ndarray:
    """The shrunk photo ``[B,3,s,s]`` -> the network's input (per-image max, mean, std)."""
    # 3×320² values: plain numpy (one thread); tiny torch ops each start the thread pool
    a = x.numpy()
    peak = np.maximum(a.max(axis=(1, 2, 3), keepdims=True), np.float32(1e-6))
    out = np.empty(a.shape, dtype=np.float32)  # C-contiguous [B,3,size,size]
    np.divide(a, peak, out=out)
    out -= np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)
    out /= np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)
    return out


def model_map(raw: np.ndarray, logits: bool) -> torch.Tensor:
    """Network output ``[B,1,h,w]`` (or ``[B,h,w]``) -> ``[B,1,h,w]`` float32, stretched to 0..1
    per image (min-max), as rembg does."""
    a = np.asarray(raw, dtype=np.float32)
    if a.ndim == 3:
        a = a[:, None]
    a = a[:, :1]
    if logits:
        a = torch.sigmoid(torch.from_numpy(np.ascontiguousarray(a))).numpy()
    # small-map arithmetic in numpy, as in normalise
    lo = a.min(axis=(1, 2, 3), keepdims=True)
    hi = a.max(axis=(1, 2, 3), keepdims=True)
    return torch.from_numpy(np.ascontiguousarray((a - lo) / np.maximum(hi - lo, np.float32(1e-6))))


def from_model_output(raw: np.ndarray, height: int, width: int, logits: bool,
                      device: torch.device | None = None) -> torch.Tensor:
    """Network output ``[B,1,h,w]`` (or ``[B,h,w]``) -> MASK ``[B,height,width]`` float32 0..1:
    the stretched map (``model_map``), upsampled.

    Values within 1/255 of 0 or 1 end exactly there (see ``snap_ends`` for why): the small map
    is stretched by 255/253 about its middle before upsampling (upsampling is linear, so this is
    the same as stretching the big mask) and the big mask is only clamped, one pass instead of
    ``snap_ends``' three at full resolution. Values in between move by less than 1/255.
    """
    return map_to_mask(model_map(raw, logits), height, width, device)


def map_to_mask(t: torch.Tensor, height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
    """A stretched map ``[B,1,h,w]`` (``model_map``, or a mean of several) -> MASK ``[B,height,width]``,
    upsampled, ends snapped as ``from_model_output`` explains."""
    t = (t - SNAP) * (1.0 / (1.0 - 2.0 * SNAP))  # on the small map: cheap
    if device is not None:
        t = t.to(device)
    if t.shape[-2:] != (height, width):
        t = upsample(t, height, width)
    return t[:, 0].clamp_(0.0, 1.0)


# Guided upsampling: radius and regulariser chosen on the eval photos (docs/quality.md)
GUIDED_UP_RADIUS, GUIDED_UP_EPS = 1, 1e-4


def guided_upsample(small_map: torch.Tensor, small_photo: torch.Tensor, frames: torch.Tensor,
                    radius: int = GUIDED_UP_RADIUS, eps: float = GUIDED_UP_EPS) -> torch.Tensor:
    """The model's map ``[B,1,s,s]`` -> MASK ``[B,H,W]``, its edges fitted to the photo.

    Guided-filter coefficients (colour guide) are computed on the network's own grid, from the
    map and the photo exactly as the network saw it (``small_photo`` [B,3,s,s], from
    ``shrink_for_model``), upsampled like the mask, and applied to the full-resolution
    ``frames`` [B,H,W,3] (float 0..1 or uint8). Working on the network's grid is what makes it help: the same filter
    run on the already upsampled mask (Mask Refine's guided filter) has lost that grid
    (docs/quality.md compares both).
    """
    b, height, width = frames.shape[:3]
    a, bias = guided_coefficients(small_photo.float(), small_map.to(small_photo.device), radius, eps)
    ab = torch.cat([a, bias], 1)
    if ab.shape[-2:] != (height, width):
        ab = upsample(ab, height, width)
    q = ab[:, 3].contiguous()
    photo = unit_frame(frames).float()
    for c in range(3):
        q.addcmul_(ab[:, c], photo[..., c])
    return snap_ends(q)


SNAP = 1.0 / 255.0


def snap_ends(m: torch.Tensor) -> torch.Tensor:
    """Clamp to 0..1 and make values within 1/255 of either end exact.

    Upsampling rarely lands exactly on 1.0, and 8-bit writers truncate (ComfyUI's SaveImage
    does ``astype(uint8)``), so a solid subject would otherwise be saved at alpha 254.
    """
    m = m.clamp_(0.0, 1.0)
    # masked_fill_ instead of boolean indexing: no nonzero() gather of the hit positions
    m.masked_fill_(m > 1.0 - SNAP, 1.0)
    m.masked_fill_(m < SNAP, 0.0)
    return m
