"""The folder job's two ends for a graph: a folder read into frames (Load Image Folder), and
frames written back under their relative paths (Save Image Folder).

The same decoder, output plan, manifest and writer as ``cli.py``; the nodes only check their
widgets and hand the work here. Errors a user must fix raise ``CutoutInputError`` with the node's
name; per-file failures end up in the report, never as an exception.
"""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from .. import comfy_glue
from ..codec import to_uint8
from ..imaging.tensors import CutoutInputError, as_image, as_mask
from ..options import CutoutOptions
from . import manifest, paths, plan, reader, resume, writer
from .job import render_item

log = logging.getLogger("comfyui_cutout")

_REL_EXPECTED = "a path relative to the destination, like 'folder/image.png'"


@dataclass
class LoadedFolder:
    frames: list[torch.Tensor]  # [1,H,W,3|4] each (or one batch per size when stacked)
    rels: list[str]  # one per frame; a stacked batch joins its paths with line breaks
    report: str
    loaded: int


def load_folder(node: str, root: Path, recursive: bool, pattern: str, start_index: int, limit: int,
                stack_same_size: bool) -> LoadedFolder:
    """Decode every matching image of ``root`` (two threads; Cancel between files). A file's own
    alpha travels as a 4th channel, so Remove Background keeps that transparency."""
    items, problems = reader.list_images(root, recursive, pattern, start_index, limit)
    failed = [(p.rel, p.reason) for p in problems]
    progress = comfy_glue.Progress(len(items))
    decoded = []
    with ThreadPoolExecutor(2, thread_name_prefix="cutout-load") as pool:
        futures = [pool.submit(reader.decode, it) for it in items]
        try:
            for it, fut in zip(items, futures):
                comfy_glue.check_interrupt()
                try:
                    decoded.append(fut.result())
                except reader.ReadError as e:
                    failed.append((str(it.rel), str(e)))
                progress.update(1)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    lines = [f"{node}: {root}: loaded {len(decoded)} image(s), skipped {len(failed)}"]
    lines += [f"  note: {d.item.rel}: {note}" for d in decoded for note in d.notes]
    lines += [f"  skipped: {rel}: {why}" for rel, why in failed]
    report = "\n".join(lines)
    if failed:
        log.warning("%s", report)
    frames = [reader.to_frame(d.rgb if d.alpha is None else np.dstack([d.rgb, d.alpha])).unsqueeze(0)
              for d in decoded]
    rels = [str(d.item.rel) for d in decoded]
    if stack_same_size:
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, f in enumerate(frames):
            groups.setdefault(tuple(f.shape[1:]), []).append(i)
        frames = [torch.cat([frames[i] for i in idx]) for idx in groups.values()]
        rels = ["\n".join(rels[i] for i in idx) for idx in groups.values()]
    return LoadedFolder(frames, rels, report, len(decoded))


def folder_fingerprint(root: Path, recursive: bool, pattern: str, start_index: int, limit: int) -> str:
    """Changes when a file of the listing is added, removed or changed (ComfyUI's IS_CHANGED)."""
    items, _ = reader.list_images(root, recursive, pattern, start_index, limit)
    h = hashlib.sha256()
    for it in items:
        try:
            st = it.path.stat()
            h.update(f"{it.rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{it.rel}\0gone\n".encode())
    return h.hexdigest()


def _content_identity(u8: np.ndarray, alpha: np.ndarray) -> dict:
    """A graph's source identity: the pixels it was given (the graph upstream decides them)."""
    h = hashlib.sha256(f"{u8.shape}".encode())
    h.update(np.ascontiguousarray(u8).tobytes())
    h.update(np.ascontiguousarray(np.clip(alpha, 0, 1) * 65535, dtype=np.uint16).tobytes())
    return {"content": h.hexdigest()}


def _batch_rel(node: str, names: list[str], k: int, b: int, n: int) -> str:
    """The relative path of frame ``k`` of a batch of ``b``: its own line, or the first path
    numbered, or ``cutout_<n>.png`` without paths."""
    if len(names) == b:
        return names[k]
    if names:
        stem = PurePosixPath(names[0].replace("\\", "/").strip())
        if not stem.name:  # '', '.', 'a/' : no file name to number
            raise CutoutInputError(node, "relative_path", f"{names[0]!r} has no file name", _REL_EXPECTED)
        return str(stem.with_name(f"{stem.stem}_{k:04d}{stem.suffix}"))
    return f"cutout_{n:05d}.png"


