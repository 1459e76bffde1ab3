"""Load Image Folder / Save Image Folder (Cutout): dataset prep inside a graph.

The loader outputs a LIST (ComfyUI runs the nodes downstream once per image, so photos of
different sizes need no padding); the saver takes the lists back (INPUT_IS_LIST) and writes
every result at its relative path. Both use the same per-item functions as ``cli.py``
(``dataset.reader`` / ``dataset.writer``) and the path guard of ``dataset.paths``.
"""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from .. import comfy_glue
from ..dataset import manifest, paths, plan, reader, resume, writer
from ..imaging.clear import CLEAR_FILLS, DEFAULT_CLEAR_FILL
from ..imaging.tensors import CutoutInputError, as_image, as_mask
from .common import CATEGORY, CLEAR_FILL_TIP, MASK_CONVENTION, advanced_inputs, checked_widgets

log = logging.getLogger("comfyui_cutout")

LOAD_NAME = "Load Image Folder (Cutout)"
SAVE_NAME = "Save Image Folder (Cutout)"

_GUARD_HELP = (f"Only folders inside ComfyUI's input/output folders are accepted unless ComfyUI was started "
               f"with the environment variable {paths.ALLOW_ENV}=1; '..' is always refused.")


def _guard(text: str, node: str, input_name: str, root, must_exist: bool) -> Path:
    return paths.guard_folder(text, node, input_name, root, must_exist)  # raises PathRefused, a CutoutInputError


def _first(v, default=None):
    """A widget value under INPUT_IS_LIST arrives as a list of one."""
    if isinstance(v, list):
        return v[0] if v else default
    return v if v is not None else default


def _content_identity(u8: np.ndarray, alpha: np.ndarray) -> dict:
    """The node's source identity: the pixels it was given (the graph upstream decides them)."""
    h = hashlib.sha256(f"{u8.shape}".encode())
    h.update(np.ascontiguousarray(u8).tobytes())
    h.update(np.ascontiguousarray(np.clip(alpha, 0, 1) * 65535, dtype=np.uint16).tobytes() if alpha is not None else b"")
    return {"content": h.hexdigest()}


@advanced_inputs("pattern", "start_index", "limit", "stack_same_size")
@checked_widgets(LOAD_NAME)
class CutoutLoadImageFolder:
    SEARCH_ALIASES = ["load folder", "batch images", "dataset", "lora dataset", "rembg", "cutout",
                      "remove background"]
    DESCRIPTION = (
        "Loads every image of a folder (kohya layout welcome) as a LIST: the nodes after it run once per image, "
        "so photos of different sizes stay at their own size. EXIF orientation is applied. Files that cannot be "
        "read are skipped and listed in 'report'. Connect 'relative_path' and 'source_folder' to Save Image Folder "
        "(Cutout) to keep names, folders and caption files. " + _GUARD_HELP
    )
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("IMAGE", "STRING", "STRING", "STRING")
    RETURN_NAMES = ("images", "relative_path", "source_folder", "report")
    OUTPUT_IS_LIST = (True, True, False, False)
    OUTPUT_TOOLTIPS = (
        "One IMAGE [1,H,W,3] per file (or one batch per size with 'stack_same_size'), RGB; "
        "a file's own alpha channel is not used here.",
        "Path of each image relative to the folder, e.g. '10_subject/img001.jpg' (one line per image of a stacked batch).",
        "The resolved folder, for Save Image Folder's caption copying.",
        "What was loaded and which files were skipped, and why.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "folder": ("STRING", {"default": "dataset", "tooltip": "Folder of images, relative to ComfyUI's input "
                                      "folder, or absolute inside the input/output folders. " + _GUARD_HELP}),
                "recursive": ("BOOLEAN", {"default": True, "tooltip": "Also load images from subfolders."}),
                "pattern": ("STRING", {"default": reader.DEFAULT_PATTERN,
                                       "tooltip": "File name patterns, separated by ';' (case-insensitive)."}),
                "start_index": ("INT", {"default": 0, "min": 0, "max": 10_000_000,
                                        "tooltip": "Skip this many images of the sorted list (paging)."}),
                "limit": ("INT", {"default": 0, "min": 0, "max": 10_000_000,
                                  "tooltip": "Load at most this many images (0 = all). Every image of the list is held "
                                             "in memory: page through big folders, or use cli.py."}),
                "stack_same_size": ("BOOLEAN", {"default": False, "tooltip": "Put images of the same size into one "
                                                "batch (fewer node runs); their paths are joined by line breaks."}),
            }
        }

    @classmethod
    def IS_CHANGED(cls, folder, recursive, pattern, start_index, limit, stack_same_size):
        """Re-run when a file of the folder is added, removed or changed."""
        try:
            root = paths.guard_folder(folder, LOAD_NAME, "folder", comfy_glue.input_directory(), True)
            items, _ = reader.list_images(root, recursive, pattern, start_index, limit)
        except Exception:
            return float("nan")
        h = hashlib.sha256()
        for it in items:
            try:
                st = it.path.stat()
                h.update(f"{it.rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{it.rel}\0gone\n".encode())
        return h.hexdigest()

    def load(self, folder, recursive=True, pattern=reader.DEFAULT_PATTERN, start_index=0, limit=0,
             stack_same_size=False):
        root = _guard(folder, LOAD_NAME, "folder", comfy_glue.input_directory(), must_exist=True)
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
        lines = [f"{LOAD_NAME}: {root}: loaded {len(decoded)} image(s), skipped {len(failed)}"]
        lines += [f"  skipped: {rel}: {why}" for rel, why in failed]
        report = "\n".join(lines)
        if failed:
            log.warning("%s", report)
        if not decoded:
            raise CutoutInputError(LOAD_NAME, "folder", f"'{folder}' ({root}) has no readable image matching "
                                   f"'{pattern}' (start {start_index}, limit {limit}); {report}",
                                   "a folder with at least one image")
        frames = [torch.from_numpy(d.rgb).to(torch.float32).div_(255.0).unsqueeze(0) for d in decoded]
        rels = [str(d.item.rel) for d in decoded]
        if stack_same_size:
            groups: dict[tuple[int, int], list[int]] = {}
            for i, f in enumerate(frames):
                groups.setdefault(tuple(f.shape[1:3]), []).append(i)
            frames, rels = ([torch.cat([frames[i] for i in idx]) for idx in groups.values()],
                            ["\n".join(rels[i] for i in idx) for idx in groups.values()])
        return (frames, rels, str(root), report)


