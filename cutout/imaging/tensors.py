"""Checking and normalising ComfyUI IMAGE / MASK tensors.

Every node funnels its tensor inputs through ``as_image`` / ``as_mask`` so that bad input
gets one kind of message: which node, which input, what was expected, what came. Inputs
that have an obvious meaning are accepted and documented instead of refused:

* IMAGE ``[H,W,C]`` is a batch of one; 1 channel is grey, 2 channels are grey + alpha (alpha
  ignored), a 4th channel (alpha) is ignored; float16/float64/uint8 become float32;
  NaN becomes 0, +inf 1, -inf 0, and values are clamped to 0..1.
* MASK ``[H,W]``, ``[B,1,H,W]`` and ``[B,H,W,1]`` become ``[B,H,W]``; a batch of 1 is
  broadcast to the image batch; a mask of another size is resized (bilinear) to the image,
  as ComfyUI's own JoinImageWithAlpha does.
"""

from __future__ import annotations

import logging
import math
import numbers

import torch
import torch.nn.functional as F

log = logging.getLogger("comfyui_cutout")


class CutoutInputError(ValueError):
    """Bad node input; the message names the node, the input and what was expected."""

    def __init__(self, node: str, input_name: str, problem: str, expected: str):
        self.node, self.input_name = node, input_name
        super().__init__(f"{node}: input '{input_name}' {problem}; expected {expected}.")


def check_number(value, node: str, input_name: str, lo: float | None = None, hi: float | None = None,
                 integer: bool = False) -> float | int:
    """A widget number, refused unless it is finite and within ``lo..hi``.

    ComfyUI checks min/max for prompts, but every comparison with NaN is false, so NaN (and,
    from ``/prompt`` JSON, infinity) pass its validation and would give a black mask or a
    raw ValueError deep inside; this is the one check every node and the CLI use.
    """
    kind = "an integer" if integer else "a number"
    bounds = "" if lo is None and hi is None else f" in {lo:g}..{hi:g}" if lo is not None and hi is not None \
        else f" ≥ {lo:g}" if lo is not None else f" ≤ {hi:g}"
    if integer and isinstance(value, float) and value.is_integer():
        value = int(value)  # 2.0 from JSON is 2
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or (
            integer and not isinstance(value, numbers.Integral)):
        raise CutoutInputError(node, input_name, f"is {value!r} ({type(value).__name__})", kind + bounds)
    if not math.isfinite(value):
        raise CutoutInputError(node, input_name, f"is {value!r}", "a finite number" + bounds)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise CutoutInputError(node, input_name, f"is {value!r}", kind + bounds)
    return value


