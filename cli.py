"""Cut out a folder of photos from the command line, without starting ComfyUI.

    python cli.py --source photos --dest cutouts

Every image is cut out with the same code path as the Remove Background node and saved as a
transparent PNG of the same size and file stem.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cutout_standalone import load_pack  # noqa: E402

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", required=True, type=Path)
    ap.add_argument("--dest", required=True, type=Path)
    ap.add_argument("--model", default="u2netp")
    args = ap.parse_args(argv)
    load_pack()
    import numpy as np
    from PIL import Image
    from tqdm import tqdm

    from comfyui_cutout.imaging.metrics import load_rgb
    from comfyui_cutout.pipeline import remove_background

    files = sorted(p for p in args.source.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    args.dest.mkdir(parents=True, exist_ok=True)
    failed = []
    for path in tqdm(files, unit="img"):
        try:
            rgba, _ = remove_background(load_rgb(path), args.model)
        except OSError as e:
            failed.append((path, str(e)))
            continue
        pixels = (rgba[0].numpy() * 255.0 + 0.5).astype(np.uint8)
        Image.fromarray(pixels, "RGBA").save(args.dest / f"{path.stem}.png")
    print(f"done: {len(files) - len(failed)}, failed: {len(failed)}")
    for path, why in failed:
        print(f"  {path}: {why}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
