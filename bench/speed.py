"""Speed and memory, measured side by side in one run on this CPU; prints ratios, writes a JSON.

    python -m bench.speed [--models u2netp,u2net,u2net-int8] [--repeats 3] [--skip import,node,ops,matting]

Sections: ``import`` (pack import in a fresh process, torch already imported); ``node`` (Remove
Background at ``quality=fast``, 1 and 12 MP, vs its ``session.run`` vs ``rembg.remove`` on the same ONNX
file; int8 against rembg on its float model); ``ops`` (Mask Refine, Composite, the node at 12 MP, each in
its own process for its peak RSS, × u2netp's ``session.run``; a 1080p batch through the three nodes);
``matting`` (``rembg.remove(alpha_matting=True)`` at 12 MP). docs/performance.md lists the figures.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench._common import (DEFAULT_EVAL, RESULTS, ROOT, SIZES, available_models, interleaved, machine_info,
                           peak_rss_child, rembg_session, test_photo, write_json)

IMPORT_CODE = """
import sys, time, json
import torch  # ComfyUI has imported torch long before it loads custom nodes
c0, t0 = time.process_time(), time.perf_counter()
import cutout
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
heavy = [m for m in ("onnxruntime", "rembg", "pymatting", "scipy", "numba", "cv2", "ray") if m in sys.modules]
print(json.dumps({"seconds": wall, "cpu_seconds": cpu, "heavy": heavy}))
"""


def bench_import(repeats: int, log) -> dict:
    runs = [__import__("json").loads(subprocess.run([sys.executable, "-c", IMPORT_CODE], cwd=ROOT, check=True,
                                                    capture_output=True, text=True).stdout.splitlines()[-1])
            for _ in range(repeats)]
    res = {"median_s": statistics.median(r["seconds"] for r in runs),
           "cpu_median_s": statistics.median(r["cpu_seconds"] for r in runs), "heavy_modules": runs[-1]["heavy"]}
    log(f"  import: {res['median_s'] * 1e3:.0f} ms wall, {res['cpu_median_s'] * 1e3:.0f} ms CPU; "
        f"heavy modules loaded: {res['heavy_modules'] or 'none'}")
    return res


def bench_node(models, eval_dir, repeats, log) -> dict:
    import numpy as np
    from PIL import Image
    from rembg import remove

    from cutout.imaging.model_io import to_model_input
    from cutout.models.catalog import get_spec
    from cutout.models.session import get_session
    from cutout.pipeline import remove_background

    out = {}
    for model in models:
        base = get_spec(model).derived_from or model  # rembg runs the float model an int8 variant is built from
        sess, fsess, rs = get_session(model), get_session(base), rembg_session(base)
        fam, rname = sess.family, rs.inner_session.get_inputs()[0].name
        for label, size in SIZES.items():
            pil, img = test_photo(eval_dir, size)
            x = to_model_input(img, fam.size, fam.mean, fam.std)
            fns = {"node": lambda: remove_background(img, model, decontaminate=False, quality="fast"),  # one pass,
                   "node_decontaminate": lambda: remove_background(img, model, quality="fast"),  # as rembg's
                   "run": lambda: sess.run(x), "rembg_run": lambda: rs.inner_session.run(None, {rname: x}),
                   "rembg": lambda: remove(pil, session=rs),
                   # what a rembg-based ComfyUI node does: IMAGE -> 8-bit PIL -> rembg -> IMAGE
                   "rembg_as_node": lambda: np.asarray(remove(Image.fromarray(
                       (img[0].numpy() * 255 + 0.5).astype("uint8")), session=rs), dtype=np.float32) / 255}
            if base != model:
                fns["float_run"] = lambda: fsess.run(x)
            t = interleaved(fns, repeats=repeats + (2 if label == "1MP" else 0))
            med = {k: v["median_s"] for k, v in t.items()}
            r = {"median_s": med, "cpu_median_s": {k: v["cpu_median_s"] for k, v in t.items()},
                 "node_over_run": med["node"] / med["run"], "rembg_over_node": med["rembg"] / med["node"],
                 "beyond_run_vs_rembg": (med["node"] - med["run"]) / max(med["rembg"] - med["rembg_run"], 1e-9),
                 "rembg_as_node_over_node": med["rembg_as_node"] / med["node"],
                 "decontaminate_s": med["node_decontaminate"] - med["node"]}
            if "float_run" in med:
                r["float_run_over_run"] = med["float_run"] / med["run"]
            out[f"{model}@{label}"] = r
            log(f"  {model:11} {label:4} node/run {r['node_over_run']:.2f} | beyond run vs rembg's "
                f"{r['beyond_run_vs_rembg']:.2f} | rembg({base})/node {r['rembg_over_node']:.2f} | "
                f"rembg-as-node/node {r['rembg_as_node_over_node']:.2f} | decontamination +{r['decontaminate_s']:.2f} s"
                + (f" | float run / int8 run {r['float_run_over_run']:.2f}" if "float_run_over_run" in r else ""))
    return out


# name -> the call timed in a child process at 12 MP (img, mask loaded there); "chain" is a 1080p batch
OPS = {
    "session.run u2netp (the unit)": "sess.run(x)",
    "remove background node": "remove_background(img, 'u2netp')",
    "mask refine, guided filter": "refine_masks(mask, img, edge_refinement='guided filter')",
    "mask refine, every non-matting op": "refine_masks(mask, img, black_point=0.05, white_point=0.95, "
    "fill_holes=True, remove_islands=0.001, grow=4, edge_refinement='guided filter', feather=4.0)",
    "grow 4": "refine_masks(mask, img, grow=4)",
    "feather 4": "refine_masks(mask, img, feather=4.0)",
    "fill holes + remove islands": "refine_masks(mask, img, fill_holes=True, remove_islands=0.001)",
    "composite on white, decontaminate": "composite_background(img, mask, 'white')",
    "composite on white, no decontamination": "composite_background(img, mask, 'white', decontaminate=False)",
    "matting (1 MP cap)": "refine_masks(mask, img, edge_refinement='matting')",
}
OP_CODE = """
import statistics, time, numpy as np, torch
from bench._common import SIZES, test_photo
from cutout.imaging.composite import composite_background
from cutout.imaging.refine_chain import refine_masks
from cutout.models.session import get_session
from cutout.pipeline import predict_masks, remove_background
from pathlib import Path
torch.set_grad_enabled(False)
_, img = test_photo(Path(sys.argv[2]), SIZES["12MP"])
mask = predict_masks(img, "u2netp") if "mask" in sys.argv[1] else None  # set-up only where used: peaks stay the op's
sess = get_session("u2netp"); x = np.random.default_rng(0).random((1, 3, 320, 320), dtype=np.float32)
fn = lambda img, mask: eval(sys.argv[1])
fn(img[:, :512, :512].contiguous(), None if mask is None else mask[:, :512, :512].contiguous())  # lazy imports
wall, cpu = [], []
for _ in range(int(sys.argv[3])):
    c0, t0 = time.process_time(), time.perf_counter(); fn(img, mask)
    wall.append(time.perf_counter() - t0); cpu.append(time.process_time() - c0)
