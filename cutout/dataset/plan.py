"""The output plan: which files each input becomes, decided once, before anything is written.

One piece for every front door that writes a folder (``cli.py``'s local and Ray engines, the
Save Image Folder node): the image's relative path (same folders and stem, the format's
extension), its mask files (``<stem>_mask.png`` beside it, the same relative path under
``mask_dir``), its caption copies, and the ``keep_both`` suffix. Every file of every item is
reserved under a key that ignores case and Unicode normalisation (the destination may be on a
case-insensitive disk), so two inputs can never write the same file: the later one is refused
with a reason naming the other, and the run ends non-zero. Names are fixed here, not at write
time, so a retried write (Ray) or two writer threads cannot pick different names.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .paths import UnsafePath, is_within, safe_target
from .reader import CAPTION_EXTENSIONS, Item, Problem

FORMATS = {"png": ".png", "webp": ".webp", "jpg": ".jpg"}
NAME_MAX = 255  # bytes per path component on every common file system


@dataclass(frozen=True)
class Planned:
    """One input and every file it becomes. ``masks`` are (root, relative path) pairs, the root
    being the destination or ``mask_dir``; ``captions`` pair each source sidecar (resolved, checked
    inside the source) with its copy's path relative to the destination."""

    item: Item
    image: PurePosixPath  # relative to the destination
    masks: tuple[tuple[Path, PurePosixPath], ...] = ()
    captions: tuple[tuple[Path, PurePosixPath], ...] = ()
    write_image: bool = True  # False: the image is up to date, only (some of) its masks are written
    reason: str = ""  # why an existing output is redone (resume), for the report

    @property
    def rel(self) -> str:
        return str(self.item.rel)

    def to_row(self) -> dict:
        """Plain values for a Ray row."""
        return {"out": str(self.image), "masks": [[str(r), str(m)] for r, m in self.masks],
                "captions": [[str(s), str(r)] for s, r in self.captions], "write_image": self.write_image}

    @classmethod
    def from_row(cls, item: Item, row: dict) -> "Planned":
        return cls(item, PurePosixPath(row["out"]), tuple((Path(r), PurePosixPath(m)) for r, m in row["masks"]),
                   tuple((Path(s), PurePosixPath(r)) for s, r in row["captions"]), bool(row["write_image"]))


def output_rel(rel: PurePosixPath, fmt: str) -> PurePosixPath:
    """Same folder and stem, the format's extension ('img 1.JPG' -> 'img 1.png')."""
    return PurePosixPath(rel).with_suffix(FORMATS[fmt])


def mask_paths(dest: Path, image: PurePosixPath, save_mask: bool,
               mask_dir: Path | None) -> tuple[tuple[Path, PurePosixPath], ...]:
    """``<stem>_mask.png`` beside the image, and/or the same relative path (as .png) under ``mask_dir``."""
    out = []
    if save_mask:
        out.append((Path(dest), image.with_name(f"{image.stem}_mask.png")))
    if mask_dir is not None:
        out.append((Path(mask_dir), image.with_suffix(".png")))
    return tuple(out)


def name_key(path: Path) -> str:
    """The identity of a file name on any disk: resolved folder, NFC, case-folded."""
    return unicodedata.normalize("NFC", os.path.realpath(path)).casefold()


def caption_sources(item: Item, source_root: Path | None) -> tuple[list[tuple[Path, str]], str]:
    """The item's caption sidecars as (resolved path, extension), or ([], reason) for one that must not be read.

    A sidecar obeys the listing's rules for images: a symlink must resolve inside the source
    folder, and it must be a regular file (not a folder, FIFO or device).
    """
    found = []
    root_real = Path(os.path.realpath(source_root)) if source_root is not None else None
    for ext in CAPTION_EXTENSIONS:
        p = item.path.with_suffix(ext)
        if not os.path.lexists(p):
            continue
        real = Path(os.path.realpath(p))
        if root_real is not None and not is_within(real, root_real):
            return [], f"caption {p.name} leads to {real}, outside the source folder; refused (copy the file in)"
        if not real.is_file():
            return [], f"caption {p.name} is not a regular file; refused"
        found.append((real, ext))
    return found, ""


