#!/usr/bin/env python
"""Cut out every photo of a folder, keeping relative paths, file stems and caption files.

    python cli.py --source raw --dest clean
    python cli.py --source dataset --dest dataset_clean --background white --format jpg
    python cli.py --source raw --dest masks --mask-only
    python cli.py --source raw --dest clean --refine guided --fill-holes --remove-islands 200
    python cli.py --source clip.mp4 --dest cut.webm            # a video: VP9 with alpha (.mov: ProRes 4444)

A rerun does only what is missing or stale (resume after Ctrl-C; an output made from another
version of the photo or with other settings is redone, see docs/dataset.md); ``--overwrite``
redoes everything.
Exit code: 0 all good, 1 some files failed (listed at the end), 2 bad arguments,
3 model not available, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
REFINE_CHOICES = ("off", "guided", "matting")  # spellings of options.parse_refine_mode


def cutout_options(a: argparse.Namespace):
    """The CLI's flags as the pipeline's ``CutoutOptions`` (raises ValueError naming the flag)."""
    from cutout.options import CutoutOptions, RefineOptions, flattened_for_jpeg, parse_background

    for flag, value in (("--threshold", a.threshold), ("--remove-islands", a.remove_islands),
                        ("--feather", a.feather)):
        if not math.isfinite(value):  # NaN passes every comparison
            raise ValueError(f"{flag} {value}: expected a finite number")
    if not 0.0 <= a.threshold <= 1.0:
        raise ValueError(f"--threshold {a.threshold}: expected 0..1")
    if a.remove_islands < 0 or a.feather < 0:
        raise ValueError("--remove-islands and --feather must be >= 0")
    refine = RefineOptions(threshold=a.threshold, fill_holes=a.fill_holes, remove_islands=a.remove_islands,
                           grow=a.grow, edge_refinement=a.refine, feather=a.feather)
    try:
        background = parse_background(a.background)
    except ValueError as e:
        raise ValueError(f"--background: {e}") from None
    opts = CutoutOptions(model=a.model, device=a.device, refine_edges=a.refine_edges, refine=refine,
                         decontaminate=a.decontaminate, background=background, clear_fill=a.clear_fill,
                         mask_only=a.mask_only, quality=a.quality)
    if a.format == "jpg":
        try:
            opts = flattened_for_jpeg(opts, parse_background(a.jpeg_background))
        except ValueError as e:
            raise ValueError(f"--jpeg-background: {e}") from None
    return opts


def build_parser(model_names: list[str]) -> argparse.ArgumentParser:
    from cutout.codec import EncodeSettings
    from cutout.dataset.reader import DEFAULT_MAX_MEGAPIXELS

    p = argparse.ArgumentParser(
        prog="cli.py", description="Remove the background of every image in a folder (ComfyUI-Cutout, no ComfyUI needed).")
    p.add_argument("--source", required=True, type=Path, help="folder of photos (kohya layout welcome: captions beside images)")
    p.add_argument("--dest", required=True, type=Path, help="output folder (created); must not overlap --source")
    p.add_argument("--model", default="u2netp", help="default u2netp (embedded, offline); one of: " + ", ".join(model_names) + " (or an .onnx file in models/rembg)")
    p.add_argument("--device", default="cpu", choices=["cpu", "gpu"], help="default cpu; gpu needs onnxruntime-gpu")
    p.add_argument("--background", default="transparent",
                   help="transparent (default), a colour name (white, black, gray, ...), #RRGGBB, r,g,b, "
                        "gradient:COLOUR1:COLOUR2[:ANGLE], blur or checkerboard")
    p.add_argument("--format", default="png", choices=["png", "webp", "jpg"],
                   help="png (default) and webp (lossless) keep transparency; jpg is flattened onto --jpeg-background")
    p.add_argument("--jpeg-background", default="white", help="colour a transparent result is flattened onto for --format jpg (default white)")
    p.add_argument("--decontaminate", action=argparse.BooleanOptionalAction, default=True,
                   help="re-estimate half-transparent edge colours without the old background's tint, as Remove "
                        "Background and Composite Background do (default: yes)")
    p.add_argument("--clear-fill", default="black", choices=["black", "bleed", "photo"],
                   help="what a transparent output stores where alpha is 0 (invisible, but what kohya's sd-scripts "
                        "train on without --alpha_mask): black (default, as rembg), bleed (subject colours spread "
                        "outward) or photo (the photo's pixels: only for training with --alpha_mask)")
    t = p.add_argument_group("training set (crop, one subject, review)")
    t.add_argument("--crop", type=float, default=None, metavar="MARGIN", nargs="?", const=0.1,
                   help="crop each output to the subject's box plus MARGIN (a fraction of the box's longer side; "
                        "default 0.1 when given without a value); never upscales, never cuts the subject")
    t.add_argument("--crop-aspect", default="free", metavar="ASPECT",
                   help="with --crop: free (default), square, or aspect buckets W:H,... (e.g. 1:1,4:3,3:4,16:9,9:16): "
                        "the crop is widened to the nearest one the photo allows")
    t.add_argument("--keep-subject", default="all", choices=["all", "largest", "centre"],
                   help="keep only the largest subject, or the one nearest the centre (group photos); default all")
    t.add_argument("--review", action=argparse.BooleanOptionalAction, default=True,
                   help="write review.html in --dest (default): every cut-out, this run's and those up to date "
                        "from earlier runs, on a checkerboard next to its original, most doubtful first "
                        "(one offline file); --no-review skips it")
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
                   help="keep outputs the destination's manifest says were made from the same photo and captions "
                        "with the same settings; redo the rest (default: resume)")
    g.add_argument("--overwrite", dest="existing", action="store_const", const="overwrite", help="redo every image")
    g.add_argument("--keep-both", dest="existing", action="store_const", const="keep_both",
                   help="write <stem>_1 etc. next to existing outputs")
    g.add_argument("--trust-existing", dest="existing", action="store_const", const="trust",
                   help="count any output that exists as done, whatever made it (the old resume rule)")
    p.set_defaults(existing="skip")
    p.add_argument("--no-captions", dest="captions", action="store_false", help="do not copy .txt/.caption/.json sidecars")
    p.add_argument("--png-compress", type=int, default=EncodeSettings.png_compress, choices=range(10), metavar="0-9", help="PNG compression (default %(default)s: per image Paeth + zlib RLE or 'up' + libdeflate, whichever a sample of rows says is smaller; 2: the same with zlib-ng, ~1 %% bigger, faster; 1: Paeth + RLE only; 4-9: every filter tried, zlib at that level, slower; 0: none)")
    p.add_argument("--jpeg-quality", type=int, default=95, help="default 95")
    p.add_argument("--workers", type=int, default=2, help="decoder threads and encoder threads, each (default 2)")
    p.add_argument("--max-megapixels", type=float, default=DEFAULT_MAX_MEGAPIXELS, metavar="MP",
                   help=f"a larger image fails (its header is read, its pixels are not), keeping memory bounded "
                        f"(default {DEFAULT_MAX_MEGAPIXELS:g}; 0 = no limit)")
    f = p.add_argument_group("mask refinement (Mask Refine's operations, in its order: threshold -> fill holes -> "
                             "remove islands -> grow/shrink -> edge refinement -> feather; all off by default)")
    from cutout.quality import CHOICES as QUALITY_CHOICES, auto_summary

    f.add_argument("--quality", default="auto", choices=QUALITY_CHOICES,
                   help="fast: one look at the photo; best: also the mirrored photo, merged (2x the time); "
                        f"auto (default): {auto_summary()} (docs/quality.md)")
    f.add_argument("--refine-edges", action="store_true",
                   help="fit the mask's edge to the photo while scaling the model's output up (guided upsampling, "
                        "as Remove Background's refine_edges; +0.15 s per 12 MP image)")
    f.add_argument("--threshold", type=float, default=0.0, metavar="T",
                   help="hard threshold 0..1: mask >= T becomes subject, the rest background (default 0 = off)")
    f.add_argument("--fill-holes", action="store_true", help="fill background regions enclosed by the subject")
    f.add_argument("--remove-islands", type=float, default=0.0, metavar="N",
                   help="remove subject specks smaller than N pixels (below 1: a fraction of the image area)")
    f.add_argument("--grow", type=int, default=0, metavar="N", help="grow the subject by N px (negative shrinks)")
    f.add_argument("--refine", default="off", choices=REFINE_CHOICES,
                   help="edge refinement against the photo: guided (fast guided filter) or matting (closed-form, "
                        "slow, hair/fur; needs pymatting); default off")
    f.add_argument("--feather", type=float, default=0.0, metavar="N", help="blur the mask edge by N px (default 0)")
    v = p.add_argument_group("video (--source is a video file; --dest a .webm or .mov with alpha, or .mp4/.mkv)")
    v.add_argument("--temporal", default="motion", choices=["off", "colour", "motion"],
                   help="temporal smoothing of the masks (Mask Refine's temporal_mode): motion (default) follows "
                        "the optical flow, colour averages the same pixel where its colour did not change")
    v.add_argument("--temporal-strength", type=float, default=1.0, metavar="S",
                   help="0..1, weight strength^distance of the neighbouring frames (default 1)")
    v.add_argument("--png-dir", type=Path, help="also write every frame as a PNG into this folder")
    v.add_argument("--mask-video", type=Path, help="also write the mask as a grey video (.mp4, .webm, .mov, .mkv)")
    r = p.add_argument_group("scale-out (Ray Data; pip install -r requirements-ray.txt)")
    r.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local (default): threads in this process; ray: Ray Data tasks and actors")
    r.add_argument("--ray-address", default=None, help="Ray cluster to join ('auto', host:6379, ray://host:10001); "
                                                       "default: start a local Ray on this machine")
    r.add_argument("--batch-size", type=int, default=4, help="images per inference call (ray; default 4)")
    r.add_argument("--actors", type=int, default=1, help="inference actors, each loads the model once (ray; default 1)")
    r.add_argument("--cpus-per-actor", type=float, default=1.0, help="Ray CPUs reserved per actor (ray; default 1)")
    r.add_argument("--gpus-per-actor", type=float, default=0.0, help="GPUs per actor, with --device gpu (ray; default 0)")
    r.add_argument("--ort-threads", type=int, default=0,
                   help="onnxruntime threads per actor (ray; default 0 = all cores of the node)")
    p.add_argument("--report", type=Path, help="also write the report as JSON to this file (and the doubt table, "
                                                "most doubtful first, as CSV beside it: same name, .csv)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None, own_process: bool = False) -> int:
    """The command line; ``own_process``: run as a script (may tune process-wide torch threads and malloc)."""
    from cutout.dataset.job import JobOptions, run_job
    from cutout.dataset.paths import (UnsafePath, check_mask_dir, check_no_overlap, check_writable_file,
                                      check_writable_folder)
    from cutout.dataset.reader import DEFAULT_PATTERN
    from cutout.dataset.writer import WriteOptions
    from cutout.models import ModelNotAvailableError, UnknownModelError, model_choices

    parser = build_parser(model_choices())
    a = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING, format="%(message)s")

    if a.source.is_file():
        from cutout.dataset.reader import IMAGE_EXTENSIONS

        if a.source.suffix.lower() in IMAGE_EXTENSIONS and a.source.suffix.lower() != ".gif":
            print(f"cli.py: --source {a.source} is one image; --source takes a folder of images (put the photo "
                  "in a folder of its own) or a video file", file=sys.stderr)
            return 2
        return video_main(a, parser)
    if not a.source.is_dir():
        print(f"cli.py: --source {a.source} is not a folder or a video file", file=sys.stderr)
        return 2
    if _refused(_options_given(a, parser, VIDEO_ONLY), "for a video file --source only; a folder of images"):
        return 2
    try:
        check_no_overlap(a.source, a.dest)
        check_writable_folder(a.dest, "--dest")
        if a.mask_dir is not None:
            check_no_overlap(a.source, a.mask_dir, "--mask-dir")
            check_mask_dir(a.dest, a.mask_dir)
            check_writable_folder(a.mask_dir, "--mask-dir")
        if a.report is not None:  # beside or inside --dest is fine: the job creates that folder
            check_writable_file(a.report, "--report", creatable=a.dest)
        if a.max_megapixels < 0:
            raise ValueError(f"--max-megapixels {a.max_megapixels:g}: expected >= 0 (0 = no limit)")
        wopts = WriteOptions(fmt=a.format, save_mask=a.save_mask, mask_dir=a.mask_dir, existing=a.existing,
                             copy_captions=a.captions, png_compress=a.png_compress, jpeg_quality=a.jpeg_quality,
                             crop=a.crop, crop_aspect=a.crop_aspect, keep_subject=a.keep_subject, review=a.review)
        opts = JobOptions(cutout=cutout_options(a), recursive=a.recursive, pattern=a.pattern or DEFAULT_PATTERN,
                          start=a.start, limit=a.limit, write=wopts, read_workers=a.workers,
                          write_workers=a.workers, max_megapixels=a.max_megapixels)
    except (UnsafePath, ValueError) as e:  # one line, before anything is read or written
        print(f"cli.py: {e}", file=sys.stderr)
        return 2

    bar = None

    def on_start(report, todo):
        nonlocal bar
        if report.skipped or report.redone:
            print(f"{len(report.skipped)} up to date in {a.dest} (resume), {len(report.redone)} to redo; "
                  f"{todo} to do", file=sys.stderr)
        if a.progress and todo:
            from tqdm import tqdm

            bar = tqdm(total=todo, unit="img", dynamic_ncols=True, desc="cutout")

    def on_item(rel, status, finished, todo):
        if bar is not None:
            bar.update(1)
            if status == "failed":
                bar.set_postfix_str(f"failed: {rel}"[:60], refresh=False)

    try:
        if a.engine == "ray":
            from cutout.dataset.ray_engine import RayNotInstalled, RayOptions, run_job_ray

            ropts = RayOptions(address=a.ray_address, actors=a.actors, batch_size=a.batch_size,
                               cpus_per_actor=a.cpus_per_actor, gpus_per_actor=a.gpus_per_actor,
                               ort_threads=a.ort_threads, io_tasks=a.workers)
            try:
                report = run_job_ray(a.source, a.dest, opts, ropts, on_item=on_item, on_start=on_start)
            except RayNotInstalled as e:
                print(f"cli.py: --engine ray: {e}", file=sys.stderr)
                return 2
        else:
            if own_process:
                _tune_process()
            report = run_job(a.source, a.dest, opts, on_item=on_item, on_start=on_start)
    except (ModelNotAvailableError, UnknownModelError) as e:
        print(f"cli.py: --model {a.model}: {e}", file=sys.stderr)
        return 3
    finally:
        if bar is not None:
            bar.close()
    print(report.summary(), file=sys.stderr)
    if a.report is not None:
        from cutout.dataset.writer import WriteError, write_report

        try:
            if a.report.parent.resolve() == a.dest.resolve():
                a.dest.mkdir(parents=True, exist_ok=True)
            write_report(a.report, report.to_json())
            if report.items:  # the doubt table, most doubtful first, beside the JSON
                write_report(a.report.with_suffix(".csv"), report.to_csv())
        except WriteError as e:
            print(f"cli.py: --report {a.report}: {e}", file=sys.stderr)
            return 1
    if report.interrupted:
        return 130
    return 0 if report.ok else 1


# options of the folder job that a video file does not use (the video has its own group)
FOLDER_ONLY = ("format", "jpeg_background", "crop", "crop_aspect", "keep_subject", "review", "save_mask",
               "mask_dir", "recursive", "pattern", "start", "limit", "captions", "png_compress", "jpeg_quality",
               "workers", "max_megapixels", "engine", "ray_address", "batch_size", "actors", "cpus_per_actor",
               "gpus_per_actor", "ort_threads", "report")


VIDEO_ONLY = ("temporal", "temporal_strength", "png_dir", "mask_video")


def _options_given(a: argparse.Namespace, parser: argparse.ArgumentParser, dests=FOLDER_ONLY) -> list[str]:
    """The options of ``dests`` given on this command line (set to other than their default)."""
    given = []
    for action in parser._actions:
        if action.dest in dests and action.option_strings and getattr(a, action.dest) != action.default:
            given.append(action.option_strings[-1])
        elif dests is FOLDER_ONLY and action.dest == "existing" and action.const == getattr(a, "existing") \
                and action.const not in (parser.get_default("existing"), "overwrite"):
            given.append(action.option_strings[-1])
    return list(dict.fromkeys(given))


def _refused(options: list[str], scope: str, hint: str = "") -> bool:
    """Say in one line that ``options`` do not apply here; True when there were any."""
    if options:
        print(f"cli.py: {', '.join(options)}: {scope} does not use {'it' if len(options) == 1 else 'them'}{hint}",
              file=sys.stderr)
    return bool(options)


def video_main(a: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``--source`` is a video file: ``cutout.video.cut_out_video``."""
    from cutout.models import ModelNotAvailableError, UnknownModelError
    from cutout.video import VideoError, VideoOptions, cut_out_video

    if _refused(_options_given(a, parser), "for folders of images only; a video --source",
                " (video options: cli.py --help, 'video' group)"):
        return 2
    if not 0.0 <= a.temporal_strength <= 1.0:
        print(f"cli.py: --temporal-strength {a.temporal_strength}: expected 0..1", file=sys.stderr)
        return 2
    try:
        cut = cutout_options(a)
    except ValueError as e:
        print(f"cli.py: {e}", file=sys.stderr)
        return 2
    opts = VideoOptions(cut, temporal=0.0 if a.temporal == "off" else a.temporal_strength,
                        temporal_mode="colour" if a.temporal == "off" else a.temporal, png_dir=a.png_dir,
                        mask_video=a.mask_video, overwrite=a.existing == "overwrite")
    bar = None

    def on_progress(done, total):
        nonlocal bar
        if not a.progress:
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total or None, unit="frame", dynamic_ncols=True, desc="cutout")
        bar.update(done - bar.n)

    try:
        info = cut_out_video(a.source, a.dest, opts, on_progress)
    except VideoError as e:
        print(f"cli.py: {e}", file=sys.stderr)
        return 2
    except (ModelNotAvailableError, UnknownModelError) as e:
        print(f"cli.py: --model {a.model}: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("cli.py: interrupted; no output written", file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    print(f"{info['frames']} frames, {info['size'][0]}x{info['size'][1]} at {info['fps']:.3f} fps, audio "
          f"{info['audio'] or 'none'} -> {a.dest}", file=sys.stderr)
    if info.get("resized"):
        print(f"cli.py: --source {a.source}: the frame size changed mid-way; {info['resized']} frame(s) were "
              f"scaled to the first frame's {info['size'][0]}x{info['size'][1]}", file=sys.stderr)
    if info.get("damaged"):
        print(f"cli.py: --source {a.source}: {info['damaged']} damaged packet(s) could not be decoded and are "
              "missing from the output (a frame or a stretch of sound each)", file=sys.stderr)
        return 1
    return 0


def _tune_process() -> None:
    """The folder job's own process (docs/performance.md, measured there):

    - one torch thread per caller: the reader, model and writer threads already keep the cores
      busy, torch's intra-op pool (per calling thread, spin-waiting between ops) only adds
      contention. An explicit OMP_NUM_THREADS is kept.
    - glibc malloc: one arena and a high trim threshold, so the large per-photo buffers freed by
      one thread are reused by the next instead of being returned to the kernel and faulted in
      again (most of the job's system time). MALLOC_ARENA_MAX / _TRIM_THRESHOLD_ / _MMAP_THRESHOLD_
      given in the environment are kept.
    """
    import os

    if "OMP_NUM_THREADS" not in os.environ:
        import torch

        torch.set_num_threads(1)
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError):  # not glibc
            return
        if "MALLOC_ARENA_MAX" not in os.environ:
            mallopt(-8, 1)  # M_ARENA_MAX
        if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
            mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD (this also fixes the mmap threshold: set it too)
        if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
            mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD: big buffers come from the arena, not fresh mmaps


if __name__ == "__main__":
    sys.exit(main(own_process=True))
