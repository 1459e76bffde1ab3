"""Mask Refine's operations as ONE ordered, pure function: ``refine_masks(mask, image, **options)``.

Used by the Mask Refine node, the dataset job (``dataset.job.infer_item``: cli.py's refine
options, local and Ray engines) so the order and the meaning of every option are the same
everywhere. The operations themselves live in ``imaging.masks`` and ``imaging.refine``.
"""

from __future__ import annotations

from typing import Callable

import torch

from . import masks as M
from .refine import GUIDED_DEFAULTS, guided_filter, matte, temporal_smooth
from .temporal_flow import flow_smooth
from .tensors import CutoutInputError, as_image, as_mask, check_number


EDGE_MODES = ["off", "guided filter", "matting"]
TEMPORAL_MODES = ["colour", "motion"]  # refine.temporal_smooth / temporal_flow.flow_smooth

CHUNK_PIXELS = 16 << 20  # frames per chunk: about 16 MP (8 frames of 1080p, 1 of 12 MP)

ORDER = ("levels → fill holes → remove islands → grow/shrink → edge refinement → feather → "
         "temporal smoothing → invert")


def refine_masks(mask: torch.Tensor, image: torch.Tensor | None = None, *, black_point: float = 0.0,
                 white_point: float = 1.0, threshold: float = 0.0, fill_holes: bool = False,
                 remove_islands: float = 0.0, grow: int = 0, edge_refinement: str = "off",
                 guided_radius: int = GUIDED_DEFAULTS["radius"], guided_eps: float = GUIDED_DEFAULTS["eps"],
                 guided_size: int = GUIDED_DEFAULTS["work_size"], matting_band: int = 10,
                 matting_max_megapixels: float = 1.0, feather: float = 0.0, temporal: float = 0.0,
                 temporal_mode: str = "colour", invert: bool = False, node: str = "Mask Refine (Cutout)",
                 check_interrupt: Callable[[], None] | None = None,
                 on_frame: Callable[[], None] | None = None) -> torch.Tensor:
    """All of Mask Refine as one function (MASK [B,H,W], optional IMAGE guide) -> MASK [B,H,W].

    The operations run in the fixed ``ORDER``; each is off at its default. ``check_interrupt``
    (ComfyUI's Cancel, from the node) is called between the slow steps; ``on_frame`` after each
    frame of motion-compensated smoothing (``temporal_mode`` 'motion', the slow one: progress).
    """
    check = check_interrupt or (lambda: None)
    if edge_refinement not in EDGE_MODES:  # before the guide: a bad mode is not a "missing image"
        raise CutoutInputError(node, "edge_refinement", f"is {edge_refinement!r}", " / ".join(EDGE_MODES))
    if temporal_mode not in TEMPORAL_MODES:
        raise CutoutInputError(node, "temporal_mode", f"is {temporal_mode!r}", " / ".join(TEMPORAL_MODES))
    for name, value, lo, hi in (("black_point", black_point, 0, 1), ("white_point", white_point, 0, 1),
                                ("threshold", threshold, 0, 1), ("remove_islands", remove_islands, 0, None),
                                ("guided_eps", guided_eps, 1e-12, None), ("matting_max_megapixels",
                                matting_max_megapixels, 1e-3, None), ("feather", feather, 0, None),
                                ("temporal", temporal, 0, 1)):
        check_number(value, node, name, lo, hi)  # NaN would pass every comparison below
    for name, value, lo in (("grow", grow, None), ("guided_radius", guided_radius, 1), ("guided_size", guided_size, 0),
                            ("matting_band", matting_band, 0)):
        check_number(value, node, name, lo, None, integer=True)
    guide = None
    if image is not None:
        guide = as_image(image, node, "image", sanitize_values=True)  # one NaN pixel must not poison the filter
    size = tuple(guide.shape[1:3]) if guide is not None else None
    m = as_mask(mask, node, "mask")
    if guide is not None:
        if guide.shape[0] not in (1, m.shape[0]) and m.shape[0] != 1:
            raise CutoutInputError(node, "image", f"has a batch of {guide.shape[0]} images but the mask batch "
                                   f"has {m.shape[0]}", f"1 image or {m.shape[0]} images")
        n = max(guide.shape[0], m.shape[0])
        m = as_mask(m, node, "mask", batch=n, size=size)
        if guide.shape[0] != n:
            guide = guide.expand(n, -1, -1, -1)
        guide = guide.to(m.device)
    elif edge_refinement != "off":
        raise CutoutInputError(node, "image", f"is missing but edge_refinement is '{edge_refinement}'",
                               "the photo the mask was made from (connect the IMAGE input)")
    elif temporal > 0 and temporal_mode == "motion":
        raise CutoutInputError(node, "image", "is missing but temporal_mode is 'motion'",
                               "the video frames the masks were made from (connect the IMAGE input)")

    def frame_ops(m: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        """Everything but temporal smoothing and invert, on a chunk of frames."""
        if black_point != 0.0 or white_point != 1.0 or threshold > 0.0:
            m = M.levels(m, black_point, white_point, threshold)
        check()
        if fill_holes:
            m = M.fill_holes(m)
        if remove_islands > 0:
            m = M.remove_islands(m, remove_islands)
        if grow:
            m = M.grow(m, grow)
        check()
        if edge_refinement == "guided filter":
            m = guided_filter(g, m, guided_radius, guided_eps, guided_size)
        elif edge_refinement == "matting":
            m = matte(g, m, matting_band, matting_max_megapixels, node=node)
        if feather > 0:
            m = M.feather(m, feather)
        return m

    # Chunks of frames (each op is vectorised over its chunk): the temporaries of a long video
    # batch stay those of CHUNK_PIXELS, not several copies of the whole batch.
    b, h, w = m.shape
    step = max(1, CHUNK_PIXELS // max(1, h * w))
    if step >= b:
        out = frame_ops(m, guide)
    else:
        out = torch.empty((b, h, w), dtype=torch.float32, device=m.device)
        for i in range(0, b, step):
            out[i:i + step] = frame_ops(m[i:i + step], None if guide is None else guide[i:i + step])
    if temporal > 0 and temporal_mode == "motion":
        def frame_done():
            check()
            if on_frame is not None:
                on_frame()

        out = flow_smooth(out, guide, temporal, node=node, on_frame=frame_done)
    elif temporal > 0:
        out = temporal_smooth(out, temporal, guide)
    if invert:
        out = M.invert(out)
    m = out

    # every operation returns a new tensor; with none switched on, m may still be (a view of) the
    # caller's mask, which must never be handed back to be modified downstream
    shares_input = isinstance(mask, torch.Tensor) and \
        m.untyped_storage().data_ptr() == mask.untyped_storage().data_ptr()
    if shares_input:
        return m.clone(memory_format=torch.contiguous_format)
    return m.contiguous()  # a broadcast (expanded) batch becomes real frames
