"""Folder job vs ``rembg p``: output bytes and throughput, same photos, same model, side by side.

    python -m bench.vs_rembg [--photos DIR] [--n 40] [--rounds 2] [--models u2netp,u2netp-int8] [--keep]

On ``_common.make_photos(as_is=True)`` in a temporary folder, alternates round by round ``rembg p -m
u2netp`` and ``cli.py`` (default settings), fresh processes and folders (``u2netp-int8`` is compared with
rembg's ``u2netp``). Prints seconds, throughput ratio, output bytes, and the share of alpha = 0 pixels
whose colour is the photo's (what a trainer sees).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from bench._common import DEFAULT_EVAL, ROOT, make_photos, run_timed

# `rembg p` itself (rembg.commands.p_command). rembg.commands' __init__ imports every command, and
# the server ones need uvicorn, gradio, ... (rembg's [cli] extra), which `p` does not use.
REMBG_P = [sys.executable, "-c", "import os, sys, types, rembg; m = types.ModuleType('rembg.commands'); "
           "m.__path__ = [os.path.join(os.path.dirname(rembg.__file__), 'commands')]; "
           "sys.modules['rembg.commands'] = m; from rembg.commands.p_command import p_command; "
           "sys.argv[0] = 'rembg p'; p_command()"]
WEIGHTS = Path(os.environ.get("CUTOUT_WEIGHTS", "/work/weights"))  # a folder holding u2netp.onnx, for rembg


def folder_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*.png"))


def photo_under_clear(src: Path, dest: Path) -> float:
    """Share of alpha = 0 pixels, over all outputs, whose RGB equals the photo's (what a trainer's
    ``convert("RGB")`` would show of the background)."""
    import numpy as np
    from PIL import Image

    same = total = 0
    for p in sorted(src.iterdir()):
        out = dest / (p.stem + ".png")
        with Image.open(p) as a, Image.open(out) as b:
            photo, rgba = np.asarray(a.convert("RGB")), np.asarray(b.convert("RGBA"))
        clear = rgba[..., 3] == 0
        total += int(clear.sum())
        same += int((clear & (np.abs(rgba[..., :3].astype(int) - photo).max(-1) <= 2)
                     & (photo.max(-1) > 8)).sum())  # dark photo pixels could be black by chance
    return same / max(total, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=Path, default=DEFAULT_EVAL)
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--models", default="u2netp,u2netp-int8")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    try:
        import filetype  # noqa: F401  (rembg p's own imports)
        import watchdog  # noqa: F401
    except ImportError as e:
        print(f"skipped: rembg p cannot run here ({e})")
        return 0
    if not a.photos.is_dir() or not (WEIGHTS / "u2netp.onnx").is_file():
        print(f"skipped: needs {a.photos} and {WEIGHTS}/u2netp.onnx (CUTOUT_WEIGHTS)")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="cutout-vs-rembg-"))
    env = {**os.environ, "U2NET_HOME": str(WEIGHTS), "CUTOUT_MODELS_DIR": str(tmp / "models"),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "")}
    env = {k: v for k, v in env.items() if v}
    try:
        src = make_photos(a.photos, tmp / "src", a.n, as_is=True)
        mp = sum(1 for p in src if "_12mp" in p.name)
        print(f"{len(src)} photos ({mp} at 12 MP), {a.rounds} rounds, alternating", flush=True)
        models = [m.strip() for m in a.models.split(",") if m.strip()]
        for m in models:  # warm-up: int8 variants are built on first use; page cache
            run_timed([sys.executable, str(ROOT / "cli.py"), "--source", str(tmp / "src"), "--dest",
                       str(tmp / "warm"), "--model", m, "--no-progress", "--limit", "1"], env=env)
        # rembg's first run compiles pymatting's numba kernels into their cache (~40 s here): not its throughput
        (tmp / "warm_src").mkdir()
        shutil.copy(src[0], tmp / "warm_src" / src[0].name)
        run_timed(REMBG_P + ["-m", "u2netp", str(tmp / "warm_src"), str(tmp / "warm_rembg")], env=env)
        rembg_t: list[float] = []
        ours: dict[str, list[float]] = {m: [] for m in models}
        rembg_bytes = our_bytes = clear_photo = review_bytes = None
        for r in range(a.rounds):
            sides = [None] + models  # None: rembg p
            for m in (sides[::-1] if r % 2 else sides):
                out = tmp / "out"
                if m is None:
                    rembg_t.append(run_timed(REMBG_P + ["-m", "u2netp", str(src[0].parent), str(out)], env=env))
                    rembg_bytes = folder_bytes(out)
                else:
                    ours[m].append(run_timed([sys.executable, str(ROOT / "cli.py"), "--source", str(src[0].parent),
                                              "--dest", str(out), "--model", m, "--no-progress"], env=env))
                    if m == models[0]:
                        our_bytes = folder_bytes(out)
                        review_bytes = sum(p.stat().st_size for p in (out / "review.html", out / ".cutout-review.jsonl")
                                           if p.is_file())
                        if clear_photo is None:
                            clear_photo = photo_under_clear(src[0].parent, out)
                print(f"  round {r + 1}: {'rembg p u2netp' if m is None else 'cli.py ' + m}: "
                      f"{(rembg_t if m is None else ours[m])[-1]:.1f} s", flush=True)
                shutil.rmtree(out)
        tr = sum(rembg_t)
        print(f"rembg p u2netp: {tr / a.rounds:.1f} s per run, {len(src) * a.rounds / tr:.2f} img/s, "
              f"{rembg_bytes / 1e6:.1f} MB")
        for m in models:
            t = sum(ours[m])
            print(f"cli.py {m}: {t / a.rounds:.1f} s per run, {len(src) * a.rounds / t:.2f} img/s, "
                  f"throughput {tr / t:.2f}x rembg p")
        print(f"output bytes ({models[0]}): {our_bytes / 1e6:.1f} MB = {our_bytes / rembg_bytes:.2f}x rembg p's "
              f"(PNGs; the review page and its spool beside them: {review_bytes / 1e6:.1f} MB)")
        print(f"alpha = 0 pixels showing the photo's colour: {100 * clear_photo:.2f} %")
    finally:
        print(f"kept {tmp}") if a.keep else shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
