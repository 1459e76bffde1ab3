"""Speed, measured side by side in one run on this CPU; prints ratios and writes a JSON.

    python bench/speed.py [--models u2netp,u2net] [--repeats 3] [--photos 100] [--skip matting,folder,...]

Sections (each can be skipped with ``--skip``):
  node     Remove Background node vs raw ``session.run`` on prepared input vs ``rembg.remove``
           (same ONNX file) at 1 MP and 12 MP. Targets: node/raw ≤ 1.05 at 1 MP; at 12 MP the
           node's time beyond ``session.run`` ≤ half of rembg's time beyond its ``session.run``.
  refine   Mask Refine (guided filter) vs ``rembg.remove(alpha_matting=True)`` at 12 MP (target
           ≥ 50× faster); "skipped: not available" when this checkout has no Mask Refine node.
  folder   ``python cli.py --source DIR --dest DIR`` on ≥ 100 photos of mixed sizes (made from the
           eval set in a temp folder, deleted afterwards) vs the model alone (``session.run`` on
           the same photos, inputs prepared beforehand). Target ≥ 0.9.
  import   pack import time in a fresh process with torch already imported (target ≤ 0.3 s).
  memory   peak RSS per stage at 12 MP, each stage in its own process.
  matting  (part of memory/refine) rembg alpha matting at 12 MP: ~1–2 min on 2 cores.

Absolute seconds are noisy on a shared CPU: the timed variants run interleaved (A B C A B C …)
and the ratios between them are what to compare. Medians over ``--repeats`` after a warm-up.
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
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import DEFAULT_EVAL, RESULTS, ROOT, available_models, interleaved, load_pack, machine_info, rembg_session, write_json  # noqa: E402

SIZES = {"1MP": (1152, 864), "12MP": (4000, 3000)}
SOURCE_PHOTO = "alphamatting_GT01.png"  # a real photo with hair, upscaled to the test sizes
# Mask Refine (Cutout) inputs for guided-filter edge refinement (the node's defaults for the rest).
GUIDED = {"edge_refinement": "guided filter"}


def test_photo(eval_dir: Path, size: tuple[int, int]):
    """A real photo resized to ``size`` (w, h), as PIL and as an IMAGE tensor [1,H,W,3]."""
    import numpy as np
    import torch
    from PIL import Image

    src = eval_dir / SOURCE_PHOTO
    if src.is_file():
        im = Image.open(src).convert("RGB")
    else:  # any folder: first image of its manifest
        from bench.metrics import read_manifest

        im = Image.open(read_manifest(eval_dir)[0].image).convert("RGB")
    im = im.resize(size, Image.BICUBIC)
    t = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).unsqueeze(0)
    return im, t


# --------------------------------------------------------------------------------- node
def bench_node(models, eval_dir, repeats, log) -> dict:
    import numpy as np
    import torch
    from rembg import remove

    from cutout.imaging.model_io import to_model_input
    from cutout.models.session import get_session
    from cutout.nodes.remove_background import CutoutRemoveBackground

    node = CutoutRemoveBackground()
    out = {}
    for model in models:
        sess = get_session(model)
        rs = rembg_session(model)
        fam = sess.family
        rname = rs.inner_session.get_inputs()[0].name
        for label, size in SIZES.items():
            pil, img = test_photo(eval_dir, size)
            batch = to_model_input(img, fam.size, fam.mean, fam.std)
            fns = {
                # like for like with rembg.remove (which has no colour decontamination step)
                "node": lambda: node.run(img, model, decontaminate=False),
                "node_decontaminate": lambda: node.run(img, model, decontaminate=True),
                "raw_run": lambda: sess.run(batch),
                "rembg_raw_run": lambda: rs.inner_session.run(None, {rname: batch}),
                "rembg_remove": lambda: remove(pil, session=rs),
                # what a rembg-based ComfyUI node does: tensor -> PIL -> rembg -> tensor
                "rembg_as_node": lambda: torch.from_numpy(np.asarray(remove(Image_from(img), session=rs),
                                                                     dtype=np.float32) / 255.0),
            }
            reps = repeats + 2 if label == "1MP" else repeats
            t = interleaved(fns, repeats=reps, warmup=1)
            med = {k: v["median_s"] for k, v in t.items()}
            cpu = {k: v["cpu_median_s"] for k, v in t.items()}
            over_node = med["node"] - med["raw_run"]
            over_rembg = med["rembg_remove"] - med["rembg_raw_run"]
            c_node, c_rembg = cpu["node"] - cpu["raw_run"], cpu["rembg_remove"] - cpu["rembg_raw_run"]
            res = {"median_s": med, "cpu_median_s": cpu, "timings": t,
                   "cpu_node_over_raw": cpu["node"] / cpu["raw_run"],
                   "cpu_node_beyond_run_s": c_node, "cpu_rembg_beyond_run_s": c_rembg,
                   "cpu_beyond_run_ratio": c_node / c_rembg if c_rembg > 0 else None,
                   "cpu_rembg_over_node": cpu["rembg_remove"] / cpu["node"],
                   "node_over_raw": med["node"] / med["raw_run"],
                   "node_beyond_run_s": over_node, "rembg_beyond_run_s": over_rembg,
                   "beyond_run_ratio": over_node / over_rembg if over_rembg > 0 else None,
                   "rembg_over_node": med["rembg_remove"] / med["node"],
                   "rembg_as_node_over_node": med["rembg_as_node"] / med["node"]}
            out[f"{model}@{label}"] = res
            res["decontaminate_cost_s"] = med["node_decontaminate"] - med["node"]
            res["cpu_decontaminate_cost_s"] = cpu["node_decontaminate"] - cpu["node"]
            log(f"  {model:7} {label:5} decontamination's own cost: {res['decontaminate_cost_s'] * 1e3:.0f} ms wall, "
                f"{res['cpu_decontaminate_cost_s'] * 1e3:.0f} ms CPU")
            log(f"  {model:7} {label:5} node {med['node']:.3f} s | raw run {med['raw_run']:.3f} | "
                f"rembg {med['rembg_remove']:.3f} (its run {med['rembg_raw_run']:.3f}) | "
                f"rembg as a node {med['rembg_as_node']:.3f}")
            beyond = f"{res['beyond_run_ratio']:.2f}" if res["beyond_run_ratio"] is not None else "n/a"
            log(f"          node/raw = {res['node_over_raw']:.3f}   beyond run: node {over_node * 1e3:.0f} ms vs "
                f"rembg {over_rembg * 1e3:.0f} ms (ratio {beyond})   rembg/node = {res['rembg_over_node']:.2f}")
            cb = f"{res['cpu_beyond_run_ratio']:.2f}" if res["cpu_beyond_run_ratio"] is not None else "n/a"
            log(f"     CPU time: node/raw = {res['cpu_node_over_raw']:.3f}   beyond run: node {c_node * 1e3:.0f} ms vs "
                f"rembg {c_rembg * 1e3:.0f} ms (ratio {cb})   rembg/node = {res['cpu_rembg_over_node']:.2f}")
    return out


def Image_from(img):
    from PIL import Image

    return Image.fromarray((img[0].numpy() * 255.0 + 0.5).astype("uint8"))


def bench_breakdown(model, eval_dir, repeats, log) -> dict:
    """Where the node's time beyond ``session.run`` goes at 12 MP (the steps of pipeline.remove_background)."""
    import torch

    from cutout.imaging.model_io import from_model_output, to_model_input
    from cutout.imaging.tensors import sanitize
    from cutout.models.session import get_session

    sess = get_session(model)
    fam = sess.family
    _, img = test_photo(eval_dir, SIZES["12MP"])
    h, w = img.shape[1:3]
    frame = sanitize(img[0])
    batch = to_model_input(frame.unsqueeze(0), fam.size, fam.mean, fam.std)
    raw = sess.run(batch)
    mask = from_model_output(raw, h, w, fam.logits)
    rgba = torch.empty((1, h, w, 4), dtype=torch.float32)

    def fill():
        rgba[0, ..., :3] = frame
        rgba[0, ..., 3] = mask[0]

    steps = {
        "sanitize (finite check + clamp copy)": lambda: sanitize(img[0]),
        "to_model_input (antialiased shrink + normalise)": lambda: to_model_input(frame.unsqueeze(0), fam.size,
                                                                                  fam.mean, fam.std),
        "session.run": lambda: sess.run(batch),
        "from_model_output (upsample to 12 MP)": lambda: from_model_output(raw, h, w, fam.logits),
        "RGBA assembly": fill,
        "mask copy (batches > 1 only since issue 7)": lambda: rgba[..., 3].clone(),
    }
    t = interleaved(steps, repeats=repeats, warmup=1)
    out = {k: v["median_s"] for k, v in t.items()}
    cpu = {k: v["cpu_median_s"] for k, v in t.items()}
    for k, v in out.items():
        log(f"  {k:48} {v * 1e3:7.0f} ms wall  {cpu[k] * 1e3:7.0f} ms CPU")
    return {"model": model, "median_s": out, "cpu_median_s": cpu}


