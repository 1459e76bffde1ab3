"""Saving one result: background, caption sidecars, masks, atomic writes (the names come from ``plan``).

The pixels are made by the caller's ``render`` (the pipeline's pixel half, ``pipeline.render_pixels``)
after the training-set shaping, and encoded by the one encoder (``codec.encode_image``). Every file goes through
``atomic_write``: it is written to a hidden temporary file beside its target and renamed
over it, so an interrupted run never leaves a half-written image; ``clean_stale_temps``
removes what a killed run left behind. The writer holds an exclusive ``flock`` on its
temporary file while it writes: that lock, not the PID in the name, says "in use", so a live
process in another container or on another machine sharing the folder keeps its file. The image is written last: when it exists, its
caption copies and its mask are already complete, which is what resume relies on.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

try:
    import fcntl
except ImportError:  # Windows: a file open in another process cannot be deleted, which is the lock
    fcntl = None

from ..codec import EncodeSettings, encode_image, to_uint8
from .manifest import identify
from .paths import UnsafePath, safe_target
from .plan import FORMATS, NAME_MAX, Planned

log = logging.getLogger("comfyui_cutout")

EXISTING = ("skip", "overwrite", "keep_both", "trust")  # resume.split_done says what each does
TMP_SUFFIX = ".cutout-tmp"
_TMP_RE = re.compile(r"^\..+\.(\d+)\.\d+" + re.escape(TMP_SUFFIX) + r"$")

TRANSPARENT = ("transparent", "none", "alpha")


class WriteError(Exception):
    """A result that could not be written; ``str(e)`` is the reason shown in the report."""


@dataclass(frozen=True)
class WriteOptions:
    fmt: str = "png"  # png | webp | jpg
    keep_subject: str = "all"  # all | largest | centre (imaging.subjects.keep_subject)
    crop: float | None = None  # crop to the subject with this margin (fraction of its box), None = no crop
    crop_aspect: str = "free"  # free | square | W:H list (imaging.crop.parse_aspect)
    review: bool = False  # make thumbnails for the review page (dataset.review; cli.py: on unless --no-review)
    save_mask: bool = False  # also write <stem>_mask.png beside the image
    mask_dir: Path | None = None  # or: also write masks into this tree, same relative path and stem
    existing: str = "skip"  # skip | overwrite | keep_both | trust (see resume.py)
    copy_captions: bool = True
    png_compress: int = EncodeSettings.png_compress  # 0..9, codec.fast_png
    jpeg_quality: int = 95
    webp_method: int = 0  # lossless: method 0 + quality 25 wrote a 1.1 MP cut-out as fast as PNG level 1,
    webp_effort: int = 25  # 40 % smaller; Pillow's quality=100 (its 'effort' in lossless mode) was 6x slower
    fsync: bool = True

    def __post_init__(self):
        if self.fmt not in FORMATS:
            raise ValueError(f"format '{self.fmt}' unknown; expected one of {', '.join(FORMATS)}")
        if self.existing not in EXISTING:
            raise ValueError(f"existing '{self.existing}' unknown; expected one of {', '.join(EXISTING)}")
        from ..imaging.crop import parse_aspect
        from ..imaging.subjects import KEEP_CHOICES

        parse_aspect(self.crop_aspect)
        if self.keep_subject not in KEEP_CHOICES:
            raise ValueError(f"keep_subject '{self.keep_subject}' unknown; expected one of {', '.join(KEEP_CHOICES)}")
        if self.crop is not None and not (0 <= self.crop <= 10):
            raise ValueError(f"crop margin {self.crop}: expected 0..10 (a fraction of the subject's box)")

    @property
    def settings(self) -> EncodeSettings:
        return EncodeSettings(png_compress=self.png_compress, jpeg_quality=self.jpeg_quality,
                              webp_quality=self.webp_effort, webp_method=self.webp_method)


@dataclass
class Saved:
    status: str  # "done"
    path: Path
    files: list[Path]  # every file written
    captions: dict = field(default_factory=dict)  # caption copy (relative to dest) -> its source's identity
    info: dict = field(default_factory=dict)  # doubt, subject share before/after, crop box, review thumbnails


def shape_result(rgb: np.ndarray, alpha: np.ndarray, opts: WriteOptions, agreement: float = 1.0
                 ) -> tuple[np.ndarray, np.ndarray, dict, torch.Tensor]:
    """What the training set gets of one result, before anything is written: one subject kept
    (``keep_subject``), the doubt score, and the crop to the subject (``crop``, ``crop_aspect``).
    Returns (rgb, alpha, info, small mask) with info = doubt, cues, subject share before/after,
    crop box; the small mask (``subjects.small_copy``, whole frame) is what the doubt was scored on.
    ``agreement``: the network's looks' agreement (``subjects.doubt``)."""
    from ..imaging.crop import crop_box, parse_aspect, subject_share
    from ..imaging.subjects import doubt, keep_subject, small_copy

    a = torch.from_numpy(np.ascontiguousarray(alpha, dtype=np.float32))
    if opts.keep_subject != "all":
        a = keep_subject(a, opts.keep_subject)
        alpha = a.numpy()
    small = small_copy(a)
    score, cues = doubt(small, agreement)
    info = {"doubt": round(score, 3), "cues": cues, "share_before": round(subject_share(a), 4)}
    h, w = alpha.shape
    box = (0, 0, w, h)
    if opts.crop is not None:
        box = crop_box(a, opts.crop, parse_aspect(opts.crop_aspect))
        x0, y0, x1, y1 = box
        rgb, alpha = rgb[y0:y1, x0:x1], alpha[y0:y1, x0:x1]
    info["box"] = list(box)
    info["share_after"] = round(subject_share(a, box), 4)
    return rgb, alpha, info, small


_counter = iter(range(1 << 62))
_counter_lock = threading.Lock()


def _tmp_name(target: Path) -> Path:
    """A hidden name beside ``target`` that fits the 255-byte limit whenever ``target``'s name does."""
    with _counter_lock:
        n = next(_counter)
    tail = f".{os.getpid()}.{n}{TMP_SUFFIX}"
    name = target.name
    if len(os.fsencode(f".{name}{tail}")) > NAME_MAX:
        digest = hashlib.sha1(os.fsencode(name)).hexdigest()[:12]
        keep = NAME_MAX - len(tail) - len(digest) - 2
        name = _cut(name, keep) + "~" + digest
    return target.with_name(f".{name}{tail}")


