"""Video files in and out (PyAV): ``cut_out_video(source, dest, VideoOptions)``.

Frames are decoded (``source``) and cut out through the pipeline's two halves (``pipeline.frame_alpha``
per frame: network, Mask Refine's per-frame steps; then Mask Refine's temporal smoothing over a window;
then ``pipeline.render`` per frame: decontaminate, background), so memory is one chunk whatever the
video's length. Each chunk is refined together with ``CONTEXT`` frames on each side, so temporal
smoothing sees the same neighbours as it would on the whole video. The outputs (``writer``) keep the
frame size, the frame rate and the audio, and are put in place only when all of them are complete.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..imaging.refine_chain import CHUNK_PIXELS, TEMPORAL_MODES
from ..imaging.temporal_flow import FLOW_DEFAULTS
from ..options import CutoutOptions
from .source import VIDEO_SUFFIXES, Frames, VideoError, need_av, open_source, pick_streams
from .writer import CONTAINERS, VideoWriter, container_of

__all__ = ["CONTAINERS", "CONTEXT", "VIDEO_SUFFIXES", "VideoError", "VideoOptions", "cut_out_video"]

log = logging.getLogger("comfyui_cutout")

CONTEXT = FLOW_DEFAULTS["radius"]  # frames each side a chunk is refined with: the largest temporal radius
FRAME_PNG = "[0-9]" * 6 + ".png"  # --png-dir's frame names: 000000.png, ...


@dataclass
class VideoOptions:
    cutout: CutoutOptions = field(default_factory=CutoutOptions)  # per frame (dest without alpha: a colour)
    temporal: float = 1.0
    temporal_mode: str = "motion"
    png_dir: Path | None = None  # also an RGBA (or RGB) PNG sequence
    mask_video: Path | None = None  # also the mask as a grey video
    overwrite: bool = False


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _check_outputs(source: Path, opts: VideoOptions, dest: Path) -> None:
    """Before anything is decoded: each output its own path, none of them the source (never replaced,
    even with --overwrite) or a folder, no earlier output or frame PNG replaced without --overwrite."""
    files = [(dest, "--dest")] + ([(opts.mask_video, "--mask-video")] if opts.mask_video is not None else [])
    named = files + ([(opts.png_dir, "--png-dir")] if opts.png_dir is not None else [])
    for i, (path, what) in enumerate(named):
        if _same_file(path, source):
            raise VideoError(f"{what} {path} is the --source video; write the cut-out to another file")
        for other, other_what in named[:i]:
            if _same_file(path, other):
                raise VideoError(f"{what} {path} is also {other_what}; give each output its own path")
    for path, what in files:
        container_of(path, what)
        if path.is_dir():
            raise VideoError(f"{what} {path} is a folder; expected a video file name")
        if path.exists() and not opts.overwrite:
            raise VideoError(f"{what} {path} exists; pass --overwrite to replace it")
    if opts.png_dir is not None:
        if opts.png_dir.exists() and not opts.png_dir.is_dir():
            raise VideoError(f"--png-dir {opts.png_dir} is a file, not a folder")
        if not opts.overwrite and opts.png_dir.is_dir() and any(opts.png_dir.glob(FRAME_PNG)):
            raise VideoError(f"--png-dir {opts.png_dir} already holds frame PNGs (000000.png, ...); "
                             "pass --overwrite to replace them, or name an empty folder")


def cut_out_video(source: Path, dest: Path, opts: VideoOptions,
                  on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Cut out every frame of the video ``source`` into the video ``dest`` (+ the optional PNG
    sequence and mask video). Returns {"frames", "fps", "size", "turned", "audio", "damaged", "resized"}
    (``damaged``: packets of the source that could not be decoded, left out: a frame or a stretch of
    sound each; ``resized``: frames scaled to the first frame's size, the size having changed)."""
    from ..codec import to_uint8
    from ..imaging.refine_chain import refine_masks
    from ..models.session import get_session
    from ..pipeline import frame_alpha, render

    av = need_av()
    source, dest = Path(source), Path(dest)
    _, alpha_fmt, _, _ = container_of(dest, "--dest")
    cut = opts.cutout
    if cut.mask_only:
        raise VideoError("--mask-only is for folders; for a video use --mask-video")
    transparent = cut.form == "rgba"
    if transparent and alpha_fmt is None:
        raise VideoError(f"--dest {dest}: '{dest.suffix}' has no alpha channel; write .webm or .mov for a "
                         "transparent cut-out, or give --background a colour")
    if opts.temporal_mode not in TEMPORAL_MODES:
        raise VideoError(f"temporal mode '{opts.temporal_mode}': expected one of {', '.join(TEMPORAL_MODES)}")
    _check_outputs(source, opts, dest)
    inp = open_source(av, source)
    writers: list[VideoWriter] = []
    pngs = _PngFolder(opts.png_dir) if opts.png_dir is not None else None
    try:
        vin, ain = pick_streams(av, inp, source)
        total = vin.frames or 0
        frames_in = Frames(av, inp, vin, source)
        w, h = frames_in.size
        turned = bool(frames_in.turns % 2)
        main = VideoWriter(av, dest, "--dest", vin, ain, alpha=transparent, size=(w, h), turned=turned)
        writers.append(main)
        mask_w = None
        if opts.mask_video is not None:
            mask_w = VideoWriter(av, opts.mask_video, "--mask-video", vin, None, alpha=False, size=(w, h),
                                 turned=turned)
            writers.append(mask_w)
        if pngs is not None:
            pngs.open()
        chunk = max(4, CHUNK_PIXELS // max(1, w * h))
        session = get_session(cut.model, cut.device)
        smooth = {"temporal": opts.temporal, "temporal_mode": opts.temporal_mode} if opts.temporal > 0 else {}
        frames: list[torch.Tensor] = []  # uint8 [H,W,3], the window: context before + pending + context after
        masks: list[torch.Tensor] = []
        stamps: list[int | None] = []  # each frame's source pts
        first = emitted = 0  # global index of frames[0]; frames before `emitted` are written

        def emit(final: bool) -> None:
            nonlocal first, emitted
            hi = len(frames) if final else len(frames) - CONTEXT  # last frame with its context decoded
            if first + hi <= emitted:
                return
            rgb = torch.stack(frames).float().div_(255.0)
            m = torch.stack(masks)
            if smooth:  # the per-frame refinement is done (frame_alpha); the temporal step needs the window
                m = refine_masks(m, rgb, node="cli.py video", **smooth)
            lo = emitted - first
            for j in range(hi - lo):
                px = to_uint8(render(rgb[lo + j], m[lo + j], cut))
                main.write(px, stamps[lo + j])
                if mask_w is not None:
                    mask_w.write(np.repeat(to_uint8(m[lo + j])[..., None], 3, -1), stamps[lo + j])
                if pngs is not None:
                    pngs.save(px, emitted + j)
            emitted = first + hi
            keep = max(0, hi - CONTEXT)
            del frames[:keep], masks[:keep], stamps[:keep]
            first += keep
            if on_progress is not None:
                on_progress(emitted, max(total, emitted))

        for px, pts in frames_in:
            frames.append(px)
            stamps.append(pts)
            masks.append(frame_alpha(session, px.float().div_(255.0), cut, node="cli.py video"))
            if len(frames) - (emitted - first) >= chunk + CONTEXT:
                emit(final=False)
        if frames:
            emit(final=True)
        for wr in writers:  # every output complete before any is put in place
            wr.finish(source)
        for wr in writers:
            wr.commit()
        if pngs is not None:
            pngs.commit()
        return {"frames": emitted, "fps": float(main.stream.average_rate or 0), "size": [w, h],
                "turned": frames_in.turns * 90,
                "audio": None if ain is None else ("copied" if main.resampler is None else "re-encoded"),
                "damaged": len(frames_in.damaged) + len(main.damaged_audio), "resized": frames_in.resized}
    except BaseException:
        for wr in writers:
            wr.abort()
        if pngs is not None:
            pngs.abort()
        raise
    finally:
        inp.close()



class _PngFolder:
    """--png-dir's frame PNGs, written into a hidden folder inside it and moved into place only when the
    run is complete: a failed run leaves the folder as it was (and removes it if it made it)."""

    PART = ".cutout-frames.part"

    def __init__(self, folder: Path):
        self.folder, self.part, self.made = folder, folder / self.PART, False

    def open(self) -> None:
        try:
            self.made = not self.folder.exists()
            self.folder.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(self.part, ignore_errors=True)  # left by a run that was killed
            self.part.mkdir()
        except OSError as e:
            raise VideoError(f"--png-dir {self.folder}: cannot be created ({e})") from e

    def save(self, px: np.ndarray, index: int) -> None:
        from PIL import Image

        name = f"{index:06d}.png"
        try:
            Image.fromarray(px).save(self.part / name, compress_level=1)
        except OSError as e:
            raise VideoError(f"--png-dir {self.folder}: {name} could not be written ({e})") from e

    def commit(self) -> None:
        try:
            for png in sorted(self.part.iterdir()):
                os.replace(png, self.folder / png.name)
            self.part.rmdir()
        except OSError as e:
            raise VideoError(f"--png-dir {self.folder}: the frame PNGs could not be put in place ({e})") from e

    def abort(self) -> None:
        shutil.rmtree(self.part, ignore_errors=True)
        if self.made:
            with contextlib.suppress(OSError):
                self.folder.rmdir()  # only if empty
