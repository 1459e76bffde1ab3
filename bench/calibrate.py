"""Offline calibration of the int8 variants: the activation ranges and per-Conv input errors
that ``models/quant/*.json`` ship, and that ``cutout.models.quantize`` builds variants from.

Used by ``bench.quantize_study calibrate``; never at run time.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cutout.models.quantize import activation_names


def collect_ranges(model, inputs, method: str = "minmax", percentile: float = 99.999) -> dict[str, list[float]]:
    """Activation ranges over the calibration inputs (offline).

    ``minmax``: overall min/max. ``percentile``: the symmetric-ish percentile of each tensor's
    values over all inputs (outliers clipped). ``avgminmax``: the mean of the per-input min/max.
    """
    import onnx
    import onnxruntime as ort
    from onnx import helper

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    names = activation_names(model)
    existing = {o.name for o in probe.graph.output}
    for name in names:
        if name not in existing and name != model.graph.input[0].name:
            probe.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    out_names = [o.name for o in sess.get_outputs()]
    in_name = model.graph.input[0].name
    lows: dict[str, list[float]] = {n: [] for n in names}
    highs: dict[str, list[float]] = {n: [] for n in names}
    samples: dict[str, list[np.ndarray]] = {n: [] for n in names}
    rng = np.random.default_rng(0)
    for x in inputs:
        values = dict(zip(out_names, sess.run(out_names, {in_name: x})))
        values[in_name] = x
        for n in names:
            v = values[n]
            lows[n].append(float(v.min()))
            highs[n].append(float(v.max()))
            if method == "percentile":
                flat = v.reshape(-1)
                take = flat if flat.size <= 200_000 else rng.choice(flat, 200_000, replace=False)
                samples[n].append(take)
    ranges = {}
    for n in names:
        if method == "minmax":
            lo, hi = min(lows[n]), max(highs[n])
        elif method == "avgminmax":
            lo, hi = float(np.mean(lows[n])), float(np.mean(highs[n]))
        elif method == "percentile":
            allv = np.concatenate(samples[n])
            lo = float(np.percentile(allv, 100 - percentile)) if min(lows[n]) < 0 else 0.0
            hi = float(np.percentile(allv, percentile))
            lo, hi = max(lo, min(lows[n])), min(hi, max(highs[n]))
        else:
            raise ValueError(f"unknown calibration method '{method}'")
        ranges[n] = [lo, hi]
    return ranges


def conv_input_errors(model, ranges: dict[str, list[float]], inputs) -> dict[str, float]:
    """For each Conv: the mean over input channels of the relative RMS error that quantizing its
    input to uint8 with the calibrated per-tensor range causes (offline, on calibration inputs).

    A Conv fed by a Concat of a large-range and a small-range tensor scores high: one scale
    for both crushes the small one. Those are the nodes a recipe keeps in float.
    """
    import onnx
    import onnxruntime as ort
    from onnx import helper

    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    in_name = model.graph.input[0].name
    wanted = sorted({c.input[0] for c in convs} - {in_name})
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in wanted:
        probe.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    errs: dict[str, list[float]] = {c.name: [] for c in convs}
    for x in inputs:
        v = dict(zip(names, sess.run(names, {in_name: x})))
        v[in_name] = x
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