def _cut(name: str, max_bytes: int) -> str:
    """The longest prefix of ``name`` whose UTF-8 (file system) encoding fits ``max_bytes``."""
    out = name
    while len(os.fsencode(out)) > max_bytes:
        out = out[:-1]
    return out


def _try_lock(fd: int) -> bool:
    """An exclusive, non-blocking lock on an open file; True when we hold it (always on Windows,
    where an open file cannot be deleted by others anyway)."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _open_locked_temp(target: Path):
    """Create the temporary file and take its lock; retried if a cleaner removed it in between."""
    for _ in range(5):
        tmp = _tmp_name(target)
        f = open(tmp, "xb")
        _try_lock(f.fileno())
        try:
            if os.stat(tmp).st_ino == os.fstat(f.fileno()).st_ino:
                return tmp, f
        except FileNotFoundError:
            pass
        f.close()  # removed by another process's clean-up before we held the lock: a new name
    raise OSError(f"could not create a temporary file beside {target}")


@contextmanager
def _atomic_file(target: Path, fsync: bool = True):
    """A new temporary file beside ``target`` (locked while written), renamed over it on success and
    removed on any failure."""
    tmp = None
    try:
        tmp, f = _open_locked_temp(target)
        with f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
            if fcntl is not None:
                os.replace(tmp, target)  # still holding the lock: never seen unlocked by a cleaner
        if fcntl is None:
            os.replace(tmp, target)  # Windows renames only closed files
    except BaseException:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise


def atomic_write(target: Path, data: bytes, fsync: bool = True) -> None:
    """Write ``data`` to a temporary file beside ``target`` and rename it over ``target``."""
    with _atomic_file(target, fsync) as f:
        f.write(data)


def write_report(path: Path, text: str) -> None:
    """The closing report, atomically (a half-written report is never left)."""
    try:
        atomic_write(Path(path), text.encode("utf-8"), fsync=False)
    except OSError as e:
        raise WriteError(f"cannot write ({e.strerror or e})") from None


def _remove_if_unlocked(path: str) -> bool:
    """Delete a temporary file nobody holds the lock of (its writer is gone); False if in use."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        if not _try_lock(fd):
            return False  # a live writer, wherever it runs
        os.unlink(path)
        return True
    except OSError:
        return False  # Windows: open elsewhere; or gone already
    finally:
        os.close(fd)


