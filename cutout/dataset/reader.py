"""Listing a dataset folder and decoding one file.

``list_images`` walks a folder (optionally recursively) in a stable order and returns the
images with their paths relative to the folder, plus the entries it refused (a symlink that
leads outside the folder, a name with a newline). ``decode`` opens one file with the pack's
decoder (``codec.decode_image``: EXIF, 16-bit, float, palette, the file's own alpha, ICC); any
failure becomes a ``ReadError`` with a short reason, so a bad file is reported, never fatal.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from ..imaging.tensors import unit_frame
from ..video import VIDEO_SUFFIXES

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
# image types people keep in datasets that this pack does not read: reported, never silently left out
UNREAD_IMAGE_EXTENSIONS = (".heic", ".heif", ".avif", ".jxl", ".svg", ".psd", ".exr", ".dng", ".cr2", ".nef",
                           ".arw", ".raw")
DEFAULT_PATTERN = ";".join(f"*{e}" for e in IMAGE_EXTENSIONS)
CAPTION_EXTENSIONS = (".txt", ".caption", ".json")
# The folder job's pixel limit: with job.PIXEL_BUDGET_IMAGES it keeps the job's peak memory well
# under 4 GB (measured in docs/dataset.md).
DEFAULT_MAX_MEGAPIXELS = 24.0


class ReadError(Exception):
    """A file that could not be decoded; ``str(e)`` is the reason shown in the report."""


@dataclass(frozen=True)
class Item:
    """One image of the source folder: where it is, and its path relative to the folder."""

    path: Path
    rel: PurePosixPath


@dataclass(frozen=True)
class Problem:
    rel: str
    reason: str


@dataclass
class Decoded:
    item: Item
    rgb: np.ndarray  # uint8 [H,W,3]
    alpha: np.ndarray | None  # uint8 [H,W] when the file had an alpha channel
    icc: bytes | None = None  # the file's colour profile, carried over to the output
    notes: tuple[str, ...] = ()  # e.g. 'only page 1 of a multi-page TIFF was used' (goes into the report)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) as stored after EXIF orientation."""
        return self.rgb.shape[1], self.rgb.shape[0]


def _patterns(pattern: str) -> list[str]:
    parts = [p.strip().lower() for p in re.split(r"[;,|]", pattern or "") if p.strip()]
    return parts or [DEFAULT_PATTERN]


def _natural_key(rel: PurePosixPath):
    """Sort 'img2' before 'img10', case-insensitively, folder by folder."""
    key = []
    for part in rel.parts:
        key.append(tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", part.casefold())))
    return key


def list_images(root: Path, recursive: bool = True, pattern: str = DEFAULT_PATTERN,
                start: int = 0, limit: int = 0) -> tuple[list[Item], list[Problem]]:
    """Images under ``root`` matching ``pattern`` (``;``-separated globs, case-insensitive).

    Hidden files and folders (name starting with '.') are skipped, as are symlinked folders
    (not followed). A symlinked file is taken only if it resolves inside ``root``. ``start``
    and ``limit`` (0 = all) page through the sorted list.
    """
    root = Path(root)
    root_real = Path(os.path.realpath(root))
    globs = _patterns(pattern)
    found: list[Item] = []
    problems: list[Problem] = []

    def walk_error(e: OSError) -> None:  # a folder that cannot be listed (permissions, path too long …)
        where = e.filename if isinstance(e.filename, str) else str(root)
        try:
            rel = Path(where).relative_to(root).as_posix() or "."
        except ValueError:
            rel = where
        problems.append(Problem(rel + "/", f"folder not listed ({e.strerror or e}); its images are not included"))

    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=walk_error):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        if not recursive:
            dirnames[:] = []
        for name in filenames:
            if name.startswith("."):
                continue
            if not any(fnmatch.fnmatchcase(name.lower(), g) for g in globs):
                ext = os.path.splitext(name)[1].lower()
                rel = PurePosixPath(Path(dirpath, name).relative_to(root).as_posix())
                if ext in UNREAD_IMAGE_EXTENSIONS:
                    problems.append(Problem(str(rel), f"{ext} images are not read by this pack; convert it to "
                                                      "PNG, JPEG, WebP or TIFF"))
                elif ext in VIDEO_SUFFIXES:
                    problems.append(Problem(str(rel), "a video, not an image: a folder job reads images only; cut "
                                                      "it out on its own (cli.py --source VIDEO --dest OUT.webm)"))
                continue
            if os.path.splitext(name)[1].lower() in CAPTION_EXTENSIONS:
                continue  # a broad pattern ('img*') must not take captions for images
            path = Path(dirpath) / name
            rel = PurePosixPath(path.relative_to(root).as_posix())
            if "\n" in name or "\r" in name:
                problems.append(Problem(str(rel), "file name contains a line break; rename it"))
                continue
            if path.is_symlink():
                real = Path(os.path.realpath(path))
                try:
                    real.relative_to(root_real)
                except ValueError:
                    problems.append(Problem(str(rel), f"symlink to {real}, outside the source folder; not followed"))
                    continue
            found.append(Item(path, rel))
    found.sort(key=lambda it: _natural_key(it.rel))
    start = max(int(start), 0)
    found = found[start:start + int(limit)] if limit and limit > 0 else found[start:]
    return found, problems


def header_pixels(path: Path) -> int:
    """Width x height from the file's header (no pixel decoded); 0 when it cannot be read."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                w, h = im.size
        return int(w) * int(h)
    except Exception:  # Pillow's bomb error included: check_pixels / decode report the file
        return 0


def check_pixels(path: Path, max_megapixels: float) -> None:
    """Refuse an image above ``max_megapixels`` from its header alone, before any pixel is decoded
    (a 10000x10000 PNG of a few hundred KB would take gigabytes). 0 = no limit. Files the header
    reader cannot open are left to ``decode``, which reports them."""
    if not max_megapixels or max_megapixels <= 0:
        return
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
    except Image.DecompressionBombError as e:
        raise ReadError(f"image too large to decode safely ({str(e)[:120]}); the limit is "
                        f"{max_megapixels:g} MP (--max-megapixels)") from None
    except Exception:
        return
    if w * h > max_megapixels * 1e6:
        raise ReadError(f"image is {w}x{h} = {w * h / 1e6:.1f} MP, above the limit of {max_megapixels:g} MP "
                        f"(--max-megapixels; raise it if this machine has the memory)")


def decode(item: Item) -> Decoded:
    """Open one image with the pack's one decoder (``codec.decode_image``); a bad file raises ``ReadError``."""
    from ..codec import DecodeError, decode_image

    try:
        d = decode_image(item.path, str(item.rel))
    except DecodeError as e:
        raise ReadError(f"cannot decode: {e.reason}") from None
    return Decoded(item, d.rgb, d.alpha, d.icc, d.notes)


def to_frame(pixels: np.ndarray) -> torch.Tensor:
    """uint8 ``[H,W]`` / ``[H,W,C]`` -> float32 0..1: the frame (or own alpha) the pipeline takes."""
    return unit_frame(torch.from_numpy(np.ascontiguousarray(pixels)))

