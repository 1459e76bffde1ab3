"""Video files in and out (PyAV): ``cut_out_video(source, dest, VideoOptions)``.

Frames are decoded and cut out through the pipeline's two halves (``pipeline.frame_alpha`` per frame:
network, Mask Refine's per-frame steps; then Mask Refine's temporal smoothing over a window; then
``pipeline.render`` per frame: decontaminate, background), so memory is one chunk whatever the
video's length. Each chunk is refined together with
``CONTEXT`` frames on each side, so temporal smoothing sees the same neighbours as it would on the
whole video. The output keeps the frame size, the frame rate and the audio (copied as it is when
the container takes its codec, else re-encoded). Written to a temporary name, renamed when done.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .imaging.refine_chain import CHUNK_PIXELS, TEMPORAL_MODES
from .imaging.temporal_flow import FLOW_DEFAULTS
from .options import CutoutOptions

log = logging.getLogger("comfyui_cutout")

CONTEXT = FLOW_DEFAULTS["radius"]  # frames each side a chunk is refined with: the largest temporal radius
VIDEO_SUFFIXES = {".mp4", ".mov", ".webm", ".mkv", ".m4v", ".avi", ".gif", ".mpg", ".mpeg", ".ts"}

# output container -> (video encoder, pixel format with alpha or None, audio codecs it takes, audio encoder)
CONTAINERS = {
    ".webm": ("libvpx-vp9", "yuva420p", {"opus", "vorbis"}, "libopus"),
    ".mov": ("prores_ks", "yuva444p10le", {"aac", "alac", "mp3", "pcm_s16le", "pcm_s24le"}, "aac"),
    ".mp4": ("libx264", None, {"aac", "mp3", "alac", "opus"}, "aac"),
    ".mkv": ("libvpx-vp9", "yuva420p", {"opus", "vorbis", "aac", "mp3", "flac", "pcm_s16le"}, "libopus"),
}
OPAQUE_FORMAT = {"libvpx-vp9": "yuv420p", "prores_ks": "yuv422p10le", "libx264": "yuv420p"}
# libx264's 4:2:0 needs an even width and height; an odd-sized video keeps its size in 4:4:4
ODD_SIZE_FORMAT = {"libx264": "yuv444p"}


class VideoError(ValueError):
    """A video file that cannot be read or an output that cannot be written as asked."""


@dataclass
class VideoOptions:
    cutout: CutoutOptions = field(default_factory=CutoutOptions)  # per frame (dest without alpha: a colour)
    temporal: float = 1.0
    temporal_mode: str = "motion"
    png_dir: Path | None = None  # also an RGBA (or RGB) PNG sequence
    mask_video: Path | None = None  # also the mask as a grey video
    overwrite: bool = False


def _need_av():
    try:
        import av
    except ImportError as e:  # pragma: no cover - depends on the install
        raise VideoError("video files need PyAV (pip install av)") from e
    return av


def _container_of(path: Path, what: str) -> tuple:
    spec = CONTAINERS.get(path.suffix.lower())
    if spec is None:
        raise VideoError(f"{what} {path}: unknown video type '{path.suffix}'; expected one of "
                         + ", ".join(sorted(CONTAINERS)))
    return spec


def _check_target(path: Path, what: str, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise VideoError(f"{what} {path} exists; pass --overwrite to replace it")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _check_outputs(source: Path, opts: "VideoOptions", dest: Path) -> None:
    """Each output its own file, none of them the source (never replaced, even with --overwrite),
    and no frame PNG of an earlier run replaced without --overwrite."""
    named = [(dest, "--dest")] + ([(opts.mask_video, "--mask-video")] if opts.mask_video is not None else [])
    for i, (path, what) in enumerate(named):
        if _same_file(path, source):
            raise VideoError(f"{what} {path} is the --source video; write the cut-out to another file")
        for other, other_what in named[:i]:
            if _same_file(path, other):
                raise VideoError(f"{what} {path} is also {other_what}; give each output its own file")
    if opts.png_dir is not None:
        if opts.png_dir.exists() and not opts.png_dir.is_dir():
            raise VideoError(f"--png-dir {opts.png_dir} is a file, not a folder")
        if not opts.overwrite and opts.png_dir.is_dir() and any(opts.png_dir.glob("[0-9]" * 6 + ".png")):
            raise VideoError(f"--png-dir {opts.png_dir} already holds frame PNGs (000000.png, ...); "
                             "pass --overwrite to replace them, or name an empty folder")


class _Writer:
    """One output video: the video stream, and the source's audio added at the end."""

    def __init__(self, av, path: Path, what: str, src_video, src_audio, alpha: bool, size: tuple[int, int]):
        encoder, alpha_fmt, self.audio_ok, self.audio_encoder = _container_of(path, what)
        self.what = what
        self.path, self.tmp = path, path.with_name(f".{path.name}.part{path.suffix}")
        self.alpha = alpha and alpha_fmt is not None
        try:  # PyAV opens the file only at the first packet: fail now, before any frame is decoded
            path.parent.mkdir(parents=True, exist_ok=True)
            self.tmp.open("wb").close()
            self.out = av.open(str(self.tmp), mode="w")
        except (OSError, av.error.FFmpegError) as e:
            with contextlib.suppress(OSError):
                self.tmp.unlink(missing_ok=True)
            raise VideoError(f"{what} {path}: cannot be written ({e})") from e
        rate = src_video.average_rate or src_video.guessed_rate or Fraction(25)
        self.stream = self.out.add_stream(encoder, rate=rate)
        # each frame keeps its source timestamp (a variable-rate clip stays in step with its audio)
        self.time_base = src_video.time_base or Fraction(1, int(rate * 1000))
        self.stream.codec_context.time_base = self.time_base
        self.last_pts = None
        self.stream.width, self.stream.height = size
        self.stream.pix_fmt = alpha_fmt if self.alpha else OPAQUE_FORMAT[encoder]
        if (size[0] % 2 or size[1] % 2) and encoder in ODD_SIZE_FORMAT:
            self.stream.pix_fmt = ODD_SIZE_FORMAT[encoder]
            log.info("%s: %dx%d is odd-sized; written as %s (some players only play 4:2:0; "
                     ".webm or .mov play everywhere)", path, size[0], size[1], self.stream.pix_fmt)
        if encoder == "prores_ks":
            self.stream.options = {"profile": "4444" if self.alpha else "hq"}
        elif encoder == "libvpx-vp9":
            self.stream.options = {"crf": "24", "b": "0", "row-mt": "1", "deadline": "good", "cpu-used": "4"}
        elif encoder == "libx264":
            self.stream.options = {"crf": "18", "preset": "medium"}
        self.audio_in, self.audio_out, self.resampler = src_audio, None, None
        if src_audio is not None:
            if src_audio.codec_context.name in self.audio_ok:
                self.audio_out = self.out.add_stream_from_template(src_audio)
            else:
                rate_a = 48000 if self.audio_encoder == "libopus" else (src_audio.rate or 48000)
                self.audio_out = self.out.add_stream(self.audio_encoder, rate=rate_a)
                self.audio_out.layout = "stereo"
                fmt = self.audio_out.codec_context.codec.audio_formats[0].name
                self.resampler = av.AudioResampler(format=fmt, layout="stereo", rate=rate_a)
        self.count = 0
        self.damaged_audio: list = []  # audio packets that could not be decoded (re-encoding only)

    def write(self, av, pixels: np.ndarray, pts: int | None) -> None:
        frame = av.VideoFrame.from_ndarray(pixels, format="rgba" if pixels.shape[-1] == 4 else "rgb24")
        if pts is None or (self.last_pts is not None and pts <= self.last_pts):
            pts = 0 if self.last_pts is None else self.last_pts + 1  # never two frames at one time
        frame.pts, frame.time_base, self.last_pts = pts, self.time_base, pts
        self.count += 1
        for packet in self.stream.encode(frame):
            self.out.mux(packet)

    def finish(self, av, source: Path) -> None:
        for packet in self.stream.encode():
            self.out.mux(packet)
        if self.audio_out is not None:
            with av.open(str(source)) as inp:
                a_in = next(s for s in inp.streams.audio if s.index == self.audio_in.index)
                if self.resampler is None:
                    for packet in inp.demux(a_in):
                        if packet.dts is None:
                            continue
                        packet.stream = self.audio_out
                        self.out.mux(packet)
                else:
                    for frame in _decode(av, inp, a_in, self.damaged_audio):
                        for f in self.resampler.resample(frame):
                            for packet in self.audio_out.encode(f):
                                self.out.mux(packet)
                    for packet in self.audio_out.encode():
                        self.out.mux(packet)
        self.out.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self.out.close()
        except Exception:
            pass
        with contextlib.suppress(OSError):
            self.tmp.unlink(missing_ok=True)


