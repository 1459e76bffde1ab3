"""Video files in and out: cli.py --source clip.mp4 --dest cut.webm / .mov (PyAV)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")
pytest.importorskip("cv2")

import cli  # noqa: E402
from cutout.options import CutoutOptions, parse_background  # noqa: E402
from cutout.video import VideoError, VideoOptions, cut_out_video  # noqa: E402

FPS = Fraction(12)


def make_clip(path, n=10, size=(96, 128), audio="aac", rotation=0, codec=None, pix_fmt="yuv420p",
              container=None, start=0, bt709=False, sar=None, layout="mono"):
    """A bright square sliding over a grey gradient, with a sine tone; ``container``: a format name
    when the suffix does not say it ('mpegts', 'h264': a raw stream without timestamps); ``bt709``:
    converted and tagged as HD video is; ``sar``: a pixel aspect ratio (anamorphic)."""
    h, w = size
    out = av.open(str(path), mode="w", format=container)
    codec = codec or ("libx264" if path.suffix == ".mp4" else "libvpx-vp9")
    vs = out.add_stream(codec, rate=FPS)
    vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
    vs.options = {"libx264": {"crf": "10"}, "libvpx-vp9": {"crf": "10", "b": "0"}}.get(codec, {})
    if rotation:
        vs.set_display_rotation(rotation)  # as a phone stores a portrait video: frames sideways
    if bt709:
        cc = vs.codec_context
        cc.colorspace = cc.color_primaries = cc.color_trc = cc.color_range = 1
    if sar:
        vs.codec_context.sample_aspect_ratio = sar
    aus = None
    if audio:
        aus = out.add_stream(audio, rate=48000 if audio == "libopus" else 44100)
        aus.layout = layout
    ramp = np.linspace(40, 120, w, dtype=np.float32)[None, :, None].repeat(h, 0).repeat(3, 2)
    for t in range(n):
        img = ramp.copy()
        img[30:66, 20 + 5 * t:56 + 5 * t] = (230, 200, 60)
        frame = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
        if bt709:
            from av.video.reformatter import Colorspace

            frame = frame.reformat(format=pix_fmt, dst_colorspace=Colorspace.ITU709)
        frame.pts = t + start
        for p in vs.encode(frame):
            out.mux(p)
    for p in vs.encode():
        out.mux(p)
    if aus is not None:
        rate = aus.rate
        samples = int(rate * n / FPS)
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / rate)).astype(np.float32)
        fmt = aus.codec_context.codec.audio_formats[0].name
        step = aus.codec_context.frame_size or 1024
        for i in range(0, samples, step):
            chunk = tone[i:i + step]
            if fmt.startswith("s16"):
                chunk = (chunk * 32767).astype(np.int16)
            channels = aus.codec_context.channels
            planes = np.repeat(chunk[None], channels, 0) if fmt.endswith("p") else np.repeat(chunk, channels)[None]
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(planes), format=fmt, layout=layout)
            af.sample_rate, af.pts = rate, i + round(start * rate / FPS)  # in step with the video
            for p in aus.encode(af):
                out.mux(p)
        for p in aus.encode():
            out.mux(p)
    out.close()
    return path


def read_video(path, alpha=False):
    """(frames uint8 [n,H,W,3|4], fps, audio codec or None, audio seconds)."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        fps = vs.average_rate
        if alpha and vs.codec_context.name == "vp9":
            dec = av.CodecContext.create("libvpx-vp9", "r")  # ffmpeg's own vp9 decoder drops the alpha plane
            frames = [f.to_ndarray(format="rgba") for p in c.demux(vs) for f in dec.decode(p)]
        else:
            frames = [f.to_ndarray(format="rgba" if alpha else "rgb24") for f in c.decode(vs)]
    with av.open(str(path)) as c:
        a = c.streams.audio[0] if c.streams.audio else None
        codec = a.codec_context.name if a else None
        secs = sum(f.samples / f.sample_rate for f in c.decode(a)) if a else 0.0
    return np.stack(frames), fps, codec, secs


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4")


