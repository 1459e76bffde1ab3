"""Offline calibration of the int8 variants: the activation ranges and per-Conv input errors
that ``cutout/models/quant/*.json`` ship and ``cutout.models.quantize`` builds variants from.

    python -m bench.calibrate [--model u2netp]

Runs the prepared float model over scikit-image's sample photos (with flips and crops; never the eval
photos). Their quality: ``python -m bench.quality --models u2netp,u2netp-int8``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from cutout.models.quantize import activation_names


def calibration_inputs(fam) -> tuple[list[str], list[np.ndarray]]:
    """(photo names, inputs): each colour sample photo as is, mirrored, and two off-centre crops."""
    import skimage.data as d
    import torch

    from cutout.imaging.model_io import to_model_input

    names, out = [], []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "cat", "stereo_motorcycle", "camera", "coins",
                 "clock", "immunohistochemistry", "hubble_deep_field", "retina", "colorwheel"):
        try:
            img = getattr(d, name)()
        except Exception:  # a sample that needs a download is skipped
            continue
        img = img[0] if isinstance(img, tuple) else img
        img = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img
        t = torch.from_numpy(np.ascontiguousarray(img[..., :3]).astype(np.float32) / 255.0)
        h, w = t.shape[:2]
        names.append(name)
        for v in (t, t.flip(1), t[: int(h * 0.8), int(w * 0.15):], t[int(h * 0.2):, : int(w * 0.85)]):
            out.append(to_model_input(v.unsqueeze(0).contiguous(), fam.size, fam.mean, fam.std))
    return names, out


def _probe(model, names, optimize: bool = True):
    """A function x -> {tensor name: value} for the input and ``names``, read as extra graph outputs."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    in_name = model.graph.input[0].name
    existing = {o.name for o in probe.graph.output}
    for name in names:
        if name not in existing and name != in_name:
            probe.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    out_names = [o.name for o in sess.get_outputs()]
    return lambda x: {**dict(zip(out_names, sess.run(out_names, {in_name: x}))), in_name: x}


def collect_ranges(model, inputs) -> dict[str, list[float]]:
    """Each activation's overall min/max over the calibration inputs (MinMax; the ranges shipped)."""
    names = activation_names(model)
    run = _probe(model, names, optimize=False)
    ranges = {n: [float("inf"), float("-inf")] for n in names}
    for x in inputs:
        values = run(x)
        for n in names:
            ranges[n] = [min(ranges[n][0], float(values[n].min())), max(ranges[n][1], float(values[n].max()))]
    return ranges


def conv_input_errors(model, ranges: dict[str, list[float]], inputs) -> dict[str, float]:
    """Per Conv: mean over input channels of the relative RMS error of quantizing its input to uint8 with
    the calibrated range. A Conv fed by a Concat of a large- and a small-range tensor scores high (one
    scale crushes the small one): the nodes a recipe keeps in float."""
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    run = _probe(model, sorted({c.input[0] for c in convs}))
    errs: dict[str, list[float]] = {c.name: [] for c in convs}
    for x in inputs:
        v = run(x)
        for c in convs:
            a = v[c.input[0]]
            lo, hi = ranges[c.input[0]]
            lo, hi = min(lo, 0.0), max(hi, 0.0)
            scale = max(hi - lo, 1e-8) / 255.0
            zp = np.round(-lo / scale)
            q = (np.clip(np.round(a / scale) + zp, 0, 255) - zp) * scale
            rms = np.sqrt(((a - q) ** 2).mean(axis=(0, 2, 3)))
            ref = np.sqrt((a ** 2).mean(axis=(0, 2, 3))) + 1e-6
            errs[c.name].append(float(np.mean(rms / ref)))
    return {k: float(np.mean(v)) for k, v in errs.items()}


def save_ranges(ranges: dict[str, list[float]], path: Path, meta: dict,
                sensitivity: dict[str, float] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "ranges": {k: [float(f"{v[0]:.7g}"), float(f"{v[1]:.7g}")] for k, v in ranges.items()}}
    if sensitivity:
        payload["conv_input_error"] = {k: float(f"{v:.4g}") for k, v in sensitivity.items()}
    path.write_text(json.dumps(payload, indent=0, sort_keys=True) + "\n")


def main(argv=None) -> int:
    from cutout.models import catalog, quantize, weights

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="u2netp")
    a = ap.parse_args(argv)
    spec = catalog.get_spec(a.model)
    src = weights.resolve(spec, allow_download=False)
    prepared = quantize.prepare_float(src)
    names, xs = calibration_inputs(spec.family)
    t = time.time()
    ranges = collect_ranges(prepared, xs)
    sens = conv_input_errors(prepared, ranges, xs[::4][:6])
    meta = {"model": a.model, "source_md5": weights.file_md5(src), "method": "minmax", "percentile": None,
            "calibration": names, "views_per_photo": 4, "inputs": len(xs)}
    out = quantize.RANGES_DIR / f"{a.model}.minmax.json"
    save_ranges(ranges, out, meta, sens)
    print(f"{len(xs)} calibration inputs, {len(ranges)} tensors, {time.time() - t:.1f} s -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
