"""PNG encoder levels side by side on finished cut-outs: output bytes (exact) and encode CPU.

    python -m bench.png_levels DIR [--rembg DIR] [--levels 1,2,3] [--repeats 3]

Re-encodes every PNG in DIR (a folder job's output, e.g. ``cli.py`` on ``bench.vs_rembg``'s photos) with
``codec.fast_png`` at each level and with Pillow's level 6 (what ``rembg p`` writes): the same pixels, one
process, levels alternated per image. Prints bytes, the ratio to Pillow 6 (and to the PNGs in ``--rembg``,
e.g. rembg p's output for the same photos) and CPU seconds (``process_time``, the minimum of the repeats)
against the first level. Say the machine's load when quoting the CPU.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path


def measure(folder: Path, levels: list[int], repeats: int) -> dict:
    import numpy as np
    from PIL import Image

    from cutout.codec import fast_png

    out = {"pillow6": 0, **{lv: 0 for lv in levels}, **{f"cpu{lv}": 0.0 for lv in levels}, "n": 0}
    for p in sorted(folder.glob("*.png")):
        with Image.open(p) as im:
            px = np.asarray(im)
        buf = io.BytesIO()
        Image.fromarray(px).save(buf, "PNG", compress_level=6)
        out["pillow6"] += len(buf.getvalue())
        cpu, size = {lv: [] for lv in levels}, {}
        for _ in range(repeats):
            for lv in levels:
                t = time.process_time()
                size[lv] = len(fast_png(px, lv))
                cpu[lv].append(time.process_time() - t)
        for lv in levels:
            out[lv] += size[lv]
            out[f"cpu{lv}"] += min(cpu[lv])
        out["n"] += 1
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--rembg", type=Path, help="a folder of PNGs to compare the bytes with (rembg p's output)")
    ap.add_argument("--levels", default="1,2,3")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    levels = [int(x) for x in a.levels.split(",")]
    r = measure(a.folder, levels, a.repeats)
    if not r["n"]:
        print(f"no PNGs in {a.folder}")
        return 1
    ref = sum(p.stat().st_size for p in a.rembg.glob("*.png")) if a.rembg else 0
    print(f"{r['n']} PNGs, load average {os.getloadavg()[0]:.1f}; Pillow 6: {r['pillow6']} bytes"
          + (f" = {r['pillow6'] / ref:.4f}x --rembg's {ref}" if ref else ""))
    for lv in levels:
        print(f"level {lv}: {r[lv]} bytes = {r[lv] / r['pillow6']:.4f}x Pillow 6"
              + (f" = {r[lv] / ref:.4f}x --rembg's" if ref else "")
              + f"; cpu {r[f'cpu{lv}']:.2f} s = {r[f'cpu{lv}'] / max(r[f'cpu{levels[0]}'], 1e-9):.2f}x level {levels[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
