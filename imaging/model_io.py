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
UP_MODE = "bicubic"  # clamped afterwards; best MAE and edge-band error on the eval set


def to_model_input(frames: torch.Tensor, size: int, mean, std) -> np.ndarray:
    """``[B,H,W,3]`` float 0..1 -> ``[B,3,size,size]`` float32, normalised as the family expects.

    Like rembg, each image is divided by its own maximum first (a dark photo is stretched).
    """
    x = frames.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode=DOWN_MODE, antialias=True, align_corners=False)
    peak = x.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    x = x / peak
    m = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return ((x - m) / s).contiguous().numpy()


def from_model_output(raw: np.ndarray, height: int, width: int, logits: bool,
                      device: torch.device | None = None) -> torch.Tensor:
    """Network output ``[B,1,h,w]`` (or ``[B,h,w]``) -> MASK ``[B,height,width]`` float32 0..1.

    Each map is stretched to 0..1 (min-max per image), as rembg does, then upsampled.
    """
    t = torch.from_numpy(np.ascontiguousarray(raw, dtype=np.float32))
    if t.dim() == 3:
        t = t.unsqueeze(1)
    t = t[:, :1]
    if logits:
        t = torch.sigmoid(t)
    lo = t.amin(dim=(1, 2, 3), keepdim=True)
    hi = t.amax(dim=(1, 2, 3), keepdim=True)
    t = (t - lo) / (hi - lo).clamp_min(1e-6)
    if device is not None:
        t = t.to(device)
    if t.shape[-2:] != (height, width):
        t = F.interpolate(t, size=(height, width), mode=UP_MODE, align_corners=False)
    return snap_ends(t[:, 0])


def snap_ends(m: torch.Tensor) -> torch.Tensor:
    """Clamp to 0..1 and make values within 1/255 of either end exact.

    Upsampling rarely lands exactly on 1.0, and 8-bit writers truncate (ComfyUI's SaveImage
    does ``astype(uint8)``), so a solid subject would otherwise be saved at alpha 254.
    """
    m = m.clamp_(0.0, 1.0)
    m[m > 1.0 - 1.0 / 255.0] = 1.0
    m[m < 1.0 / 255.0] = 0.0
    return m
