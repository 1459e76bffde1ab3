"""Quality against ground truth: the pack's own code path vs ``rembg.remove(only_mask=True)``.

    python -m bench.quality [FOLDER ...] [--models u2netp,u2net] [--quality fast,best] [--split held]
                            [--refine-edges] [--refine "k=v,k=v"] [--limit N] [--repeats 3]

FOLDER: an eval folder with a ``manifest.csv`` (columns ``file``, ``gt_file``; source = the file-name
prefix before the first ``_``), default ``../shared/eval/dev``, or a folder of consecutive video frames
(``NNNNN.jpg`` + ``NNNNN.mask.png``, e.g. ``../shared/eval/video/*``). Models without weights on disk
are reported as skipped (never faked, never downloaded). Per model, method and source: mean IoU (mask
> 0.5 vs GT > 0.5), MAE vs the soft GT, band error (MAE within 10 px of the GT edge), s/image (decoding
excluded on both sides), mean |ours − rembg|. Each ``--quality`` is one method; the Spearman correlation
of its confidence with IoU is reported, and of the dataset doubt score (``imaging.subjects.doubt``) with
1 − IoU, with how many of the 10 lowest-IoU photos are among the 10 / 20 most doubted. ``--refine-edges``
scores Remove Background's ``refine_edges``; ``--refine`` (repeatable) runs Mask Refine's operations on
our masks; ``--split`` picks the fixed tuning / held-out part (``metrics.split``); a whole manifest
folder (``--split all``, the default) is also reported per part, from the same run.
Video folders add flicker (mean |m_t − m_t−1| where the GT did not change) and a temporal section: the
first quality's masks vs Mask Refine's ``colour`` (temporal 1.0) and ``motion`` (optical flow) modes, and
``motion`` as it was before the wider window (3 frames each side, 1.5 px consistency, no trust spread;
``--no-before`` drops it),
flicker / dtSSD / IoU for the whole sequence and each half, and s/frame of the smoothing alone (median of
``--repeats`` interleaved runs; 0: not timed); a last table sums them up per sequence, each marked as a
tuning or a check sequence by ``--tuned NAME,NAME`` (folder names the parameters were chosen on).
Writes ``bench/results/quality.json`` and ``bench/results/quality.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench._common import (DEFAULT_EVAL, RESULTS, available_models, interleaved, machine_info, parse_options,
                           rembg_session, write_json)

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


def pack_mask(image, model: str, quality: str, refine_edges: bool = False, agreement: bool = False):
    """(mask [H,W], confidence) from the pack's quality path for a one-frame IMAGE (and the looks'
    agreement, for the doubt score, with ``agreement``)."""
    from cutout.imaging.tensors import sanitize
    from cutout.models.session import get_session
    from cutout.quality import partner_session, predict_frame_quality

    session = get_session(model)
    r = predict_frame_quality(session, sanitize(image[0]), quality, refine_edges,
                              partner=partner_session(session, quality))
    return (r.mask, r.confidence, r.agreement) if agreement else (r.mask, r.confidence)


MOTION, BEFORE = "temporal motion (1.0)", "motion, radius 3 (before)"
# the motion mode as shipped before the wider window and the spread trust (docs/video.md)
BEFORE_SETTINGS = {"radius": 3, "consistency_px": 1.5, "trust_spread": 1}


def temporal(masks, frames, gts, repeats: int, M, before: bool = True) -> dict:
    """Per-frame masks [N,H,W] vs Mask Refine's two temporal modes on one sequence, by part, and their seconds."""
    from cutout.imaging.refine_chain import refine_masks
    from cutout.imaging.temporal_flow import flow_smooth

    fns = {"per-frame": lambda m, img: m,
           "temporal colour (1.0)": lambda m, img: refine_masks(m, img, temporal=1.0),
           **({BEFORE: lambda m, img: flow_smooth(m, img, 1.0, **BEFORE_SETTINGS)} if before else {}),
           MOTION: lambda m, img: refine_masks(m, img, temporal=1.0, temporal_mode="motion")}
    n, half = len(gts), len(gts) // 2
    out = {"size": list(frames.shape[1:3]), "parts": {}}
    for part, sl in {"all": slice(0, n), "first half": slice(0, half), "second half": slice(half, n)}.items():
        rows = out["parts"][part] = {}
        for name, fn in fns.items():
            m, g = list(fn(masks[sl], frames[sl])), list(gts[sl])
            rows[name] = {"flicker": M.flicker(m, g), "dtssd": M.dtssd(m, g),
                          "iou": sum(M.iou(a, b) for a, b in zip(m, g)) / len(g)}
    if repeats < 1:
        return {**out, "seconds": {}}
    timed = interleaved({k: (lambda fn=fn: fn(masks, frames)) for k, fn in fns.items() if k != "per-frame"},
                        repeats=repeats, warmup=1)
    return {**out, "seconds": {k: {"wall_per_frame": t["median_s"] / n, "cpu_per_frame": t["cpu_median_s"] / n}
                               for k, t in timed.items()}}