# --------------------------------------------------------------------------------- refine
def bench_refine(eval_dir, repeats, matting, log) -> dict:
    from refine_adapter import Refiner, get_refiner

    refiner, why = get_refiner({})
    if refiner is None:
        log(f"  {why}")
        return {"skipped": why}
    opts = {k: v for k, v in GUIDED.items() if k in refiner.defaults}
    refiner = Refiner(opts)
    from cutout.pipeline import predict_masks

    _, img = test_photo(eval_dir, SIZES["12MP"])
    mask = predict_masks(img, "u2netp")
    t = interleaved({"guided": lambda: refiner(mask, img)}, repeats=repeats, warmup=1)["guided"]
    res = {"options": opts, "guided_median_s": t["median_s"], "guided_cpu_median_s": t["cpu_median_s"], "timings": t}
    if matting and "seconds" in matting:
        res["rembg_alpha_matting_s"] = matting["seconds"]
        res["rembg_alpha_matting_cpu_s"] = matting.get("cpu_seconds")
        res["matting_over_guided"] = matting["seconds"] / t["median_s"]
        if matting.get("cpu_seconds"):
            res["cpu_matting_over_guided"] = matting["cpu_seconds"] / t["cpu_median_s"]
        log(f"  guided filter 12 MP {t['median_s']:.3f} s ({t['cpu_median_s']:.2f} s CPU) vs rembg alpha_matting "
            f"{matting['seconds']:.1f} s ({matting.get('cpu_seconds') or float('nan'):.1f} s CPU) -> "
            f"{res['matting_over_guided']:.0f}x faster wall, {res.get('cpu_matting_over_guided', float('nan')):.0f}x CPU "
            "(target ≥ 50x)")
    else:
        log(f"  guided filter 12 MP {t['median_s']:.3f} s ({t['cpu_median_s']:.2f} s CPU); alpha matting not measured")
    return res


