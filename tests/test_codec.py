"""The one decoder and encoder (cutout/codec.py) on the file kinds users send."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from cutout.codec import DecodeError, EncodeSettings, decode_image, encode_image, to_uint8


def _save(im: Image.Image, fmt: str, **kw) -> io.BytesIO:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    buf.seek(0)
    return buf


RAMP = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1))  # 8 x 64, 0..252


def test_16_bit_grey_is_scaled_by_65535():
    d = decode_image(_save(Image.fromarray(RAMP.astype(np.uint16) * 257), "PNG"))
    assert d.alpha is None and d.rgb.shape == (8, 64, 3)
    assert np.abs(d.rgb[..., 0].astype(int) - RAMP).max() <= 1  # not blown out to white
    dark = decode_image(_save(Image.fromarray(np.full((4, 4), 200, np.uint16)), "PNG"))
    assert dark.rgb.max() <= 1  # 200 of 65535 is nearly black, not 200 of 255


def test_float_tiff_is_read_as_0_to_1():
    d = decode_image(_save(Image.fromarray(RAMP.astype(np.float32) / 255.0), "TIFF"))
    assert np.abs(d.rgb[..., 1].astype(int) - RAMP).max() <= 1  # not black
    big = decode_image(_save(Image.fromarray(RAMP.astype(np.float32)), "TIFF"))  # 0..255 floats
    assert np.abs(big.rgb[..., 1].astype(int) - RAMP).max() <= 1


def test_cmyk_palette_la_and_own_alpha():
    cmyk = decode_image(_save(Image.new("CMYK", (10, 6), (0, 255, 255, 0)), "JPEG"))
    assert cmyk.rgb.shape == (6, 10, 3) and cmyk.alpha is None and cmyk.icc is None
    assert cmyk.rgb[..., 0].mean() > 200 and cmyk.rgb[..., 1].mean() < 60  # red
    p = Image.fromarray(RAMP).convert("P")
    d = decode_image(_save(p, "PNG", transparency=p.getpixel((0, 0))))
    assert d.alpha is not None and d.alpha[0, 0] == 0 and d.alpha[0, -1] == 255
    la = Image.merge("LA", (Image.fromarray(RAMP), Image.fromarray(255 - RAMP)))
    d = decode_image(_save(la, "PNG"))
    assert np.array_equal(d.alpha, 255 - RAMP) and np.array_equal(d.rgb[..., 2], RAMP)
    f = d.frame()
    assert f.shape == (8, 64, 4) and abs(float(f[0, 0, 3]) - 1.0) < 1e-6


def test_exif_orientation_is_applied():
    im = Image.fromarray(np.dstack([RAMP] * 3))
    exif = Image.Exif()
    exif[0x0112] = 6
    d = decode_image(_save(im, "JPEG", exif=exif.tobytes()))
    assert d.rgb.shape == (64, 8, 3)


def test_multi_frame_files_use_the_first_frame_and_say_so():
    frames = [Image.fromarray(np.full((6, 6, 3), v, np.uint8)) for v in (10, 200, 90)]
    gif = _save(frames[0], "GIF", save_all=True, append_images=frames[1:])
    d = decode_image(gif, "anim.gif")
    assert d.rgb.mean() < 30 and any("3 frames; only the first is used" in n for n in d.notes)
    tif = _save(frames[1], "TIFF", save_all=True, append_images=[frames[0]])
    d = decode_image(tif, "scan.tif")
    assert d.rgb.mean() > 150 and any("2 pages; only the first" in n for n in d.notes)
    assert decode_image(_save(frames[0], "PNG")).notes == ()


def test_errors_have_a_kind():
    with pytest.raises(DecodeError) as e:
        decode_image(io.BytesIO(b"not an image at all" * 10), "notes.txt")
    assert e.value.kind == "not_an_image" and "notes.txt" in e.value.reason
    good = _save(Image.fromarray(np.dstack([RAMP] * 3)), "PNG").getvalue()
    with pytest.raises(DecodeError) as e:
        decode_image(io.BytesIO(good[: len(good) // 2]), "half.png")
    assert e.value.kind == "corrupt"
    with pytest.raises(DecodeError) as e:
        decode_image(io.BytesIO(good), "big.png", max_pixels=100)
    assert e.value.kind == "too_many_pixels" and "megapixels" in e.value.reason


def test_encoder_formats():
    rgba = np.dstack([np.dstack([RAMP] * 3), 255 - RAMP])
    for fmt in ("png", "webp"):
        back = np.asarray(Image.open(io.BytesIO(encode_image(rgba, fmt))))
        assert np.array_equal(back, rgba), fmt  # lossless, colours under alpha 0 kept
    with pytest.raises(ValueError, match="no alpha"):
        encode_image(rgba, "jpg")
    opaque = rgba.copy()
    opaque[..., 3] = 255
    assert Image.open(io.BytesIO(encode_image(opaque, "jpeg", EncodeSettings(jpeg_quality=80)))).mode == "RGB"
    assert Image.open(io.BytesIO(encode_image(RAMP, "png"))).mode == "L"
    assert to_uint8(np.array([0.0, 0.5 / 255, 1.0, 2.0, -1.0])).tolist() == [0, 1, 255, 255, 0]


def test_folder_job_reports_the_note(tmp_path):
    from cutout.dataset.job import JobOptions, run_job

    src = tmp_path / "src"
    src.mkdir()
    pages = [Image.fromarray(np.full((40, 48, 3), v, np.uint8)) for v in (60, 180)]
    pages[0].save(src / "scan.tif", save_all=True, append_images=pages[1:])
    report = run_job(src, tmp_path / "out", JobOptions())
    assert report.done == ["scan.tif"] and report.notes and "only the first" in report.notes[0][1]
    assert "note: scan.tif" in report.summary() and '"notes"' in report.to_json()


def _cutout_like() -> np.ndarray:
    """A real photo cut out the way the folder job stores it: black under alpha 0, a soft edge band."""
    from pathlib import Path

    with Image.open(Path(__file__).resolve().parents[1] / "samples" / "astronaut.png") as im:
        rgb = np.asarray(im.convert("RGB"))
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    d = np.hypot(yy - h / 2, xx - w / 2) / (0.35 * min(h, w))
    alpha = np.clip((1.15 - d) * 5 * 255, 0, 255).astype(np.uint8)
    out = np.dstack([rgb, alpha])
    out[alpha == 0, :3] = 0
    return out


def _jpeg_decoded(px: np.ndarray) -> np.ndarray:
    """The same cut-out from the photo saved as a camera's JPEG (q92): smoother rows, what 'up' + LZ suits."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(px[..., :3])).save(buf, "JPEG", quality=92)
    with Image.open(buf) as im:
        out = np.dstack([np.asarray(im.convert("RGB")), px[..., 3]])
    out[px[..., 3] == 0, :3] = 0
    return out