def evaluate_folder(folder: Path, models: list[str], qualities: list[str], refiners: dict, use_rembg: bool,
                    limit: int | None, log, part: str = "all", refine_edges: bool = False, repeats: int = 3,
                    before: bool = True) -> dict:
    import numpy as np
    import torch

    from bench import metrics as M
    from cutout.imaging.subjects import doubt

    video = M.is_video_folder(folder)
    pairs = M.read_video_folder(folder) if video else M.split(M.read_manifest(folder), part)
    if limit:
        pairs = pairs[:limit]
    # a whole manifest folder is reported per part too (the same masks)
    held = None if video or part != "all" else {p.name for p in M.split(M.read_manifest(folder), "held")}
    log(f"\n== {folder} ({'video, ' if video else ''}{len(pairs)} images)")
    data = [(p, M.load_rgb(p.image), M.load_gray(p.gt)) for p in pairs]
    out = {"folder": str(folder), "video": video, "n": len(pairs), "split": part, "methods": {}, "temporal": {}}
    for model in models:
        methods = {**{f"{model} · cutout {q}": [] for q in qualities},
                   **({f"{model} · rembg": []} if use_rembg else {}),
                   **({f"{model} · cutout refine_edges": []} if refine_edges else {})}
        for label in refiners:
            methods[f"{model} · cutout + refine({label})"] = []
        masks = {k: [] for k in methods}
        rsession = rembg_session(model) if use_rembg else None
        # warm-up both paths (session load, first-run allocations) on the first image
        for q in qualities:
            pack_mask(data[0][1], model, q)
        if rsession is not None:
            rembg_mask(rsession, to_pil(data[0][1]))
        t_model = time.perf_counter()
        for i, (pair, image, gt) in enumerate(data):
            def add(key, mask, seconds, **extra):
                masks[key].append(mask)
                methods[key].append({"name": pair.name, "source": pair.source, "seconds": seconds, **extra,
                                     **score(mask, gt, M),
                                     **({"part": "held" if pair.name in held else "tune"} if held else {})})
                return methods[key][-1]

            rows = {}
            for q in qualities:
                t0 = time.perf_counter()
                mask, confidence, agreement = pack_mask(image, model, q, agreement=True)
                rows[q] = add(f"{model} · cutout {q}", mask, time.perf_counter() - t0, confidence=confidence,
                              doubt=doubt(mask, agreement)[0])
                if q == qualities[0]:
                    ours, row, dt = mask[None], rows[q], rows[q]["seconds"]
            if rsession is not None:
                pil = to_pil(image)
                t0 = time.perf_counter()
                ref = rembg_mask(rsession, pil)
                rrow = add(f"{model} · rembg", ref, time.perf_counter() - t0)
                row["vs_rembg"] = rrow["vs_rembg"] = (ours[0] - ref).abs().mean().item()
            if refine_edges:
                t0 = time.perf_counter()
                fitted, _ = pack_mask(image, model, qualities[0], refine_edges=True)
                add(f"{model} · cutout refine_edges", fitted, time.perf_counter() - t0)
            for label, refine in refiners.items():
                t0 = time.perf_counter()
                refined = refine(ours, image)
                rt = time.perf_counter() - t0
                add(f"{model} · cutout + refine({label})", refined[0], dt + rt, refine_seconds=rt)
            if (i + 1) % 10 == 0 or i + 1 == len(data):
                log(f"   {model}: {i + 1}/{len(data)} ({time.perf_counter() - t_model:.0f} s)")
        for key, rows in methods.items():
            def summarise(rs):
                s = M.mean_by(rs, KEYS + (["vs_rembg"] if "vs_rembg" in rs[0] else []),
                              group=None if video else "source")
                if "confidence" in rs[0]:
                    s["all"]["spearman_conf_iou"] = M.spearman([r["confidence"] for r in rs], [r["iou"] for r in rs])
                return s

            summary = summarise(rows)
            if video:
                gts = [g for _, _, g in data]
                summary["all"]["flicker"] = M.flicker(masks[key], gts)
            if "doubt" in rows[0] and not video:
                iou, sc = np.array([r["iou"] for r in rows]), np.array([r["doubt"] for r in rows])
                worst, top = set(np.argsort(iou)[:10]), np.argsort(-sc, kind="stable")  # ties: file order
                summary["all"]["spearman_doubt_error"] = M.spearman(sc, 1 - iou)
                summary["all"]["worst10_in_doubted_10_20"] = [len(worst & set(top[:10])), len(worst & set(top[:20]))]
            out["methods"][key] = {"summary": summary, "rows": rows}
            if held:
                out["methods"][key]["parts"] = {pt: summarise([r for r in rows if r["part"] == pt])
                                                for pt in ("tune", "held") if any(r["part"] == pt for r in rows)}
            a = summary["all"]
            extra = f"  flicker {a['flicker'] * 1e3:.2f}e-3" if video else ""
            if "spearman_conf_iou" in a:
                extra += f"  rho(conf, IoU) {a['spearman_conf_iou']:.2f}"
            if "spearman_doubt_error" in a:
                extra += (f"  rho(doubt, 1-IoU) {a['spearman_doubt_error']:.2f}, worst 10 in most doubted "
                          "10 / 20: {} / {}".format(*a["worst10_in_doubted_10_20"]))
            log(f"   {key:<40} IoU {a['iou']:.3f}  MAE {a['mae']:.4f}  band {a['band']:.3f}  "
                f"{a['seconds']:.3f} s/img{extra}")
        if video:
            key = f"{model} · cutout {qualities[0]}"
            t = out["temporal"][key] = temporal(torch.stack(masks[key]), torch.cat([i for _, i, _ in data]),
                                                torch.stack([g for _, _, g in data]), repeats, M, before)
            for k, r in t["parts"]["all"].items():
                log(f"   {key} + {k}: flicker {r['flicker'] * 1e3:.2f}e-3  dtSSD {r['dtssd'] * 1e3:.1f}e-3")
    return out


