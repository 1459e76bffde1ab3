"""Does guided edge refinement help on real photos? IoU / MAE / band error vs GT.

    U2NET_HOME=/work/wheels python bench/refine_quality.py [--eval DIR] [--models u2net u2netp]
        [--limit N] [--grid]

For every photo of the eval folder (``manifest.csv`` layout) the model's mask is computed
through the pack's pipeline, plain and with Remove Background's ``refine_edges`` (guided
upsampling from the model's own grid), then the plain mask is also scored after each setting
of Mask Refine's guided filter (which only sees the upsampled mask).
``--grid`` tries a grid of guided-filter settings (to choose the defaults); without it only
the raw mask and the default setting of Mask Refine's guided filter are scored.
A model whose weights are not available is reported as skipped.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cutout  # noqa: E402

import torch  # noqa: E402

from bench.metrics import edge_band, iou, load_gray, load_rgb, mae, read_manifest  # noqa: E402
from cutout.imaging.refine import guided_filter  # noqa: E402
from cutout.models import ModelNotAvailableError  # noqa: E402
from cutout.pipeline import predict_masks  # noqa: E402

DEFAULT_EVAL = ROOT.parent / "shared" / "eval" / "dev"


def settings(grid: bool):
    from cutout.nodes.mask_refine import GUIDED_DEFAULTS

    d = GUIDED_DEFAULTS
    out = {"raw": None, "Remove Background refine_edges (guided upsampling; its ms include the model run)": "edges",
           f"Mask Refine guided default (r={d['radius']}, eps={d['eps']:g}, work={d['work_size']})": d}
    if grid:
        for r, eps, ws in ((1, 1e-3, 320), (2, 1e-4, 320), (2, 1e-3, 320), (1, 1e-4, 640), (4, 1e-3, 0)):
            out[f"Mask Refine guided r={r} eps={eps:g} work={ws or 'full'}"] = {"radius": r, "eps": eps, "work_size": ws}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eval", default=str(DEFAULT_EVAL))
    ap.add_argument("--models", nargs="+", default=["u2net", "u2netp"])
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--grid", action="store_true")
    args = ap.parse_args(argv)

    pairs = read_manifest(args.eval)
    if args.limit:
        pairs = pairs[: args.limit]
    configs = settings(args.grid)
    torch.set_grad_enabled(False)
    for model in args.models:
        try:
            predict_masks(torch.zeros(1, 8, 8, 3), model)
        except ModelNotAvailableError as e:
            print(f"{model}: skipped ({e})")
            continue
        scores = {k: [] for k in configs}
        times = {k: 0.0 for k in configs}
        for p in pairs:
            img = load_rgb(p.image)
            gt = load_gray(p.gt)
            m = predict_masks(img, model)
            band = edge_band(gt)  # = imaging.metrics.band_error, with the band computed once per photo
            for name, cfg in configs.items():
                t0 = time.perf_counter()
                if cfg is None:
                    r = m
                elif cfg == "edges":
                    r = predict_masks(img, model, refine_edges=True)
                else:
                    r = guided_filter(img, m, **cfg)
                times[name] += time.perf_counter() - t0
                be = (r[0] - gt).abs()[band].mean().item() if band.any() else 0.0
                scores[name].append((iou(r[0], gt), mae(r[0], gt), be))
        print(f"\n{model} on {len(pairs)} photos of {args.eval}")
        print(f"| setting | mean IoU | MAE | band error (10 px) | photos with lower IoU | ms/photo |")
        print("|---|---|---|---|---|---|")
        base = scores["raw"]
        for name, s in scores.items():
            n = len(s)
            worse = sum(1 for a, b in zip(s, base) if a[0] < b[0] - 1e-9)
            print(f"| {name} | {sum(x[0] for x in s) / n:.4f} | {sum(x[1] for x in s) / n:.4f} | "
                  f"{sum(x[2] for x in s) / n:.4f} | {worse}/{n} | {1000 * times[name] / n:.1f} |", flush=True)


if __name__ == "__main__":
    main()
