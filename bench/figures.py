"""The README's before/after picture, made by the pack's own code path.

    python -m bench.figures [--model u2net] [--out docs]

``docs/before_after.png``: for each photo of ``samples/`` the original, the mask, the cut-out on a
checkerboard and on a new background.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from bench._common import ROOT, available_models

SAMPLES = ["astronaut", "coffee", "chelsea", "rocket"]


def sample_photos(names=SAMPLES) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 RGB) for each sample photo of the pack's samples/ folder."""
    from PIL import Image

    out = []
    for name in names:
        for p in (ROOT / "samples" / f"{name}.png", ROOT / "samples" / f"{name}.jpg"):
            if p.is_file():
                with Image.open(p) as im:
                    out.append((name, np.asarray(im.convert("RGB"))))
                break
    return out


def before_after(model: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from cutout.imaging.composite import composite_background
    from cutout.pipeline import remove_background

    photos = sample_photos()
    cols = ["original", f"mask ({model})", "cut-out (transparent)", "on a new background"]
    ratios = [rgb.shape[0] / rgb.shape[1] for _, rgb in photos]
    fig, axes = plt.subplots(len(photos), 4, figsize=(13, 0.6 + sum(3.1 * r + 0.25 for r in ratios)), dpi=110,
                             gridspec_kw={"height_ratios": ratios}, squeeze=False)
    for r, (name, rgb) in enumerate(photos):
        img = torch.from_numpy(rgb.astype(np.float32) / 255.0).unsqueeze(0)
        mask = remove_background(img, model)[1]
        panels = [rgb, mask[0].numpy(), composite_background(img, mask, "checkerboard")[0].numpy(),
                  composite_background(img, mask, "#2A6BBF", color2="#F5B873")[0].numpy()]
        for c, p in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(p, cmap="gray" if p.ndim == 2 else None, vmin=0, vmax=1 if p.dtype != np.uint8 else 255)
            ax.set(xticks=[], yticks=[])
            if r == 0:
                ax.set_title(cols[c], fontsize=12)
            if c == 0:
                ax.set_ylabel(name, fontsize=12)
    fig.suptitle("Remove Background (Cutout) — sample photos (scikit-image, public domain / CC0)", fontsize=13)
    fig.tight_layout()
    fig.savefig(out / "before_after.png")
    plt.close(fig)
    return out / "before_after.png"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="model for the before/after grid (default: u2net if present, else u2netp)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    model = args.model or (available_models(["u2net"])[0] or ["u2netp"])[0]
    print("wrote", before_after(model, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