def markdown(report: dict) -> str:
    info = report["machine"]
    lines = ["# Quality on real photos (`python -m bench.quality`)", "",
             f"{info['date_utc']}, {info['cpu']}, torch {info['torch']}, onnxruntime {info.get('onnxruntime', '?')}, "
             f"rembg {info.get('rembg', '?')}. IoU: mask > 0.5 vs GT > 0.5; MAE vs the soft GT; band: MAE within "
             "10 px of the GT edge; s/img on a shared CPU (compare, don't quote); |Δ rembg|: our mask vs rembg's.", ""]
    def table(f, summaries: dict, title: str, n: int) -> list[str]:
        groups = ["all"] + sorted({g for s in summaries.values() for g in s if g != "all"})
        extra = ["flicker ×10⁻³"] if f["video"] else []
        out = [f"## {title} ({n} {'frames' if f['video'] else 'images'})", "",
               "| model · method | " + " | ".join(f"{g}: IoU / MAE / band" for g in groups)
               + "".join(f" | {e}" for e in extra) + " | s/img | \\|Δ rembg\\| | ρ(conf, IoU) |",
               "|" + "---|" * (len(groups) + len(extra) + 4)]
        for key, s in summaries.items():
            cells = [f"{s[g]['iou']:.3f} / {s[g]['mae']:.4f} / {s[g]['band']:.3f}" if g in s else "—" for g in groups]
            cells += [f"{s['all']['flicker'] * 1e3:.2f}"] if f["video"] else []
            vs = f"{s['all']['vs_rembg']:.4f}" if "vs_rembg" in s["all"] and "rembg" not in key else "—"
            rho = f"{s['all']['spearman_conf_iou']:.2f}" if "spearman_conf_iou" in s["all"] else "—"
            out.append(f"| {key} | " + " | ".join(cells) + f" | {s['all']['seconds']:.3f} | {vs} | {rho} |")
        return out + [""]

    def targets(f, parts: dict) -> list[str]:
        """Issue 16's checks per model and part: the default (``auto``) vs rembg, best vs fast."""
        from cutout.quality import auto_quality

        out = ["### Targets: each model's default (`auto`) vs rembg (IoU ≥ rembg − 0.002, MAE ≤ rembg + 0.001); "
               "`best` vs `fast` per source", "",
               "| model | auto | part | default IoU / MAE | rembg IoU / MAE | bar met | sources where best < fast "
               "(IoU or MAE) | best / fast time |", "|---|---|---|---|---|---|---|---|"]
        for model in report["models"]:
            q = auto_quality(model)
            for pt, by in parts.items():
                d, r = by.get(f"{model} · cutout {q}"), by.get(f"{model} · rembg")
                b, fa = by.get(f"{model} · cutout best"), by.get(f"{model} · cutout fast")
                if d is None:
                    continue
                met = "—" if r is None else ("yes" if d["all"]["iou"] >= r["all"]["iou"] - 0.002
                                             and d["all"]["mae"] <= r["all"]["mae"] + 0.001 else "**no**")
                worse = "—" if b is None or fa is None else (", ".join(
                    g for g in b if g != "all" and (b[g]["iou"] < fa[g]["iou"] or b[g]["mae"] > fa[g]["mae"]))
                    or "none")
                ratio = "—" if b is None or fa is None else f"{b['all']['seconds'] / fa['all']['seconds']:.2f}×"
                rt = "—" if r is None else f"{r['all']['iou']:.3f} / {r['all']['mae']:.4f}"
                out.append(f"| {model} | {q} | {pt} | {d['all']['iou']:.3f} / {d['all']['mae']:.4f} | {rt} | {met} | "
                           f"{worse} | {ratio} |")
        return out + [""]

    for f in report["folders"]:
        part = f" — {f['split']} part" if f.get("split", "all") != "all" else ""
        parts = {f.get("split", "all"): {k: m["summary"] for k, m in f["methods"].items()}}
        lines += table(f, parts[f.get("split", "all")], f"{f['folder']}{part}", f["n"])
        for pt, name in (("tune", "tuning"), ("held", "held-out")):
            by = {k: m["parts"][pt] for k, m in f["methods"].items() if pt in m.get("parts", {})}
            if by:
                parts[pt] = by
                lines += table(f, by, f"{f['folder']} — {name} part (metrics.split)",
                               next(iter(by.values()))["all"]["n"])
        if not f["video"]:
            lines += targets(f, parts)
        for key, seq in f.get("temporal", {}).items():
            h, w = seq["size"]
            lines += [f"### {Path(f['folder']).name}: temporal smoothing of {key}'s masks ({f['n']} frames, {w}×{h}; "
                      "flicker and dtSSD ×10⁻³, Δ against the per-frame masks)", "",
                      "| frames | method | flicker | dtSSD | IoU |", "|---|---|---|---|---|"]
            for part, rows in seq["parts"].items():
                b = rows["per-frame"]
                for name, r in rows.items():
                    d = ("", "", "") if r is b else (f" ({(r['flicker'] / b['flicker'] - 1) * 100:+.0f} %)",
                         f" ({(r['dtssd'] / b['dtssd'] - 1) * 100:+.0f} %)", f" ({r['iou'] - b['iou']:+.4f})")
                    lines.append(f"| {part} | {name} | {r['flicker'] * 1e3:.2f}{d[0]} | {r['dtssd'] * 1e3:.1f}{d[1]} | "
                                 f"{r['iou']:.4f}{d[2]} |")
            if seq["seconds"]:
                lines += ["", "| smoothing alone | s/frame wall | s/frame CPU |", "|---|---|---|"]
                lines += [f"| {k} | {v['wall_per_frame']:.3f} | {v['cpu_per_frame']:.3f} |"
                          for k, v in seq["seconds"].items()]
            lines += [""]
    lines += summary(report)
    if report["skipped_models"]:
        lines += ["Skipped (not faked): " + "; ".join(f"**{k}**: {v}" for k, v in report["skipped_models"].items()), ""]
    return "\n".join(lines)


