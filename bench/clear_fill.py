"""What to store under alpha = 0: each fill of ``imaging.clear`` measured on the eval photos.

    python -m bench.clear_fill [--photos DIR] [--model u2netp] [--scale 0.25]

Per fill (black, bleed, photo) of the model's mask and decontaminated colours: PNG bytes and encode time
(the writer's ``encode``); in kohya's ``convert("RGB")`` view, the share of GT-background pixels still
showing the photo (within 8 levels) and their mean deviation from their median colour (0..255); the
fringe (mean abs. error, 0..255, on grey) of a straight-RGBA cv2 INTER_AREA resize to ``--scale`` vs the
premultiplied one, over the semi-transparent pixels. docs/dataset.md explains the table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from bench._common import DEFAULT_EVAL


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=Path, default=DEFAULT_EVAL)
    ap.add_argument("--model", default="u2netp")
    ap.add_argument("--scale", type=float, default=0.25)
    ap.add_argument("--limit", type=int, default=0)
    a = ap.parse_args()
    if not a.photos.is_dir():
        print(f"skipped: {a.photos} not found")
        return 0
    import cv2
    import torch
    from PIL import Image

    from cutout.dataset.writer import WriteOptions, encode
    from cutout.imaging.clear import CLEAR_FILLS, fill_clear
    from cutout.imaging.composite import estimate_foreground
    from cutout.models.session import get_session
    from cutout.pipeline import predict_frame

    session = get_session(a.model)
    photos = sorted(p for p in a.photos.iterdir() if p.suffix in (".jpg", ".png") and ".mask" not in p.name)[
        :a.limit or None]
    stats = {f: {"bytes": 0, "sec": 0.0, "bgphoto": [], "bgtex": [], "fringe": []} for f in CLEAR_FILLS}
    for p in photos:
        gt_p = p.with_name(p.stem + ".mask.png")
        rgb8 = np.asarray(Image.open(p).convert("RGB"))
        gt = np.asarray(Image.open(gt_p).convert("L")) if gt_p.is_file() else None
        frame = torch.from_numpy(rgb8.copy()).float().div_(255)
        alpha = predict_frame(session, frame)
        colour, a8 = estimate_foreground(frame, alpha), (alpha.clamp(0, 1) * 255 + 0.5).to(torch.uint8)
        for f in CLEAR_FILLS:
            c8 = (colour.clamp(0, 1) * 255 + 0.5).to(torch.uint8)
            fill_clear(c8, a8, f)
            rgba = np.dstack([c8.numpy(), a8.numpy()])
            t0 = time.perf_counter()
            data = encode(rgba, "png", WriteOptions())
            s = stats[f]
            s["sec"], s["bytes"] = s["sec"] + time.perf_counter() - t0, s["bytes"] + len(data)
            view = rgba[..., :3].astype(np.int16)  # Image.convert("RGB") drops the alpha, nothing else
            bg = gt < 128 if gt is not None else None
            if bg is not None and bg.any():
                s["bgphoto"].append(float((np.abs(view - rgb8)[bg].max(-1) <= 8).mean()))
                s["bgtex"].append(float(np.abs(view[bg] - np.median(view[bg], 0)).mean()))
            size = (max(1, round(rgba.shape[1] * a.scale)), max(1, round(rgba.shape[0] * a.scale)))
            straight = cv2.resize(rgba.astype(np.float32), size, interpolation=cv2.INTER_AREA)
            pre = cv2.resize(rgba[..., :3].astype(np.float32) * (rgba[..., 3:] / 255.0), size,
                             interpolation=cv2.INTER_AREA)
            al = straight[..., 3:] / 255.0
            on_grey, correct = straight[..., :3] * al + 128 * (1 - al), pre + 128 * (1 - al)
            semi = (al[..., 0] > 0.02) & (al[..., 0] < 0.98)
            if semi.any():
                s["fringe"].append(float(np.abs(on_grey - correct)[semi].mean()))
    print(f"{len(photos)} photos, model {a.model}, resample scale {a.scale}")
    print(f"{'fill':7} {'PNG MB':>7} {'encode s':>8} {'bg-photo %':>10} {'bg-texture':>10} {'fringe':>7}")
    for f, s in stats.items():
        print(f"{f:7} {s['bytes'] / 1e6:7.2f} {s['sec']:8.2f} {100 * np.mean(s['bgphoto']):10.2f} "
              f"{np.mean(s['bgtex']):10.2f} {np.mean(s['fringe']):7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
