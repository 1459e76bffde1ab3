#!/usr/bin/env python
"""Cut out every photo of a folder, keeping relative paths, file stems and caption files.

    python cli.py --source raw --dest clean
    python cli.py --source dataset --dest dataset_clean --background white --format jpg
    python cli.py --source raw --dest masks --mask-only

A rerun does only what is missing (resume after Ctrl-C); ``--overwrite`` redoes everything.
Exit code: 0 all good, 1 some files failed (listed at the end), 2 bad arguments,
3 model not available, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def build_parser(model_names: list[str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cli.py", description="Remove the background of every image in a folder (ComfyUI-Cutout, no ComfyUI needed).")
    p.add_argument("--source", required=True, type=Path, help="folder of photos (kohya layout welcome: captions beside images)")
    p.add_argument("--dest", required=True, type=Path, help="output folder (created); must not overlap --source")
    p.add_argument("--model", default="u2netp", help="default u2netp (embedded, offline); one of: " + ", ".join(model_names) + " (or an .onnx file in models/rembg)")
    p.add_argument("--device", default="cpu", choices=["cpu", "gpu"], help="default cpu; gpu needs onnxruntime-gpu")
    p.add_argument("--background", default="transparent",
                   help="transparent (default), a name (white, black, gray, red, green, blue), #RRGGBB or r,g,b")
    p.add_argument("--format", default="png", choices=["png", "webp", "jpg"],
                   help="png (default) and webp (lossless) keep transparency; jpg is flattened onto --jpeg-background")
    p.add_argument("--jpeg-background", default="white", help="colour a transparent result is flattened onto for --format jpg (default white)")
    p.add_argument("--mask-only", action="store_true", help="write the subject mask (white = subject) instead of the cut-out")
    p.add_argument("--save-mask", action="store_true", help="also write <stem>_mask.png beside each image")
    p.add_argument("--mask-dir", type=Path, help="also write masks into this folder, same relative paths and stems "
                                                  "(kohya's masked-loss conditioning layout)")
    p.add_argument("--recursive", action=argparse.BooleanOptionalAction, default=True,
                   help="descend into subfolders such as kohya's 10_subject/ (default: yes)")
    p.add_argument("--pattern", default=None, help="file patterns, ';'-separated (default: common image types)")
    p.add_argument("--start", type=int, default=0, help="skip the first N images of the sorted list")
    p.add_argument("--limit", type=int, default=0, help="do at most N images (0 = all)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--skip-existing", dest="existing", action="store_const", const="skip",
                   help="keep outputs that are already there (default: resume)")
    g.add_argument("--overwrite", dest="existing", action="store_const", const="overwrite", help="redo every image")
    g.add_argument("--keep-both", dest="existing", action="store_const", const="keep_both",
                   help="write <stem>_1 etc. next to existing outputs")
    p.set_defaults(existing="skip")
    p.add_argument("--no-captions", dest="captions", action="store_false", help="do not copy .txt/.caption/.json sidecars")
    p.add_argument("--png-compress", type=int, default=1, choices=range(10), metavar="0-9", help="PNG zlib level (default 1: fastest; 9 = smallest files)")
    p.add_argument("--jpeg-quality", type=int, default=95, help="default 95")
    p.add_argument("--workers", type=int, default=2, help="decoder threads and encoder threads, each (default 2)")
    p.add_argument("--report", type=Path, help="also write the report as JSON to this file")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    from cutout_standalone import load_pack

    load_pack()
    from comfyui_cutout.dataset.job import JobOptions, run_job
    from comfyui_cutout.dataset.paths import UnsafePath, check_no_overlap
    from comfyui_cutout.dataset.reader import DEFAULT_PATTERN
    from comfyui_cutout.dataset.writer import WriteOptions
    from comfyui_cutout.models import ModelNotAvailableError, UnknownModelError, model_choices

    parser = build_parser(model_choices())
    a = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING, format="%(message)s")

    if not a.source.is_dir():
        parser.error(f"--source {a.source} is not a folder")
    try:
        check_no_overlap(a.source, a.dest)
        if a.mask_dir is not None:
            check_no_overlap(a.source, a.mask_dir)
        wopts = WriteOptions(fmt=a.format, background=a.background, jpeg_background=a.jpeg_background,
                             mask_only=a.mask_only, save_mask=a.save_mask, mask_dir=a.mask_dir,
                             existing=a.existing, copy_captions=a.captions, png_compress=a.png_compress,
                             jpeg_quality=a.jpeg_quality)
    except (UnsafePath, ValueError) as e:
        parser.error(str(e))
    opts = JobOptions(model=a.model, device=a.device, recursive=a.recursive, pattern=a.pattern or DEFAULT_PATTERN,
                      start=a.start, limit=a.limit, write=wopts, read_workers=a.workers, write_workers=a.workers)

    bar = None

    def on_start(report, todo):
        nonlocal bar
        if report.skipped:
            print(f"{len(report.skipped)} already done in {a.dest} (resume); {todo} to do", file=sys.stderr)
        if a.progress and todo:
            from tqdm import tqdm

            bar = tqdm(total=todo, unit="img", dynamic_ncols=True, desc="cutout")

    def on_item(rel, status, finished, todo):
        if bar is not None:
            bar.update(1)
            if status == "failed":
                bar.set_postfix_str(f"failed: {rel}"[:60], refresh=False)

    try:
        report = run_job(a.source, a.dest, opts, on_item=on_item, on_start=on_start)
    except (ModelNotAvailableError, UnknownModelError) as e:
        print(f"cli.py: --model {a.model}: {e}", file=sys.stderr)
        return 3
    finally:
        if bar is not None:
            bar.close()
    print(report.summary(), file=sys.stderr)
    if a.report is not None:
        a.report.write_text(report.to_json(), encoding="utf-8")
    if report.interrupted:
        return 130
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