def summary(report: dict) -> list[str]:
    """One row per video sequence: per-frame figures, then each smoothing's change against them."""
    seqs = [(Path(f["folder"]).name, f["n"], seq) for f in report["folders"] for seq in f.get("temporal", {}).values()]
    if not seqs:
        return []
    names = [k for k in seqs[0][2]["parts"]["all"] if k != "per-frame"]
    tuned = set(report.get("tuned", []))
    lines = ["## Per sequence (whole sequence; flicker and dtSSD ×10⁻³, then % change / IoU change vs per-frame)",
             "", "| sequence | role | frames | per-frame flicker / dtSSD / IoU | " + " | ".join(names)
             + " | motion s/frame wall / CPU |", "|" + "---|" * (len(names) + 5)]
    for name, n, seq in seqs:
        rows = seq["parts"]["all"]
        b = rows["per-frame"]
        cells = [f"{(rows[k]['flicker'] / b['flicker'] - 1) * 100:+.0f} % / "
                 f"{(rows[k]['dtssd'] / b['dtssd'] - 1) * 100:+.1f} % / "
                 f"{rows[k]['iou'] - b['iou']:+.3f}" for k in names]
        t = seq["seconds"].get(MOTION)
        role = ("tuning" if name in tuned else "check") if tuned else "—"
        secs = f" | {t['wall_per_frame']:.3f} / {t['cpu_per_frame']:.3f} |" if t else " | — |"
        lines.append(f"| {name} | {role} | {n} | {b['flicker'] * 1e3:.2f} / {b['dtssd'] * 1e3:.1f} / {b['iou']:.3f} | "
                     + " | ".join(cells) + secs)
    return lines + [""]


