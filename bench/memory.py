#!/usr/bin/env python
"""Peak memory of a long 1080p batch through Remove Background -> Mask Refine -> Composite Background.

    python bench/memory.py                      # 200 frames of 1080p, as in issue 6 (~5 GB input)
    python bench/memory.py --frames 40          # same ratios, less RAM and time

It runs the real nodes, in one process, the way ComfyUI does: every node's outputs stay alive
until the end of the prompt (``--keep all``, default), or each intermediate is dropped as soon
as the next node has it (``--keep none``, the best a workflow can get). It prints the peak RSS
(``ru_maxrss``) after each stage, minus the RSS before the input was allocated (libraries and
model loaded), as a multiple of the input tensor's size. Issue 6's target is < 2.5×.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss_now() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--model", default="u2netp")
    ap.add_argument("--keep", choices=["all", "none"], default="all")
    ap.add_argument("--batch-composite", action="store_true",
                    help="composite the way the node did before issue 6 (whole batch at once), for comparison")
    ap.add_argument("--stages", default="remove,refine,composite",
                    help="comma-separated subset of remove,refine,composite")
    args = ap.parse_args(argv)

    import torch

    import cutout
    from cutout.models.session import get_session
    from cutout.nodes import NODE_CLASS_MAPPINGS as N

    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    get_session(args.model)
    for key in ("CutoutMaskRefine", "CutoutCompositeBackground"):  # warm imports so they are in the baseline
        N.get(key)
    # a tiny run of every stage first, so lazily imported libraries are in the baseline too
    tiny = torch.rand(1, 64, 64, 3)
    rgba, m = N["CutoutRemoveBackground"]().run(tiny, args.model)
    if "CutoutMaskRefine" in N:
        N["CutoutMaskRefine"]().run(m, grow=2, feather=2.0)
    if "CutoutCompositeBackground" in N:
        N["CutoutCompositeBackground"]().run(rgba, "color", color="#FFFFFF", mask=m)
    del tiny, rgba, m
    gc.collect()

    base_now, base_peak = rss_now(), rss_peak()
    g = torch.Generator().manual_seed(0)
    # a smooth synthetic video: a bright disc moving over a gradient (random noise would be atypical)
    images = torch.empty(args.frames, args.height, args.width, 3)
    yy = torch.linspace(0, 1, args.height).view(-1, 1)
    xx = torch.linspace(0, 1, args.width).view(1, -1)
    for i in range(args.frames):
        cx = 0.3 + 0.4 * i / max(args.frames - 1, 1)
        disc = (((xx - cx) * args.width / args.height) ** 2 + (yy - 0.5) ** 2 < 0.09).float()
        images[i, ..., 0] = 0.2 + 0.6 * disc
        images[i, ..., 1] = 0.3 * xx + 0.5 * disc
        images[i, ..., 2] = 0.3 * yy + 0.1 * disc
    images.add_(torch.rand(images.shape[1:], generator=g).mul_(0.02))  # a little texture, same for all frames
    nbytes = images.nbytes
    print(f"input: {args.frames} x {args.height}x{args.width} float32 = {nbytes / 2**30:.2f} GiB; "
          f"baseline RSS {base_now / 2**30:.2f} GiB (peak so far {base_peak / 2**30:.2f}); keep={args.keep}")

    def report(stage: str, t0: float):
        peak = rss_peak()
        print(f"{stage:<22} peak RSS over baseline {(peak - base_now) / nbytes:5.2f}x input  "
              f"(now {(rss_now() - base_now) / nbytes:4.2f}x, total peak {peak / 2**30:5.2f} GiB, "
              f"{time.perf_counter() - t0:6.1f} s)", flush=True)

    report("input allocated", time.perf_counter())
    alive = [images]
    rgba = mask = None
    if "remove" in stages:
        t0 = time.perf_counter()
        rgba, mask = N["CutoutRemoveBackground"]().run(images, args.model)
        alive += [rgba, mask]
        if args.keep == "none":
            alive = [rgba, mask]
            del images
        report("Remove Background", t0)
    else:
        mask = torch.zeros(args.frames, args.height, args.width)  # a soft-edged box: a realistic edge band
        y0, x0 = args.height // 4, args.width // 4
        mask[:, y0:3 * y0, x0:3 * x0] = 1.0
        for k in range(1, 8):  # a 7 px soft rim, as a model's mask has
            v = 1.0 - k / 8.0
            mask[:, y0 - k, x0 - k:3 * x0 + k] = v
            mask[:, 3 * y0 + k - 1, x0 - k:3 * x0 + k] = v
            mask[:, y0 - k:3 * y0 + k, x0 - k] = v
            mask[:, y0 - k:3 * y0 + k, 3 * x0 + k - 1] = v
        rgba = images
    if "refine" in stages and "CutoutMaskRefine" in N:
        t0 = time.perf_counter()
        refined, preview = N["CutoutMaskRefine"]().run(mask, grow=2, feather=2.0)
        alive += [refined, preview]
        if args.keep == "none":
            alive = [rgba, refined]
        mask = refined
        report("Mask Refine", t0)
    if "composite" in stages and "CutoutCompositeBackground" in N:
        t0 = time.perf_counter()
        if args.batch_composite:
            from cutout.imaging.composite import composite_background
            from cutout.imaging.tensors import sanitize

            out = (composite_background(sanitize(rgba[..., :3]), mask, "#FFFFFF"),)
        else:
            out = N["CutoutCompositeBackground"]().run(rgba, "color", color="#FFFFFF", mask=mask)
        alive += list(out)
        report("Composite Background", t0)
    final = (rss_peak() - base_now) / nbytes
    print(f"RESULT peak RSS over baseline = {final:.2f}x the input tensor (target < 2.5x); "
          f"alive at the end: {sum(t.untyped_storage().nbytes() for t in {t.untyped_storage().data_ptr(): t for t in alive}.values()) / nbytes:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
