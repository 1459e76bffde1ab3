"""Offline study of int8 U²-Net variants: calibration ranges, dev-set quality, per-layer error.

    U2NET_HOME=/work/wheels python bench/quantize_study.py calibrate --model u2netp --method minmax
    python bench/quantize_study.py eval --model u2netp --recipes int8,int8-f3
    python bench/quantize_study.py layers --model u2netp --recipe int8

``calibrate`` runs the prepared float model over the calibration photos (scikit-image's bundled
sample photos, with flips and crops; never the eval photos) and writes the activation ranges to
``models/quant/<model>.<method>.json``, the small file the pack ships and builds variants from.
``eval`` prints IoU / MAE per source on ``../shared/eval/dev`` for the float model and each recipe,
and whether the recipe passes the quality bar (IoU within 0.01, MAE within 0.005 of float).
``layers`` compares every RSU stage output of the int8 model with the float one on the
calibration photos (relative RMS error), to show where the error enters.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import cutout  # noqa: E402
from bench import calibrate, metrics  # noqa: E402
from cutout.imaging.model_io import from_model_output, to_model_input  # noqa: E402
from cutout.models import catalog, quantize, weights  # noqa: E402

EVAL_DEV = ROOT.parent / "shared" / "eval" / "dev"
CACHE = Path("/tmp/cutout_quant_cache")


def calibration_photos() -> list[tuple[str, np.ndarray]]:
    """scikit-image's bundled colour photos (no download): none of them is in the eval set."""
    import skimage.data as d

    photos = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "cat", "stereo_motorcycle", "camera", "coins",
                 "clock", "immunohistochemistry", "hubble_deep_field", "retina", "colorwheel"):
        try:
            img = getattr(d, name)()
        except Exception:  # a sample that needs a download is skipped
            continue
        if isinstance(img, tuple):
            img = img[0]
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        photos.append((name, np.ascontiguousarray(img[..., :3])))
    return photos


def calibration_inputs(fam=catalog.U2NET) -> list[np.ndarray]:
    """Each photo as is, mirrored, and two off-centre crops: 4 inputs per photo."""
    out = []
    for _, img in calibration_photos():
        t = torch.from_numpy(img.astype(np.float32) / 255.0)
        h, w = t.shape[:2]
        views = [t, t.flip(1), t[: int(h * 0.8), int(w * 0.15):], t[int(h * 0.2):, : int(w * 0.85)]]
        for v in views:
            out.append(to_model_input(v.unsqueeze(0).contiguous(), fam.size, fam.mean, fam.std))
    return out


def dev_set():
    """Prepared inputs and GT of ../shared/eval/dev, cached in /tmp (never in the repo)."""
    pairs = metrics.read_manifest(EVAL_DEV)
    CACHE.mkdir(exist_ok=True)
    f = CACHE / "dev_inputs.npy"
    if f.is_file():
        xs = np.load(f)
    else:
        fam = catalog.U2NET
        xs = np.concatenate([to_model_input(metrics.load_rgb(p.image), fam.size, fam.mean, fam.std) for p in pairs])
        np.save(f, xs)
    gts = [metrics.load_gray(p.gt) for p in pairs]
    return pairs, xs, gts


def session(path_or_bytes, threads=None):
    import onnxruntime as ort

    from cutout.models.session import session_options

    opts = session_options()
    if threads:
        opts.intra_op_num_threads = threads
    src = path_or_bytes if isinstance(path_or_bytes, (bytes, str)) else str(path_or_bytes)
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


def evaluate(sess, pairs, xs, gts) -> dict:
    name = sess.get_inputs()[0].name
    out0 = sess.get_outputs()[0].name
    per = {}
    t0 = time.perf_counter()
    raws = [sess.run([out0], {name: xs[i: i + 1]})[0] for i in range(len(pairs))]
    dt = (time.perf_counter() - t0) / len(pairs)
    for p, raw, gt in zip(pairs, raws, gts):
        m = from_model_output(raw, gt.shape[0], gt.shape[1], False)[0]
        per.setdefault(p.source, []).append((metrics.iou(m, gt), metrics.mae(m, gt)))
    res = {"s_per_run": dt, "raw": np.concatenate(raws)}
    allv = [v for vs in per.values() for v in vs]
    res["all"] = (float(np.mean([v[0] for v in allv])), float(np.mean([v[1] for v in allv])))
    for src, vs in per.items():
        res[src] = (float(np.mean([v[0] for v in vs])), float(np.mean([v[1] for v in vs])))
    return res