def _checked_rel(node: str, rel: str) -> PurePosixPath:
    rel = str(rel).replace("\\", "/").strip()
    if not rel or paths.has_dotdot(rel) or PurePosixPath(rel).is_absolute():
        raise CutoutInputError(node, "relative_path", f"'{rel}' is empty, absolute or contains '..'",
                               "a path relative to the destination")
    problem = paths.relative_problem(rel)
    if problem:
        raise CutoutInputError(node, "relative_path", problem, _REL_EXPECTED)
    return PurePosixPath(rel)


def graph_items(node: str, images: list, masks: list, rels: list[str], dest: Path,
                src_root: Path | None) -> list[tuple[reader.Item, np.ndarray, np.ndarray]]:
    """Every frame of the node's lists as (Item, uint8 RGB, float alpha): the alpha is the MASK
    when one is connected, else an RGBA image's own, else opaque."""
    jobs = []
    n = 0
    for i, img in enumerate(images):
        rgb = as_image(img, node, "images", sanitize_values=True).cpu()
        raw = img if img.dim() == 4 else img.unsqueeze(0)
        b, h, w = rgb.shape[:3]
        if masks:
            alpha = as_mask(masks[min(i, len(masks) - 1)], node, "mask", batch=b, size=(h, w)).cpu()
        elif raw.shape[-1] == 4:
            alpha = as_mask(raw[..., 3], node, "images").cpu()  # sanitised: NaN alpha -> 0
        else:
            alpha = torch.ones((b, h, w))
        names = rels[min(i, len(rels) - 1)].split("\n") if rels else []
        for k in range(b):
            n += 1
            relp = _checked_rel(node, _batch_rel(node, names, k, b, n))
            try:
                src = paths.safe_target(src_root, relp) if src_root is not None else dest / ".none" / relp
            except paths.UnsafePath as e:
                raise CutoutInputError(node, "relative_path", str(e), "a path inside source_folder") from None
            jobs.append((reader.Item(src, relp), to_uint8(rgb[k]), alpha[k].numpy()))
    return jobs


def save_folder(node: str, dest: Path, destination_text: str, jobs: list, opts: writer.WriteOptions,
                copts: CutoutOptions, src_root: Path | None) -> str:
    """Write every job that is not up to date (the manifest decides; a clash fails the later one);
    returns the report."""
    done, failed = [], []
    pixels = {id(it): (u8, a) for it, u8, a in jobs}  # by identity: the plan refuses a repeated name
    idents = {id(it): _content_identity(u8, a) for it, u8, a in jobs}
    values = manifest.settings_values(opts, copts)
    fp = manifest.fingerprint(values)
    book = manifest.Manifest(dest, opts.fsync)
    book.know(fp, values)
    out = plan.plan_outputs([it for it, _u8, _a in jobs], dest, opts.fmt, save_mask=opts.save_mask,
                            copy_captions=src_root is not None, keep_both=opts.existing == "keep_both",
                            source_root=src_root)
    failed += [(p.rel, p.reason) for p in out.refused]
    todo, already = resume.split_done(out.planned, dest, opts.existing, book, fp,
                                      lambda p, rec: rec == idents[id(p.item)])
    try:
        if todo:
            dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # read-only / full / not a folder: every image fails, with the reason
        why = (f"cannot create the destination folder (input 'destination' = '{destination_text}'): "
               f"{e.strerror or e}")
        failed += [(p.rel, why) for p in todo]
        todo = []
    if todo:
        writer.clean_stale_temps(dest)
    progress = comfy_glue.Progress(len(todo))

    def save_one(p):
        u8, a = pixels[id(p.item)]
        return writer.save_item(dest, p, u8, a, opts, render=lambda x, al: render_item(x, al, copts))

    with ThreadPoolExecutor(2, thread_name_prefix="cutout-save") as pool:
        futures = [pool.submit(save_one, p) for p in todo]
        for p, fut in zip(todo, futures):
            try:
                saved = fut.result()
                book.add(manifest.make_record(dest, p, idents[id(p.item)], fp, saved.files, saved.captions),
                         values, masks_only=not p.write_image)
                done.append(p.rel)
            except writer.WriteError as e:
                failed.append((p.rel, str(e)))
            progress.update(1)
    lines = [f"{node}: {dest}: wrote {len(done)}, skipped {len(already)} (up to date), failed {len(failed)}"]
    lines += [f"  failed: {rel}: {why}" for rel, why in failed]
    report = "\n".join(lines)
    (log.warning if failed else log.info)("%s", report)
    return report
