"""The Remove Background node's own work around the model, without the model's noise.

    python bench/overhead.py [--repeats 7]

``session.run`` is replaced, for both sides, by a function returning the output computed once
beforehand, so only the work *around* the network is timed: the node (decontamination off,
like ``rembg.remove``), the node's code before issue 7 (``before``, the old steps re-written
here: one antialiased shrink, 2-D bicubic upsample, boolean-index snap, mask clone) and
``rembg.remove`` (its PIL resizes, normalisation and ``putalpha``). The real ``session.run``
is timed in the same round-robin, so node/raw = (run + overhead) / run is estimated with
much less noise than ``bench/speed.py``'s difference of two noisy totals.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_EVAL, interleaved, load_pack, rembg_session  # noqa: E402
from speed import SIZES, test_photo  # noqa: E402


def before_node(img, sess, fam, h, w, raw):
    """The node's steps as they were before issue 7 (commit 935fb7a), with a cached model output."""
    import torch
    import torch.nn.functional as F

    from cutout.imaging.tensors import sanitize

    frame = sanitize(img[0])
    x = F.interpolate(frame.unsqueeze(0).permute(0, 3, 1, 2), size=(fam.size, fam.size), mode="bilinear",
                      antialias=True, align_corners=False)
    x = x / x.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    m = torch.tensor(fam.mean).view(1, 3, 1, 1)
    s = torch.tensor(fam.std).view(1, 3, 1, 1)
    ((x - m) / s).contiguous().numpy()
    t = torch.from_numpy(raw)[:, :1]
    lo, hi = t.amin(dim=(1, 2, 3), keepdim=True), t.amax(dim=(1, 2, 3), keepdim=True)
    t = (t - lo) / (hi - lo).clamp_min(1e-6)
    a = F.interpolate(t, size=(h, w), mode="bicubic", align_corners=False)[0, 0].clamp_(0, 1)
    a[a > 1 - 1 / 255] = 1.0
    a[a < 1 / 255] = 0.0
    rgba = torch.empty((1, h, w, 4))
    rgba[0, ..., :3] = frame
    rgba[0, ..., 3] = a
    return rgba, rgba[..., 3].clone()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--model", default="u2netp")
    ap.add_argument("--eval", type=Path, default=DEFAULT_EVAL)
    a = ap.parse_args(argv)
    import numpy as np
    from rembg import remove

    from cutout.imaging.model_io import to_model_input
    from cutout.models.session import ModelSession, get_session
    from cutout.nodes.remove_background import CutoutRemoveBackground

    node = CutoutRemoveBackground()
    sess = get_session(a.model)
    fam = sess.family
    rs = rembg_session(a.model)
    inner = rs.inner_session
    rname = inner.get_inputs()[0].name
    real_run = ModelSession.run
    print(f"model {a.model}; CPU ms (medians of {a.repeats} interleaved runs); wall ms in brackets")
    for label, size in SIZES.items():
        pil, img = test_photo(a.eval, size)
        h, w = img.shape[1:3]
        batch = to_model_input(img, fam.size, fam.mean, fam.std)
        raw = real_run(sess, batch)
        rraw = inner.run(None, {rname: batch})

        class CachedInner:  # rembg's session object with its ONNX run replaced by the cached output
            def run(self, *args, **kw):
                return rraw

            def __getattr__(self, name):
                return getattr(inner, name)

        def node_cached():
            ModelSession.run = lambda self, b: raw
            try:
                return node.run(img, a.model, decontaminate=False)
            finally:
                ModelSession.run = real_run

        def rembg_cached():
            rs.inner_session = CachedInner()
            try:
                return remove(pil, session=rs)
            finally:
                rs.inner_session = inner

        fns = {"session.run (real)": lambda: real_run(sess, batch),
               "node now (cached run)": node_cached,
               "node before (cached run)": lambda: before_node(img, sess, fam, h, w, raw),
               "rembg.remove (cached run)": rembg_cached}
        t = interleaved(fns, repeats=a.repeats, warmup=1)
        cpu = {k: v["cpu_median_s"] * 1e3 for k, v in t.items()}
        wall = {k: v["median_s"] * 1e3 for k, v in t.items()}
        run = cpu["session.run (real)"]
        print(f"{label}: " + " | ".join(f"{k} {cpu[k]:.0f} ({wall[k]:.0f})" for k in fns))
        for who in ("node now", "node before"):
            o = cpu[f"{who} (cached run)"]
            print(f"  {who:11}: overhead {o:.0f} ms = {o / cpu['rembg.remove (cached run)']:.2f}x rembg's "
                  f"{cpu['rembg.remove (cached run)']:.0f} ms; est. node/raw = {(run + o) / run:.3f}")
        check = np.abs(node_cached()[1].numpy() - before_node(img, sess, fam, h, w, raw)[1].numpy()).mean()
        print(f"  mean |mask now - mask before| = {check:.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
