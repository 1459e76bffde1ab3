"""The IS-Net and BiRefNet families end to end, with small stand-in networks.

Their real weights (hundreds of MB) cannot be fetched on the test machine, so each family is fed a
tiny ONNX file with the same input and output signature, whose answer is known: a 1×1 convolution
that undoes the family's normalisation and reads one colour channel. Going through the catalog,
the weights lookup (md5), the shared session and Remove Background checks what the family table
says: the square input size, the mean/std, and whether the first output is logits.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")

from cutout.models import catalog, session as session_mod  # noqa: E402
from cutout.nodes import NODE_CLASS_MAPPINGS  # noqa: E402


# How rembg 2.0.86 feeds and reads these networks (rembg/sessions/dis_general_use.py, dis_anime.py,
# birefnet_general.py): mean, std, first output is logits. Written out here, not read from the pack's
# catalog, so that a wrong entry there fails the test.
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
REFERENCE = {
    "isnet-general-use": ((0.5, 0.5, 0.5), (1.0, 1.0, 1.0), False),
    "isnet-anime": ((0.485, 0.456, 0.406), (1.0, 1.0, 1.0), False),
    "birefnet-general": (*IMAGENET, True),
    "birefnet-general-lite": (*IMAGENET, True),
}


def _stand_in(path, fam: catalog.Family, outputs: int) -> str:
    """The red channel of the image as the network saw it (x · std_r + mean_r: divided by its maximum),
    bent so that a wrong mean/std would show after the min-max stretch: as logits 8r − 4 when the
    family says its output is logits, else clipped to 0.3..0.7."""
    from onnx import TensorProto, helper, numpy_helper

    s = fam.size
    w = np.zeros((1, 3, 1, 1), np.float32)
    gain, bias = (8.0, -4.0) if fam.logits else (1.0, 0.0)
    w[0, 0, 0, 0] = fam.std[0] * gain
    b = np.array([fam.mean[0] * gain + bias], np.float32)
    extra = []
    if fam.logits:
        nodes = [helper.make_node("Conv", ["input", "w", "b"], ["out0"])]
    else:  # clipped to 0.3..0.7: the two bends stay there after the min-max stretch only with the right mean/std
        nodes = [helper.make_node("Conv", ["input", "w", "b"], ["lin"]),
                 helper.make_node("Clip", ["lin", "lo", "hi"], ["out0"])]
        extra = [numpy_helper.from_array(np.array(0.3, np.float32), "lo"),
                 numpy_helper.from_array(np.array(0.7, np.float32), "hi")]
    for k in range(1, outputs):  # extra side outputs, as the real networks have; the pack reads the first
        nodes.append(helper.make_node("Identity", ["out0"], [f"out{k}"]))
    graph = helper.make_graph(
        nodes, "stand-in",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, s, s])],
        [helper.make_tensor_value_info(f"out{k}", TensorProto.FLOAT, [1, 1, s, s]) for k in range(outputs)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"), *extra])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_family_preprocessing_and_output_end_to_end(name, tmp_path, monkeypatch):
    spec = catalog.get_spec(name)
    mean, std, logits = REFERENCE[name]
    fam = catalog.Family("reference", 1024, mean, std, logits)
    assert spec.family.size == 1024
    md5 = _stand_in(tmp_path / spec.filename, fam, outputs=3)
    monkeypatch.setitem(catalog.CATALOG, name, dataclasses.replace(spec, md5=md5))
    monkeypatch.setenv("CUTOUT_MODELS_DIR", str(tmp_path))
    session_mod.STORE.clear()
    try:
        # a red ramp from left to right (plus a little green, so the per-image maximum is 1)
        h, w = 300, 500
        ramp = torch.linspace(0.0, 1.0, w).expand(h, w)
        image = torch.stack([ramp, torch.full_like(ramp, 0.2), torch.zeros_like(ramp)], -1)[None]
        rgba, mask, _ = NODE_CLASS_MAPPINGS["CutoutRemoveBackground"]().run(image, name)
        assert session_mod.get_session(name).path == tmp_path / spec.filename
    finally:
        session_mod.STORE.clear()
    assert rgba.shape == (1, h, w, 4) and mask.shape == (1, h, w)
    col = mask[0].mean(0)  # the mask follows the ramp, as the family's reading of the output says
    if fam.logits:  # sigmoid(8r - 4), then stretched to 0..1: an S-curve through the middle
        want = torch.sigmoid(8 * ramp[0] - 4)
        want = (want - want.min()) / (want.max() - want.min())
    else:  # clip(r, 0.3, 0.7), stretched
        want = (ramp[0].clamp(0.3, 0.7) - 0.3) / 0.4
    assert (col - want).abs().max() < 0.03, (col[::50], want[::50])
    assert torch.equal(rgba[0, ..., 3], mask[0])