def _decode(av, inp, stream, damaged: list):
    """The stream's frames; a packet the decoder refuses (a damaged stretch of the file) is
    left out and its time noted in ``damaged``, as players skip it, and the frames after it still come."""
    for packet in inp.demux(stream):
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            damaged.append(packet.pts)
            continue
        yield from frames


def cut_out_video(source: Path, dest: Path, opts: VideoOptions,
                  on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Cut out every frame of the video ``source`` into the video ``dest`` (+ the optional PNG
    sequence and mask video). Returns {"frames", "fps", "size", "turned", "audio", "damaged"}
    (``damaged``: packets of the source that could not be decoded, left out: a frame or a stretch of sound each)."""
    from .codec import to_uint8
    from .imaging.refine_chain import refine_masks
    from .models.session import get_session
    from .pipeline import frame_alpha, render

    av = _need_av()
    source, dest = Path(source), Path(dest)
    _, alpha_fmt, _, _ = _container_of(dest, "--dest")
    cut = opts.cutout
    if cut.mask_only:
        raise VideoError("--mask-only is for folders; for a video use --mask-video")
    transparent = cut.form == "rgba"
    if transparent and alpha_fmt is None:
        raise VideoError(f"--dest {dest}: '{dest.suffix}' has no alpha channel; write .webm or .mov for a "
                         "transparent cut-out, or give --background a colour")
    if opts.temporal_mode not in TEMPORAL_MODES:
        raise VideoError(f"temporal mode '{opts.temporal_mode}': expected one of {', '.join(TEMPORAL_MODES)}")
    for path, what in ((dest, "--dest"), (opts.mask_video, "--mask-video")):
        if path is not None:
            _container_of(path, what)
    _check_outputs(source, opts, dest)
    for path, what in ((dest, "--dest"), (opts.mask_video, "--mask-video")):
        if path is not None:
            _check_target(path, what, opts.overwrite)
    try:
        inp = av.open(str(source))
    except (OSError, av.error.FFmpegError) as e:
        raise VideoError(f"--source {source}: not a readable video ({e})") from e
    writers: list[_Writer] = []
    try:
        if not inp.streams.video:
            raise VideoError(f"--source {source}: has no video stream")
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        ain = inp.streams.audio[0] if inp.streams.audio else None
        total = vin.frames or 0
        damaged: list = []
        decoded = _decode(av, inp, vin, damaged)
        first_frame = next(decoded, None)
        if first_frame is None:
            raise VideoError(f"--source {source}: no frame could be decoded")
        # a phone video stores its frames sideways with a display rotation (counter-clockwise degrees):
        # the frames are turned upright, as players show them, and written upright
        turns = round(getattr(first_frame, "rotation", 0) / 90) % 4
        w, h = vin.codec_context.width, vin.codec_context.height
        if turns % 2:
            w, h = h, w
        main = _Writer(av, dest, "--dest", vin, ain, alpha=transparent, size=(w, h))
        writers.append(main)
        mask_w = None
        if opts.mask_video is not None:
            mask_w = _Writer(av, opts.mask_video, "--mask-video", vin, None, alpha=False, size=(w, h))
            writers.append(mask_w)
        if opts.png_dir is not None:
            try:
                opts.png_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise VideoError(f"--png-dir {opts.png_dir}: cannot be created ({e})") from e
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
                main.write(av, px, stamps[lo + j])
                if mask_w is not None:
                    mask_w.write(av, np.repeat(to_uint8(m[lo + j])[..., None], 3, -1), stamps[lo + j])
                if opts.png_dir is not None:
                    from PIL import Image

                    Image.fromarray(px).save(opts.png_dir / f"{emitted + j:06d}.png", compress_level=1)
            emitted = first + hi
            keep = max(0, hi - CONTEXT)
            del frames[:keep], masks[:keep], stamps[:keep]
            first += keep
            if on_progress is not None:
                on_progress(emitted, max(total, emitted))

        for frame in itertools.chain([first_frame], decoded):
            px = frame.to_ndarray(format="rgb24")
            px = torch.from_numpy(np.ascontiguousarray(np.rot90(px, turns)) if turns else px)
            frames.append(px)
            stamps.append(frame.pts)
            masks.append(frame_alpha(session, px.float().div_(255.0), cut, node="cli.py video"))
            if len(frames) - (emitted - first) >= chunk + CONTEXT:
                emit(final=False)
        if frames:
            emit(final=True)
        if emitted == 0:
            raise VideoError(f"--source {source}: no frame could be decoded")
        for wr in writers:
            wr.finish(av, source)
        damaged += main.damaged_audio
        return {"frames": emitted, "fps": float(main.stream.average_rate or 0), "size": [w, h], "turned": turns * 90,
                "audio": None if ain is None else ("copied" if main.resampler is None else "re-encoded"),
                "damaged": len(damaged)}
    except (OSError, av.error.FFmpegError) as e:  # the writers' file system or encoder, mid-way
        for wr in writers:
            wr.abort()
        raise VideoError(f"--source {source} -> --dest {dest}: failed mid-way ({e}); no output was kept") from e
    except BaseException:
        for wr in writers:
            wr.abort()
        raise
    finally:
        inp.close()
