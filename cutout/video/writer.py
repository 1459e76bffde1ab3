"""One output video file: frames at their source times, the source's audio, written under a temporary
name and put in place only when every output of the run is complete."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from .source import VideoError, decode

log = logging.getLogger("comfyui_cutout")

# output container -> (video encoder, pixel format with alpha or None, audio codecs it takes, audio encoder)
CONTAINERS = {
    ".webm": ("libvpx-vp9", "yuva420p", {"opus", "vorbis"}, "libopus"),
    ".mov": ("prores_ks", "yuva444p10le", {"aac", "alac", "mp3", "pcm_s16le", "pcm_s24le"}, "aac"),
    ".mp4": ("libx264", None, {"aac", "mp3", "alac", "opus"}, "aac"),
    ".mkv": ("libvpx-vp9", "yuva420p", {"opus", "vorbis", "aac", "mp3", "flac", "pcm_s16le", "ac3", "eac3", "dts"},
             "libopus"),
}
OPAQUE_FORMAT = {"libvpx-vp9": "yuv420p", "prores_ks": "yuv422p10le", "libx264": "yuv420p"}
# libx264's 4:2:0 needs an even width and height; an odd-sized video keeps its size in 4:4:4
ODD_SIZE_FORMAT = {"libx264": "yuv444p"}
# a source tagged with one of these YUV matrices (FFmpeg's AVColorSpace) is written with it and tagged
# the same, so an HD (BT.709) clip keeps its colours in players; untagged sources stay untagged
MATRICES = {1: "ITU709", 4: "FCC", 5: "ITU601", 6: "ITU601", 7: "SMPTE240M", 9: "BT2020", 10: "BT2020"}


def container_of(path: Path, what: str) -> tuple:
    spec = CONTAINERS.get(path.suffix.lower())
    if spec is None:
        raise VideoError(f"{what} {path}: unknown video type '{path.suffix}'; expected one of "
                         + ", ".join(sorted(CONTAINERS)))
    return spec


def _codec_name(stream) -> str:
    """The stream's codec ("mp3"), not its decoder's name ("mp3float")."""
    codec = stream.codec_context.codec
    return getattr(codec, "canonical_name", None) or codec.name


# channel layouts the re-encoders (Opus, AAC) take; a source's layout maps to one of them by its channels
# (AC-3, DTS and FLAC call their 5.1 "5.1(side)", Matroska's PCM has no order: "6 channels"); others are
# mixed to stereo
LAYOUT_BY_CHANNELS = {1: "mono", 2: "stereo", 6: "5.1"}


def _layout(stream) -> str:
    name = getattr(getattr(stream, "layout", None), "name", None) or ""
    if name in LAYOUT_BY_CHANNELS.values():
        return name
    kept = LAYOUT_BY_CHANNELS.get(stream.channels)
    if kept is not None and (name in (f"{stream.channels} channels", "") or name.startswith(kept)):
        return kept
    log.info("%s channels (%s) are mixed to stereo for the re-encoded sound", stream.channels, name or "no layout")
    return "stereo"


class VideoWriter:
    """``write`` each frame, then ``finish`` (encoders flushed, audio added, file closed), then
    ``commit`` (renamed into place); ``abort`` removes the temporary file. Errors name the output."""

    def __init__(self, av, path: Path, what: str, src_video, src_audio, alpha: bool, size: tuple[int, int],
                 turned: bool = False):
        encoder, alpha_fmt, self.audio_ok, self.audio_encoder = container_of(path, what)
        self.av, self.what, self.path = av, what, path
        self.tmp = path.with_name(f".{path.name}.part{path.suffix}")
        self.alpha = alpha and alpha_fmt is not None
        self.out = None
        with self._named("cannot be written"):  # PyAV opens the file only at the first packet: fail now
            path.parent.mkdir(parents=True, exist_ok=True)
            self.tmp.open("wb").close()
            self.out = av.open(str(self.tmp), mode="w")
        rate = src_video.average_rate or src_video.guessed_rate or Fraction(25)
        self.stream = self.out.add_stream(encoder, rate=rate)
        # each frame keeps its source timestamp (a variable-rate clip stays in step with its audio)
        self.time_base = src_video.time_base or Fraction(1, int(rate * 1000))
        self.stream.codec_context.time_base = self.time_base
        self.step = max(1, round(1 / (rate * self.time_base)))  # one frame, for frames without a time
        self.last_pts = self.first_pts = None
        self.stream.width, self.stream.height = size
        self.stream.pix_fmt = alpha_fmt if self.alpha else OPAQUE_FORMAT[encoder]
        if (size[0] % 2 or size[1] % 2) and encoder in ODD_SIZE_FORMAT:
            self.stream.pix_fmt = ODD_SIZE_FORMAT[encoder]
            log.info("%s: %dx%d is odd-sized; written as %s (some players only play 4:2:0; "
                     ".webm or .mov play everywhere)", path, size[0], size[1], self.stream.pix_fmt)
        self.matrix = self._keep_look(src_video, turned)
        if encoder == "prores_ks":
            self.stream.options = {"profile": "4444" if self.alpha else "hq"}
        elif encoder == "libvpx-vp9":
            self.stream.options = {"crf": "24", "b": "0", "row-mt": "1", "deadline": "good", "cpu-used": "4"}
        elif encoder == "libx264":
            self.stream.options = {"crf": "18", "preset": "medium"}
        self.audio_in, self.audio_out, self.resampler = src_audio, None, None
        if src_audio is not None:
            if _codec_name(src_audio) in self.audio_ok:
                self.audio_out = self.out.add_stream_from_template(src_audio)
            else:
                rate_a = 48000 if self.audio_encoder == "libopus" else (src_audio.rate or 48000)
                self.audio_out = self.out.add_stream(self.audio_encoder, rate=rate_a)
                layout = _layout(src_audio)
                self.audio_out.layout = layout
                fmt = self.audio_out.codec_context.codec.audio_formats[0].name
                self.resampler = av.AudioResampler(format=fmt, layout=layout, rate=rate_a)
        self.damaged_audio: list = []  # audio packets that could not be decoded (re-encoding only)

    def _keep_look(self, src_video, turned: bool):
        """The source's colour tags and pixel aspect ratio on the output; the matrix to convert with."""
        src, cc = src_video.codec_context, self.stream.codec_context
        sar = src.sample_aspect_ratio
        if sar and sar != 1:  # anamorphic footage (kept by MOV and MP4; PyAV's Matroska output drops it)
            cc.sample_aspect_ratio = 1 / sar if turned else sar
        name = MATRICES.get(int(src.colorspace or 2))
        if name is None:
            return None
        from av.video.reformatter import Colorspace

        cc.colorspace, cc.color_primaries, cc.color_trc = src.colorspace, src.color_primaries, src.color_trc
        cc.color_range = 1  # the converter writes limited ("TV") range
        return getattr(Colorspace, name)

    @contextlib.contextmanager
    def _named(self, what_failed: str):
        try:
            yield
        except (OSError, self.av.error.FFmpegError) as e:
            self.abort()
            raise VideoError(f"{self.what} {self.path}: {what_failed} ({e})") from e

    def write(self, pixels: np.ndarray, pts: int | None) -> None:
        frame = self.av.VideoFrame.from_ndarray(pixels, format="rgba" if pixels.shape[-1] == 4 else "rgb24")
        if self.matrix is not None:
            frame = frame.reformat(format=self.stream.pix_fmt, dst_colorspace=self.matrix)
        if pts is not None:  # the first frame at 0, as FFmpeg writes a clip cut from later in a stream
            if self.first_pts is None:
                self.first_pts = pts
            pts -= self.first_pts
        if pts is None or (self.last_pts is not None and pts <= self.last_pts):
            pts = 0 if self.last_pts is None else self.last_pts + self.step  # never two frames at one time
        frame.pts, frame.time_base, self.last_pts = pts, self.time_base, pts
        with self._named("writing failed"):
            for packet in self.stream.encode(frame):
                self.out.mux(packet)

    def finish(self, source: Path) -> None:
        with self._named("writing failed"):
            for packet in self.stream.encode():
                self.out.mux(packet)
            if self.audio_out is not None:
                self._add_audio(source)
            self.out.close()

    def _add_audio(self, source: Path) -> None:
        """The source's sound, shifted as the video was (its first frame at 0); sound from before the
        first frame is left out."""
        start = (self.first_pts or 0) * self.time_base  # seconds

        def shift(item, tb) -> bool:
            d = round(start / tb)
            item.pts -= d
            if getattr(item, "dts", None) is not None:
                item.dts -= d
            return item.pts >= 0

        with self.av.open(str(source)) as inp:
            a_in = next(s for s in inp.streams.audio if s.index == self.audio_in.index)
            if self.resampler is None:
                for packet in inp.demux(a_in):
                    if packet.dts is None or packet.pts is None or not shift(packet, packet.time_base):
                        continue
                    packet.stream = self.audio_out
                    self.out.mux(packet)
                return
            frames = (f for f in decode(self.av, inp, a_in, self.damaged_audio)
                      if f.pts is None or shift(f, f.time_base))
            for frame in itertools.chain(frames, [None]):  # None: the resampler's last samples
                for f in self.resampler.resample(frame):
                    for packet in self.audio_out.encode(f):
                        self.out.mux(packet)
            for packet in self.audio_out.encode():
                self.out.mux(packet)

    def commit(self) -> None:
        with self._named("could not be put in place"):
            os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if self.out is not None:
            with contextlib.suppress(Exception):
                self.out.close()
        with contextlib.suppress(OSError):
            self.tmp.unlink(missing_ok=True)