RESULT = {"seconds": statistics.median(wall), "cpu_seconds": statistics.median(cpu)}
"""
CHAIN_CODE = """
import torch
from cutout.nodes import NODE_CLASS_MAPPINGS as N
torch.set_grad_enabled(False)
frames = int(sys.argv[1])
N["CutoutRemoveBackground"]().run(torch.rand(1, 64, 64, 3), "u2netp")  # model loaded before the baseline
before = peak_mb(); img = torch.rand(frames, 1080, 1920, 3)
rgba, mask, _ = N["CutoutRemoveBackground"]().run(img, "u2netp")
refined = N["CutoutMaskRefine"]().run(mask, grow=2, feather=2.0)[0]
out = N["CutoutCompositeBackground"]().run(img, background="color", color="#FFFFFF", mask=refined)
RESULT = {"peak_over_input": (peak_mb() - before) * 2**20 / (img.numel() * 4), "frames": frames}
"""


def bench_ops(eval_dir, repeats, log) -> dict:
    out = {}
    for name, call in OPS.items():
        r = peak_rss_child(OP_CODE, call, str(eval_dir), str(1 if "matting" in name else repeats))
        out[name] = r
        if "error" in r:
            log(f"  {name}: FAILED {r['error'][-300:]}")
            continue
        unit = out["session.run u2netp (the unit)"]
        r["x_run"], r["x_run_cpu"] = r["seconds"] / unit["seconds"], r["cpu_seconds"] / unit["cpu_seconds"]
        log(f"  {name:42} {r['seconds']:7.3f} s = {r['x_run']:6.2f}× run (CPU {r['x_run_cpu']:.2f}×), "
            f"peak {r['peak_rss_mb'] / 1024:.2f} GB")
    chain = peak_rss_child(CHAIN_CODE, "8")
    out["chain 1080p ×8"] = chain
    if "error" not in chain:
        log(f"  1080p ×8 through Remove Background → Mask Refine → Composite, outputs kept: "
            f"peak {chain['peak_over_input']:.2f}× the input")
    return out


def bench_matting(eval_dir, ops, log) -> dict:
    from rembg import remove

    pil, _ = test_photo(eval_dir, SIZES["12MP"])
    rs = rembg_session("u2netp")
    c0, t0 = time.process_time(), time.perf_counter()
    remove(pil, session=rs, alpha_matting=True)
    r = {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}
    guided = ops.get("mask refine, guided filter", {})
    if "seconds" in guided:
        r["over_guided_filter"] = r["seconds"] / guided["seconds"]
    log(f"  rembg alpha matting 12 MP: {r['seconds']:.1f} s"
        + (f" = {r['over_guided_filter']:.0f}× the guided filter" if "over_guided_filter" in r else ""))
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="u2netp,u2net,u2netp-int8,u2net-int8")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats after a warm-up")
    ap.add_argument("--eval", type=Path, default=DEFAULT_EVAL, help="eval folder the test photo comes from")
    ap.add_argument("--skip", default="", help="comma-separated sections to skip: import,node,ops,matting")
    ap.add_argument("--out", type=Path, default=RESULTS / "speed.json")
    a = ap.parse_args(argv)
    skip = set(filter(None, a.skip.split(",")))
    models, skipped = available_models(a.models.split(","))
    report = {"machine": machine_info(), "models": models, "skipped_models": skipped}
    print(f"{report['machine']['cpu']}, {report['machine']['cores']} cores, load "
          f"{report['machine']['load_avg_1min']:.1f}: compare the ratios, not the seconds")
    for k, v in skipped.items():
        print(f"skipped model {k}: {v}")
    sections = {"import": lambda: bench_import(max(a.repeats, 5), print),
                "node": lambda: bench_node(models, a.eval, a.repeats, print),
                "ops": lambda: bench_ops(a.eval, a.repeats, print),
                "matting": lambda: bench_matting(a.eval, report.get("ops", {}), print)}
    for name, fn in sections.items():
        if name not in skip:
            print(f"\n[{name}]", flush=True)
            report[name] = fn()
            write_json(a.out, report)  # keep what is done so far
    print(f"\nwrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
