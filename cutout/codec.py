"""Image files in and out: THE decoder and THE encoder of the CLI, the folder nodes and the HTTP API.

``decode_image`` opens a file (a path or a file object) the same way for every front door:
EXIF orientation applied; 16-bit samples scaled by 65535; float samples (e.g. a float32 TIFF)
read as 0..1 (or 0..255 / 0..65535 when their range says so); CMYK, palette, grey and
grey+alpha converted to RGB; the file's own alpha kept (palette transparency included); the
colour profile kept when it is an RGB one; of a multi-frame file (animated GIF, multi-page
TIFF) the first frame, with a note saying so. ``encode_image`` writes PNG / lossless WebP /
JPEG with the caller's ``EncodeSettings``. Pillow is imported inside the functions.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib
from dataclasses import dataclass

import numpy as np
import torch

log = logging.getLogger("comfyui_cutout")

ENCODE_FORMATS = ("png", "webp", "jpg")
_ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")


class DecodeError(Exception):
    """A file that could not be decoded. ``kind``: not_an_image | too_many_pixels | corrupt."""

    def __init__(self, kind: str, reason: str):
        self.kind, self.reason = kind, reason
        super().__init__(reason)


@dataclass
class DecodedImage:
    rgb: np.ndarray  # uint8 [H,W,3]
    alpha: np.ndarray | None  # uint8 [H,W] when the file has an alpha channel (palette transparency too)
    icc: bytes | None = None  # the file's RGB colour profile, carried over to the output
    notes: tuple[str, ...] = ()  # what the caller should tell the user (e.g. only page 1 of a TIFF was used)

    def frame(self) -> torch.Tensor:
        """float32 ``[H,W,3]`` 0..1 (or ``[H,W,4]`` with the file's alpha): the pipeline's input."""
        rgb = torch.from_numpy(np.ascontiguousarray(self.rgb))
        if self.alpha is not None:
            rgb = torch.cat([rgb, torch.from_numpy(np.ascontiguousarray(self.alpha))[..., None]], -1)
        return rgb.to(torch.float32).div_(255.0)


def _first_line(e: Exception) -> str:
    msg = str(e).splitlines()[0][:200] if str(e) else ""
    return f"{type(e).__name__}{': ' + msg if msg else ''}"


def _scaled_to_8bit(a: np.ndarray, top: float) -> np.ndarray:
    return np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _grey_8bit(im):
    """A 16-bit, 32-bit integer or float single-channel image as 8-bit grey ('L')."""
    from PIL import Image

    a = np.asarray(im)
    if im.mode.startswith("I;16"):
        top = 65535.0  # 16 bits per sample: full scale is 65535 whatever the values
    elif im.mode == "F":
        a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        peak = float(a.max()) if a.size else 0.0
        top = 1.0 if peak <= 1.0 else 255.0 if peak <= 255.0 else 65535.0
    else:  # 'I' (32-bit integers): 8-, 16- or 32-bit data, by range
        a = a.astype(np.float64)
        peak = float(a.max()) if a.size else 0.0
        top = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else 2.0 ** 31 - 1
    return Image.fromarray(_scaled_to_8bit(a.astype(np.float64), top), "L")


def decode_image(source, name: str = "image", max_pixels: int | None = None) -> DecodedImage:
    """Open one image file (path or binary file object); raises ``DecodeError``."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        im = Image.open(source)
    except UnidentifiedImageError:
        raise DecodeError("not_an_image", f"'{name}' is not an image this can read "
                          "(PNG, JPEG, WebP, GIF, BMP, TIFF, ...)") from None
    except Image.DecompressionBombError as e:
        raise DecodeError("too_many_pixels", f"'{name}': {e}") from None
    except Exception as e:
        raise DecodeError("corrupt", f"'{name}' could not be opened as an image ({_first_line(e)})") from None
    try:
        w, h = im.size
        if max_pixels is not None and w * h > max_pixels:
            raise DecodeError("too_many_pixels", f"'{name}' is {w}x{h} = {w * h / 1e6:.1f} megapixels; the "
                              f"limit is {max_pixels / 1e6:.1f} megapixels")
        if w == 0 or h == 0:
            raise DecodeError("corrupt", f"'{name}' has no pixels ({w}x{h})")
        notes = []
        frames = getattr(im, "n_frames", 1) or 1
        if frames > 1:
            what = "page" if im.format == "TIFF" else "frame"
            notes.append(f"{im.format or 'multi-frame'} file with {frames} {what}s; only the first is used")
        try:
            im.seek(0)
            im.load()
            # an RGB profile only: a CMYK or grey profile would be wrong on the RGB(A) output
            icc = (im.info.get("icc_profile") or None) if im.mode in ("RGB", "RGBA", "RGBX", "P") else None
            ImageOps.exif_transpose(im, in_place=True)  # no copy of an upright photo
            if im.mode.startswith("I") or im.mode == "F":
                im = _grey_8bit(im)
            if im.mode in _ALPHA_MODES or (im.mode == "P" and "transparency" in im.info):
                rgba = np.array(im if im.mode == "RGBA" else im.convert("RGBA"))
                rgb, alpha = np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3])
            else:  # convert() of an RGB image is a copy: skipped
                rgb, alpha = np.array(im if im.mode == "RGB" else im.convert("RGB")), None
        except DecodeError:
            raise
        except MemoryError:
            raise
        except Exception as e:  # anything Pillow raises on a damaged file
            raise DecodeError("corrupt", f"'{name}' is damaged or truncated and could not be decoded "
                              f"({_first_line(e)})") from None
    finally:
        im.close()
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise DecodeError("corrupt", f"'{name}' has no pixels")
    for note in notes:
        log.warning("Cutout: %s: %s", name, note)
    return DecodedImage(rgb, alpha, icc, tuple(notes))


