"""The before/after strip of README.md and docs/video.md, from real results.

    python -m docs.video_strip ../shared/eval/video/dog --first 37 --count 4 --out docs/video_strip.png

Rows: the frames; the per-frame u2netp masks; Mask Refine's `motion` masks; then |m_t − m_t−1| of the
per-frame, `colour` and `motion` masks (red, ×2). Each frame is smoothed with its neighbours on each side (the radius),
as in a longer clip.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from cutout.imaging.refine_chain import refine_masks
from cutout.imaging.temporal_flow import FLOW_DEFAULTS
from cutout.pipeline import predict_masks

ROOT = Path(__file__).resolve().parents[1]
CONTEXT = FLOW_DEFAULTS["radius"]
TILE_W = 224
LABEL_W = 140


def _frames(seq: Path, lo: int, hi: int) -> torch.Tensor:
    files = sorted(seq.glob("*.jpg"))[lo:hi]
    return torch.stack([torch.from_numpy(np.array(Image.open(f).convert("RGB"))).float() / 255 for f in files])


def _grey(m: torch.Tensor) -> np.ndarray:
    return np.repeat((m.clamp(0, 1).numpy() * 255).astype(np.uint8)[..., None], 3, -1)


def _red(d: torch.Tensor) -> np.ndarray:
    out = np.zeros((*d.shape, 3), np.uint8)
    out[..., 0] = (d.clamp(0, 0.5).numpy() * 2 * 230).astype(np.uint8)
    out[..., 1] = out[..., 2] = (out[..., 0] * 0.2).astype(np.uint8)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sequence", type=Path, help="a folder of frames 00000.jpg, 00001.jpg, ...")
    ap.add_argument("--first", type=int, default=37)
    ap.add_argument("--count", type=int, default=4)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "video_strip.png")
    a = ap.parse_args(argv)
    lo = max(0, a.first - 1 - CONTEXT)  # one frame before the first shown, for its |m_t − m_t−1|
    frames = _frames(a.sequence, lo, a.first + a.count + CONTEXT)
    per_frame = predict_masks(frames, "u2netp")
    smoothed = {mode: refine_masks(per_frame, frames, temporal=1.0, temporal_mode=mode) for mode in ("colour", "motion")}
    shown = range(a.first - lo, a.first - lo + a.count)

    def delta(m, i):
        return (m[i] - m[i - 1]).abs()

    rows = [("frame", [(frames[i].numpy() * 255).astype(np.uint8) for i in shown]),
            ("per-frame mask", [_grey(per_frame[i]) for i in shown]),
            ("motion mask", [_grey(smoothed["motion"][i]) for i in shown]),
            ("per-frame |m_t - m_t-1|", [_red(delta(per_frame, i)) for i in shown]),
            ("colour |m_t - m_t-1|", [_red(delta(smoothed["colour"], i)) for i in shown]),
            ("motion |m_t - m_t-1|", [_red(delta(smoothed["motion"], i)) for i in shown])]
    h, w = frames.shape[1:3]
    tile_h = round(TILE_W * h / w)
    sheet = Image.new("RGB", (LABEL_W + a.count * (TILE_W + 4), len(rows) * (tile_h + 4)), (28, 28, 28))
    draw = ImageDraw.Draw(sheet)
    for r, (label, tiles) in enumerate(rows):
        y = r * (tile_h + 4)
        draw.text((6, y + tile_h // 2 - 6), label, fill=(230, 230, 230))
        for c, tile in enumerate(tiles):
            sheet.paste(Image.fromarray(tile).resize((TILE_W, tile_h), Image.LANCZOS), (LABEL_W + c * (TILE_W + 4), y))
    sheet.save(a.out, optimize=True)
    print(f"wrote {a.out} ({sheet.size[0]}x{sheet.size[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
