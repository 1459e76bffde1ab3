"""The one code path from IMAGE to subject mask, shared by the nodes, the CLI and the API.

Frames go through the network one at a time: on a CPU batching gains nothing, and it keeps
memory bounded (never B full-resolution float copies of a video batch).
"""

from __future__ import annotations

from typing import Callable

import torch

from . import comfy_glue
from .imaging.clear import DEFAULT_CLEAR_FILL, check_clear_fill, fill_clear
from .imaging.composite import estimate_foreground
from .imaging.tensors import as_image, sanitize
from .models.session import ModelSession, get_session
from .quality import DEFAULT_QUALITY, partner_session, predict_frame_quality

# Bump when a change anywhere in the pipeline changes output pixels: the folder job's manifest
# records it, and a rerun redoes what an older version made.
PIPELINE_VERSION = 1


def predict_frame(session: ModelSession, frame: torch.Tensor, refine_edges: bool = False,
                  quality: str = DEFAULT_QUALITY, confidences: list | None = None) -> torch.Tensor:
    """One sanitised ``[H,W,3]`` frame -> its ``[H,W]`` subject mask (1 = subject).

    ``refine_edges``: upsample the network's map with ``guided_upsample`` (edges fitted to
    the photo) instead of plain bicubic. ``quality``: which looks the network takes
    (``quality.CHOICES``; Cancel is checked before each). ``confidences``: the frame's
    confidence (``quality.FrameResult``) is appended to it.
    """
    result = predict_frame_quality(session, frame, quality, refine_edges, partner_session(session, quality))
    if confidences is not None:
        confidences.append(result.confidence)
    return result.mask


def predict_masks(images: torch.Tensor, model: str, device: str = "cpu", node: str = "Cutout",
                  on_progress: Callable[[int, int], None] | None = None,
                  refine_edges: bool = False) -> torch.Tensor:
    """MASK ``[B,H,W]`` for an IMAGE batch, one mask per frame, always."""
    rgb = as_image(images, node)
    session = get_session(model, device)
    progress = comfy_glue.Progress(rgb.shape[0], on_progress)
    out = torch.empty(rgb.shape[:3], dtype=torch.float32)
    for i in range(rgb.shape[0]):
        comfy_glue.check_interrupt()
        out[i] = predict_frame(session, sanitize(rgb[i].cpu()), refine_edges)
        progress.update(1)
    return out


def remove_background(images: torch.Tensor, model: str, device: str = "cpu", node: str = "Cutout",
                      on_progress: Callable[[int, int], None] | None = None,
                      decontaminate: bool = True, refine_edges: bool = False,
                      clear_fill: str = DEFAULT_CLEAR_FILL, quality: str = DEFAULT_QUALITY,
                      confidences: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(RGBA ``[B,H,W,4]`` with straight alpha, MASK ``[B,H,W]``); each frame's confidence is
    appended to ``confidences`` when given (``quality``: see ``predict_frame``).

    With ``decontaminate`` the colours of semi-transparent edge pixels are replaced by the
    estimated subject colour (``imaging.composite.estimate_foreground``), so the cut-out shows
    no fringe of the old background on a new one; otherwise the original colours are kept.
    Where alpha is 0 the colour is ``clear_fill``'s (``imaging.clear``: black by default, so a
    trainer loading the RGB alone sees no background; ``"photo"`` keeps the photo's).

    Outputs are allocated once and filled frame by frame, so peak memory is the input plus
    the outputs plus one frame of work.
    """
    rgb = as_image(images, node)
    check_clear_fill(clear_fill)
    b, h, w, _ = rgb.shape
    session = get_session(model, device)
    progress = comfy_glue.Progress(b, on_progress)
    rgba = torch.empty((b, h, w, 4), dtype=torch.float32)
    masks = None if b == 1 else torch.empty((b, h, w), dtype=torch.float32)
    for i in range(b):
        comfy_glue.check_interrupt()
        frame = sanitize(rgb[i].cpu())
        alpha = predict_frame(session, frame, refine_edges, quality, confidences)
        if decontaminate:  # written straight into the RGBA's colour channels: no full-size copy
            estimate_foreground(frame, alpha, out=rgba[i, ..., :3])
        else:
            rgba[i, ..., :3] = frame
        fill_clear(rgba[i, ..., :3], alpha, clear_fill)
        rgba[i, ..., 3] = alpha
        if masks is None:
            # A single frame's upsampled mask is already a fresh contiguous tensor of its own:
            # it is the MASK output as is (no copy back out of the RGBA's strided alpha plane).
            masks = alpha.unsqueeze(0)
        else:
            masks[i] = alpha
        progress.update(1)
    return rgba, masks