def to_uint8(x) -> np.ndarray:
    """Float 0..1 (tensor or array) -> uint8, rounded to nearest; the one float -> 8-bit step of every door."""
    if isinstance(x, torch.Tensor):
        return x.float().mul(255.0).add_(0.5).clamp_(0, 255).to(torch.uint8).cpu().numpy()
    return np.clip(np.asarray(x, dtype=np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class EncodeSettings:
    """Speed/size knobs of the encoder; the folder job and the API each have their own (docs/design.md)."""

    png_compress: int = 3  # fast_png: 2-3 Paeth + RLE or 'up' + LZ per image, 1 Paeth + RLE, 4-9 slower
    jpeg_quality: int = 95
    jpeg_subsampling: int | None = None  # None: 4:4:4 from quality 90 up, else 4:2:0
    webp_quality: int = 25  # lossless: Pillow's effort; with method 0 about as fast as PNG level 1
    webp_method: int = 0


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _with_icc(data: bytes, icc: bytes | None, colour: bool) -> bytes:
    """The colour profile chunk goes right after IHDR (8 + 25 bytes)."""
    if not (icc and colour):
        return data
    return data[:33] + _chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(icc)) + data[33:]


def _png_file(pixels: np.ndarray, zdata: bytes) -> bytes:
    """A PNG around an already deflated (zlib) stream of filtered rows."""
    h, w = pixels.shape[:2]
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[1 if pixels.ndim == 2 else pixels.shape[2]]
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0))
            + _chunk(b"IDAT", zdata) + _chunk(b"IEND", b""))


