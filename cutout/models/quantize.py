"""Build int8 variants of the U²-Net-family models from their official float weights.

A variant is described by a *recipe* (data, in ``catalog.py``) and built in three steps, all
deterministic and needing only ``onnx`` and ``onnxruntime`` (no calibration photos at run time):

1. ``prepare_float``: keep only the first output (``d0``, the one the pack reads), fold the
   shape arithmetic that feeds every ``Resize`` into constants (the input is a fixed
   320×320), drop what became dead, and move the graph to opset 13 (per-channel weights
   need ``DequantizeLinear``'s ``axis``). Tensor names of the original graph are kept.
2. The activation ranges come from a small JSON file shipped in ``models/quant/``, computed
   once, offline, by ``bench.calibrate`` on calibration photos that are not the eval photos
   (docs/models.md).
3. ``onnxruntime.quantization``'s QDQ quantizer writes the int8 model with per-channel
   weights, leaving the nodes the recipe names in float.

The result is cached next to the downloads as ``<base>.<recipe>-<md5[:8]>.onnx`` where the
md5 is the *source* file's, so a changed source rebuilds the variant.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from .catalog import Recipe

log = logging.getLogger("comfyui_cutout")

RANGES_DIR = Path(__file__).resolve().parent / "quant"
TARGET_OPSET = 13


class QuantizeUnavailableError(RuntimeError):
    """``onnx`` (needed to write a variant) is not installed."""


def _onnx():
    try:
        import onnx
    except ImportError:
        raise QuantizeUnavailableError(
            "building an int8 variant needs the 'onnx' package (pip install onnx); "
            "the float models work without it"
        ) from None
    return onnx


# --------------------------------------------------------------------------- step 1

def prepare_float(src: str | Path):
    """The float model reduced to what the pack runs: first output only, static Resize sizes, opset 13."""
    onnx = _onnx()
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    while len(graph.output) > 1:
        graph.output.pop()

    inp = graph.input[0]
    dims = [d.dim_value if d.dim_value > 0 else 1 for d in inp.type.tensor_type.shape.dim]
    if dims[-1] <= 1 or dims[-2] <= 1:
        dims[-2:] = [320, 320]

    # Evaluate every non-constant Resize 'sizes' input once (it only depends on shapes).
    initializers = {t.name for t in graph.initializer}
    const_outputs = {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    wanted = []
    for n in graph.node:
        if n.op_type == "Resize" and len(n.input) == 4 and n.input[3] \
                and n.input[3] not in initializers and n.input[3] not in const_outputs:
            wanted.append(n.input[3])
    if wanted:
        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        for name in wanted:
            probe.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.INT64, None))
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.log_severity_level = 3
        sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        x = np.zeros(dims, dtype=np.float32)
        values = sess.run(wanted, {inp.name: x})
        for name, value in zip(wanted, values):
            graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=np.int64), name + "_static"))
        renamed = {name: name + "_static" for name in wanted}
        for n in graph.node:
            if n.op_type == "Resize" and len(n.input) == 4 and n.input[3] in renamed:
                n.input[3] = renamed[n.input[3]]

    _drop_dead(graph)
    _constants_to_initializers(graph)
    # Remaining ops (Conv, Relu, MaxPool, Concat, Resize, Add, Sigmoid) mean the same at 13.
    version = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if version < TARGET_OPSET:
        from onnx import version_converter

        model = version_converter.convert_version(model, TARGET_OPSET)
    onnx.checker.check_model(model)
    return model


def _drop_dead(graph) -> None:
    needed = {o.name for o in graph.output}
    keep = []
    for n in reversed(list(graph.node)):
        if any(o in needed for o in n.output):
            keep.append(n)
            needed.update(i for i in n.input if i)
    keep.reverse()
    del graph.node[:]
    graph.node.extend(keep)
    used_inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(used_inits)


def _constants_to_initializers(graph) -> None:
    """Constant nodes (Resize's empty roi/scales) become initializers: the quantizer ignores them."""
    from onnx import numpy_helper

    keep = []
    for n in graph.node:
        if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value":
            arr = numpy_helper.to_array(n.attribute[0].t)
            graph.initializer.append(numpy_helper.from_array(arr, n.output[0]))
        else:
            keep.append(n)
    del graph.node[:]
    graph.node.extend(keep)


# --------------------------------------------------------------------------- step 2

def activation_names(model) -> list[str]:
    """Every float tensor a quantizer may need a range for (graph input and node outputs)."""
    names = [model.graph.input[0].name]
    for n in model.graph.node:
        names.extend(o for o in n.output if o)
    return names


def load_ranges(path: Path) -> dict[str, list[float]]:
    return json.loads(Path(path).read_text())["ranges"]


def load_sensitivity(path: Path) -> dict[str, float]:
    return json.loads(Path(path).read_text()).get("conv_input_error", {})


# --------------------------------------------------------------------------- step 3

def excluded_nodes(model, recipe: Recipe, sensitivity: dict[str, float] | None = None) -> list[str]:
    nodes = list(model.graph.node)
    out = [n.name for n in nodes if n.op_type in recipe.exclude_ops]
    if recipe.float_sensitive:
        if not sensitivity:
            raise ValueError(f"recipe '{recipe.name}' needs the conv_input_error table of {recipe.ranges}")
        worst = sorted(sensitivity, key=lambda k: (-sensitivity[k], k))[: recipe.float_sensitive]
        out += worst
    out += [n for n in recipe.exclude_nodes if n not in out]
    convs = [n.name for n in nodes if n.op_type == "Conv"]
    if recipe.exclude_first_convs:
        out += convs[: recipe.exclude_first_convs]
    if recipe.exclude_last_convs:
        out += convs[-recipe.exclude_last_convs:]
    # A float Conv must also see a float input: keep the Concat that feeds it in float too,
    # otherwise that Concat's single per-tensor scale crushes its low-range inputs anyway.
    producers = {o: n for n in nodes for o in n.output}
    for n in nodes:
        if n.name in out and n.op_type == "Conv":
            src = producers.get(n.input[0])
            if src is not None and src.op_type == "Concat":
                out.append(src.name)
    return sorted(set(out))


def quantize_prepared(model, ranges: dict[str, list[float]], recipe: Recipe,
                      sensitivity: dict[str, float] | None = None):
    """QDQ int8 (uint8 activations, int8 per-channel weights) of a prepared model with known ranges."""
    _onnx()
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer

    missing = [n for n in activation_names(model) if n not in ranges]
    if missing:
        raise ValueError(f"the ranges file has no entry for {len(missing)} tensors (e.g. {missing[:3]}); "
                         "it was made for a different graph")
    data = {n: TensorData(lowest=np.array(lo, dtype=np.float32), highest=np.array(hi, dtype=np.float32))
            for n, (lo, hi) in ranges.items()}
    tensors = TensorsData(CalibrationMethod.MinMax, data)
    extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
    extra.update(dict(recipe.extra))
    kwargs = dict(model=model, per_channel=recipe.per_channel, reduce_range=False,
                  weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8, tensors_range=tensors,
                  nodes_to_quantize=[], nodes_to_exclude=excluded_nodes(model, recipe, sensitivity),
                  op_types_to_quantize=["Conv", "Relu", "MaxPool", "Concat", "Resize", "Add", "Sigmoid"],
                  extra_options=extra)
    kwargs.update(weight_qType=kwargs["weight_type"], activation_qType=kwargs["activation_type"])
    params = inspect.signature(QDQQuantizer.__init__).parameters
    if "mode" in params:  # onnxruntime < 1.18
        from onnxruntime.quantization.quant_utils import QuantizationMode

        kwargs.update(mode=QuantizationMode.QLinearOps, static=True)
    quantizer = QDQQuantizer(**{k: v for k, v in kwargs.items() if k in params})
    quantizer.quantize_model()
    return quantizer.model.model


def build_variant(src: str | Path, recipe: Recipe, dest: str | Path, ranges_path: Path | None = None) -> Path:
    """Write the variant of ``src`` described by ``recipe`` to ``dest`` atomically."""
    onnx = _onnx()
    prepared = prepare_float(src)
    ranges_path = ranges_path or RANGES_DIR / recipe.ranges
    qmodel = quantize_prepared(prepared, load_ranges(ranges_path), recipe, load_sensitivity(ranges_path))
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    os.close(fd)
    try:
        onnx.save(qmodel, tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the cache should read like a download
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest
