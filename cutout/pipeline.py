"""THE cut-out, below every front door: network → post-process → own alpha → refine →
decontaminate → background → pixels.

``cut_out(images, opts)`` does all of it for an IMAGE batch (the nodes, the HTTP API). The
folder engines run the same two halves on different threads — ``frame_alpha`` (the mask:
network, post-process, the file's own alpha, Mask Refine) where the model is, ``render``
(decontamination, background, output form) in their writer threads — so decoding, inference
and encoding overlap. No front door orders these steps itself; docs/design.md has the map.

Frames go through the network one at a time: on a CPU batching gains nothing, and it keeps
memory bounded (never B full-resolution float copies of a video batch). Outputs are
allocated once and filled frame by frame.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from . import comfy_glue
from .imaging.clear import fill_clear
from .imaging.composite import composite_background, cutout_rgba8, estimate_foreground
from .imaging.tensors import as_image, sanitize, unit_frame
from .models.session import ModelSession, get_session
from .options import Background, CutoutOptions
from .quality import DEFAULT_QUALITY, Deferred, partner_session, plan_for, predict_frame_quality

# Bump when a change anywhere in the pipeline changes output pixels: the folder job's manifest
# records it, and a rerun redoes what an older version made.
PIPELINE_VERSION = 3


def predict_frame(session: ModelSession, frame: torch.Tensor, refine_edges: bool = False,
                  quality: str = DEFAULT_QUALITY, confidences: list | None = None, on_pass=None,
                  results: list | None = None, small: torch.Tensor | None = None,
                  defer: bool = False) -> torch.Tensor | Deferred:
    """One sanitised ``[H,W,3]`` frame -> its ``[H,W]`` subject mask (1 = subject).

    ``refine_edges``: upsample the network's map with ``guided_upsample`` (edges fitted to
    the photo) instead of plain bicubic. ``quality``: which looks the network takes
    (``quality.CHOICES``; Cancel is checked before each). ``confidences``: the frame's
    confidence (``quality.FrameResult``) is appended to it; ``results``: the whole ``FrameResult``
    (the small photo the network saw, for a thumbnail that costs nothing). ``small``, ``defer``:
    see ``quality.predict_frame_quality``.
    """
    result = predict_frame_quality(session, frame, quality, refine_edges, partner_session(session, quality),
                                   on_pass, small, defer)
    if confidences is not None:
        confidences.append(result.confidence)
    if results is not None:
        results.append(result)
    return result.mask


def frame_alpha(session: ModelSession, frame: torch.Tensor, opts: CutoutOptions,
                own_alpha: torch.Tensor | None = None, node: str = "Cutout",
                confidences: list | None = None, on_pass=None, results: list | None = None,
                small: torch.Tensor | None = None, defer: bool = False) -> torch.Tensor | Deferred:
    """The mask half for one frame: network → post-process → × the image's own alpha → Mask Refine
    → capped by the own alpha unless the output is the mask. The order of a graph: Remove Background
    applies the alpha, Mask Refine comes after it, Composite Background caps the mask by its RGBA
    image's alpha.

    ``frame`` float ``[H,W,3]`` 0..1, or uint8 (the folder job's decoded photo: each step that reads
    pixels converts what it reads); ``own_alpha`` ``[H,W]`` (what was transparent in the file stays
    transparent). Returns float32 ``[H,W]``, 1 = subject. ``results``: see ``predict_frame``;
    ``small``: ``frame`` already shrunk to the network's size. ``defer``: when no step needs the
    frame (no Mask Refine), a ``quality.Deferred`` of the mask: everything after the network
    then runs where it is resolved (the folder job's writer threads, off the network's thread).
    """
    alpha = predict_frame(session, frame, opts.refine_edges, opts.quality, confidences, on_pass, results,
                          small, defer and not opts.refine.active)
    if isinstance(alpha, Deferred):
        return alpha.then(lambda a: _after_network(a, None, opts, own_alpha, node))  # never holds the frame
    return _after_network(alpha, frame, opts, own_alpha, node)


def _after_network(alpha: torch.Tensor, frame: torch.Tensor, opts: CutoutOptions,
                   own_alpha: torch.Tensor | None, node: str) -> torch.Tensor:
    """``frame_alpha``'s steps after the network (``frame`` is only read by Mask Refine)."""
    if opts.post_process:  # rembg's ppm
        from .imaging.masks import post_process_mask

        alpha = post_process_mask(alpha[None])[0]
    if own_alpha is not None:
        own_alpha = own_alpha.to(alpha.dtype)
        alpha = alpha * own_alpha
    if opts.refine.active:
        from .imaging.refine_chain import refine_masks

        alpha = refine_masks(alpha[None], unit_frame(frame)[None], node=node, check_interrupt=comfy_glue.check_interrupt,
                             **opts.refine.kwargs())[0]
        if own_alpha is not None and not opts.mask_only:  # grown edges never show what the file made
            alpha = torch.minimum(alpha, own_alpha)  # transparent (a graph's MASK from Mask Refine is not capped)
    return alpha


def _background_arg(bg: Background, index: int):
    """``composite_background``'s (background, color2) for a ``Background``."""
    if bg.kind == "color":
        return bg.color, None
    if bg.kind == "gradient":
        return bg.color, bg.color2
    if bg.kind == "image":
        img = bg.image
        return (img[index:index + 1] if img.shape[0] > 1 else img[:1]), bg.color2
    return bg.kind, None  # blur, checkerboard, transparent


def render(frame: torch.Tensor, alpha: torch.Tensor, opts: CutoutOptions, index: int = 0,
           out: torch.Tensor | None = None) -> torch.Tensor:
    """The pixel half for one frame: decontaminate → background → the output form, float 0..1.

    ``frame`` ``[H,W,3]``, ``alpha`` ``[H,W]``. Returns ``[H,W,4]`` (straight RGBA: transparent,
    or a translucent colour layer), ``[H,W,3]`` (composite) or ``[H,W]`` (mask), written into
    ``out`` when given. ``index``: the frame's place in the batch (which background image).
    """
    form = opts.form
    if form == "mask":
        if out is None:
            return alpha
        out.copy_(alpha)
        return out
    bg = opts.background
    if bg.kind == "transparent":
        if out is None:
            out = torch.empty((*alpha.shape, 4), dtype=torch.float32, device=frame.device)
        if opts.decontaminate:  # written straight into the RGBA's colour channels: no full-size copy
            estimate_foreground(frame, alpha, out=out[..., :3])
        else:
            out[..., :3] = frame
        fill_clear(out[..., :3], alpha, opts.clear_fill)  # what a trainer sees under alpha 0 (imaging.clear)
        out[..., 3] = alpha
        return out
    if bg.opacity is not None:  # rembg's bgc: the colour as a translucent layer under the cut-out
        fg = estimate_foreground(frame, alpha) if opts.decontaminate else frame
        a = alpha.clamp(0, 1)[..., None]
        under = torch.tensor(bg.color, dtype=torch.float32, device=frame.device) * bg.opacity
        total = a + bg.opacity * (1 - a)
        rgb = (fg * a + under * (1 - a)) / total.clamp_min(1e-6)
        res = torch.cat([rgb.clamp_(0, 1), total], -1)
    else:
        background, color2 = _background_arg(bg, index)
        res = composite_background(frame[None], alpha[None], background, color2=color2, angle=bg.angle,
                                   fit=bg.fit, blur_radius=bg.blur_radius, decontaminate=opts.decontaminate)[0]
    if out is None:
        return res
    out.copy_(res)
    return out


def render_pixels(rgb8, alpha: torch.Tensor, opts: CutoutOptions):
    """``render`` for an 8-bit frame, as the uint8 pixels to encode (the folder engines, Save Image
    Folder, the API). ``rgb8`` uint8 ``[H,W,3]`` (array or tensor), ``alpha`` float ``[H,W]``.

    A transparent result is made in uint8 (``composite.cutout_rgba8``: no float copy of the frame);
    the rest through the float ``render`` and ``codec.to_uint8``."""
    from .codec import to_uint8

    x = torch.from_numpy(np.ascontiguousarray(rgb8)) if not isinstance(rgb8, torch.Tensor) else rgb8
    a = alpha.float().nan_to_num(0.0).clamp_(0.0, 1.0)
    if opts.form == "rgba" and opts.background.opacity is None:
        return cutout_rgba8(x, a, opts.decontaminate, opts.clear_fill).numpy()
    if opts.form == "mask":
        return to_uint8(a)
    return to_uint8(render(x.float().div_(255.0), a, opts))


def cut_out_8bit(session: ModelSession, rgb8: np.ndarray, own8: np.ndarray | None, opts: CutoutOptions,
                 node: str = "Cutout") -> tuple[np.ndarray, torch.Tensor]:
    """One decoded 8-bit image (``codec.DecodedImage``'s rgb and alpha) -> (uint8 pixels to encode,
    its float mask): ``frame_alpha`` then ``render_pixels``, what the folder engines do on two threads."""
    frame = torch.from_numpy(np.ascontiguousarray(rgb8)).to(torch.float32).div_(255.0)
    own = None if own8 is None else torch.from_numpy(np.ascontiguousarray(own8)).to(torch.float32).div_(255.0)
    alpha = frame_alpha(session, frame, opts, own, node)
    return render_pixels(rgb8, alpha, opts), alpha


@dataclass
class CutoutResult:
    """``image``: float RGBA ``[B,H,W,4]`` (form 'rgba'), RGB ``[B,H,W,3]`` ('composite') or the
    mask ``[B,H,W]`` ('mask'); ``mask``: the subject mask ``[B,H,W]`` used (1 = subject)."""

    image: torch.Tensor
    mask: torch.Tensor
    form: str
    confidence: list = dataclasses.field(default_factory=list)  # one float per frame (``quality``)


def _channels(opts: CutoutOptions) -> int:
    return {"rgba": 4, "composite": 3, "mask": 0}[opts.form]


def split_alpha(images, node: str, input_name: str = "image") -> tuple[torch.Tensor, torch.Tensor | None]:
    """An IMAGE ``[B,H,W,3|4]`` -> (its RGB view, its own alpha ``[B,H,W]`` or None)."""
    rgb = as_image(images, node, input_name)
    own = None
    if isinstance(images, torch.Tensor) and images.shape[-1] == 4 and images.dim() in (3, 4):
        own = images[..., 3] if images.dim() == 4 else images[None, ..., 3]
    return rgb, own


class _PassProgress:
    """ComfyUI's bar moves after every network run (a frame may take several looks); the
    caller's ``progress(done, total)`` still counts frames."""

    def __init__(self, frames: int, looks: int, progress=None):
        self.looks, self.frames, self.progress = max(1, looks), frames, progress
        self.bar = comfy_glue.Progress(frames * self.looks)

    def pass_done(self) -> None:
        if self.bar.done < self.bar.total:
            self.bar.update(1)

    def frame_done(self, i: int, final: bool = True) -> None:
        """Frame ``i``'s looks are all run (fewer than planned when a zoom found no box)."""
        left = (i + 1) * self.looks - self.bar.done
        if left > 0:
            self.bar.update(left)
        if final and self.progress is not None:
            self.progress(i + 1, self.frames)


