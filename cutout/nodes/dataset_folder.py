"""Load Image Folder / Save Image Folder (Cutout): dataset prep inside a graph.

The loader outputs a LIST (ComfyUI runs the nodes downstream once per image, so photos of
different sizes need no padding); the saver takes the lists back (INPUT_IS_LIST) and writes
every result at its relative path. The nodes check their widgets; the work is
``dataset.graph_folder``'s, on the same reader, output plan, manifest and writer as ``cli.py``.
"""

from __future__ import annotations

from pathlib import Path

from .. import comfy_glue
from ..dataset import graph_folder, paths, reader, writer
from ..imaging.clear import CLEAR_FILLS, DEFAULT_CLEAR_FILL
from ..imaging.tensors import CutoutInputError
from ..options import CutoutOptions, flattened_for_jpeg, parse_background
from .common import CATEGORY, CLEAR_FILL_TIP, MASK_CONVENTION, advanced_inputs, checked_widgets

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
        "One IMAGE [1,H,W,C] per file (or one batch per size with 'stack_same_size'): RGB, or RGBA when the "
        "file has its own alpha channel (Remove Background keeps that transparency, as cli.py and the API do).",
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
            return graph_folder.folder_fingerprint(root, recursive, pattern, start_index, limit)
        except Exception:
            return float("nan")

    def load(self, folder, recursive=True, pattern=reader.DEFAULT_PATTERN, start_index=0, limit=0,
             stack_same_size=False):
        root = _guard(folder, LOAD_NAME, "folder", comfy_glue.input_directory(), must_exist=True)
        got = graph_folder.load_folder(LOAD_NAME, root, recursive, pattern, start_index, limit, stack_same_size)
        if not got.loaded:
            raise CutoutInputError(LOAD_NAME, "folder", f"'{folder}' ({root}) has no readable image matching "
                                   f"'{pattern}' (start {start_index}, limit {limit}); {got.report}",
                                   "a folder with at least one image")
        return (got.frames, got.rels, str(root), got.report)


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
        try:
            opts = writer.WriteOptions(fmt=fmt, existing=existing, save_mask=save_mask,
                                       copy_captions=src_root is not None, review=False)
        except ValueError as e:
            raise CutoutInputError(node, "format", str(e), "a valid option") from None
        try:  # decontamination off: Remove Background's RGBA is already decontaminated
            copts = CutoutOptions(decontaminate=False, clear_fill=clear_fill)
        except ValueError:
            raise CutoutInputError(node, "clear_fill", f"is {clear_fill!r}", " / ".join(CLEAR_FILLS)) from None
        colours = "a colour name (white, black, …), #RRGGBB or r,g,b (0..255)"
        for name, value in (("background", background), ("jpeg_background", jpeg_background)):
            try:
                bg = parse_background(value if isinstance(value, str) else repr(value))
            except ValueError:
                raise CutoutInputError(node, name, f"is {value!r}, not a colour",
                                       colours if name == "jpeg_background" else
                                       "transparent or " + colours + ", gradient:C1:C2, blur or checkerboard") from None
            if name == "background":
                copts = copts.replace(background=bg)
            elif bg.keeps_alpha:
                raise CutoutInputError(node, name, f"is {value!r} but JPEG has no transparency", colours)
            elif fmt == "jpg":
                copts = flattened_for_jpeg(copts, bg)
        jobs = graph_folder.graph_items(node, images, list(mask or []), list(relative_path or []), dest, src_root)
        report = graph_folder.save_folder(node, dest, destination, jobs, opts, copts, src_root)
        return {"ui": {"text": [report]}, "result": (report,)}


NODES = {"CutoutLoadImageFolder": CutoutLoadImageFolder, "CutoutSaveImageFolder": CutoutSaveImageFolder}
NAMES = {"CutoutLoadImageFolder": LOAD_NAME, "CutoutSaveImageFolder": SAVE_NAME}