def source_path(model: str) -> Path:
    return weights.resolve(catalog.get_spec(model), allow_download=False)


def cmd_calibrate(a):
    src = source_path(a.model)
    prepared = quantize.prepare_float(src)
    xs = calibration_inputs()
    if a.views < 4:
        xs = [x for i, x in enumerate(xs) if i % 4 < a.views]
    t = time.time()
    ranges = calibrate.collect_ranges(prepared, xs, a.method, a.percentile)
    sens = calibrate.conv_input_errors(prepared, ranges, xs[::4][:6])
    meta = {"model": a.model, "source_md5": weights.file_md5(src), "method": a.method,
            "percentile": a.percentile if a.method == "percentile" else None,
            "calibration": [n for n, _ in calibration_photos()], "views_per_photo": a.views, "inputs": len(xs)}
    suffix = a.method if a.method != "percentile" else f"p{a.percentile:g}"
    out = quantize.RANGES_DIR / f"{a.model}.{suffix}.json"
    calibrate.save_ranges(ranges, out, meta, sens)
    print(f"{len(xs)} calibration inputs, {len(ranges)} tensors, {time.time() - t:.1f} s -> {out}")


def recipe_by_name(model: str, name: str) -> quantize.Recipe:
    for spec in catalog.VARIANTS.values() if hasattr(catalog, "VARIANTS") else []:
        if spec.derived_from == model and spec.recipe.name == name:
            return spec.recipe
    return STUDY_RECIPES[name](model)


def _r(name, ranges="minmax", **kw):
    return lambda model: quantize.Recipe(name, f"{model}.{ranges}.json", **kw)


STUDY_RECIPES = {
    "naive": _r("naive"),
    "sens1": _r("sens1", float_sensitive=1, exclude_last_convs=1, exclude_ops=("Sigmoid",)),
    "sens8": _r("sens8", float_sensitive=8, exclude_last_convs=1, exclude_ops=("Sigmoid",)),
    "sens3": _r("sens3", float_sensitive=3, exclude_last_convs=1, exclude_ops=("Sigmoid",)),
    "s1": _r("s1", exclude_nodes=("Conv_787",), exclude_last_convs=1, exclude_ops=("Sigmoid",)),
    "s3": _r("s3", exclude_nodes=("Conv_787", "Conv_946", "Conv_810"), exclude_last_convs=1,
             exclude_ops=("Sigmoid",)),
    "s8": _r("s8", exclude_nodes=("Conv_787", "Conv_946", "Conv_810", "Conv_132", "Conv_920", "Conv_2",
                                  "Conv_942", "Conv_5"), exclude_last_convs=1, exclude_ops=("Sigmoid",)),
    "noconcat": _r("noconcat", exclude_ops=("Concat",)),
    "f1": _r("f1", exclude_last_convs=1, exclude_ops=("Sigmoid",)),
    "f7": _r("f7", exclude_last_convs=7, exclude_ops=("Sigmoid",)),
    "f7first": _r("f7first", exclude_last_convs=7, exclude_first_convs=1, exclude_ops=("Sigmoid",)),
    "p_f7": _r("p_f7", ranges="p99.999", exclude_last_convs=7, exclude_ops=("Sigmoid",)),
    "avg_f7": _r("avg_f7", ranges="avgminmax", exclude_last_convs=7, exclude_ops=("Sigmoid",)),
}


