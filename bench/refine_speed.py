"""Speed and memory of Mask Refine / Composite Background at 12 MP, as ratios measured in one run.

    python bench/refine_speed.py [--quick] [--photo PATH] [--json OUT]

Reference times, measured in this run on this machine:
* ``u2netp session.run`` on one 320×320 input (median of 5), the unit for the pack's own ops;
* ``rembg.remove(alpha_matting=True)`` on the same 12 MP photo (skipped with ``--quick``: it
  takes over a minute).

Every operation runs in a fresh child process (``--child``) so that its peak memory (max RSS
of the child, which includes the ~0.4 GB of a Python + torch process and the 12 MP input) is
its own; it is timed after a warm-up call on a 512² crop (lazy imports, thread pools), median of 3. Also compares the two foreground estimators (blur-fusion vs pymatting's multi-level)
on a synthetic scene with a known answer: error in the edge band and time.

``run(quick=...)`` returns the numbers as a dict, for bench/speed.py.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_PHOTO = ROOT.parent / "shared" / "eval" / "dev" / "alphamatting_GT04.png"
SIZE_12MP = (3000, 4000)  # H, W

# name -> keyword arguments of nodes.mask_refine.refine_masks (or a special op)
OPS = {
    "guided filter (default settings)": {"edge_refinement": "guided filter"},
    "mask refine, node defaults": {},
    "mask refine, every non-matting op on": dict(black_point=0.05, white_point=0.95, fill_holes=True,
                                                 remove_islands=0.001, grow=4, edge_refinement="guided filter",
                                                 feather=4.0, temporal=0.5),
    "levels": dict(black_point=0.05, white_point=0.95),
    "threshold": dict(threshold=0.5),
    "fill holes": dict(fill_holes=True),
    "remove islands": dict(remove_islands=0.001),
    "grow 4": dict(grow=4),
    "shrink 16": dict(grow=-16),
    "feather 4": dict(feather=4.0),
    "temporal 0.5 (per frame, 3-frame batch)": dict(temporal=0.5),
    "invert": dict(invert=True),
    "composite on white, decontaminate (blur-fusion)": "composite",
    "composite on white, no decontamination": "composite_plain",
    "decontaminate 8192x8192 noise, whole frame is edge band (worst case)": "decon_worst",
    "matting (1 MP cap)": {"edge_refinement": "matting"},
}


def _load():
    import cutout


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # KiB -> GiB (Linux)


def _make_inputs(photo: Path, folder: Path):
    """12 MP photo (the eval photo upscaled) + its u2netp mask, saved as .pt for the children."""
    import torch
    import torch.nn.functional as F

    from bench.metrics import load_rgb
    from cutout.pipeline import predict_masks

    img = load_rgb(photo)
    img = F.interpolate(img.permute(0, 3, 1, 2), size=SIZE_12MP, mode="bicubic", align_corners=False)
    img = img.clamp(0, 1).permute(0, 2, 3, 1).contiguous()
    mask = predict_masks(img, "u2netp")
    torch.save(img, folder / "img.pt")
    torch.save(mask, folder / "mask.pt")
    from PIL import Image

    Image.fromarray((img[0].numpy() * 255).round().astype("uint8")).save(folder / "img.png")
    return img, mask


def _child(op: str, folder: Path) -> dict:
    import torch

    _load()
    from cutout.imaging.composite import composite_background
    from cutout.nodes.mask_refine import refine_masks

    torch.set_grad_enabled(False)
    img = torch.load(folder / "img.pt")
    mask = torch.load(folder / "mask.pt")
    spec = OPS[op]
    frames = 1
    if isinstance(spec, dict) and spec.get("temporal"):
        frames = 3
        img = img.repeat(3, 1, 1, 1)  # three real (contiguous) frames, as a video batch is
        mask = torch.cat([mask, mask.roll(1, -1), mask])
    if spec == "decon_worst":  # a frame whose edge band is everything: bounded cost, not minutes
        from cutout.imaging.composite import estimate_foreground

        g = torch.Generator().manual_seed(0)
        img = torch.rand(1, 8192, 8192, 3, generator=g)
        mask = torch.rand(1, 8192, 8192, generator=g) * 0.9 + 0.05
    def run(img, mask):
        if spec == "decon_worst":
            estimate_foreground(img, mask)
        elif spec == "composite":
            composite_background(img, mask, "white")
        elif spec == "composite_plain":
            composite_background(img, mask, "white", decontaminate=False)
        else:
            refine_masks(mask, img, **spec)

    # a warm-up call on a 512² crop first (lazy imports such as scipy, thread pools, first-call
    # set-up), then the median of 3 calls: what every further image costs in a running ComfyUI,
    # like the session.run (median of 5 warm runs) it is compared with. Slow ops run once.
    run(img[:, :512, :512].contiguous(), mask[:, :512, :512].contiguous())
    base = _peak_gb()
    walls, cpus = [], []
    slow = spec == "decon_worst" or (isinstance(spec, dict) and spec.get("edge_refinement") == "matting")
    for _ in range(1 if slow else 3):
        t0 = time.perf_counter()
        c0 = time.process_time()
        run(img, mask)
        walls.append((time.perf_counter() - t0) / frames)
        cpus.append((time.process_time() - c0) / frames)  # all threads: less sensitive to a shared CPU
    dt, cpu = statistics.median(walls), statistics.median(cpus)
    return {"seconds": dt, "cpu_seconds": cpu, "peak_gb": _peak_gb(), "peak_before_gb": base}


def _session_run_time() -> tuple[float, float]:
    import numpy as np

    from cutout.models.session import get_session

    s = get_session("u2netp")
    x = np.random.default_rng(0).random((1, 3, 320, 320), dtype=np.float32)
    s.run(x)
    times, cpus = [], []
    for _ in range(5):
        t0, c0 = time.perf_counter(), time.process_time()
        s.run(x)
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(times), statistics.median(cpus)


def _rembg_matting_time(folder: Path) -> float:
    from PIL import Image

    # rembg finds its weights through U2NET_HOME; the pack ships the same u2netp.onnx
    os.environ.setdefault("U2NET_HOME", str(ROOT / "cutout" / "models"))
    from rembg import new_session, remove

    sess = new_session("u2netp")
    im = Image.open(folder / "img.png")
    t0 = time.perf_counter()
    remove(im, session=sess, alpha_matting=True)
    return time.perf_counter() - t0


def foreground_methods(size: int = 1024) -> dict:
    """Blur-fusion vs multi-level (pymatting) on a synthetic scene with a known foreground."""
    import torch

    from cutout.imaging.composite import estimate_foreground

    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    fg = torch.stack([0.8 + 0.2 * x, 0.3 + 0.4 * y, 0.5 + 0.3 * torch.sin(6 * x)], -1).clamp(0, 1)[None]
    out = {}
    for bg_name, bg_col in (("green screen", (0.1, 0.8, 0.1)), ("dark", (0.03, 0.03, 0.03))):
        bg = (torch.tensor(bg_col).view(1, 1, 1, 3) + 0.1 * torch.sin(20 * y)[None, ..., None]).clamp(0, 1)
        r = torch.sqrt((y - 0.5) ** 2 + (x - 0.5) ** 2)
        edge = 0.3 + 0.03 * torch.sin(40 * torch.atan2(y - 0.5, x - 0.5))
        alpha = ((edge - r) / 0.05 + 0.5).clamp(0, 1)[None]
        img = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
        band = (alpha > 0.02) & (alpha < 0.98)

        def errors(est):
            e = (est - fg).abs().mean(-1)
            seen = (alpha[..., None] * (est - fg)).abs().mean(-1)  # what shows in a composite
            return e[band].mean().item(), seen[band].mean().item()

        row = {"naive": errors(img) + (0.0,)}
        for method in ("blur_fusion", "ml"):
            estimate_foreground(img[:, :64, :64], alpha[:, :64, :64], method)  # warm-up (numba JIT for ml)
            t0 = time.perf_counter()
            est = estimate_foreground(img, alpha, method)
            row[method] = errors(est) + (time.perf_counter() - t0,)
        out[bg_name] = row
    return out


def run(quick: bool = False, photo: Path = DEFAULT_PHOTO, skip_matting: bool = False,
        only: list[str] | None = None) -> dict:
    _load()
    results = {"size": f"{SIZE_12MP[1]}x{SIZE_12MP[0]}", "photo": str(photo)}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _make_inputs(photo, folder)
        unit, unit_cpu = _session_run_time()
        results["u2netp_session_run_s"] = unit
        results["u2netp_session_run_cpu_s"] = unit_cpu
        ops = {}
        for op in OPS:
            if skip_matting and op.startswith("matting"):
                continue
            if only and not any(o in op for o in only):
                continue
            proc = subprocess.run([sys.executable, __file__, "--child", op, "--folder", str(folder)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                ops[op] = {"error": proc.stderr.strip().splitlines()[-3:] or [f"exit code {proc.returncode}"]}
                print(f"[progress] {op}: FAILED {ops[op]['error']}", file=sys.stderr, flush=True)
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            r["x_session_run"] = r["seconds"] / unit
            r["x_session_run_cpu"] = r["cpu_seconds"] / unit_cpu
            ops[op] = r
            print(f"[progress] {op}: {r['seconds']:.3f} s = {r['x_session_run']:.2f} x session.run "
                  f"({1000 * unit:.0f} ms); CPU {r['cpu_seconds']:.3f} s = {r['x_session_run_cpu']:.2f} x "
                  f"({1000 * unit_cpu:.0f} ms CPU), peak {r['peak_gb']:.2f} GB", file=sys.stderr, flush=True)
        results["ops"] = ops
        if not quick:
            try:
                rembg_t = _rembg_matting_time(folder)
                print(f"[progress] rembg alpha matting: {rembg_t:.1f} s", file=sys.stderr, flush=True)
                results["rembg_alpha_matting_s"] = rembg_t
                gf = ops["guided filter (default settings)"]["seconds"]
                results["guided_vs_rembg_matting_speedup"] = rembg_t / gf
            except ImportError:
                results["rembg_alpha_matting_s"] = "skipped (rembg not installed)"
    if not only:
        results["foreground_methods_1mp"] = foreground_methods()
    return results


def report(r: dict) -> str:
    lines = [f"## Refine / composite speed at {r['size']} (one run, this machine)",
             f"u2netp session.run (320×320, median of 5): {1000 * r['u2netp_session_run_s']:.0f} ms wall, "
             f"{1000 * r.get('u2netp_session_run_cpu_s', float('nan')):.0f} ms CPU (all threads)", ""]
    if "rembg_alpha_matting_s" in r:
        v = r["rembg_alpha_matting_s"]
        lines.append(f"rembg.remove(alpha_matting=True), u2netp: {v if isinstance(v, str) else f'{v:.1f} s'}")
        if "guided_vs_rembg_matting_speedup" in r:
            lines.append(f"guided filter is {r['guided_vs_rembg_matting_speedup']:.0f}× faster (target ≥ 50×)")
        lines.append("")
    lines += ["| operation | s / frame | × session.run (wall) | CPU s / frame | × session.run (CPU) | peak RSS (GB) |",
              "|---|---|---|---|---|---|"]
    for op, v in r["ops"].items():
        if "error" in v:
            lines.append(f"| {op} | error: {v['error']} | | | | |")
        else:
            lines.append(f"| {op} | {v['seconds']:.3f} | {v['x_session_run']:.2f} | {v['cpu_seconds']:.3f} | "
                         f"{v['x_session_run_cpu']:.2f} | {v['peak_gb']:.2f} |")
    lines += ["", "Foreground estimation on a synthetic 1024² scene with a known answer "
              "(mean |F̂ − F| in the band 0.02 < α < 0.98; 'as seen' = α·|F̂ − F|, what shows in a composite):",
              "", "| background | method | colour error | as seen | seconds |", "|---|---|---|---|---|"]
    for bg, row in r.get("foreground_methods_1mp", {}).items():
        for m, (e, s, t) in row.items():
            lines.append(f"| {bg} | {m} | {e:.4f} | {s:.4f} | {t:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="skip rembg's alpha matting (over a minute)")
    ap.add_argument("--skip-matting", action="store_true", help="skip the pack's own matting op")
    ap.add_argument("--photo", type=Path, default=DEFAULT_PHOTO)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--only", nargs="+", help="run only the operations whose name contains one of these")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.folder)))
        return
    if not args.photo.is_file():
        print(f"photo {args.photo} not found (pass --photo)")
        return
    r = run(args.quick, args.photo, args.skip_matting, args.only)
    print(report(r))
    if args.json:
        args.json.write_text(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