@pytest.mark.parametrize("suffix,audio", [(".webm", "opus"), (".mov", "aac")])
def test_cli_video_keeps_size_rate_audio_and_cuts_the_subject(clip, tmp_path, suffix, audio):
    dest = tmp_path / f"cut{suffix}"
    masks = tmp_path / "mask.mp4"
    assert cli.main(["--source", str(clip), "--dest", str(dest), "--mask-video", str(masks),
                     "--png-dir", str(tmp_path / "png"), "--no-progress"]) == 0
    frames, fps, codec, secs = read_video(dest, alpha=True)
    src, src_fps, _, src_secs = read_video(clip)
    assert frames.shape == (10, 96, 128, 4) and fps == src_fps == FPS
    assert codec == audio and abs(secs - src_secs) < 0.1  # copied (mov) or re-encoded to opus (webm)
    a = frames[..., 3].astype(float) / 255
    assert a[:, 36:60, :].max() > 0.9  # the square is the subject...
    assert a[:, :10, :10].max() < 0.2 and a[:, -10:, :].max() < 0.2  # ...the background is transparent
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert len(pngs) == 10
    from PIL import Image

    first = np.asarray(Image.open(pngs[0]))
    assert first.shape == (96, 128, 4) and np.abs(first[..., 3].astype(int) - frames[0, ..., 3]).mean() < 8
    m, mfps, mcodec, _ = read_video(masks)
    assert m.shape == (10, 96, 128, 3) and mfps == FPS and mcodec is None
    assert np.abs(m[..., 0].astype(int) - frames[..., 3]).mean() < 8  # the same mask as the alpha


def test_a_rotated_phone_video_is_cut_out_upright(tmp_path):
    """A display rotation (counter-clockwise degrees) turns the frames as players show them; the
    output is written upright, so it plays the same way as the source."""
    src = make_clip(tmp_path / "phone.mp4", n=4, audio=None, rotation=90)
    with av.open(str(src)) as c:
        assert next(c.decode(video=0)).rotation == 90
    dest = tmp_path / "cut.mov"
    info = cut_out_video(src, dest, VideoOptions(temporal=0.0))
    assert info["size"] == [96, 128] and info["turned"] == 90
    frames, _, _, _ = read_video(dest, alpha=True)
    assert frames.shape == (4, 128, 96, 4)
    # the sliding square (rows 30..66 of the stored frame) ends up in columns 30..66: a CCW turn
    a = frames[..., 3].astype(float) / 255
    assert a[:, :, 36:60].max() > 0.9 and a[:, :, :10].max() < 0.2 and a[:, :, -10:].max() < 0.2
    square = np.rot90(read_video(src)[0], 1, axes=(1, 2))[..., 0] > 200  # the source turned CCW by hand
    assert ((a > 0.5) == square).mean() > 0.97


@pytest.mark.parametrize("suffix", [".webm", ".mov", ".mp4"])
def test_a_variable_rate_clip_keeps_every_frames_time(tmp_path, suffix):
    """Frames of a variable-rate clip (a phone's, a screen recording's) keep their timestamps, so
    the cut-out stays in step with the audio instead of being spread at the average rate."""
    src = tmp_path / "vfr.mp4"
    out = av.open(str(src), mode="w")
    vs = out.add_stream("libx264", rate=25)
    vs.width, vs.height, vs.pix_fmt, vs.time_base = 128, 96, "yuv420p", Fraction(1, 1000)
    times_ms = [0, 40, 80, 200, 240, 400, 440, 480, 800]
    for i, t in enumerate(times_ms):
        img = np.full((96, 128, 3), 60, np.uint8)
        img[30:66, 20 + 5 * i:56 + 5 * i] = (230, 200, 60)
        f = av.VideoFrame.from_ndarray(img, format="rgb24")
        f.pts, f.time_base = t, Fraction(1, 1000)
        for p in vs.encode(f):
            out.mux(p)
    for p in vs.encode():
        out.mux(p)
    out.close()
    dest = tmp_path / f"cut{suffix}"
    cut_out_video(src, dest, VideoOptions(cutout=CutoutOptions(background=parse_background("white"))
                                          if suffix == ".mp4" else CutoutOptions(), temporal=0.0))
    with av.open(str(dest)) as c:
        got = [round(float(f.pts * f.time_base) * 1000) for f in c.decode(video=0)]
    assert got == times_ms


def test_chunks_give_the_same_masks_as_the_whole_clip(clip, tmp_path, monkeypatch):
    """Chunk boundaries are invisible: each chunk is smoothed with its neighbours' context."""
    import cutout.video as V

    whole, chunked = tmp_path / "whole.mov", tmp_path / "chunked.mov"
    cut_out_video(clip, whole, VideoOptions())
    monkeypatch.setattr(V, "CHUNK_PIXELS", 1)  # 4-frame chunks
    cut_out_video(clip, chunked, VideoOptions())
    a, _, _, _ = read_video(whole, alpha=True)
    b, _, _, _ = read_video(chunked, alpha=True)
    assert np.array_equal(a, b)