def _pillow_6(px: np.ndarray) -> int:
    buf = io.BytesIO()
    Image.fromarray(px).save(buf, "PNG", compress_level=6)
    return len(buf.getvalue())


@pytest.mark.parametrize("level", [0, 1, 2, 3, 4, 6, 9])
def test_png_is_lossless_at_every_level(level):
    pytest.importorskip("imagecodecs")
    px = _cutout_like()
    clear = np.zeros((40, 30, 4), np.uint8)  # nothing to sample: every band is empty
    for pixels in (px, np.ascontiguousarray(px[..., :3]), np.ascontiguousarray(px[..., 3]), _jpeg_decoded(px),
                   np.dstack([px[..., 0], px[..., 3]]), clear, px[:1], px[:, :1]):
        data = encode_image(pixels, "png", EncodeSettings(png_compress=level))
        with Image.open(io.BytesIO(data)) as im:
            assert np.array_equal(np.asarray(im), pixels)


@pytest.mark.parametrize("level", [2, 3])
def test_default_png_picks_the_smaller_encoder_per_image(level):
    """Levels 2 (the default) and 3 deflate a sample of rows both ways (Paeth + zlib RLE, 'up' + LZ): on
    the photo cut out (PNG) Paeth wins, on the same photo decoded from a JPEG 'up' does, and the choice is
    the smaller full file each time (docs/dataset.md#speed)."""
    pytest.importorskip("imagecodecs")
    from cutout.codec import _up_deflate, png_choice

    png = _cutout_like()
    for px, want in ((png, "paeth"), (_jpeg_decoded(png), "up")):
        assert png_choice(px, level) == want
        ours = len(encode_image(px, "png", EncodeSettings(png_compress=level)))
        paeth = len(encode_image(px, "png", EncodeSettings(png_compress=1)))
        rows = px.reshape(px.shape[0], -1)
        filtered = np.hstack([np.full((rows.shape[0], 1), 2, np.uint8), rows - np.vstack([0 * rows[:1], rows[:-1]])])
        up = len(_up_deflate(filtered, level)) + 57  # + signature, IHDR, IDAT and IEND
        assert (up < paeth) == (want == "up")
        assert abs(ours - min(paeth, up)) <= 8


def test_default_png_is_as_small_as_pillows_level_6():
    """Against Pillow's level 6 (what rembg writes) and the older defaults on real photos cut out: within
    2 % of Pillow's on the PNG photo and on its JPEG-decoded twin (where Paeth + RLE alone was 8 % over)."""
    ic = pytest.importorskip("imagecodecs")
    png = _cutout_like()
    jpg = _jpeg_decoded(png)
    for px in (png, jpg):
        assert len(encode_image(px, "png")) <= 1.02 * _pillow_6(px)
    old = len(ic.png_encode(png, level=2, filter=ic.PNG.FILTER.UP))  # one 'up' filter, zlib level 2
    assert len(encode_image(png, "png")) < 0.95 * old
    assert len(encode_image(jpg, "png")) < 0.95 * len(encode_image(jpg, "png", EncodeSettings(png_compress=1)))