def cut_out(images: torch.Tensor, opts: CutoutOptions, progress: Callable[[int, int], None] | None = None,
            node: str = "Cutout") -> CutoutResult:
    """Cut the subject out of every frame of an IMAGE ``[B,H,W,3|4]`` (a 4th channel is the image's
    own alpha: what was transparent stays transparent).

    Peak memory is the input plus the outputs plus one frame of work. ComfyUI's Cancel is
    checked between frames; ``progress(done, total)`` is called after each.
    """
    rgb, own = split_alpha(images, node)
    b, h, w, _ = rgb.shape
    session = get_session(opts.model, opts.device)
    bar = _PassProgress(b, plan_for(opts.quality, opts.model).looks_per_frame(
        partner_session(session, opts.quality) is not None), progress)
    temporal = opts.refine.temporal > 0
    frame_opts = opts.replace(refine=dataclasses.replace(opts.refine, temporal=0.0, invert=False)) \
        if temporal else opts
    c = _channels(opts)
    conf: list[float] = []
    image = None if c == 0 else torch.empty((b, h, w, c), dtype=torch.float32)
    masks = None if (b == 1 and not temporal) else torch.empty((b, h, w), dtype=torch.float32)

    def own_of(i):
        return None if own is None else sanitize(own[i].cpu())

    def finish(i, frame, alpha):
        nonlocal masks
        if masks is None:
            # a single frame's mask is already a fresh contiguous tensor of its own: it is the
            # MASK output as is (no copy back out of the RGBA's strided alpha plane)
            masks = alpha.unsqueeze(0)
        elif masks[i].data_ptr() != alpha.data_ptr():
            masks[i] = alpha
        if image is not None:
            render(frame, alpha, opts, i, out=image[i])

    if temporal:  # smoothing needs every frame's mask first: masks, Mask Refine's temporal step, then pixels
        from .imaging.refine_chain import refine_masks

        for i in range(b):
            comfy_glue.check_interrupt()
            masks[i] = frame_alpha(session, sanitize(rgb[i].cpu()), frame_opts, own_of(i), node, conf, bar.pass_done)
            bar.frame_done(i, final=False)
        r = opts.refine
        masks = refine_masks(masks, rgb.cpu(), temporal=r.temporal, temporal_mode=r.temporal_mode, invert=r.invert,
                             node=node, check_interrupt=comfy_glue.check_interrupt)
        if own is not None and not opts.mask_only:
            masks = torch.minimum(masks, sanitize(own.cpu()))
        for i in range(b):
            comfy_glue.check_interrupt()
            finish(i, sanitize(rgb[i].cpu()), masks[i])
            bar.frame_done(i)
    else:
        for i in range(b):
            comfy_glue.check_interrupt()
            frame = sanitize(rgb[i].cpu())  # GPU tensors are accepted; the work is on the CPU
            finish(i, frame, frame_alpha(session, frame, opts, own_of(i), node, conf, bar.pass_done))
            bar.frame_done(i)
    return CutoutResult(masks if image is None else image, masks, opts.form, conf)


def composite(images: torch.Tensor, alpha: torch.Tensor, opts: CutoutOptions,
              progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """The pixel half for a batch whose mask is already known (Composite Background, Save Image Folder):
    ``images`` ``[B,H,W,3]``, ``alpha`` ``[B,H,W]`` -> ``render`` of every frame, one output tensor."""
    b, h, w, _ = images.shape
    c = _channels(opts)
    out = torch.empty((b, h, w, c) if c else (b, h, w), dtype=torch.float32, device=images.device)
    bar = comfy_glue.Progress(b, progress)
    for i in range(b):
        comfy_glue.check_interrupt()
        render(sanitize(images[i]), alpha[i], opts, i, out=out[i])
        bar.update(1)
    return out


# ------------------------------------------------------------------ kept for bench/ and tests

def predict_masks(images: torch.Tensor, model: str, device: str = "cpu", node: str = "Cutout",
                  on_progress: Callable[[int, int], None] | None = None,
                  refine_edges: bool = False) -> torch.Tensor:
    """MASK ``[B,H,W]`` for an IMAGE batch: ``cut_out`` with mask_only."""
    opts = CutoutOptions(model=model, device=device, refine_edges=refine_edges, mask_only=True)
    return cut_out(images, opts, on_progress, node).mask


def remove_background(images: torch.Tensor, model: str, device: str = "cpu", node: str = "Cutout",
                      on_progress: Callable[[int, int], None] | None = None,
                      decontaminate: bool = True, refine_edges: bool = False,
                      clear_fill: str = "black", quality: str = DEFAULT_QUALITY,
                      confidences: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(RGBA ``[B,H,W,4]``, MASK ``[B,H,W]``): ``cut_out`` with a transparent background; each
    frame's confidence is appended to ``confidences`` when given."""
    opts = CutoutOptions(model=model, device=device, decontaminate=decontaminate, refine_edges=refine_edges,
                         clear_fill=clear_fill, quality=quality)
    r = cut_out(images, opts, on_progress, node)
    if confidences is not None:
        confidences.extend(r.confidence)
    return r.image, r.mask