def _describe(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"a {x.dtype} tensor of shape {list(x.shape)}"
    return f"a {type(x).__name__}"


def sanitize(frame: torch.Tensor) -> torch.Tensor:
    """float32, finite, 0..1 (NaN -> 0, +inf -> 1, -inf -> 0)."""
    if frame.dtype == torch.uint8:
        frame = frame.float() / 255.0
    frame = frame.float()
    # One read pass and no copy for the usual, already clean frame (aminmax propagates NaN);
    # a 12 MP frame's isfinite().all() + clamp cost more than the int8 network itself.
    if frame.numel():
        lo, hi = torch.aminmax(frame)
        if bool(lo >= 0.0) and bool(hi <= 1.0):
            return frame
    if not torch.isfinite(frame).all():
        frame = torch.nan_to_num(frame, nan=0.0, posinf=1.0, neginf=0.0)
    return frame.clamp(0.0, 1.0)


def as_image(image, node: str, input_name: str = "image", sanitize_values: bool = False) -> torch.Tensor:
    """A ``[B,H,W,3]`` view of an IMAGE input (no copy unless needed).

    Values are only sanitised when asked, so that a caller working frame by frame can
    sanitise one frame at a time instead of copying a whole video batch.
    """
    expected = "an IMAGE tensor [B,H,W,C] with C = 3 (RGB) or 4 (RGBA), B ≥ 1"
    if not isinstance(image, torch.Tensor):
        raise CutoutInputError(node, input_name, f"is {_describe(image)}", expected)
    if image.requires_grad:  # a tensor from a training graph: the pack never back-propagates
        image = image.detach()
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4:
        raise CutoutInputError(node, input_name, f"is {_describe(image)}", expected)
    b, h, w, c = image.shape
    if b == 0:
        raise CutoutInputError(node, input_name, "is an empty batch (0 images)", expected)
    if h == 0 or w == 0:
        raise CutoutInputError(node, input_name, f"has no pixels (shape {list(image.shape)})", expected)
    if c in (1, 2):
        image = image[..., :1].expand(b, h, w, 3)
    elif c == 4:
        image = image[..., :3]
    elif c != 3:
        raise CutoutInputError(node, input_name, f"has {c} channels (shape {list(image.shape)})", expected)
    if not (image.is_floating_point() or image.dtype == torch.uint8):
        raise CutoutInputError(node, input_name, f"has dtype {image.dtype}", expected + ", float 0..1")
    return sanitize(image) if sanitize_values else image


def as_mask(mask, node: str, input_name: str = "mask", batch: int | None = None,
            size: tuple[int, int] | None = None) -> torch.Tensor:
    """A float32 ``[B,H,W]`` MASK, broadcast to ``batch`` and resized to ``size`` (H, W) if given."""
    expected = "a MASK tensor [B,H,W] (or [H,W]) with values 0..1"
    if not isinstance(mask, torch.Tensor):
        raise CutoutInputError(node, input_name, f"is {_describe(mask)}", expected)
    m = mask.detach() if mask.requires_grad else mask
    if m.dim() == 2:
        m = m.unsqueeze(0)
    elif m.dim() == 4 and m.shape[1] == 1:
        m = m[:, 0]
    elif m.dim() == 4 and m.shape[-1] == 1:
        m = m[..., 0]
    if m.dim() != 3:
        raise CutoutInputError(node, input_name, f"is {_describe(mask)}", expected)
    if m.shape[0] == 0:
        raise CutoutInputError(node, input_name, "is an empty batch (0 masks)", expected)
    if m.shape[1] == 0 or m.shape[2] == 0:
        raise CutoutInputError(node, input_name, f"has no pixels (shape {list(mask.shape)})", expected)
    m = sanitize(m)
    if batch is not None and m.shape[0] != batch:
        if m.shape[0] != 1:
            raise CutoutInputError(
                node, input_name, f"has a batch of {m.shape[0]} masks but the image batch has {batch}",
                f"1 mask (used for every image) or {batch} masks",
            )
        m = m.expand(batch, -1, -1)
    if size is not None and tuple(m.shape[1:]) != tuple(size):
        log.warning("%s: %s is %dx%d, resized to the image's %dx%d", node, input_name,
                    m.shape[2], m.shape[1], size[1], size[0])
        m = F.interpolate(m.unsqueeze(1), size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    return m


def unit_frame(frame: torch.Tensor) -> torch.Tensor:
    """A frame as float 0..1: uint8 0..255 is converted (``dataset.reader.to_frame`` too), float is
    returned as it is. For the steps that read every pixel of a frame that may be 8-bit."""
    return frame.to(torch.float32).div_(255.0) if frame.dtype == torch.uint8 else frame


def to_rgba(rgb: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Straight (not premultiplied) RGBA ``[B,H,W,4]`` from RGB and a 1 = opaque alpha."""
    return torch.cat([rgb, alpha.unsqueeze(-1).to(rgb.dtype)], dim=-1)


def nchw(frame: torch.Tensor) -> torch.Tensor:
    """One ``[H,W,C]`` (or ``[1,H,W,C]``) frame as a ``[1,C,H,W]`` view, no copy.

    The view gets the canonical channels-last strides: PyTorch picks its fast channels-last
    pooling/resizing kernels only then, and a frame sliced out of a broadcast batch (stride 0)
    or taken with ``[i]`` would otherwise take a much slower strided path.
    """
    if frame.dim() == 4:
        frame = frame[0]
    if not frame.is_contiguous():
        frame = frame.contiguous()
    h, w, c = frame.shape
    return frame.as_strided((1, c, h, w), (h * w * c, 1, w * c, c))