# --------------------------------------------------------------------------------- folder job
def make_photos(eval_dir: Path, dest: Path, n: int, seed: int = 7) -> list[Path]:
    """``n`` JPEGs of mixed sizes (0.2–6 MP) cut and scaled from the eval photos."""
    from PIL import Image

    from bench.metrics import read_manifest

    rng = random.Random(seed)
    srcs = [p.image for p in read_manifest(eval_dir)]
    longs = [480, 800, 1024, 1600, 2048, 3000]
    out = []
    for i in range(n):
        with Image.open(srcs[i % len(srcs)]) as im:
            im = im.convert("RGB")
            w, h = im.size
            cw, ch = int(w * rng.uniform(0.7, 1.0)), int(h * rng.uniform(0.7, 1.0))
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            im = im.crop((x, y, x + cw, y + ch))
            long = longs[i % len(longs)]
            s = long / max(cw, ch)
            im = im.resize((max(1, round(cw * s)), max(1, round(ch * s))), Image.BICUBIC)
            p = dest / f"photo_{i:03d}.jpg"
            im.save(p, quality=90)
            out.append(p)
    return out


def model_only(photos, model) -> float:
    """Seconds of ``session.run`` alone over the photos (inputs decoded and prepared beforehand)."""
    from bench.metrics import load_rgb
    from cutout.imaging.model_io import to_model_input
    from cutout.models.session import get_session

    sess = get_session(model)
    fam = sess.family
    total = 0.0
    for p in photos:
        batch = to_model_input(load_rgb(p), fam.size, fam.mean, fam.std)
        t0 = time.perf_counter()
        sess.run(batch)
        total += time.perf_counter() - t0
    return total