def test_bad_video_arguments_are_refused_and_nothing_is_overwritten(clip, tmp_path):
    with pytest.raises(VideoError, match="has no alpha channel"):
        cut_out_video(clip, tmp_path / "x.mp4", VideoOptions())
    with pytest.raises(VideoError, match="unknown video type"):
        cut_out_video(clip, tmp_path / "x.avi", VideoOptions())
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(VideoError, match="not a readable video"):
        cut_out_video(tmp_path / "bad.mp4", tmp_path / "y.webm", VideoOptions())
    keep = tmp_path / "keep.webm"
    keep.write_bytes(b"mine")
    assert cli.main(["--source", str(clip), "--dest", str(keep), "--no-progress"]) == 2
    assert keep.read_bytes() == b"mine"
    assert not list(tmp_path.glob(".*part*"))  # no temporary left behind
    # a flattened mp4 on a colour, without audio in the source
    silent = make_clip(tmp_path / "silent.webm", n=4, audio=None)
    assert cli.main(["--source", str(silent), "--dest", str(tmp_path / "flat.mp4"), "--background", "white",
                     "--temporal", "colour", "--no-progress"]) == 0
    flat, _, codec, _ = read_video(tmp_path / "flat.mp4")
    assert flat.shape == (4, 96, 128, 3) and codec is None and flat[:, :8, :8].min() > 200


def test_odd_and_tiny_frame_sizes_keep_their_size(tmp_path):
    odd = make_clip(tmp_path / "odd.webm", n=4, size=(97, 129), audio=None)
    # h264's usual 4:2:0 cannot hold an odd size: the mp4 (and the mask video) keep it in 4:4:4
    assert cli.main(["--source", str(odd), "--dest", str(tmp_path / "odd.mp4"), "--background", "white",
                     "--mask-video", str(tmp_path / "odd_mask.mp4"), "--no-progress"]) == 0
    for name in ("odd.mp4", "odd_mask.mp4"):
        frames, fps, _, _ = read_video(tmp_path / name)
        assert frames.shape == (4, 97, 129, 3) and abs(float(fps) - 12) < 0.01  # WebM times are in ms
    # a few pixels a side: the optical flow works on an enlarged copy (DIS refuses under 12 px)
    tiny = make_clip(tmp_path / "tiny.mkv", n=3, size=(2, 3), audio=None, codec="ffv1", pix_fmt="bgr0")
    assert cli.main(["--source", str(tiny), "--dest", str(tmp_path / "tiny.webm"), "--no-progress"]) == 0
    frames, _, _, _ = read_video(tmp_path / "tiny.webm", alpha=True)
    assert frames.shape == (3, 2, 3, 4)


def test_outputs_never_replace_the_source_each_other_or_earlier_frames(clip, tmp_path):
    import shutil

    src = tmp_path / "mine.mp4"
    shutil.copy(clip, src)
    before = src.read_bytes()
    with pytest.raises(VideoError, match="is the --source video"):
        cut_out_video(src, tmp_path / "mine.mp4", VideoOptions(overwrite=True, cutout=CutoutOptions(
            background=parse_background("white"))))
    with pytest.raises(VideoError, match="is the --source video"):
        cut_out_video(src, tmp_path / "a.webm", VideoOptions(mask_video=src, overwrite=True))
    with pytest.raises(VideoError, match="is also --dest"):
        cut_out_video(src, tmp_path / "a.webm", VideoOptions(mask_video=tmp_path / "a.webm"))
    pngs = tmp_path / "pngs"
    pngs.mkdir()
    (pngs / "000000.png").write_bytes(b"mine")
    assert cli.main(["--source", str(src), "--dest", str(tmp_path / "b.webm"), "--png-dir", str(pngs),
                     "--no-progress"]) == 2
    assert (pngs / "000000.png").read_bytes() == b"mine" and not (tmp_path / "b.webm").exists()
    assert src.read_bytes() == before
    # with --overwrite the earlier frames are replaced, as asked
    assert cli.main(["--source", str(src), "--dest", str(tmp_path / "b.webm"), "--png-dir", str(pngs),
                     "--overwrite", "--temporal", "off", "--no-progress"]) == 0
    assert (pngs / "000000.png").read_bytes()[:4] == b"\x89PNG"


