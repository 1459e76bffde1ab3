"""Shared helpers of the bench scripts: load the pack, find models, time things, talk to rembg.

Not part of the pack (never imported by ComfyUI). Absolute seconds on a shared CPU are noisy;
the scripts compare things measured side by side in one run and print ratios.
"""

from __future__ import annotations

import datetime as _dt
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DEFAULT_EVAL = ROOT.parent / "shared" / "eval" / "dev"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def load_pack():
    import cutout

    return cutout


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    import numpy
    import torch

    info = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    try:
        from importlib.metadata import version

        info["rembg"] = version("rembg")
    except Exception:
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
        if find_verified(spec) is not None:
            ok.append(name)
        else:
            where = ", ".join(str(d) for d in search_dirs())
            skipped[name] = (f"weights not found (looked in {where}); get them with bench/fetch_weights.py"
                             if name == "u2net" else f"weights not found (looked in {where})")
    return ok, skipped


_REMBG_HOME: Path | None = None


def rembg_session(model: str):
    """A rembg session on the very same ONNX file the pack uses (rembg never downloads here).

    rembg looks in ``U2NET_HOME`` for ``<model>.onnx``; a private folder of symlinks to the
    pack's verified files is used, so both sides run identical weights.
    """
    global _REMBG_HOME
    from cutout.models.catalog import get_spec
    from cutout.models.weights import find_verified

    path = find_verified(get_spec(model))
    if path is None:
        raise RuntimeError(f"model '{model}' not available")
    if _REMBG_HOME is None:
        _REMBG_HOME = Path(tempfile.mkdtemp(prefix="cutout_rembg_home_"))
    link = _REMBG_HOME / f"{model}.onnx"
    if not link.exists():
        link.symlink_to(path.resolve())
    old = os.environ.get("U2NET_HOME")
    os.environ["U2NET_HOME"] = str(_REMBG_HOME)
    try:
        from rembg import new_session

        return new_session(model)
    finally:
        if old is None:
            os.environ.pop("U2NET_HOME", None)
        else:
            os.environ["U2NET_HOME"] = old


def time_it(fn, repeats: int = 5, warmup: int = 1) -> dict:
    """Median and spread of ``fn()`` wall time over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "repeats": repeats, "times_s": times}


def interleaved(fns: dict, repeats: int = 5, warmup: int = 1) -> dict:
    """Time several callables round-robin (A B C A B C …) so that load changes hit all alike.

    Records wall time and this process's CPU time (all threads). On a CPU shared with other
    jobs the wall time of a step swells with the others' load while its CPU time mostly does
    not, so CPU-time ratios are the steadier figure there (onnxruntime's and torch's thread
    pools spin briefly while waiting, which CPU time counts as work).
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            gc.collect()
            c0 = time.process_time()
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    return {k: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v), "repeats": repeats,
                "times_s": v, "cpu_median_s": statistics.median(cpu[k]), "cpu_s": cpu[k]}
            for k, v in times.items()}


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)