def bench_folder(eval_dir, n, model, cli: Path, log) -> dict:
    if not cli.is_file():
        why = f"skipped: {cli} not found (the folder job's command line is not in this checkout)"
        log(f"  {why}")
        return {"skipped": why}
    env = dict(os.environ)
    help_text = subprocess.run([sys.executable, str(cli), "--help"], capture_output=True, text=True,
                               cwd=cli.parent, env=env).stdout
    extra = ["--model", model] if "--model" in help_text else []
    tmp = Path(tempfile.mkdtemp(prefix="cutout_bench_photos_"))
    try:
        src = tmp / "src"
        src.mkdir()
        photos = make_photos(eval_dir, src, n)
        from PIL import Image

        mp = []
        for p in photos:
            with Image.open(p) as im:
                mp.append(im.size)
        mpx = [w * h / 1e6 for w, h in mp]
        log(f"  {n} photos, {min(mpx):.2f}–{max(mpx):.2f} MP (median {statistics.median(mpx):.2f}), in {src}")
        model_only(photos[:2], model)  # warm-up
        m1 = model_only(photos, model)
        log(f"  model alone: {m1:.1f} s ({n / m1:.2f} img/s)")
        # fresh-process start-up (python + torch + pack + model load), to report the job without it
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c",
                        "import sys; sys.path.insert(0, sys.argv[1]); import torch; "
                        "from cutout_standalone import load_pack; load_pack(); "
                        "from cutout.models.session import get_session; get_session(sys.argv[2])",
                        str(cli.parent), model], check=True, env=env)
        startup = time.perf_counter() - t0
        dest = tmp / "dest"
        cmd = [sys.executable, str(cli), "--source", str(src), "--dest", str(dest)] + extra
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cli.parent, env=env)
        job = time.perf_counter() - t0
        written = sorted(p.name for p in dest.rglob("*") if p.is_file()) if dest.exists() else []
        log(f"  cli: {job:.1f} s, exit {proc.returncode}, {len(written)} files written "
            f"(process start-up alone {startup:.1f} s)")
        m2 = model_only(photos, model)
        log(f"  model alone again: {m2:.1f} s")
        m = (m1 + m2) / 2
        res = {"photos": n, "megapixels": {"min": min(mpx), "max": max(mpx), "median": statistics.median(mpx)},
               "model": model, "command": " ".join(["python", cli.name] + cmd[2:]).replace(str(tmp), "TMP"),
               "model_only_s": [m1, m2], "job_s": job, "startup_s": startup, "exit_code": proc.returncode,
               "files_written": len(written), "stdout_tail": proc.stdout[-1500:], "stderr_tail": proc.stderr[-1500:],
               "throughput_ratio": m / job, "throughput_ratio_without_startup": m / max(job - startup, 1e-9)}
        log(f"  throughput job/model = {res['throughput_ratio']:.2f} "
            f"({res['throughput_ratio_without_startup']:.2f} without process start-up; target ≥ 0.9)")
        if proc.returncode != 0:
            log("  cli stderr: " + proc.stderr[-800:])
        return res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------- import time
IMPORT_SNIPPET = """
import sys, time, json
sys.path.insert(0, sys.argv[1])
import torch  # ComfyUI has imported torch long before it loads custom nodes
c0, t0 = time.process_time(), time.perf_counter()
import cutout
pack = cutout
dt, cpu = time.perf_counter() - t0, time.process_time() - c0
heavy = [m for m in ("onnxruntime", "rembg", "pymatting", "scipy", "numba", "cv2", "skimage", "matplotlib")
         if m in sys.modules]
print(json.dumps({"seconds": dt, "cpu_seconds": cpu, "heavy_modules_loaded": heavy, "nodes": sorted(pack.NODE_CLASS_MAPPINGS)}))
"""


def bench_import(repeats, log) -> dict:
    runs = []
    for _ in range(repeats):
        r = subprocess.run([sys.executable, "-c", IMPORT_SNIPPET, str(ROOT)], capture_output=True, text=True,
                           check=True)
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    secs = [r["seconds"] for r in runs]
    res = {"median_s": statistics.median(secs), "times_s": secs,
           "cpu_median_s": statistics.median(r["cpu_seconds"] for r in runs), "heavy_modules_loaded": runs[-1]["heavy_modules_loaded"],
           "nodes": runs[-1]["nodes"]}
    log(f"  pack import (torch already imported): median {res['median_s'] * 1e3:.0f} ms wall, "
        f"{res['cpu_median_s'] * 1e3:.0f} ms CPU over {repeats} fresh processes (target ≤ 300 ms); "
        f"heavy modules loaded: {res['heavy_modules_loaded'] or 'none'}")
    return res


