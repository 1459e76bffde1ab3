"""Uploaded bytes -> IMAGE tensor, and result tensors -> encoded bytes.

Decoding follows ComfyUI's LoadImage (EXIF orientation applied, 32-bit integer images
scaled, converted to RGB, ``uint8 / 255`` as float32), so a photo sent to the API and the
same photo loaded in a graph give the network bit-identical input. Only the first frame of
an animated file is used.
"""

from __future__ import annotations

import io

import numpy as np
import torch

from .errors import ApiError


def decode(fp, name: str, max_pixels: int) -> tuple[torch.Tensor, np.ndarray]:
    """(IMAGE ``[1,H,W,3]`` float32, the same pixels as ``uint8 [H,W,3]``) from a file object."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        img = Image.open(fp)
    except UnidentifiedImageError:
        raise ApiError(415, "not_an_image", f"'{name}' is not an image this server can read "
                       "(PNG, JPEG, WebP, GIF, BMP, TIFF, ...)", file=name) from None
    except Image.DecompressionBombError as e:
        raise ApiError(413, "too_many_pixels", f"'{name}': {e}", file=name) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ApiError(400, "corrupt_image", f"'{name}' could not be opened as an image: {e}", file=name) from None
    w, h = img.size
    if w * h > max_pixels:
        raise ApiError(413, "too_many_pixels", f"'{name}' is {w}x{h} = {w * h / 1e6:.1f} megapixels; the limit "
                       f"is {max_pixels / 1e6:.1f} megapixels (CUTOUT_API_MAX_PIXELS)", file=name,
                       width=w, height=h, max_pixels=max_pixels)
    if w == 0 or h == 0:
        raise ApiError(400, "corrupt_image", f"'{name}' has no pixels ({w}x{h})", file=name)
    try:
        img.seek(0)
        img.load()
        img = ImageOps.exif_transpose(img)
        if img.mode == "I":
            img = img.point(lambda v: v * (1 / 255))
        rgb = img.convert("RGB")
        pixels = np.array(rgb, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ApiError(400, "corrupt_image", f"'{name}' is damaged or truncated and could not be decoded: {e}",
                       file=name) from None
    tensor = torch.from_numpy(pixels.astype(np.float32) / 255.0).unsqueeze(0)
    return tensor, pixels


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Float 0..1 -> uint8, rounded (not truncated)."""
    return (x.clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()


def encode(pixels: np.ndarray, fmt: str) -> bytes:
    """uint8 ``[H,W]`` (grey), ``[H,W,3]`` or ``[H,W,4]`` -> PNG / WebP (lossless) / JPEG bytes."""
    from PIL import Image

    img = Image.fromarray(pixels)
    buf = io.BytesIO()
    if fmt == "png":
        img.save(buf, "PNG", compress_level=4)
    elif fmt == "webp":
        img.save(buf, "WEBP", lossless=True, exact=True, quality=80, method=4)  # exact: keep colours under alpha 0
    elif fmt == "jpeg":
        if img.mode == "RGBA":
            img = img.convert("RGB")
        img.save(buf, "JPEG", quality=92)
    else:  # params.parse refuses anything else
        raise ValueError(fmt)
    return buf.getvalue()