@advanced_inputs("jpeg_background", "clear_fill")
@checked_widgets(SAVE_NAME)
class CutoutSaveImageFolder:
    SEARCH_ALIASES = ["save folder", "dataset", "lora dataset", "batch save", "rembg", "cutout", "remove background"]
    DESCRIPTION = (
        "Saves every image it gets at its relative path under 'destination' (same folders, same file stem, new "
        "extension), as PNG/WEBP with transparency or JPEG flattened onto a colour. Caption files (.txt, .caption, "
        ".json) beside the source image are copied unchanged when 'source_folder' is connected. Writes are atomic "
        "(temporary file + rename). An output already there is skipped only when the destination's manifest says it was "
        "made from the same image with the same settings; otherwise it is made again (a re-run adds what is missing "
        "or stale). Two inputs that would get one file name: the second fails, named in the report. "
        + _GUARD_HELP
    )
    CATEGORY = CATEGORY
    FUNCTION = "save"
    OUTPUT_NODE = True
    INPUT_IS_LIST = True
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("report",)
    OUTPUT_TOOLTIPS = ("What was written, skipped and failed, and why.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "Cut-outs (RGBA from Remove Background) or RGB images; a list or batches."}),
                "destination": ("STRING", {"default": "dataset_clean", "tooltip": "Output folder, relative to ComfyUI's "
                                           "output folder (created). " + _GUARD_HELP}),
                "format": (list(writer.FORMATS), {"default": "png", "tooltip": "png / webp (lossless) keep transparency; "
                                                  "jpg is flattened onto 'jpeg_background'."}),
                "existing": (list(writer.EXISTING), {"default": "skip", "tooltip": "When the output file is already "
                                                     "there: skip: keep it if the manifest says it is up to date, else "
                                                     "redo it; overwrite: redo it; keep_both: write <stem>_1 beside it; "
                                                     "trust: keep any file that exists, whatever made it."}),
                "background": ("STRING", {"default": "transparent", "tooltip": "transparent, a colour name (white, "
                                          "black, gray, …), #RRGGBB or r,g,b."}),
            },
            "optional": {
                "relative_path": ("STRING", {"forceInput": True, "tooltip": "From Load Image Folder: where each image "
                                             "goes. Without it files are named cutout_00001.png, ..."}),
                "source_folder": ("STRING", {"forceInput": True, "tooltip": "From Load Image Folder: where the caption "
                                             "files are copied from."}),
                "mask": ("MASK", {"tooltip": "Alpha for RGB images (overrides an RGBA image's own alpha). "
                                             + MASK_CONVENTION}),
                "save_mask": ("BOOLEAN", {"default": False, "tooltip": "Also write <stem>_mask.png (white = subject) "
                                          "beside each image."}),
                "jpeg_background": ("STRING", {"default": "white", "tooltip": "Colour a transparent result is "
                                               "flattened onto for jpg."}),
                "clear_fill": (list(CLEAR_FILLS), {"default": DEFAULT_CLEAR_FILL, "tooltip": CLEAR_FILL_TIP}),
            },
        }

    def save(self, images, destination, format, existing, background, relative_path=None, source_folder=None,
             mask=None, save_mask=None, jpeg_background=None, clear_fill=None):
        node = SAVE_NAME
        destination, fmt, existing = _first(destination), _first(format), _first(existing)
        background, save_mask = _first(background, "transparent"), bool(_first(save_mask, False))
        jpeg_background = _first(jpeg_background, "white")
        clear_fill = _first(clear_fill, DEFAULT_CLEAR_FILL)
        dest = _guard(destination, node, "destination", comfy_glue.output_directory(), must_exist=False)
        src_root = None
        if source_folder:
            src_root = _guard(_first(source_folder), node, "source_folder", comfy_glue.input_directory(),
                              must_exist=True)
        for name, value in (("background", background), ("jpeg_background", jpeg_background)):
            colours = "a colour name (white, black, …), #RRGGBB or r,g,b (0..255)"
            try:
                colour = writer.parse_background(value if isinstance(value, str) else repr(value))
            except ValueError:
                raise CutoutInputError(node, name, f"is {value!r}, not a colour",
                                       colours if name == "jpeg_background" else "transparent or " + colours) from None
            if name == "jpeg_background" and colour is None:
                raise CutoutInputError(node, name, f"is {value!r} but JPEG has no transparency", colours)
        opts = writer.WriteOptions(fmt=fmt, background=background, jpeg_background=jpeg_background,
                                   existing=existing, save_mask=save_mask, copy_captions=src_root is not None,
                                   clear_fill=clear_fill,
                                   decontaminate=False)  # Remove Background's RGBA is already decontaminated
        rels = list(relative_path or [])
        masks = list(mask or [])
        jobs = []  # (Item, rgb uint8, alpha float)
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
                if len(names) == b:
                    rel = names[k]
                elif names:
                    stem = PurePosixPath(names[0].replace("\\", "/").strip())
                    if not stem.name:  # '', '.', 'a/' : no file name to number
                        raise CutoutInputError(node, "relative_path", f"{names[0]!r} has no file name",
                                               "a path relative to the destination, like 'folder/image.png'")
                    rel = str(stem.with_name(f"{stem.stem}_{k:04d}{stem.suffix}"))
                else:
                    rel = f"cutout_{n:05d}.png"
                rel = str(rel).replace("\\", "/").strip()
                if not rel or paths.has_dotdot(rel) or PurePosixPath(rel).is_absolute():
                    raise CutoutInputError(node, "relative_path", f"'{rel}' is empty, absolute or contains '..'",
                                           "a path relative to the destination")
                problem = paths.relative_problem(rel)
                if problem:
                    raise CutoutInputError(node, "relative_path", problem, "a path relative to the destination, "
                                           "like 'folder/image.png'")
                relp = PurePosixPath(rel)
                try:
                    src = paths.safe_target(src_root, relp) if src_root is not None else dest / ".none" / relp
                except paths.UnsafePath as e:
                    raise CutoutInputError(node, "relative_path", str(e), "a path inside source_folder") from None
                u8 = (rgb[k].numpy() * 255.0 + 0.5).astype(np.uint8)
                jobs.append((reader.Item(src, relp), u8, alpha[k].numpy()))
        done, skipped, failed = [], [], []
        pixels = {id(it): (u8, a) for it, u8, a in jobs}  # by identity: the plan refuses a repeated name
        idents = {id(it): _content_identity(u8, a) for it, u8, a in jobs}
        values = manifest.settings_values(opts)
        fp = manifest.fingerprint(values)
        book = manifest.Manifest(dest, opts.fsync)
        book.know(fp, values)
        out = plan.plan_outputs([it for it, _u8, _a in jobs], dest, fmt, save_mask=save_mask,
                                copy_captions=src_root is not None, keep_both=existing == "keep_both",
                                source_root=src_root)
        failed += [(p.rel, p.reason) for p in out.refused]
        todo, already = resume.split_done(out.planned, dest, existing, book, fp,
                                          lambda p, rec: rec == idents[id(p.item)])
        skipped += [p.rel for p in already]
        try:
            if todo:
                dest.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # read-only / full / not a folder: every image fails, with the reason
            why = (f"cannot create the destination folder (input 'destination' = '{destination}'): "
                   f"{e.strerror or e}")
            failed += [(p.rel, why) for p in todo]
            todo = []
        if todo:
            writer.clean_stale_temps(dest)
        progress = comfy_glue.Progress(len(todo))
        with ThreadPoolExecutor(2, thread_name_prefix="cutout-save") as pool:
            futures = [pool.submit(writer.save_item, dest, p, *pixels[id(p.item)], opts) for p in todo]
            for p, fut in zip(todo, futures):
                try:
                    saved = fut.result()
                    book.add(manifest.make_record(dest, p, idents[id(p.item)], fp, saved.files, saved.captions),
                             values, masks_only=not p.write_image)
                    done.append(p.rel)
                except writer.WriteError as e:
                    failed.append((p.rel, str(e)))
                progress.update(1)
        lines = [f"{node}: {dest}: wrote {len(done)}, skipped {len(skipped)} (up to date), failed {len(failed)}"]
        lines += [f"  failed: {rel}: {why}" for rel, why in failed]
        report = "\n".join(lines)
        (log.warning if failed else log.info)("%s", report)
        return {"ui": {"text": [report]}, "result": (report,)}


NODES = {"CutoutLoadImageFolder": CutoutLoadImageFolder, "CutoutSaveImageFolder": CutoutSaveImageFolder}
NAMES = {"CutoutLoadImageFolder": LOAD_NAME, "CutoutSaveImageFolder": SAVE_NAME}
