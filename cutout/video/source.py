"""The video file read for a cut-out: which stream, its frames upright and all at one size, damaged
packets left out and counted (as players skip them)."""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger("comfyui_cutout")

VIDEO_SUFFIXES = {".mp4", ".mov", ".webm", ".mkv", ".m4v", ".avi", ".gif", ".mpg", ".mpeg", ".ts"}


class VideoError(ValueError):
    """A video file that cannot be read or an output that cannot be written as asked."""


def need_av():
    try:
        import av
    except ImportError as e:  # pragma: no cover - depends on the install
        raise VideoError("video files need PyAV (pip install av)") from e
    return av


def open_source(av, source: Path):
    try:
        return av.open(str(source))
    except (OSError, av.error.FFmpegError) as e:
        raise VideoError(f"--source {source}: not a readable video ({e})") from e


def _moving(av, streams) -> list:
    """The video streams that are not a still picture (an audio file's cover art)."""
    still = getattr(getattr(av.stream, "Disposition", None), "attached_pic", None)
    return [s for s in streams if still is None or not (s.disposition & still)]


def pick_streams(av, inp, source: Path) -> tuple:
    """(video stream, audio stream or None): FFmpeg's own choice of each, as players make it; a cover
    picture is not a video."""
    moving = _moving(av, inp.streams.video)
    if not moving:
        raise VideoError(f"--source {source}: has no video stream"
                         + (" (only a cover picture)" if inp.streams.video else ""))
    best = inp.streams.best("video")
    video = best if best in moving else moving[0]
    if len(moving) > 1:
        log.warning("--source %s: %d video streams; cutting out stream %d (%dx%d), as players show it",
                    source, len(moving), video.index, video.codec_context.width, video.codec_context.height)
    audio = inp.streams.best("audio") if inp.streams.audio else None
    if len(inp.streams.audio) > 1:
        log.warning("--source %s: %d sound tracks; keeping track %d only, as players play it",
                    source, len(inp.streams.audio), audio.index)
    return video, audio


def decode(av, inp, stream, damaged: list):
    """The stream's frames; a packet the decoder refuses (a damaged stretch of the file) is left out and
    its time noted in ``damaged``, and the frames after it still come."""
    for packet in inp.demux(stream):
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            damaged.append(packet.pts)
            continue
        yield from frames


@dataclass
class Frames:
    """The frames of ``stream`` as uint8 ``[H,W,3]`` tensors with their source pts, turned upright (a
    phone's display rotation) and, should the size change mid-stream, scaled to the first frame's size."""

    av: object
    inp: object
    stream: object
    source: Path
    damaged: list = field(default_factory=list)
    resized: int = 0  # frames scaled to the first frame's size

    def __post_init__(self):
        # one frame per packet in order (slice threads): frame threads can drop the last frames
        # silently when a damaged packet sits near the end
        self.stream.thread_type = "SLICE"
        self._it = decode(self.av, self.inp, self.stream, self.damaged)
        self.first = next(self._it, None)
        if self.first is None:
            raise VideoError(f"--source {self.source}: no frame could be decoded")
        # a phone video stores its frames sideways with a display rotation (counter-clockwise degrees):
        # the frames are turned upright, as players show them, and written upright
        self.turns = round(getattr(self.first, "rotation", 0) / 90) % 4
        w, h = self.first.width, self.first.height
        self.size = (h, w) if self.turns % 2 else (w, h)  # (width, height) as written

    def __iter__(self):
        w, h = self.size
        for frame in itertools.chain([self.first], self._it):
            px = frame.to_ndarray(format="rgb24")
            if self.turns:
                px = np.ascontiguousarray(np.rot90(px, self.turns))
            if px.shape[:2] != (h, w):
                from PIL import Image

                px = np.array(Image.fromarray(px).resize((w, h), Image.BILINEAR))
                self.resized += 1
            yield torch.from_numpy(px), frame.pts
