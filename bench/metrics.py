"""Quality measures against ground truth and the eval-folder format (``manifest.csv``, or video frames)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class EvalPair:
    name: str
    image: Path
    gt: Path
    source: str  # davis16 / alphamatting / ecssd / ...


def read_manifest(folder: str | Path) -> list[EvalPair]:
    folder = Path(folder)
    with open(folder / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [EvalPair(r["file"], folder / r["file"], folder / r["gt_file"], r["file"].split("_")[0]) for r in rows]


def load_rgb(path: Path) -> torch.Tensor:
    """A photo as a ComfyUI IMAGE [1,H,W,3] float32 0..1 (EXIF orientation applied)."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).unsqueeze(0)


def load_gray(path: Path) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as im:
        return torch.from_numpy(np.asarray(im.convert("L"), dtype=np.float32) / 255.0)


def iou(pred: torch.Tensor, gt: torch.Tensor) -> float:
    p, g = pred > 0.5, gt > 0.5
    union = (p | g).sum().item()
    return 1.0 if union == 0 else (p & g).sum().item() / union


def mae(pred: torch.Tensor, gt: torch.Tensor) -> float:
    return (pred - gt).abs().mean().item()


def edge_band(gt: torch.Tensor, width: int = 10) -> torch.Tensor:
    """Pixels within ``width`` px of the GT's 0.5 contour."""
    g = (gt > 0.5).float()[None, None]
    k = 2 * width + 1
    grown = F.max_pool2d(g, k, stride=1, padding=width)
    shrunk = 1 - F.max_pool2d(1 - g, k, stride=1, padding=width)
    return (grown - shrunk)[0, 0] > 0


def band_error(pred: torch.Tensor, gt: torch.Tensor, width: int = 10) -> float:
    """Mean absolute error inside the band around the GT edge (where refinement matters)."""
    band = edge_band(gt, width)
    return (pred - gt).abs()[band].mean().item() if band.any() else 0.0


# --- video-frame folders and summaries (bench/quality.py) ---------------------------------

VIDEO_GT_SUFFIX = ".mask.png"
_FRAME_EXTS = (".jpg", ".jpeg", ".png")


def is_video_folder(folder: str | Path) -> bool:
    """A folder of consecutive frames ``NNNNN.jpg`` with ``NNNNN.mask.png`` GT beside them (with or
    without a ``manifest.csv``): every image is named by its frame number."""
    folder = Path(folder)
    if (folder / "manifest.csv").is_file():
        pairs = read_manifest(folder)
        return len(pairs) >= 2 and all(p.image.stem.isdigit() for p in pairs)
    return len(read_video_folder(folder)) >= 2


def read_video_folder(folder: str | Path) -> list[EvalPair]:
    """The frames of a video folder in frame order (source = the folder's name); frames without
    a GT mask are left out."""
    folder = Path(folder)
    if (folder / "manifest.csv").is_file():
        pairs = [EvalPair(p.name, p.image, p.gt, folder.name) for p in read_manifest(folder)
                 if p.image.stem.isdigit() and p.gt.is_file()]
    else:
        pairs = [EvalPair(p.name, p, folder / f"{p.stem}{VIDEO_GT_SUFFIX}", folder.name)
                 for p in sorted(folder.iterdir()) if p.suffix.lower() in _FRAME_EXTS and p.stem.isdigit()
                 and (folder / f"{p.stem}{VIDEO_GT_SUFFIX}").is_file()]
    pairs.sort(key=lambda e: int(e.image.stem))
    return pairs


def _steps(masks, gts) -> range:
    if len(masks) != len(gts):
        raise ValueError(f"{len(masks)} masks but {len(gts)} GT frames")
    return range(1, len(masks))


def flicker(masks, gts) -> float:
    """Mean over consecutive frames of mean |mask_t − mask_{t−1}| where the GT (> 0.5) did not change:
    a still subject should give a still mask. A fraction (0 = none); reports print it ×10⁻³."""
    values = []
    for t in _steps(masks, gts):
        static = (gts[t] > 0.5) == (gts[t - 1] > 0.5)
        if static.any():
            values.append((masks[t] - masks[t - 1]).abs()[static].mean().item())
    return float(np.mean(values)) if values else 0.0


def dtssd(masks, gts) -> float:
    """The video-matting temporal error: mean over t of sqrt(mean(((m_t − m_t−1) − (g_t − g_t−1))²)).
    Unlike ``flicker`` it does not punish a mask that changes where the GT changed."""
    values = [(((masks[t] - masks[t - 1]) - (gts[t] - gts[t - 1])) ** 2).mean().sqrt().item()
              for t in _steps(masks, gts)]
    return float(np.mean(values)) if values else 0.0


def mean_by(rows: list[dict], keys: list[str], group: str | None = None) -> dict:
    """Means of ``keys`` over ``rows`` ({"all": {...}} plus one entry per value of ``group``)."""
    def avg(rs):
        return {**{k: float(np.mean([r[k] for r in rs])) for k in keys}, "n": len(rs)}

    result = {"all": avg(rows)} if rows else {}
    if group:
        for g in sorted({r[group] for r in rows}):
            result[g] = avg([r for r in rows if r[group] == g])
    return result


def split(pairs: list[EvalPair], part: str) -> list[EvalPair]:
    """The fixed tuning / held-out split: per source, every third group (a photo, or a DAVIS sequence:
    its frames look alike) is held out. ``part``: 'tune' (about 2/3), 'held' (the rest) or 'all'."""
    if part == "all":
        return list(pairs)

    def group(p):
        return p.name.rsplit("_", 1)[0] if p.source.startswith("davis") else p.name

    held = set()
    for src in sorted({p.source for p in pairs}):
        groups = sorted({group(p) for p in pairs if p.source == src})
        held |= {(src, g) for i, g in enumerate(groups) if i % 3 == 2}
    return [p for p in pairs if ((p.source, group(p)) in held) == (part == "held")]


def spearman(a, b) -> float:
    """Rank correlation (ties get their mean rank; nan when one side is constant)."""
    import warnings

    from scipy.stats import spearmanr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant input: nan, said by the value
        return float(spearmanr(a, b)[0])
