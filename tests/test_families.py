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


# ---------------------------------------------------------------------------------------------------
# Against rembg 2.0.86 itself: the same stand-in network, found by rembg and by the pack in rembg's own
# layout (<U2NET_HOME or REMBG_HOME>/models/<model>/<model>.onnx), fed and read by rembg's session class
# and by Remove Background. A wrong size, mean/std or output reading in the pack's catalog would make the
# two masks differ. rembg's remove() works on 8-bit images with a Lanczos resize, hence the tolerance.
REMBG_SINGLE_MASK = ["u2netp", "u2net", "u2net_human_seg", "silueta", "isnet-general-use", "isnet-anime",
                     "birefnet-general", "birefnet-general-lite", "birefnet-portrait", "birefnet-dis",
                     "birefnet-hrsod", "birefnet-cod", "birefnet-massive", "bria-rmbg"]


def _photo() -> tuple[torch.Tensor, "Image.Image"]:
    from PIL import Image

    h, w = 120, 200
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    img = torch.stack([x, 0.2 + 0.6 * y, 0.5 * (1 - x) * y], -1)
    img8 = (img * 255).round().to(torch.uint8)
    return img8.float()[None] / 255, Image.fromarray(img8.numpy())


def _rembg_mask(name: str, pil, **kw) -> torch.Tensor:
    import rembg

    sess = rembg.new_session(name, **kw)
    out = rembg.remove(pil, session=sess, only_mask=True)
    return torch.from_numpy(np.asarray(out.convert("L"), np.float32) / 255)


@pytest.mark.parametrize("name", REMBG_SINGLE_MASK)
def test_catalog_matches_rembg_2_0_86_end_to_end(name, tmp_path, monkeypatch):
    pytest.importorskip("rembg")
    from cutout.models import weights

    spec = catalog.get_spec(name)
    folder = weights.rembg_home() / "models" / name
    folder.mkdir(parents=True)
    digest = _stand_in(folder / spec.filename, spec.family, outputs=2)
    algorithm, _ = spec.checksum
    sha = hashlib.sha256((folder / spec.filename).read_bytes()).hexdigest()
    monkeypatch.setitem(catalog.CATALOG, name, dataclasses.replace(
        spec, md5=digest if algorithm == "md5" else "", sha256=sha if algorithm == "sha256" else "", embedded=False))
    image, pil = _photo()
    session_mod.STORE.clear()
    try:
        _, mask, _ = NODE_CLASS_MAPPINGS["CutoutRemoveBackground"]().run(image, name, decontaminate=False)
        assert session_mod.get_session(name).path == folder / spec.filename  # found in rembg's layout
    finally:
        session_mod.STORE.clear()
    ref = _rembg_mask(name, pil)
    assert ref.shape == mask[0].shape
    diff = (mask[0] - ref).abs()
    assert float(diff.mean()) < 0.01 and float(diff.max()) < 0.08, (name, float(diff.mean()), float(diff.max()))
    assert float(ref.max() - ref.min()) > 0.5  # the stand-in really draws something


def test_own_ben2_file_in_models_rembg_matches_rembg_ben_custom(tmp_path, models_dir, fresh_store):
    """rembg's ben_custom session (BEN2 ONNX at a path of your choice) = a BEN2 file dropped in models/rembg:
    its family chosen from the name, its input size read from the graph."""
    pytest.importorskip("rembg")
    from cutout.models import weights

    path = models_dir / "BEN2_Base.onnx"
    _stand_in(path, catalog.BEN, outputs=1)
    image, pil = _photo()
    _, mask, _ = NODE_CLASS_MAPPINGS["CutoutRemoveBackground"]().run(image, "BEN2_Base.onnx", decontaminate=False)
    assert session_mod.get_session("BEN2_Base.onnx").family.mean == (0.5, 0.5, 0.5)
    inside = weights.rembg_home() / "BEN2_Base.onnx"  # rembg only loads custom files from its own folder
    inside.parent.mkdir(parents=True, exist_ok=True)
    inside.write_bytes(path.read_bytes())
    ref = _rembg_mask("ben_custom", pil, model_path=str(inside))
    diff = (mask[0] - ref).abs()
    assert float(diff.mean()) < 0.01 and float(diff.max()) < 0.08, (float(diff.mean()), float(diff.max()))


def test_own_onnx_input_size_is_read_from_the_graph(tmp_path, models_dir, fresh_store):
    """Any .onnx in models/rembg keeps working: a 512-px IS-Net-style file is fed at 512."""
    fam = catalog.Family("x", 512, catalog.ISNET.mean, catalog.ISNET.std, False)
    _stand_in(models_dir / "my_isnet_512.onnx", fam, outputs=1)
    image, _ = _photo()
    _, mask, _ = NODE_CLASS_MAPPINGS["CutoutRemoveBackground"]().run(image, "my_isnet_512.onnx")
    s = session_mod.get_session("my_isnet_512.onnx")
    assert s.family.size == 512 and s.family.mean == catalog.ISNET.mean
    assert mask.shape == (1, 120, 200) and float(mask.max() - mask.min()) > 0.5


def test_licences_are_in_the_catalog_and_the_tooltip():
    tip = NODE_CLASS_MAPPINGS["CutoutRemoveBackground"].INPUT_TYPES()["required"]["model"][1]["tooltip"]
    for spec in catalog.CATALOG.values():
        assert spec.licence, spec.name
        if spec.non_commercial:
            assert spec.name in tip and "NON-COMMERCIAL" in tip, spec.name
    assert catalog.get_spec("bria-rmbg").non_commercial and "BEN2" in tip