def _damage_one_packet(src, dst, index=5):
    """``src``'s video packets copied into ``dst`` (.mkv), packet ``index`` replaced by bytes whose
    first NAL length runs past the packet: what a damaged stretch of a file gives the H.264 decoder."""
    with av.open(str(src)) as inp, av.open(str(dst), mode="w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        for i, packet in enumerate(p for p in inp.demux(vin) if p.size):
            if i == index:
                bad = av.Packet(b"\xff\xff\xff\xff" + bytes(range(256)) * 4)
                bad.pts, bad.dts, bad.time_base = packet.pts, packet.dts, packet.time_base
                packet = bad
            packet.stream = vout
            out.mux(packet)
    return dst


def test_a_damaged_packet_is_left_out_and_said_the_rest_is_cut_out(clip, tmp_path, capsys):
    damaged = _damage_one_packet(clip, tmp_path / "damaged.mkv")
    assert cli.main(["--source", str(damaged), "--dest", str(tmp_path / "out.webm"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "damaged packet(s) could not be decoded" in err and str(damaged) in err
    frames, _, _, _ = read_video(tmp_path / "out.webm", alpha=True)
    assert 5 <= len(frames) < 10  # the frames before and after the damage (a P-frame may go with it)


def test_a_video_dest_in_a_new_folder_is_made_and_an_unwritable_one_is_refused_early(clip, tmp_path, capsys):
    assert cli.main(["--source", str(clip), "--dest", str(tmp_path / "new" / "sub" / "out.webm"),
                     "--temporal", "off", "--no-progress"]) == 0
    assert (tmp_path / "new" / "sub" / "out.webm").is_file()
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    capsys.readouterr()
    assert cli.main(["--source", str(clip), "--dest", str(blocker / "out.webm"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"--dest {blocker / 'out.webm'}: cannot be written" in err and "Traceback" not in err
    assert blocker.read_text() == "not a folder"


def test_a_size_change_mid_stream_is_scaled_to_the_first_size_and_said(tmp_path, capsys):
    joined = tmp_path / "joined.ts"  # two clips joined byte by byte, as cat does: 128x96 then 160x120
    a = make_clip(tmp_path / "a.ts", n=4, size=(96, 128), audio=None, codec="libx264", container="mpegts")
    b = make_clip(tmp_path / "b.ts", n=4, size=(120, 160), audio=None, codec="libx264", container="mpegts", start=4)
    joined.write_bytes(a.read_bytes() + b.read_bytes())
    assert cli.main(["--source", str(joined), "--dest", str(tmp_path / "out.webm"), "--no-progress"]) == 0
    assert "4 frame(s) were scaled to the first frame's 128x96" in capsys.readouterr().err
    frames, _, _, _ = read_video(tmp_path / "out.webm", alpha=True)
    assert frames.shape == (8, 96, 128, 4)


def test_frames_without_times_are_a_frame_apart(tmp_path):
    raw = make_clip(tmp_path / "raw.h264", n=6, audio=None, codec="libx264", container="h264")  # no timestamps
    assert cli.main(["--source", str(raw), "--dest", str(tmp_path / "out.webm"), "--temporal", "off",
                     "--no-progress"]) == 0
    with av.open(str(tmp_path / "out.webm")) as c:
        times = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    assert np.allclose(np.diff(times), 1 / 25, atol=0.002)  # FFmpeg's 25 fps for a stream without a rate


def test_an_output_that_fails_at_the_end_leaves_every_earlier_file_as_it_was(clip, tmp_path, monkeypatch):
    from cutout.video import writer as W

    keep = tmp_path / "keep.webm"
    keep.write_bytes(b"mine")
    pngs = tmp_path / "pngs"
    real_finish = W.VideoWriter.finish

    def finish(self, source):
        if self.what == "--mask-video":
            raise VideoError("--mask-video x: writing failed (disk full)")
        return real_finish(self, source)

    monkeypatch.setattr(W.VideoWriter, "finish", finish)
    with pytest.raises(VideoError, match="disk full"):
        cut_out_video(clip, keep, VideoOptions(mask_video=tmp_path / "m.mp4", png_dir=pngs, overwrite=True,
                                               temporal=0.0))
    assert keep.read_bytes() == b"mine"  # --dest was complete, but is not put in place alone
    assert not (tmp_path / "m.mp4").exists() and not pngs.exists()  # the folder it made is gone again
    assert not list(tmp_path.glob(".*part*"))
    # with --overwrite, a failed run leaves the earlier run's frame PNGs as they were
    monkeypatch.setattr(W.VideoWriter, "finish", real_finish)
    cut_out_video(clip, tmp_path / "first.webm", VideoOptions(png_dir=pngs, temporal=0.0))
    before = {p.name: p.read_bytes() for p in pngs.iterdir()}
    assert len(before) == 10
    monkeypatch.setattr(W.VideoWriter, "finish", finish)
    with pytest.raises(VideoError, match="disk full"):
        cut_out_video(clip, tmp_path / "second.webm", VideoOptions(mask_video=tmp_path / "m.mp4", png_dir=pngs,
                                                                   overwrite=True, cutout=CutoutOptions(
                                                                       background=parse_background("red"))))
    assert {p.name: p.read_bytes() for p in pngs.iterdir()} == before


def test_options_a_video_does_not_use_and_a_single_photo_are_refused_in_one_line(clip, tmp_path, capsys):
    out = tmp_path / "out.webm"
    assert cli.main(["--source", str(clip), "--dest", str(out), "--crop", "0.1", "--report", str(tmp_path / "r.json"),
                     "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--crop, --report: for folders of images only" in err
    assert cli.main(["--source", str(clip), "--dest", str(out), "--temporal-strength", "nan", "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == "cli.py: --temporal-strength nan: expected 0..1"
    photo = tmp_path / "photo.jpg"
    from PIL import Image

    Image.new("RGB", (32, 24), (200, 10, 10)).save(photo)
    assert cli.main(["--source", str(photo), "--dest", str(tmp_path / "p"), "--no-progress"]) == 2
    assert "is one image; --source takes a folder of images" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("suffix", [".mp4", ".mov"])
def test_an_hd_clip_keeps_its_colour_matrix_and_pixel_aspect(tmp_path, suffix):
    """A BT.709 source is written with BT.709 and tagged so (players would shift its colours otherwise);
    an anamorphic source keeps its pixel aspect ratio."""
    from cutout.video.writer import VideoWriter

    src = make_clip(tmp_path / "hd.mp4", n=3, audio=None, bt709=True, sar=Fraction(2, 1))
    green = np.zeros((96, 128, 3), np.uint8)
    green[..., 1] = 199
    out = tmp_path / f"out{suffix}"
    with av.open(str(src)) as c:
        wr = VideoWriter(av, out, "--dest", c.streams.video[0], None, alpha=False, size=(128, 96))
        for t in range(3):
            wr.write(green, t)
        wr.finish(src)
        wr.commit()
    with av.open(str(out)) as c:
        vs = c.streams.video[0]
        assert vs.codec_context.colorspace == 1 and vs.sample_aspect_ratio == Fraction(2, 1)
        px = next(c.decode(vs)).to_ndarray(format="rgb24")  # PyAV converts with the tagged matrix
    assert np.abs(px.astype(int) - green).max() <= 3


@pytest.mark.parametrize("suffix", [".webm", ".mp4"])
def test_a_clip_that_starts_late_is_written_from_zero_with_its_sound_in_step(tmp_path, suffix):
    late = make_clip(tmp_path / "late.ts", n=6, codec="libx264", container="mpegts", start=12 * 600,
                     audio="mp2")  # a broadcast cut: its times start at 600 s
    out = tmp_path / f"out{suffix}"
    opts = ["--background", "white"] if suffix == ".mp4" else []
    assert cli.main(["--source", str(late), "--dest", str(out), "--temporal", "off", "--no-progress"] + opts) == 0
    with av.open(str(out)) as c:
        times = [float(f.pts * f.time_base) for f in c.decode(c.streams.video[0])]
        assert c.duration / 1e6 < 2  # not 600 s
    with av.open(str(out)) as c:
        first_sound = next(float(f.pts * f.time_base) for f in c.decode(c.streams.audio[0]))
    assert times[0] == 0 and np.allclose(np.diff(times), 1 / 12, atol=0.002)
    assert abs(first_sound) < 0.05


@pytest.mark.parametrize("layout", ["5.1", "5.1(side)"])
def test_surround_sound_keeps_its_channels_when_re_encoded(tmp_path, layout):
    # AAC 5.1 -> Opus 5.1 in WebM; "5.1(side)", AC-3's and FLAC's name for it, which libopus refuses
    src = make_clip(tmp_path / "surround.mp4", n=6, layout=layout)
    out = tmp_path / "out.webm"
    assert cli.main(["--source", str(src), "--dest", str(out), "--temporal", "off", "--no-progress"]) == 0
    with av.open(str(out)) as c:
        a = c.streams.audio[0]
        assert a.codec_context.name == "opus" and a.layout.name == "5.1"


def test_video_options_on_a_folder_job_are_refused_in_one_line(tmp_path, capsys):
    from PIL import Image

    src = tmp_path / "photos"
    src.mkdir()
    Image.new("RGB", (32, 24)).save(src / "a.png")
    assert cli.main(["--source", str(src), "--dest", str(tmp_path / "out"), "--mask-video", str(tmp_path / "m.mp4"),
                     "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == ("cli.py: --mask-video: for a video file --source only; a folder of "
                                               "images does not use it")
    assert not (tmp_path / "out").exists()
