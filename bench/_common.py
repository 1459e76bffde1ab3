"""What every bench script stands on: the photo set, the timer, the memory meter, rembg on our file.
Run the scripts as modules from the repo root (``python -m bench.speed``); they time variants
interleaved in one run and print ratios (absolute seconds on a shared CPU are noisy)."""

from __future__ import annotations

import datetime as _dt
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DEFAULT_EVAL = Path(os.environ.get("CUTOUT_SHARED", ROOT.parent / "shared")) / "eval" / "dev"
SIZES = {"1MP": (1152, 864), "12MP": (4000, 3000)}
SOURCE_PHOTO = "alphamatting_GT01.png"  # a real photo with hair, resized to the test sizes


def machine_info() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    info = {"date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "cores": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
            "load_avg_1min": os.getloadavg()[0]}
    for pkg in ("torch", "numpy", "onnxruntime", "rembg"):
        try:
            info[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return info


def available_models(names) -> tuple[list[str], dict[str, str]]:
    """(models whose verified weights are on disk, {model: why skipped}). Never downloads."""
    from cutout.models.catalog import get_spec
    from cutout.models.weights import find_verified, search_dirs

    ok, skipped = [], {}
    for name in names:
        try:
            spec = get_spec(name)
        except Exception as e:  # unknown name
            skipped[name] = str(e)
            continue
        base = get_spec(spec.derived_from) if spec.derived_from else spec  # int8: built from its base
        if find_verified(base) is not None:
            ok.append(name)
        else:
            skipped[name] = f"weights not found (looked in {', '.join(str(d) for d in search_dirs())})"
    return ok, skipped


def rembg_session(model: str):
    """A rembg session on the very same ONNX file the pack uses (rembg never downloads here):
    ``U2NET_HOME`` points at a private folder holding a symlink to the pack's verified file. A
    built variant (int8) runs as rembg's ``u2net_custom`` on the pack's built file (U²-Net family)."""
    from cutout.models.catalog import get_spec
    from cutout.models.weights import ModelNotAvailableError, find_verified, resolve

    spec = get_spec(model)
    try:
        path = resolve(spec, allow_download=False) if spec.is_variant else find_verified(spec)
    except ModelNotAvailableError:
        path = None
    if path is None:
        raise RuntimeError(f"model '{model}' not available")
    home = Path(tempfile.gettempdir()) / f"cutout_rembg_home_{os.getpid()}"
    home.mkdir(exist_ok=True)
    link = home / f"{model}.onnx"
    if not link.exists():
        link.symlink_to(path.resolve())
    old, os.environ["U2NET_HOME"] = os.environ.get("U2NET_HOME"), str(home)
    try:
        from rembg import new_session

        if spec.is_variant:
            return new_session("u2net_custom", model_path=str(link))
        return new_session(model)
    finally:
        os.environ.pop("U2NET_HOME") if old is None else os.environ.__setitem__("U2NET_HOME", old)


def interleaved(fns: dict, repeats: int = 5, warmup: int = 1) -> dict:
    """Time callables round-robin (A B C A B C …) so that load changes hit all alike: median wall
    and CPU seconds of each (CPU time swells less than wall time with the neighbours' load)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    wall, cpu = {k: [] for k in fns}, {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            gc.collect()
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    return {k: {"median_s": statistics.median(wall[k]), "cpu_median_s": statistics.median(cpu[k]),
                "times_s": wall[k]} for k in fns}


def run_timed(cmd: list[str], **kw) -> float:
    """Wall seconds of a command run to completion; its failure (with stderr's end) stops the bench."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kw)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    return time.perf_counter() - t0


def peak_rss_child(code: str, *args: str) -> dict:
    """The memory meter: run ``code`` in a fresh Python (repo root on its path, ``peak_mb()`` defined)
    and return the dict it leaves in ``RESULT``, with ``peak_rss_mb``: the child's own high-water mark
    (``VmHWM``; ``ru_maxrss`` would include the parent's RSS at fork). Every measured step gets its
    own process, so a peak is that step's."""
    wrapper = ("import json, sys; sys.path.insert(0, sys.argv[1]); sys.argv = sys.argv[1:]\n"
               "def peak_mb():\n    with open('/proc/self/status') as f:\n"
               "        return next(int(ln.split()[1]) for ln in f if ln.startswith('VmHWM')) / 1024\n"
               + code + "\nprint(json.dumps({**RESULT, 'peak_rss_mb': peak_mb()}))")
    p = subprocess.run([sys.executable, "-c", wrapper, str(ROOT), *args], capture_output=True, text=True)
    if p.returncode != 0:
        return {"error": p.stderr[-800:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_photo(eval_dir: Path, size: tuple[int, int]):
    """A real photo resized to ``size`` (w, h): (PIL image, IMAGE tensor [1,H,W,3])."""
    import numpy as np
    import torch
    from PIL import Image

    from bench.metrics import read_manifest

    src = eval_dir / SOURCE_PHOTO
    src = src if src.is_file() else read_manifest(eval_dir)[0].image
    with Image.open(src) as im:
        im = im.convert("RGB").resize(size, Image.BICUBIC)
    return im, torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).unsqueeze(0)


def make_photos(eval_dir: Path, dest: Path, n: int, seed: int = 7, as_is: bool = False) -> list[Path]:
    """The folder benchmarks' photo set, from the eval photos: ``n`` JPEGs of mixed sizes (long side
    480–3000 px, random crops), a caption each, in a kohya folder under ``dest``; ``as_is`` (vs_rembg): the
    first ``n`` eval photos, flat in ``dest``, every 4th scaled to 12 MP and saved as a camera's JPEG."""
    import shutil

    from PIL import Image

    from bench.metrics import read_manifest

    rng = random.Random(seed)
    srcs = sorted(p.image for p in read_manifest(eval_dir)) if as_is else [p.image for p in read_manifest(eval_dir)]
    sub = dest if as_is else dest / "10_subject"
    sub.mkdir(parents=True, exist_ok=True)
    longs = [480, 800, 1024, 1600, 2048, 3000]
    for i in range(min(n, len(srcs)) if as_is else n):
        src = srcs[i % len(srcs)]
        if as_is and i % 4 != 3:
            shutil.copy(src, sub / src.name)
            continue
        with Image.open(src) as im:
            im = im.convert("RGB")
            w, h = im.size
            if as_is:  # 12 MP
                s = (12e6 / (w * h)) ** 0.5
                im.resize((round(w * s), round(h * s)), Image.BICUBIC).save(sub / f"{src.stem}_12mp.jpg", quality=92)
                continue
            cw, ch = int(w * rng.uniform(0.7, 1.0)), int(h * rng.uniform(0.7, 1.0))
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            s = longs[i % len(longs)] / max(cw, ch)
            im.crop((x, y, x + cw, y + ch)).resize((max(1, round(cw * s)), max(1, round(ch * s))),
                                                   Image.BICUBIC).save(sub / f"photo_{i:03d}.jpg", quality=90)
            (sub / f"photo_{i:03d}.txt").write_text(f"photo {i}")
    return sorted(p for p in sub.iterdir() if p.suffix != ".txt")


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def parse_options(text: str) -> dict:
    """``"grow=2,edge_refinement=guided filter,invert=true"`` -> dict with ints/floats/bools converted."""
    import ast

    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise SystemExit(f"option '{part}' is not key=value")
        k, v = (s.strip() for s in part.split("=", 1))
        try:
            out[k] = ast.literal_eval({"true": "True", "false": "False"}.get(v.lower(), v))
        except (ValueError, SyntaxError):  # a word: kept as text
            out[k] = v
    return out
