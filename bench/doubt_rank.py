"""Does the doubt score (imaging.subjects.doubt) rank the real failures first?

    python bench/doubt_rank.py [--photos DIR] [--model u2netp]

For every eval photo with ground truth: the model's mask, its IoU with the ground truth (mask
> 0.5) and its doubt score. Prints the Spearman rank correlation between doubt and 1 − IoU (1 =
the score orders results exactly by how wrong they are), and how many of the 10 lowest-IoU
photos are among the 10 (and 20) most doubted.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=Path,
                    default=Path(os.environ.get("CUTOUT_SHARED", ROOT.parent / "shared")) / "eval" / "dev")
    ap.add_argument("--model", default="u2netp")
    a = ap.parse_args()
    if not a.photos.is_dir():
        print(f"skipped: {a.photos} not found")
        return 0
    import numpy as np
    import torch
    from PIL import Image
    from scipy.stats import spearmanr

    from cutout.imaging.subjects import doubt
    from cutout.models.session import get_session
    from cutout.pipeline import predict_frame

    session = get_session(a.model)
    rows = []
    for p in sorted(a.photos.iterdir()):
        gt_p = p.with_name(p.stem + ".mask.png")
        if p.suffix not in (".jpg", ".png") or ".mask" in p.name or not gt_p.is_file():
            continue
        frame = torch.from_numpy(np.asarray(Image.open(p).convert("RGB")).copy()).float() / 255
        alpha = predict_frame(session, frame)
        gt = np.asarray(Image.open(gt_p).convert("L")) >= 128
        pred = alpha.numpy() > 0.5
        iou = (pred & gt).sum() / max((pred | gt).sum(), 1)
        score, cues = doubt(alpha)
        rows.append((p.name, float(iou), score, cues))
    iou = np.array([r[1] for r in rows])
    sc = np.array([r[2] for r in rows])
    rho, pval = spearmanr(sc, 1 - iou)
    worst = set(np.argsort(iou)[:10])
    top10, top20 = set(np.argsort(-sc)[:10]), set(np.argsort(-sc)[:20])
    print(f"{len(rows)} photos, model {a.model}: Spearman(doubt, 1 - IoU) = {rho:.2f} (p = {pval:.3g}); "
          f"of the 10 lowest-IoU photos, {len(worst & top10)} are in the 10 most doubted, "
          f"{len(worst & top20)} in the 20 most doubted")
    print(f"{'photo':38} {'IoU':>5} {'doubt':>5}  cues")
    for i in np.argsort(-sc):
        name, v, s, cues = rows[i]
        print(f"{name[:38]:38} {v:5.2f} {s:5.2f}  " + " ".join(f"{k}={c:.2f}" for k, c in cues.items() if c > 0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
