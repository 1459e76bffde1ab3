"""Saving one result: output name, collision policy, caption sidecars, atomic writes.

The pixels arrive finished (``pipeline.render``: background, decontamination, output form) and
are encoded by the pack's one encoder (``codec.encode_image``). Every file goes through
``atomic_write``: it is written to a hidden temporary file beside its target and renamed
over it, so an interrupted run never leaves a half-written image; ``clean_stale_temps``
removes what a killed run left behind. The writer holds an exclusive ``flock`` on its
temporary file while it writes: that lock, not the PID in the name, says "in use", so a live
process in another container or on another machine sharing the folder keeps its file. The image is written last: when it exists, its
caption copies and its mask are already complete, which is what resume relies on.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: a file open in another process cannot be deleted, which is the lock
    fcntl = None

from ..codec import EncodeSettings, encode_image, to_uint8
from .paths import UnsafePath, safe_target
from .reader import CAPTION_EXTENSIONS, Item

log = logging.getLogger("comfyui_cutout")

FORMATS = {"png": ".png", "webp": ".webp", "jpg": ".jpg"}
EXISTING = ("skip", "overwrite", "keep_both")
TMP_SUFFIX = ".cutout-tmp"
_TMP_RE = re.compile(r"^\..+\.(\d+)\.\d+" + re.escape(TMP_SUFFIX) + r"$")

class WriteError(Exception):
    """A result that could not be written; ``str(e)`` is the reason shown in the report."""


@dataclass(frozen=True)
class WriteOptions:
    fmt: str = "png"  # png | webp | jpg
    save_mask: bool = False  # also write <stem>_mask.png beside the image
    mask_dir: Path | None = None  # or: also write masks into this tree, same relative path and stem
    existing: str = "skip"  # skip | overwrite | keep_both
    copy_captions: bool = True
    png_compress: int = 2  # zlib level 0..9: with imagecodecs' one 'up' filter, 2 is fast and about as small as Pillow's 1 (docs/dataset.md)
    jpeg_quality: int = 95
    webp_method: int = 0  # lossless: method 0 + quality 25 wrote a 1.1 MP cut-out as fast as PNG level 1,
    webp_effort: int = 25  # 40 % smaller; Pillow's quality=100 (its 'effort' in lossless mode) was 6x slower
    fsync: bool = True

    def __post_init__(self):
        if self.fmt not in FORMATS:
            raise ValueError(f"format '{self.fmt}' unknown; expected one of {', '.join(FORMATS)}")
        if self.existing not in EXISTING:
            raise ValueError(f"existing '{self.existing}' unknown; expected one of {', '.join(EXISTING)}")

    @property
    def settings(self) -> EncodeSettings:
        return EncodeSettings(png_compress=self.png_compress, jpeg_quality=self.jpeg_quality,
                              webp_quality=self.webp_effort, webp_method=self.webp_method)


@dataclass
class Saved:
    status: str  # "done" | "skipped"
    path: Path
    files: list[Path]


def output_rel(rel: PurePosixPath, fmt: str) -> PurePosixPath:
    """Same folder and stem, the format's extension ('img 1.JPG' -> 'img 1.png')."""
    return PurePosixPath(rel).with_suffix(FORMATS[fmt])


def target_for(dest: Path, rel: PurePosixPath, opts: WriteOptions) -> Path:
    return safe_target(dest, output_rel(rel, opts.fmt))


def is_done(dest: Path, rel: PurePosixPath, opts: WriteOptions) -> bool:
    """True when the image of ``rel`` is already in ``dest`` (written last, so complete) and so is
    every mask file asked for (a rerun that adds ``--save-mask`` or ``--mask-dir`` is not "done")."""
    try:
        target = target_for(dest, rel, opts)
        return target.is_file() and all(m.is_file() for m in mask_path_for(target, output_rel(rel, opts.fmt), opts))
    except UnsafePath:
        return False


_counter = iter(range(1 << 62))
_counter_lock = threading.Lock()


def _tmp_name(target: Path) -> Path:
    with _counter_lock:
        n = next(_counter)
    return target.with_name(f".{target.name}.{os.getpid()}.{n}{TMP_SUFFIX}")


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


def atomic_copy(src: Path, target: Path, fsync: bool = True) -> None:
    with open(src, "rb") as fi, _atomic_file(target, fsync) as fo:
        shutil.copyfileobj(fi, fo, 1 << 20)


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


def _keep_both_target(target: Path) -> Path:
    n = 1
    while True:
        cand = target.with_name(f"{target.stem}_{n}{target.suffix}")
        if not cand.exists() and not any(cand.with_suffix(e).exists() for e in CAPTION_EXTENSIONS):
            return cand
        n += 1


def mask_path_for(target: Path, rel_out: PurePosixPath, opts: WriteOptions) -> list[Path]:
    out = []
    if opts.save_mask:
        out.append(target.with_name(f"{target.stem}_mask.png"))
    if opts.mask_dir is not None:
        out.append(safe_target(Path(opts.mask_dir), PurePosixPath(rel_out).with_suffix(".png")))
    return out


def _write_masks(paths: list[Path], alpha: np.ndarray, opts: WriteOptions) -> None:
    """The subject mask as an 8-bit PNG at each of ``paths``, atomically."""
    if not paths:
        return
    data = encode(to_uint8(alpha), "png", opts)
    for mp in paths:
        mp.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(mp, data, opts.fsync)


def save_item(dest: Path, item: Item, pixels: np.ndarray, alpha: np.ndarray, opts: WriteOptions,
              icc: bytes | None = None) -> Saved:
    """Write one result under ``dest`` at the item's relative path; captions and mask first, image last.

    ``pixels`` the finished uint8 image (``pipeline.render`` through ``codec.to_uint8``);
    ``alpha`` float ``[H,W]`` 0..1, 1 = subject (for the mask files). Raises ``WriteError``.
    """
    rel_out = output_rel(item.rel, opts.fmt)
    try:
        target = safe_target(dest, rel_out)
    except UnsafePath as e:
        raise WriteError(str(e)) from None
    try:
        if os.path.realpath(target) == os.path.realpath(item.path):
            raise WriteError(f"output {target} is the source file itself; refused")
        if target.exists():
            if opts.existing == "skip":  # the image stays as it is; only mask files asked for and missing
                missing = [m for m in mask_path_for(target, rel_out, opts) if not m.exists()]
                if not missing:
                    return Saved("skipped", target, [])
                _write_masks(missing, alpha, opts)
                return Saved("done", target, missing)
            if opts.existing == "keep_both":
                target = _keep_both_target(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        if opts.copy_captions:
            for ext in CAPTION_EXTENSIONS:
                src = item.path.with_suffix(ext)
                if src.is_file():
                    dst = target.with_suffix(ext)
                    if os.path.realpath(dst) == os.path.realpath(src):
                        continue
                    atomic_copy(src, dst, opts.fsync)
                    written.append(dst)
        masks = mask_path_for(target, rel_out, opts)
        _write_masks(masks, alpha, opts)
        written += masks
        atomic_write(target, encode(pixels, opts.fmt, opts, icc), opts.fsync)
        written.append(target)
        return Saved("done", target, written)
    except WriteError:
        raise
    except UnsafePath as e:
        raise WriteError(str(e)) from None
    except OSError as e:
        raise WriteError(f"cannot write ({type(e).__name__}: {e})") from None
