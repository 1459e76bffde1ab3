"""Remove Background with an int8 variant vs ``rembg.remove`` with the float model, side by side.

    U2NET_HOME=/work/wheels python bench/quant_speed.py [--families u2netp,u2net] [--reps 5]

For each family and each size (1 MP and 12 MP, a real photo resized), the runs alternate
A/B/C/A/B/C... in one process (the CPU is shared, so interleaving keeps the comparison fair)
and the medians are compared:
  A  rembg.remove(photo) with the float model (rembg's own session, its default options),
  B  the pack's Remove Background path with the float model,
  C  the pack's Remove Background path with the int8 variant
(both without colour decontamination, where the pack has it: rembg.remove does not do it).
Prints a markdown table with the speed-up of C (and B) over A. A model that is not installed
is reported as skipped.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import cutout  # noqa: E402
from cutout import pipeline  # noqa: E402
from cutout.models import catalog, weights  # noqa: E402

PHOTO = ROOT.parent / "shared" / "eval" / "dev" / "alphamatting_GT04.png"
SIZES = {"1MP": (1152, 864), "12MP": (4000, 3000)}


def photo(size):
    from PIL import Image

    if PHOTO.is_file():
        im = Image.open(PHOTO).convert("RGB")
    else:
        import skimage.data

        im = Image.fromarray(skimage.data.coffee())
    return im.resize(size, Image.LANCZOS)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default="u2netp,u2net")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--sizes", default="1MP,12MP")
    a = ap.parse_args(argv)
    import rembg

    print(f"rembg {rembg.__version__ if hasattr(rembg, '__version__') else ''}, torch threads {torch.get_num_threads()}, "
          f"CPU cores {os.cpu_count()}; medians of {a.reps} interleaved runs\n")
    print("| family | size | rembg.remove float (s) | pack float (s) | pack int8 (s) | int8 speed-up vs rembg | "
          "pack float speed-up |")
    print("|---|---|---|---|---|---|---|")
    notes = []
    for fam in a.families.split(","):
        variant = f"{fam}-int8"
        try:
            weights.resolve(catalog.get_spec(fam), allow_download=False)
            sess = rembg.new_session(fam)
        except Exception as e:  # not installed: say so, never fake it
            print(f"| {fam} | — | skipped: {type(e).__name__}: {str(e)[:120]} | | | | |")
            continue
        t = time.perf_counter()
        pipeline.get_session(variant)  # builds the variant on first use
        build = time.perf_counter() - t
        pipeline.get_session(fam)
        # Like for like with rembg.remove: no colour decontamination where the pack offers it.
        import inspect

        like = {"decontaminate": False} if "decontaminate" in inspect.signature(pipeline.remove_background).parameters else {}
        for size_name in a.sizes.split(","):
            pil = photo(SIZES[size_name])
            tensor = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0).unsqueeze(0)
            runs = {
                "A": lambda: rembg.remove(pil, session=sess),
                "B": lambda: pipeline.remove_background(tensor, fam, **like),
                "C": lambda: pipeline.remove_background(tensor, variant, **like),
            }
            for f in runs.values():  # warm up
                f()
            times = {k: [] for k in runs}
            for _ in range(a.reps):
                for k, f in runs.items():
                    t = time.perf_counter()
                    f()
                    times[k].append(time.perf_counter() - t)
            med = {k: statistics.median(v) for k, v in times.items()}
            print(f"| {fam} | {size_name} | {med['A']:.3f} | {med['B']:.3f} | {med['C']:.3f} | "
                  f"**{med['A'] / med['C']:.2f}×** | {med['A'] / med['B']:.2f}× |", flush=True)
        notes.append(f"{variant} built (or found in the cache) in {build:.1f} s")
    print("\n" + "; ".join(notes))


if __name__ == "__main__":
    main()