def _too_long(path: Path) -> str:
    for part in Path(path).parts:
        if len(os.fsencode(part)) > NAME_MAX:
            return f"output name '{part[:40]}…' is {len(os.fsencode(part))} bytes, above the {NAME_MAX}-byte limit"
    return ""


@dataclass
class _Files:
    image: PurePosixPath
    masks: tuple[Path, ...]
    captions: tuple[tuple[Path, PurePosixPath], ...]

    def paths(self, dest: Path) -> list[tuple[Path, str]]:
        out = [(Path(dest) / self.image, "image")]
        out += [(Path(r) / m, "mask") for r, m in self.masks]
        out += [(Path(dest) / r, "caption") for _s, r in self.captions]
        return out


def _files(dest, image, captions, save_mask, mask_dir) -> _Files:
    return _Files(image, mask_paths(dest, image, save_mask, mask_dir),
                  tuple((s, image.with_suffix(ext)) for s, ext in captions))


@dataclass
class OutputPlan:
    planned: list[Planned] = field(default_factory=list)
    refused: list[Problem] = field(default_factory=list)


def plan_outputs(items: list[Item], dest: Path, fmt: str, *, save_mask: bool = False, mask_dir: Path | None = None,
                 copy_captions: bool = True, keep_both: bool = False,
                 source_root: Path | None = None) -> OutputPlan:
    """Every file each item becomes, or the reason it is refused (a clash, a caption outside the source).

    ``keep_both``: an image whose output is already in ``dest`` gets ``<stem>_1`` (``_2``, ...),
    the first suffix whose image, masks and captions are all free on disk and in this plan.
    Items are taken in the given (listing) order; on a clash the later item is refused.
    """
    dest = Path(dest)
    result = OutputPlan()
    taken: dict[str, str] = {}  # name key -> "rel (what)"
    staged: list[tuple[Item, _Files]] = []
    for it in items:
        rel = str(it.rel)
        try:
            image = output_rel(it.rel, fmt)
            safe_target(dest, image)
        except (UnsafePath, ValueError) as e:
            result.refused.append(Problem(rel, str(e)))
            continue
        caps: list[tuple[Path, str]] = []
        if copy_captions:
            caps, why = caption_sources(it, source_root)
            if why:
                result.refused.append(Problem(rel, why))
                continue
        f = _files(dest, image, caps, save_mask, mask_dir)
        why = ""
        keys = []
        for path, what in f.paths(dest):
            why = _too_long(path)
            if why:
                break
            k = name_key(path)
            mine = dict(keys)
            if k in taken or k in mine:
                other = taken.get(k) or mine[k]
                why = (f"its {what} {path.name} is also {other}; rename one of them "
                       f"(nothing is overwritten)")
                break
            keys.append((k, f"the {what} of {rel}"))
        if why:
            result.refused.append(Problem(rel, why))
            continue
        for k, who in keys:
            taken[k] = who
        staged.append((it, f))
    for it, f in staged:
        if keep_both and (dest / f.image).exists():
            caps = [(s, r.suffix) for s, r in f.captions]
            n, why = 1, ""
            while True:
                image = f.image.with_name(f"{f.image.stem}_{n}{f.image.suffix}")
                cand = _files(dest, image, caps, save_mask, mask_dir)
                paths = cand.paths(dest)
                why = next((w for w in (_too_long(p) for p, _ in paths) if w), "")
                if why or not any(name_key(p) in taken or os.path.lexists(p) for p, _ in paths):
                    break
                n += 1
            if why:
                result.refused.append(Problem(str(it.rel), f"keep-both: {why}"))
                continue
            for p, what in paths:
                taken[name_key(p)] = f"the {what} of {it.rel}"
            f = cand
        result.planned.append(Planned(it, f.image, f.masks, f.captions))
    return result