# --------------------------------------------------------------------------------- memory
def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Samples RSS every 2 ms in a thread: peak during the block minus RSS before it."""

    def __enter__(self):
        self.before = _rss()
        self.peak = self.before
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._poll, daemon=True)
        self._t.start()
        return self

    def _poll(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss())


MEM_STAGES = ["predict_masks", "remove_background_node", "refine_guided", "rembg_remove", "rembg_alpha_matting"]


def run_mem_stage(stage: str, eval_dir: Path, model: str) -> dict:
    """Runs in its own process: set-up (pack, 12 MP input, warm session), then the stage alone."""
    from cutout.pipeline import predict_masks

    pil, img = test_photo(eval_dir, SIZES["12MP"])
    info = {"stage": stage, "model": model, "input_mb": img.numel() * 4 / 2**20}
    if stage.startswith("rembg"):
        from rembg import remove

        rs = rembg_session(model)
        remove(pil.resize((320, 240)), session=rs)  # warm-up, small
        kwargs = {"alpha_matting": True} if stage == "rembg_alpha_matting" else {}
        fn = lambda: remove(pil, session=rs, **kwargs)  # noqa: E731
    else:
        predict_masks(img[:, :240, :320], model)  # warm-up, small
        if stage == "predict_masks":
            fn = lambda: predict_masks(img, model)  # noqa: E731
        elif stage == "remove_background_node":
            from cutout.nodes.remove_background import CutoutRemoveBackground

            node = CutoutRemoveBackground()
            fn = lambda: node.run(img, model)  # noqa: E731
        elif stage == "refine_guided":
            from refine_adapter import Refiner, get_refiner

            r, why = get_refiner({})
            if r is None:
                return {**info, "skipped": why}
            r = Refiner({k: v for k, v in GUIDED.items() if k in r.defaults})
            mask = predict_masks(img, model)
            r(mask[:, :240, :320], img[:, :240, :320])
            fn = lambda: r(mask, img)  # noqa: E731
        else:
            raise SystemExit(f"unknown stage {stage}")
    with PeakRSS() as p:
        c0, t0 = time.process_time(), time.perf_counter()
        result = fn()
        info["seconds"] = time.perf_counter() - t0
        info["cpu_seconds"] = time.process_time() - c0
    del result
    info["rss_before_mb"] = p.before / 2**20
    info["peak_extra_mb"] = (p.peak - p.before) / 2**20
    info["peak_rss_mb"] = p.peak / 2**20
    return info


def bench_memory(eval_dir, model, stages, log) -> dict:
    out = {}
    for stage in stages:
        r = subprocess.run([sys.executable, str(Path(__file__)), "--mem-stage", stage, "--model-for-mem", model,
                            "--eval", str(eval_dir)], capture_output=True, text=True)
        if r.returncode != 0:
            out[stage] = {"error": r.stderr[-800:]}
            log(f"  {stage}: failed: {r.stderr[-300:]}")
            continue
        info = json.loads(r.stdout.strip().splitlines()[-1])
        out[stage] = info
        if "skipped" in info:
            log(f"  {stage:24} {info['skipped']}")
        else:
            log(f"  {stage:24} peak +{info['peak_extra_mb']:.0f} MB over {info['rss_before_mb']:.0f} MB "
                f"(total {info['peak_rss_mb']:.0f} MB; 12 MP input tensor {info['input_mb']:.0f} MB), "
                f"{info['seconds']:.2f} s")
    return out


# --------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="u2netp,u2net")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats after a warm-up (modest: shared CPU)")
    ap.add_argument("--photos", type=int, default=100, help="photos for the folder job (≥ 100 for the target)")
    ap.add_argument("--eval", type=Path, default=DEFAULT_EVAL, help="eval folder the test photos are made from")
    ap.add_argument("--cli", type=Path, default=ROOT / "cli.py", help="the folder job's command line")
    ap.add_argument("--skip", default="", help="comma-separated sections to skip: node,breakdown,refine,folder,import,memory,matting")
    ap.add_argument("--out", type=Path, default=RESULTS / "speed.json")
    ap.add_argument("--mem-stage", help=argparse.SUPPRESS)
    ap.add_argument("--model-for-mem", default="u2netp", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.mem_stage:
        print(json.dumps(run_mem_stage(args.mem_stage, args.eval, args.model_for_mem)))
        return 0

    skip = set(filter(None, args.skip.split(",")))
    models, skipped = available_models(args.models.split(","))
    report = {"machine": machine_info(), "note": "absolute seconds are noisy (shared CPU); compare the ratios",
              "models": models, "skipped_models": skipped, "repeats": args.repeats}

    def log(s):
        print(s, flush=True)

    log(f"Cutout speed bench — {report['machine']['cpu']}, {report['machine']['cores']} cores, "
        f"{report['machine']['date_utc']}, load {report['machine']['load_avg_1min']:.1f}")
    log("Absolute seconds are noisy on this shared CPU; variants run interleaved, compare the RATIOS.")
    for k, v in skipped.items():
        log(f"skipped model {k}: {v}")

    def section(name, title, fn):
        if name in skip:
            report[name] = {"skipped": "--skip"}
            return
        log(f"\n[{name}] {title}")
        t0 = time.perf_counter()
        report[name] = fn()
        log(f"  ({time.perf_counter() - t0:.0f} s)")
        write_json(args.out, report)  # keep what is done so far

    section("import", "pack import time, fresh process, torch already imported",
            lambda: bench_import(max(args.repeats, 5), log))
    section("node", "Remove Background node vs raw session.run vs rembg.remove (same ONNX file)",
            lambda: bench_node(models, args.eval, args.repeats, log))
    section("breakdown", f"where the node's time goes at 12 MP ({models[0]})",
            lambda: bench_breakdown(models[0], args.eval, args.repeats, log))
    mem_stages = [s for s in MEM_STAGES if not (s == "rembg_alpha_matting" and "matting" in skip)]
    section("memory", f"peak RSS per stage at 12 MP ({models[0]}), one process per stage",
            lambda: bench_memory(args.eval, models[0], mem_stages, log))
    matting = (report.get("memory") or {}).get("rembg_alpha_matting")
    section("refine", "guided-filter refinement vs rembg alpha matting at 12 MP",
            lambda: bench_refine(args.eval, args.repeats, matting, log))
    section("folder", f"folder job (cli.py) vs the model alone, {args.photos} photos of mixed sizes",
            lambda: bench_folder(args.eval, args.photos, "u2netp", args.cli, log))

    log("\nSummary (ratios; targets in brackets)")
    for key, r in (report.get("node") or {}).items():
        if isinstance(r, dict) and "node_over_raw" in r:
            beyond = f"{r['beyond_run_ratio']:.2f}" if r["beyond_run_ratio"] is not None else "n/a"
            tgt = "[≤ 1.05]" if key.endswith("1MP") else "[beyond-run ratio ≤ 0.5]"
            log(f"  {key:13} node/raw {r['node_over_raw']:.3f}  node-beyond-run / rembg-beyond-run {beyond}  "
                f"rembg/node {r['rembg_over_node']:.2f}  {tgt}")
            cb = f"{r['cpu_beyond_run_ratio']:.2f}" if r["cpu_beyond_run_ratio"] is not None else "n/a"
            log(f"  {'  (CPU time)':13} node/raw {r['cpu_node_over_raw']:.3f}  node-beyond-run / rembg-beyond-run {cb}  "
                f"rembg/node {r['cpu_rembg_over_node']:.2f}")
    ref = report.get("refine") or {}
    if "matting_over_guided" in ref:
        log(f"  refine 12MP   alpha matting / guided {ref['matting_over_guided']:.0f}x wall, "
            f"{ref.get('cpu_matting_over_guided', float('nan')):.0f}x CPU  [≥ 50]")
    elif "guided_median_s" in ref:
        log(f"  refine 12MP   guided {ref['guided_median_s']:.2f} s ({ref['guided_cpu_median_s']:.2f} s CPU); "
            "matting not measured")
    elif ref.get("skipped"):
        log(f"  refine        {ref['skipped']}")
    fol = report.get("folder") or {}
    if "throughput_ratio" in fol:
        log(f"  folder job    throughput vs model alone {fol['throughput_ratio']:.2f}  [≥ 0.9]")
    elif fol.get("skipped"):
        log(f"  folder job    {fol['skipped']}")
    imp = report.get("import") or {}
    if "median_s" in imp:
        log(f"  import        {imp['median_s'] * 1e3:.0f} ms  [≤ 300 ms]")
    write_json(args.out, report)
    from speed_md import speed_markdown

    args.out.with_suffix(".md").write_text(speed_markdown(report))
    log(f"\nwrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