def cmd_eval(a):
    pairs, xs, gts = dev_set()
    src = source_path(a.model)
    cached = CACHE / f"float_{weights.file_md5(src)}.pkl"
    if cached.is_file():
        import pickle

        base = pickle.loads(cached.read_bytes())
    else:
        import pickle

        base = evaluate(session(str(src)), pairs, xs, gts)
        cached.write_bytes(pickle.dumps(base))
    rows = [("float", base, True)]
    for name in a.recipes.split(","):
        recipe = recipe_by_name(a.model, name)
        t = time.time()
        prepared = quantize.prepare_float(src)
        rp = quantize.RANGES_DIR / recipe.ranges
        q = quantize.quantize_prepared(prepared, quantize.load_ranges(rp), recipe, quantize.load_sensitivity(rp))
        build = time.time() - t
        res = evaluate(session(q.SerializeToString()), pairs, xs, gts)
        res["build_s"] = build
        res["agree"] = float(np.abs(res["raw"] - base["raw"]).mean())
        ok = (res["all"][0] >= base["all"][0] - 0.01 and res["all"][1] <= base["all"][1] + 0.005)
        rows.append((name, res, ok))
    srcs = [s for s in base if s not in ("all", "raw", "s_per_run")]
    print(f"| {a.model} variant | all IoU / MAE | " + " | ".join(srcs) + " | raw |Δ| vs float | s/run | passes |")
    print("|---" * (len(srcs) + 5) + "|")
    for name, res, ok in rows:
        cells = [f"{res[s][0]:.3f} / {res[s][1]:.4f}" for s in ["all"] + srcs]
        print(f"| {name} | " + " | ".join(cells) + f" | {res.get('agree', 0):.4f} | {res['s_per_run']:.3f} | "
              f"{'yes' if ok else 'no'} |", flush=True)


def stage_outputs(model) -> list[str]:
    """Outputs of the Conv feeding each Relu-after-Add (RSU residual) plus the side convs."""
    names = []
    for n in model.graph.node:
        if n.op_type == "Add":
            names.append(n.output[0])
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    names += [c.output[0] for c in convs[-7:]]
    return names


def cmd_layers(a):
    import onnx
    from onnx import helper

    src = source_path(a.model)
    recipe = recipe_by_name(a.model, a.recipe)
    prepared = quantize.prepare_float(src)
    rp = quantize.RANGES_DIR / recipe.ranges
    q = quantize.quantize_prepared(prepared, quantize.load_ranges(rp), recipe, quantize.load_sensitivity(rp))
    names = stage_outputs(prepared)

    def probe(m, names):
        p = onnx.ModelProto()
        p.CopyFrom(m)
        have = {o.name for o in p.graph.output}
        for nm in names:
            if nm not in have:
                p.graph.output.append(helper.make_tensor_value_info(nm, onnx.TensorProto.FLOAT, None))
        return session(p.SerializeToString())

    fs, qs = probe(prepared, names), probe(q, names)
    xs = calibration_inputs()[:: 4][: a.n]
    inp = prepared.graph.input[0].name
    err = {n: [] for n in names}
    for x in xs:
        fv = dict(zip([o.name for o in fs.get_outputs()], fs.run(None, {inp: x})))
        qv = dict(zip([o.name for o in qs.get_outputs()], qs.run(None, {inp: x})))
        for n in names:
            d = fv[n] - qv[n]
            err[n].append(float(np.sqrt((d ** 2).mean()) / (np.sqrt((fv[n] ** 2).mean()) + 1e-9)))
    producers = {o: nd for nd in prepared.graph.node for o in nd.output}
    print(f"| tensor (producer) | relative RMS error, int8 '{a.recipe}' vs float |")
    print("|---|---|")
    for n in names:
        print(f"| {n} ({producers[n].op_type} {producers[n].name}) | {np.mean(err[n]):.4f} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("calibrate")
    c.add_argument("--model", default="u2netp")
    c.add_argument("--method", default="minmax", choices=["minmax", "avgminmax", "percentile"])
    c.add_argument("--percentile", type=float, default=99.999)
    c.add_argument("--views", type=int, default=4, help="views per photo: 1 as is, 2 +mirror, 4 +two crops")
    e = sub.add_parser("eval")
    e.add_argument("--model", default="u2netp")
    e.add_argument("--recipes", default="naive")
    lay = sub.add_parser("layers")
    lay.add_argument("--model", default="u2netp")
    lay.add_argument("--recipe", default="naive")
    lay.add_argument("--n", type=int, default=8)
    a = ap.parse_args(argv)
    {"calibrate": cmd_calibrate, "eval": cmd_eval, "layers": cmd_layers}[a.cmd](a)


if __name__ == "__main__":
    main()
