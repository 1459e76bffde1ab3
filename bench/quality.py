"""Quality against ground truth: the pack's own code path vs ``rembg.remove(only_mask=True)``.

    python -m bench.quality [FOLDER ...] [--models u2netp,u2net] [--refine-edges] [--refine "k=v,k=v"] [--limit N]

FOLDER is an eval folder with a ``manifest.csv`` (columns ``file``, ``gt_file``; the source is
the file-name prefix before the first ``_``) — default ``../shared/eval/dev`` — or a folder of
consecutive video frames (``NNNNN.jpg`` + ``NNNNN.mask.png``, with or without a manifest), for which temporal
flicker is reported as well. Every model in the catalog is tried; one whose weights are not on
disk is reported as skipped (never faked, never downloaded). ``--refine-edges`` also scores
Remove Background's ``refine_edges``; ``--refine`` (repeatable) runs Mask Refine's operations
(``refine_chain.refine_masks``, the node's function) with those inputs on each of our masks.

Measures per model and per source: mean IoU (mask > 0.5 vs GT > 0.5), MAE vs the (soft) GT,
band error (MAE within 10 px of the GT edge), seconds per image (network + pre/post-processing,
decoding excluded on both sides), and the mean |ours − rembg| between the two masks.
Writes ``bench/results/quality.json`` and ``bench/results/quality.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench._common import DEFAULT_EVAL, RESULTS, available_models, machine_info, parse_options, rembg_session, write_json

KEYS = ["iou", "mae", "band", "seconds"]


def rembg_mask(session, pil_image):
    import numpy as np
    import torch
    from rembg import remove

    m = remove(pil_image, session=session, only_mask=True)
    return torch.from_numpy(np.asarray(m, dtype=np.float32) / 255.0)


def to_pil(image):
    from PIL import Image

    return Image.fromarray((image[0].numpy() * 255.0 + 0.5).astype("uint8"))


def score(pred, gt, M) -> dict:
    return {"iou": M.iou(pred, gt), "mae": M.mae(pred, gt), "band": M.band_error(pred, gt)}


def evaluate_folder(folder: Path, models: list[str], refiners: dict, use_rembg: bool, limit: int | None,
                    log, refine_edges: bool = False) -> dict:
    from bench import metrics as M
    from cutout import pipeline

    video = M.is_video_folder(folder)
    pairs = M.read_video_folder(folder) if video else M.read_manifest(folder)
    if limit:
        pairs = pairs[:limit]
    log(f"\n== {folder} ({'video, ' if video else ''}{len(pairs)} images)")
    data = [(p, M.load_rgb(p.image), M.load_gray(p.gt)) for p in pairs]
    out = {"folder": str(folder), "video": video, "n": len(pairs), "methods": {}}
    for model in models:
        methods = {f"{model} · cutout": [], **({f"{model} · rembg": []} if use_rembg else {}),
                   **({f"{model} · cutout refine_edges": []} if refine_edges else {})}
        for label in refiners:
            methods[f"{model} · cutout + refine({label})"] = []
        masks = {k: [] for k in methods}
        rsession = rembg_session(model) if use_rembg else None
        # warm-up both paths (session load, first-run allocations) on the first image
        pipeline.predict_masks(data[0][1], model)
        if rsession is not None:
            rembg_mask(rsession, to_pil(data[0][1]))
        t_model = time.perf_counter()
        for i, (pair, image, gt) in enumerate(data):
            t0 = time.perf_counter()
            ours = pipeline.predict_masks(image, model)
            dt = time.perf_counter() - t0
            masks[f"{model} · cutout"].append(ours[0])
            row = {"name": pair.name, "source": pair.source, "seconds": dt, **score(ours[0], gt, M)}
            if rsession is not None:
                pil = to_pil(image)
                t0 = time.perf_counter()
                ref = rembg_mask(rsession, pil)
                rdt = time.perf_counter() - t0
                masks[f"{model} · rembg"].append(ref)
                rrow = {"name": pair.name, "source": pair.source, "seconds": rdt, **score(ref, gt, M)}
                row["vs_rembg"] = rrow["vs_rembg"] = (ours[0] - ref).abs().mean().item()
                methods[f"{model} · rembg"].append(rrow)
            methods[f"{model} · cutout"].append(row)
            if refine_edges:
                t0 = time.perf_counter()
                fitted = pipeline.predict_masks(image, model, refine_edges=True)
                key = f"{model} · cutout refine_edges"
                masks[key].append(fitted[0])
                methods[key].append({"name": pair.name, "source": pair.source,
                                     "seconds": time.perf_counter() - t0, **score(fitted[0], gt, M)})
            for label, refine in refiners.items():
                t0 = time.perf_counter()
                refined = refine(ours, image)
                rt = time.perf_counter() - t0
                key = f"{model} · cutout + refine({label})"
                masks[key].append(refined[0])
                methods[key].append({"name": pair.name, "source": pair.source, "seconds": dt + rt,
                                     "refine_seconds": rt, **score(refined[0], gt, M)})
            if (i + 1) % 10 == 0 or i + 1 == len(data):
                log(f"   {model}: {i + 1}/{len(data)} ({time.perf_counter() - t_model:.0f} s)")
        for key, rows in methods.items():
            summary = M.mean_by(rows, KEYS + (["vs_rembg"] if "vs_rembg" in rows[0] else []),
                                group=None if video else "source")
            if video:
                gts = [g for _, _, g in data]
                summary["all"]["flicker"] = M.flicker(masks[key], gts)
            out["methods"][key] = {"summary": summary, "rows": rows}
            a = summary["all"]
            extra = f"  flicker {a['flicker'] * 1e3:.2f}e-3" if video else ""
            log(f"   {key:<40} IoU {a['iou']:.3f}  MAE {a['mae']:.4f}  band {a['band']:.3f}  "
                f"{a['seconds']:.3f} s/img{extra}")
    return out


def markdown(report: dict) -> str:
    info = report["machine"]
    lines = [
        "# Quality on real photos (generated by `python -m bench.quality`)",
        "",
        f"Measured {info['date_utc']} on {info['cpu']} ({info['cores']} cores, shared — seconds are noisy), "
        f"torch {info['torch']}, onnxruntime {info.get('onnxruntime', '?')}, rembg {info.get('rembg', '?')}.",
        "IoU: mask > 0.5 vs GT > 0.5. MAE: vs the soft GT. Band: MAE within 10 px of the GT edge. "
        "s/img: network + pre/post-processing on one image (decoding excluded on both sides). "
        "|Δ rembg|: mean absolute difference between our mask and rembg's.",
        "",
    ]
    for f in report["folders"]:
        lines.append(f"## {f['folder']} ({f['n']} {'frames' if f['video'] else 'images'})")
        lines.append("")
        methods = f["methods"]
        if f["video"]:
            lines += ["| model · method | flicker ×10⁻³ | IoU | MAE | band | s/frame |", "|---|---|---|---|---|---|"]
            for key, m in methods.items():
                a = m["summary"]["all"]
                lines.append(f"| {key} | {a['flicker'] * 1e3:.2f} | {a['iou']:.3f} | {a['mae']:.4f} | "
                             f"{a['band']:.3f} | {a['seconds']:.3f} |")
        else:
            sources = [s for s in next(iter(methods.values()))["summary"] if s != "all"] if methods else []
            head = "| model · method | all: IoU / MAE / band | " + " | ".join(
                f"{s} (n={next(iter(methods.values()))['summary'][s]['n']}): IoU / MAE / band" for s in sources
            ) + " | s/img | \\|Δ rembg\\| |"
            lines += [head, "|" + "---|" * (4 + len(sources))]
            for key, m in methods.items():
                s = m["summary"]
                cells = [f"{s[g]['iou']:.3f} / {s[g]['mae']:.4f} / {s[g]['band']:.3f}" for g in ["all"] + sources]
                vs = f"{s['all']['vs_rembg']:.4f}" if "vs_rembg" in s["all"] and "rembg" not in key else "—"
                lines.append(f"| {key} | " + " | ".join(cells) + f" | {s['all']['seconds']:.3f} | {vs} |")
        lines.append("")
    if report["skipped_models"]:
        lines.append("Skipped models (not faked): " + "; ".join(f"**{k}**: {v}" for k, v in report["skipped_models"].items()))
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="*", type=Path, help=f"eval folders (default {DEFAULT_EVAL})")
    ap.add_argument("--models", help="comma-separated model names (default: every catalog model; "
                                     "missing ones are reported as skipped)")
    ap.add_argument("--refine-edges", action="store_true", help="also score Remove Background's refine_edges")
    ap.add_argument("--refine", action="append", default=[], metavar="K=V,K=V",
                    help="also run Mask Refine's operations with these inputs on our masks; repeatable")
    ap.add_argument("--no-rembg", action="store_true", help="skip the rembg reference")
    ap.add_argument("--limit", type=int, help="first N images of each folder (quick checks)")
    ap.add_argument("--out", type=Path, default=RESULTS / "quality", help="output path stem (.json and .md)")
    args = ap.parse_args(argv)
    from cutout.models.catalog import CATALOG

    folders = args.folders or [DEFAULT_EVAL]
    for f in folders:
        if not f.is_dir():
            ap.error(f"{f} is not a folder")
    names = args.models.split(",") if args.models else list(CATALOG)
    models, skipped = available_models(names)
    for k, v in skipped.items():
        print(f"skipped model {k}: {v}")
    if not models:
        print("no model available")
        return 1

    from cutout.imaging.refine_chain import refine_masks

    refiners = {text: (lambda m, img, o=parse_options(text): refine_masks(m, img, **o)) for text in args.refine}
    report = {"machine": machine_info(), "models": models, "skipped_models": skipped,
              "refine_settings": list(refiners), "folders": []}
    print(f"{report['machine']['cpu']} — absolute seconds are noisy on a shared CPU")
    for f in folders:
        report["folders"].append(evaluate_folder(f, models, refiners, not args.no_rembg, args.limit,
                                                 lambda s: print(s, flush=True), args.refine_edges))
    out = args.out
    write_json(out.with_suffix(".json"), report)
    out.with_suffix(".md").write_text(markdown(report))
    print(f"\nwrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
