"""README pictures: a before/after grid and a quality-vs-time plot.

    python bench/figures.py [--model u2net] [--quality bench/results/quality.json] [--out docs]

* ``docs/before_after.png``: for each sample photo (``samples/`` if present, else scikit-image's
  bundled public-domain/CC0 photos: astronaut, coffee, chelsea, rocket) the original, the mask,
  the cut-out on a checkerboard and on a new background, made by the pack's own code path.
* ``docs/quality_vs_time.png``: mean IoU and band error against seconds per image for every
  model and method in the quality report (``bench/quality.py``'s JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, ROOT, available_models, load_pack  # noqa: E402

SAMPLES = ["astronaut", "coffee", "chelsea", "rocket"]


def sample_photos(names=SAMPLES) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 RGB) for each sample: from the pack's samples/ folder, else from skimage.data."""
    from PIL import Image

    out = []
    folder = ROOT / "samples"
    for name in names:
        found = [p for p in (folder / f"{name}.png", folder / f"{name}.jpg") if p.is_file()]
        if found:
            with Image.open(found[0]) as im:
                out.append((name, np.asarray(im.convert("RGB"))))
            continue
        try:
            import skimage.data as data

            arr = getattr(data, name)()
        except Exception as e:  # no scikit-image, or no such photo
            print(f"sample {name}: not available ({e})")
            continue
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, -1)
        out.append((name, arr[..., :3].astype(np.uint8)))
    return out


def checkerboard(h, w, cell=16):
    yy, xx = np.mgrid[0:h, 0:w]
    board = ((yy // cell + xx // cell) % 2).astype(np.float32)
    return (0.80 + 0.15 * board)[..., None].repeat(3, -1)


def gradient(h, w, top=(0.16, 0.42, 0.75), bottom=(0.96, 0.72, 0.45)):
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    return (1 - t) * np.array(top, np.float32) + t * np.array(bottom, np.float32) + np.zeros((1, w, 1), np.float32)


def before_after(model: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from cutout.pipeline import remove_background

    photos = sample_photos()
    cols = ["original", f"mask ({model})", "cut-out (transparent)", "on a new background"]
    ratios = [rgb.shape[0] / rgb.shape[1] for _, rgb in photos]
    fig, axes = plt.subplots(len(photos), 4, figsize=(13, 0.6 + sum(3.1 * r + 0.25 for r in ratios)), dpi=110,
                             gridspec_kw={"height_ratios": ratios})
    axes = np.atleast_2d(axes)
    for r, (name, rgb) in enumerate(photos):
        img = torch.from_numpy(rgb.astype(np.float32) / 255.0).unsqueeze(0)
        rgba, mask = remove_background(img, model)
        fg = rgba[0, ..., :3].numpy()
        a = mask[0].numpy()[..., None]
        h, w = a.shape[:2]
        panels = [rgb, a[..., 0], fg * a + checkerboard(h, w) * (1 - a), fg * a + gradient(h, w) * (1 - a)]
        for c, p in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(p, cmap="gray" if p.ndim == 2 else None, vmin=0, vmax=1 if p.dtype != np.uint8 else 255)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(cols[c], fontsize=12)
            if c == 0:
                ax.set_ylabel(name, fontsize=12)
    fig.suptitle("Remove Background (Cutout) — sample photos (scikit-image, public domain / CC0)", fontsize=13)
    fig.tight_layout()
    path = out / "before_after.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def quality_plot(quality_json: Path, out: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not quality_json.is_file():
        print(f"{quality_json} not found: run bench/quality.py first")
        return None
    report = json.loads(quality_json.read_text())
    folder = next((f for f in report["folders"] if not f["video"]), None)
    if folder is None:
        print("no photo folder in the quality report")
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), dpi=110)
    colors = {}
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    summaries = {key: m["summary"]["all"] for key, m in folder["methods"].items()}
    for key, a in summaries.items():
        model, method = (s.strip() for s in key.split("·", 1))
        color = colors.setdefault(model, palette[len(colors) % len(palette)])
        marker = "s" if method.startswith("rembg") else ("o" if method == "cutout" else "^")
        for ax, metric in zip(axes, ("iou", "band")):
            ax.scatter(a["seconds"], a[metric], s=90, color=color, marker=marker, edgecolor="black", zorder=3)
            # keep labels of near-equal points apart: the lower point of a model gets its label below
            same_model = [b[metric] for k, b in summaries.items() if k.split("·", 1)[0].strip() == model]
            below = len(same_model) > 1 and a[metric] < max(same_model)
            ax.annotate(key, (a["seconds"], a[metric]), textcoords="offset points",
                        xytext=(7, -13 if below else 6), fontsize=9)
    axes[0].set_ylabel("mean IoU (higher is better)")
    axes[1].set_ylabel("edge-band error, 10 px (lower is better)")
    for ax in axes:
        ax.set_xlabel("seconds per image (network + pre/post-processing)")
        ax.grid(alpha=0.3)
        ax.margins(y=0.15)
        ax.set_xlim(left=0, right=ax.get_xlim()[1] * 1.35)
    info = report["machine"]
    fig.suptitle(f"Quality vs time on {Path(folder['folder']).name} ({folder['n']} photos with ground truth) — "
                 f"{info['cpu']}, {info['cores']} shared cores, {info['date_utc'][:10]}\n"
                 "circle = Cutout (this pack), square = rembg.remove on the same ONNX file; seconds measured "
                 f"on a shared CPU (load average {info.get('load_avg_1min') or 0:.0f} at the start): compare, "
                 "don't quote", fontsize=10)
    fig.tight_layout()
    path = out / "quality_vs_time.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="model for the before/after grid (default: u2net if present, else u2netp)")
    ap.add_argument("--quality", type=Path, default=RESULTS / "quality.json")
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    ap.add_argument("--only", choices=["grid", "plot"])
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.only != "plot":
        model = args.model or (available_models(["u2net"])[0] or ["u2netp"])[0]
        print("wrote", before_after(model, args.out))
    if args.only != "grid":
        p = quality_plot(args.quality, args.out)
        if p:
            print("wrote", p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