def clean_stale_temps(dest: Path) -> int:
    """Remove temporary files left in ``dest`` by a killed run; returns how many.

    A file is stale when no process holds its lock (``_atomic_file`` keeps it locked until the
    rename), which works across PID namespaces and, with NFS lock support, across machines.
    This process's own files are never touched (its writers may be between create and lock).
    """
    removed = 0
    if not Path(dest).is_dir():
        return 0
    for dirpath, _dirs, files in os.walk(dest):
        for name in files:
            m = _TMP_RE.match(name)
            if m and int(m.group(1)) != os.getpid() and _remove_if_unlocked(os.path.join(dirpath, name)):
                removed += 1
    return removed


def encode(pixels: np.ndarray, fmt: str, opts: WriteOptions, icc: bytes | None = None) -> bytes:
    """uint8 ``[H,W]`` (grey), ``[H,W,3]`` or ``[H,W,4]`` -> file bytes in ``fmt`` (``codec.encode_image``)."""
    return encode_image(pixels, fmt, opts.settings, icc)


def _write_masks(paths: list[Path], alpha: np.ndarray, opts: WriteOptions) -> None:
    """The subject mask as an 8-bit PNG at each of ``paths``, atomically."""
    if not paths:
        return
    data = encode(to_uint8(alpha), "png", opts)
    for mp in paths:
        mp.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(mp, data, opts.fsync)


def _copy_caption(src: Path, target: Path, fsync: bool) -> None:
    """Copy a sidecar the plan resolved and checked; O_NOFOLLOW: a symlink swapped in since is not followed."""
    fd = os.open(src, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as fi, _atomic_file(target, fsync) as fo:
        shutil.copyfileobj(fi, fo, 1 << 20)


def save_item(dest: Path, planned: Planned, rgb: np.ndarray, alpha: np.ndarray, opts: WriteOptions,
              icc: bytes | None = None, render=None, small_photo: np.ndarray | None = None,
              agreement: float = 1.0) -> Saved:
    """Write the files ``plan.plan_outputs`` gave one item: captions and masks first, image last.

    ``rgb`` uint8 ``[H,W,3]``; ``alpha`` float ``[H,W]`` 0..1, 1 = subject. ``render(rgb, alpha)``
    makes the pixels after the training-set shaping (``shape_result``): the pipeline's pixel half
    (``job.render_item``); None = ``rgb`` is written as it is. The names are the
    plan's (no decision here); every target is checked again against its root (no '..', no
    escaping symlink). With ``planned.write_image`` False only the masks are written. With
    ``opts.review``, ``small_photo`` (uint8, the photo at a small size, e.g. the network's view) gives
    the review page's thumbnails (``info["thumbs"]``, ``review.thumbnails``); ``agreement`` goes to
    the doubt score (``shape_result``). Raises ``WriteError``.
    """
    try:
        target = safe_target(dest, planned.image)
        masks = [safe_target(root, rel) for root, rel in planned.masks]
        if os.path.realpath(target) == os.path.realpath(planned.item.path):
            raise WriteError(f"output {target} is the source file itself; refused")
        size = rgb.shape[:2]
        rgb, alpha, info, small_alpha = shape_result(rgb, alpha, opts, agreement)
        written: list[Path] = []
        if not planned.write_image:
            _write_masks(masks, alpha, opts)
            return Saved("done", target, masks)
        target.parent.mkdir(parents=True, exist_ok=True)
        captions = {}
        for src, rel in planned.captions:
            dst = safe_target(dest, rel)
            if os.path.realpath(dst) == os.path.realpath(src):
                continue
            captions[str(rel)] = identify(src, always_hash=True)
            _copy_caption(src, dst, opts.fsync)
            written.append(dst)
        _write_masks(masks, alpha, opts)
        written += masks
        pixels = rgb if render is None else render(rgb, alpha)
        atomic_write(target, encode(pixels, opts.fmt, opts, icc), opts.fsync)
        written.append(target)
        if opts.review and small_photo is not None:
            try:
                from .review import thumbnails

                info["thumbs"] = thumbnails(small_photo, small_alpha.numpy(), size, tuple(info["box"]))
            except Exception:  # the output is written; a missing thumbnail only makes a text row
                log.exception("Cutout dataset: no review thumbnail for %s", planned.rel)
        return Saved("done", target, written, captions, info)
    except WriteError:
        raise
    except UnsafePath as e:
        raise WriteError(str(e)) from None
    except OSError as e:
        raise WriteError(f"cannot write ({type(e).__name__}: {e})") from None
