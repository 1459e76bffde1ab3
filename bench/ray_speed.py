#!/usr/bin/env python
"""Throughput of ``cli.py --engine ray`` against ``cli.py --engine local`` on the same photos, in one run.

    U2NET_HOME=/work/wheels python bench/ray_speed.py            # 120 photos, u2netp, 2 rounds
    python bench/ray_speed.py --photos 200 --rounds 3 --model u2net

Photos are made from ``../shared/eval/dev`` (random crops, resized to mixed sizes, saved as
JPEG with a caption each, kohya folders) into a temporary folder that is deleted afterwards;
nothing is written into the repository. Each round runs the two engines one after the other,
alternating which goes first (the cores are shared: alternate, do not trust one pair), each
as the user runs it: a fresh ``cli.py`` process, so model loading and, for Ray, starting the
local Ray are included. Prints per-run times and the ratio of throughputs (ray / local).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEV = Path(os.environ.get("CUTOUT_SHARED", ROOT.parent / "shared")) / "eval" / "dev"
SIDES = (320, 512, 768, 1024, 1600)


def make_photos(dest: Path, n: int, seed: int = 0) -> dict[int, int]:
    from PIL import Image

    srcs = sorted(p for p in DEV.iterdir() if p.suffix.lower() in (".jpg", ".png") and ".mask." not in p.name)
    if not srcs:
        raise SystemExit(f"no photos in {DEV}")
    rng = random.Random(seed)
    sizes: dict[int, int] = {}
    for i in range(n):
        with Image.open(srcs[i % len(srcs)]) as im:
            im = im.convert("RGB")
            w, h = im.size
            f = rng.uniform(0.6, 1.0)
            cw, ch = max(16, int(w * f)), max(16, int(h * rng.uniform(0.6, 1.0)))
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            im = im.crop((x, y, x + cw, y + ch))
            side = rng.choice(SIDES)
            s = side / max(im.size)
            im = im.resize((max(1, round(im.size[0] * s)), max(1, round(im.size[1] * s))), Image.LANCZOS)
            folder = dest / f"{10 + i % 3}_subject{i % 3}"
            folder.mkdir(parents=True, exist_ok=True)
            im.save(folder / f"img{i:04d}.jpg", quality=90)
            (folder / f"img{i:04d}.txt").write_text(f"a photo, number {i}\n", encoding="utf-8")
            sizes[side] = sizes.get(side, 0) + 1
    return sizes


def run_cli(engine: str, src: Path, dest: Path, model: str, extra: list[str]) -> tuple[float, dict]:
    report = dest.parent / f"{dest.name}.json"
    cmd = [sys.executable, str(ROOT / "cli.py"), "--source", str(src), "--dest", str(dest), "--model", model,
           "--engine", engine, "--no-progress", "--report", str(report)] + (extra if engine == "ray" else [])
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{engine} failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    rep = json.loads(report.read_text())
    return wall, rep


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--model", default="u2netp")
    ap.add_argument("--ray-args", default="", help="extra cli.py options for the ray runs, e.g. '--batch-size 8'")
    a = ap.parse_args()
    if not DEV.is_dir():
        print(f"skipped: eval photos not found at {DEV}")
        return 0
    try:
        import ray  # noqa: F401
    except ImportError:
        print("skipped: ray not installed (pip install -r requirements-ray.txt)")
        return 0
    if a.model != "u2netp":
        sys.path.insert(0, str(ROOT))
        import cutout
        from cutout.models import ModelNotAvailableError
        from cutout.models.session import locate

        try:
            locate(a.model)
        except ModelNotAvailableError as e:
            print(f"skipped: model {a.model} not available ({e})")
            return 0

    tmp = Path(tempfile.mkdtemp(prefix="cutout-raybench-"))
    try:
        src = tmp / "photos"
        sizes = make_photos(src, a.photos)
        print(f"{a.photos} photos (long side: {', '.join(f'{k}px x{v}' for k, v in sorted(sizes.items()))}), "
              f"model {a.model}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        times: dict[str, list[float]] = {"local": [], "ray": []}
        inner: dict[str, list[float]] = {"local": [], "ray": []}
        for r in range(a.rounds):
            order = ("local", "ray") if r % 2 == 0 else ("ray", "local")
            for engine in order:
                dest = tmp / f"out_{engine}_{r}"
                wall, rep = run_cli(engine, src, dest, a.model, a.ray_args.split())
                if len(rep["done"]) != a.photos or rep["failed"]:
                    raise SystemExit(f"{engine}: expected {a.photos} done, got {len(rep['done'])}, failed {rep['failed']}")
                times[engine].append(wall)
                inner[engine].append(rep["seconds"])
                print(f"round {r + 1} {engine:5s}: {wall:7.1f} s wall ({a.photos / wall:.2f} img/s), "
                      f"job {rep['seconds']:.1f} s, load average {os.getloadavg()[0]:.1f}", flush=True)
        # the two engines' outputs must agree (same names; pixels within 1/255)
        import numpy as np
        from PIL import Image

        la, ra = tmp / "out_local_0", tmp / "out_ray_0"
        files = sorted(p.relative_to(la) for p in la.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(ra) for p in ra.rglob("*") if p.is_file()), "different file sets"
        worst = 0
        for f in files:
            if f.suffix == ".png":
                d = np.abs(np.asarray(Image.open(la / f), int) - np.asarray(Image.open(ra / f), int)).max()
                worst = max(worst, int(d))
        tl, tr = statistics.median(times["local"]), statistics.median(times["ray"])
        print(f"\nmedian wall: local {tl:.1f} s ({a.photos / tl:.2f} img/s), ray {tr:.1f} s ({a.photos / tr:.2f} img/s)")
        print(f"per-image cost (local, wall / photos): {tl / a.photos * 1000:.0f} ms")
        print(f"outputs: {len(files)} files identical in name, max pixel difference {worst}/255")
        ratio = tl / tr
        print(f"RATIO ray/local throughput = {ratio:.2f}  (goal >= 0.80: {'met' if ratio >= 0.8 else 'NOT met'})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