def _up_rows(rows: np.ndarray, above: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """PNG filter 2 ('up') of uint8 rows ``[n, W*C]`` whose previous rows are ``above``, with their
    filter byte: ``[n, W*C+1]``, written into ``out`` when given."""
    if out is None:
        out = np.empty((rows.shape[0], rows.shape[1] + 1), np.uint8)
    out[:, 0] = 2
    np.subtract(rows, above, out=out[:, 1:])
    return out


SAMPLE_BAND, SAMPLE_BANDS, SAMPLE_EVERY = 16, 4, 32  # rows per band; at least 4 bands, else 1/32 of the rows


def _up_deflate(filtered: np.ndarray, level: int) -> bytes:
    """The 'up' encoder's deflate: zlib-ng level 5 at ``level`` 2, libdeflate level 6 at 3 (smaller, slower)."""
    import imagecodecs

    if level == 2 and imagecodecs.ZLIBNG.available:
        return imagecodecs.zlibng_encode(filtered, level=5)
    if imagecodecs.DEFLATE.available:
        return imagecodecs.deflate_encode(filtered, level=5 if level == 2 else 6)
    return zlib.compress(filtered, 6)


def png_choice(pixels: np.ndarray, level: int = 2) -> str:
    """Which of the default's two encoders suits this image: 'paeth' (Paeth + zlib RLE: noisy photos) or
    'up' ('up' + LZ: smoother content, e.g. JPEG-decoded or upscaled photos, whose filtered rows repeat),
    by deflating a sample of rows both ways: bands spread over the image, the empty (all transparent)
    ones left out (docs/dataset.md#speed)."""
    import imagecodecs

    h = pixels.shape[0]
    rows = pixels.reshape(h, -1)
    want = max(SAMPLE_BANDS, h // (SAMPLE_BAND * SAMPLE_EVERY))
    starts = np.unique(np.linspace(1, max(1, h - SAMPLE_BAND), 4 * want).astype(int))
    starts = [s for s in starts if rows[s:s + SAMPLE_BAND].any()]
    if not starts:
        return "paeth"
    starts = [starts[i] for i in np.unique(np.linspace(0, len(starts) - 1, want).astype(int))]
    idx = np.unique((np.asarray(starts)[:, None] + np.arange(SAMPLE_BAND)).ravel())
    idx = idx[idx < h]
    F, S = imagecodecs.PNG.FILTER, imagecodecs.PNG.STRATEGY
    # Paeth: libpng on the bands as one image (each band's first row gets 'sub', a little dearer)
    paeth = len(imagecodecs.png_encode(pixels[idx], level=1, strategy=S.RLE, filter=F.PAETH))
    up = len(_up_deflate(_up_rows(rows[idx], rows[idx - 1]), level))
    return "up" if up < paeth else "paeth"


def fast_png(pixels: np.ndarray, level: int, icc: bytes | None = None) -> bytes | None:
    """Lossless PNG bytes through imagecodecs, or None when imagecodecs is not installed (Pillow then
    encodes). ``level`` 3 (the default) and 2: per image, of two encoders the one that deflates a sample
    of rows smaller (``png_choice``): the Paeth filter on every row with zlib's run-length strategy
    (libpng; a noisy photo is mostly short runs after Paeth), or the 'up' filter on every row with
    libdeflate level 6 (level 3) or zlib-ng level 5 (level 2, a little bigger, faster); 1: always the first;
    4-9: every filter tried per row and zlib's filtered strategy at that level, Pillow's way (slower);
    0: stored. Sizes and CPU: docs/dataset.md#speed."""
    try:
        import imagecodecs
    except ImportError:
        return None
    pixels = np.ascontiguousarray(pixels)
    F, S = imagecodecs.PNG.FILTER, imagecodecs.PNG.STRATEGY
    rows = pixels.reshape(pixels.shape[0], -1)
    if level <= 0:  # stored (libpng's level 0 overflows its buffer on 1 px wide images)
        data = _png_file(pixels, zlib.compress(np.hstack([np.zeros((rows.shape[0], 1), np.uint8), rows]), 0))
    elif level <= 3 and (level == 1 or pixels.shape[0] < 2 or png_choice(pixels, level) == "paeth"):
        data = imagecodecs.png_encode(pixels, level=1, strategy=S.RLE, filter=F.PAETH)  # RLE ignores the level
    elif level <= 3:
        filtered = np.empty((rows.shape[0], rows.shape[1] + 1), np.uint8)
        filtered[0, 0], filtered[0, 1:] = 0, rows[0]  # the first row has nothing above: no filter
        _up_rows(rows[1:], rows[:-1], out=filtered[1:])
        data = _png_file(pixels, _up_deflate(filtered, level))
    else:
        data = imagecodecs.png_encode(pixels, level=level, strategy=S.FILTERED, filter=F.ALL)
    return _with_icc(data, icc, pixels.ndim == 3)


def encode_image(pixels: np.ndarray, fmt: str, settings: EncodeSettings = EncodeSettings(),
                 icc: bytes | None = None) -> bytes:
    """uint8 ``[H,W]`` (grey), ``[H,W,3]`` or ``[H,W,4]`` -> file bytes in ``fmt`` (png | webp | jpg/jpeg).

    JPEG has no alpha: an RGBA image must be opaque (its alpha is then dropped)."""
    from PIL import Image

    fmt = "jpg" if fmt == "jpeg" else fmt
    if fmt not in ENCODE_FORMATS:
        raise ValueError(f"format '{fmt}' unknown; expected one of {', '.join(ENCODE_FORMATS)}")
    if fmt == "jpg" and pixels.ndim == 3 and pixels.shape[-1] == 4:
        if not (pixels[..., 3] == 255).all():
            raise ValueError("JPEG has no alpha channel: put the cut-out on an opaque background first")
        pixels = pixels[..., :3]
    if fmt == "png":
        data = fast_png(pixels, settings.png_compress, icc)
        if data is not None:
            return data
    im = Image.fromarray(np.ascontiguousarray(pixels))
    buf = io.BytesIO()
    extra = {"icc_profile": icc} if icc and im.mode != "L" else {}
    if fmt == "png":
        im.save(buf, "PNG", compress_level=settings.png_compress, **extra)
    elif fmt == "webp":  # exact: keep the colours under alpha 0
        im.save(buf, "WEBP", lossless=True, quality=settings.webp_quality, method=settings.webp_method, exact=True,
                **extra)
    else:
        sub = settings.jpeg_subsampling
        if sub is None:
            sub = 0 if settings.jpeg_quality >= 90 else 2
        im.save(buf, "JPEG", quality=settings.jpeg_quality, subsampling=sub, **extra)
    return buf.getvalue()
