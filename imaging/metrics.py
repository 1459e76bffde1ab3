"""Quality measures against ground truth, and the eval-folder format (``manifest.csv``).

Used by the quality test and by ``bench/quality.py``; any folder with the same layout works.
"""

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
    if not band.any():
        return 0.0
    return (pred - gt).abs()[band].mean().item()