def main(argv=None) -> int:
    from cutout.quality import QUALITIES

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="*", type=Path, help=f"eval folders (default {DEFAULT_EVAL})")
    ap.add_argument("--models", help="comma-separated model names (default: every catalog model; "
                                     "missing ones are reported as skipped)")
    ap.add_argument("--refine-edges", action="store_true", help="also score Remove Background's refine_edges")
    ap.add_argument("--refine", action="append", default=[], metavar="K=V,K=V",
                    help="also run Mask Refine's operations with these inputs on our masks; repeatable")
    ap.add_argument("--quality", default=",".join(QUALITIES), help="comma-separated quality settings "
                                                                   f"(default {','.join(QUALITIES)})")
    ap.add_argument("--split", choices=("all", "tune", "held"), default="all",
                    help="the part of a manifest folder to measure (metrics.split)")
    ap.add_argument("--no-rembg", action="store_true", help="skip the rembg reference")
    ap.add_argument("--limit", type=int, help="first N images of each folder (quick checks)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each temporal smoothing (interleaved)")
    ap.add_argument("--no-before", action="store_true", help="video: skip the motion mode's former settings")
    ap.add_argument("--tuned", default="", metavar="NAME,NAME",
                    help="video: the sequences (folder names) the parameters were chosen on; the others are checks")
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
              "refine_settings": list(refiners), "tuned": [t for t in args.tuned.split(",") if t], "folders": []}
    print(f"{report['machine']['cpu']} — absolute seconds are noisy on a shared CPU")
    for f in folders:
        report["folders"].append(evaluate_folder(f, models, args.quality.split(","), refiners, not args.no_rembg,
                                                 args.limit, lambda s: print(s, flush=True), args.split,
                                                 args.refine_edges, args.repeats, not args.no_before))
    out = args.out
    write_json(out.with_suffix(".json"), report)
    out.with_suffix(".md").write_text(markdown(report))
    print(f"\nwrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
