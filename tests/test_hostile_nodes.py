"""Hostile inputs, round two, for the nodes: every widget value ComfyUI's own validation lets
through (NaN, inf, a wrong type, a value outside the choices), odd tensors, bad relative paths,
and custom ONNX files that are not segmentation networks. Each gets an error naming the node,
the input and what was expected (docs/reliability.md lists them)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from cutout.imaging.refine_chain import refine_masks
from cutout.imaging.tensors import CutoutInputError
from cutout.models import ModelNotAvailableError
from cutout.models.session import ModelIncompatibleError
from cutout.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

from _stand_in_onnx import not_a_segmenter  # noqa: E402

NAN, INF = float("nan"), float("inf")


def _node(key):
    return NODE_CLASS_MAPPINGS[key]()


def _img(b=1, h=24, w=20, c=3):
    return torch.rand(b, h, w, c, generator=torch.Generator().manual_seed(1))


def _mask(b=1, h=24, w=20):
    m = torch.zeros(b, h, w)
    m[:, 6:18, 5:15] = 1.0
    return m


def _float_widgets():
    """(node key, input name) of every FLOAT widget of every node."""
    out = []
    for key, cls in NODE_CLASS_MAPPINGS.items():
        spec = cls.INPUT_TYPES()
        for group in ("required", "optional"):
            for name, decl in (spec.get(group) or {}).items():
                if decl[0] == "FLOAT":
                    out.append((key, name))
    return out


def _call(key, **override):
    """Run a node with working defaults plus ``override``."""
    if key == "CutoutMaskRefine":
        kw = dict(mask=_mask(), image=_img(), edge_refinement="guided filter")
        kw.update(override)
        return _node(key).run(**kw)
    if key == "CutoutCompositeBackground":
        kw = dict(image=_img(), background="gradient", mask=_mask())
        kw.update(override)
        return _node(key).run(**kw)
    if key == "CutoutCropToSubject":
        kw = dict(image=_img(), mask=_mask())
        kw.update(override)
        return _node(key).run(**kw)
    if key == "CutoutRemoveBackground":
        kw = dict(image=_img(), model="u2netp")
        kw.update(override)
        return _node(key).run(**kw)
    raise AssertionError(key)


FLOATS = [(k, n) for k, n in _float_widgets() if k in ("CutoutMaskRefine", "CutoutCompositeBackground",
                                                        "CutoutRemoveBackground")]  # the nodes _call can run


@pytest.mark.parametrize("key", list(NODE_CLASS_MAPPINGS))
def test_every_node_checks_its_widgets(key):
    cls = NODE_CLASS_MAPPINGS[key]
    assert getattr(getattr(cls, cls.FUNCTION), "checks_widgets", False), f"{key}: add @checked_widgets(DISPLAY_NAME)"


def test_every_float_widget_is_found():
    names = {n for _k, n in FLOATS}
    assert {"guided_eps", "angle", "blur_radius", "feather", "temporal"} <= names


@pytest.mark.parametrize("value", [NAN, INF, -INF, "0.5", 1e30], ids=["nan", "inf", "-inf", "str", "huge"])
@pytest.mark.parametrize("key,name", FLOATS, ids=[f"{k}.{n}" for k, n in FLOATS])
def test_float_widget_nonsense_is_refused_naming_node_and_input(key, name, value):
    display = NODE_DISPLAY_NAME_MAPPINGS[key]
    with pytest.raises(CutoutInputError, match=rf"^{re.escape(display)}: input '{name}' is .*expected"):
        _call(key, **{name: value})


def test_the_three_reported_nan_cases():
    with pytest.raises(CutoutInputError, match=r"Mask Refine \(Cutout\): input 'guided_eps' is nan; expected a finite"):
        _call("CutoutMaskRefine", guided_eps=NAN)
    with pytest.raises(CutoutInputError, match=r"Composite Background \(Cutout\): input 'angle' is nan"):
        _call("CutoutCompositeBackground", angle=NAN)
    with pytest.raises(CutoutInputError, match=r"input 'blur_radius' is nan"):
        _call("CutoutCompositeBackground", background="blur", blur_radius=NAN)


def test_out_of_range_and_wrong_type_int_widgets():
    with pytest.raises(CutoutInputError, match=r"input 'grow' is 9999; expected an integer in -512..512"):
        _call("CutoutMaskRefine", grow=9999)
    with pytest.raises(CutoutInputError, match=r"input 'guided_radius' is 'x'"):
        _call("CutoutMaskRefine", guided_radius="x")
    _call("CutoutMaskRefine", grow=2.0)  # an integral float (JSON) is fine


def test_choice_outside_the_list_names_the_choice_not_another_input():
    with pytest.raises(CutoutInputError, match=r"input 'edge_refinement' is 'bogus'; expected one of: off / guided"):
        _call("CutoutMaskRefine", edge_refinement="bogus", image=None)
    with pytest.raises(CutoutInputError, match=r"input 'edge_refinement' is 'bogus'"):
        refine_masks(_mask(), None, edge_refinement="bogus")  # the library function too (CLI, API)
    with pytest.raises(CutoutInputError, match=r"input 'fit' is 'sideways'"):
        _call("CutoutCompositeBackground", background="image", background_image=_img(), fit="sideways")
    with pytest.raises(CutoutInputError, match=r"Remove Background \(Cutout\): input 'device' is 'cuda'; "
                                               r"expected one of: cpu / gpu"):
        _call("CutoutRemoveBackground", device="cuda")


@pytest.mark.parametrize("opt", ["feather", "guided_eps", "temporal", "black_point"])
def test_library_refine_refuses_nan_too(opt):
    with pytest.raises(CutoutInputError, match=rf"input '{opt}' is nan"):
        refine_masks(_mask(), _img(), **{opt: NAN})


def test_requires_grad_tensors_work_and_outputs_do_not_track_grad():
    img = _img().requires_grad_()
    m = _mask().requires_grad_()
    for out in (_call("CutoutRemoveBackground", image=img)[0], _call("CutoutMaskRefine", mask=m, image=img)[0],
                _call("CutoutCompositeBackground", image=img, mask=m)[0]):
        assert not out.requires_grad and torch.isfinite(out).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (checked on the GPU machine)")
def test_cuda_tensors_work_in_every_node(comfy_dirs):
    img, m = _img().cuda(), _mask().cuda()
    rgba = _call("CutoutRemoveBackground", image=img)[0]
    assert rgba.shape == (1, 24, 20, 4)
    assert torch.isfinite(_call("CutoutMaskRefine", mask=m, image=img)[0]).all()
    assert torch.isfinite(_call("CutoutCompositeBackground", image=img, mask=m)[0]).all()
    out = _node("CutoutSaveImageFolder").save([img], ["gpu"], ["png"], ["overwrite"], ["transparent"], mask=[m])
    assert "wrote 1" in out["result"][0]


# --------------------------------------------------------------------------- Save Image Folder

def _save(**override):
    kw = dict(images=[_img(c=4)], destination=["o"], format=["png"], existing=["skip"], background=["transparent"])
    kw.update(override)
    return _node("CutoutSaveImageFolder").save(**kw)


SF = re.escape(NODE_DISPLAY_NAME_MAPPINGS["CutoutSaveImageFolder"])


@pytest.mark.parametrize("name,value,msg", [
    ("format", ["bmp"], r"input 'format' is 'bmp'; expected one of: png / webp / jpg"),
    ("existing", ["bogus"], r"input 'existing' is 'bogus'; expected one of: skip / overwrite / keep_both"),
    ("jpeg_background", ["transparent"], r"input 'jpeg_background' is 'transparent' but JPEG has no transparency"),
    ("jpeg_background", ["nocolour"], r"input 'jpeg_background' is 'nocolour', not a colour"),
    ("background", ["nocolour"], r"input 'background' is 'nocolour', not a colour; expected transparent or"),
])
def test_save_folder_names_the_input_that_is_wrong(name, value, msg, comfy_dirs):
    with pytest.raises(CutoutInputError, match=rf"^{SF}: {msg}"):
        _save(**{name: value})


@pytest.mark.parametrize("rel,msg", [
    ("a\x00b.png", "contains a NUL character"),
    (".", "has no file name"),
    ("sub/.", "has no file name"),
    ("x" * 300 + ".png", "has a file or folder name of 304 bytes"),
    ("deep/" + "é" * 130 + ".png", "has a file or folder name of 264 bytes"),
])
def test_save_folder_bad_relative_paths(rel, msg, comfy_dirs):
    _inp, out = comfy_dirs
    with pytest.raises(CutoutInputError, match=rf"^{SF}: input 'relative_path' .*{re.escape(msg)}"):
        _save(relative_path=[rel])
    assert not any(p.is_file() for p in out.rglob("*"))


def test_save_folder_nan_alpha_is_written_as_transparent(comfy_dirs):
    _inp, out = comfy_dirs
    img = _img(c=4)
    img[..., 3] = NAN
    assert "wrote 1" in _save(images=[img])["result"][0]


# --------------------------------------------------------------------------- custom ONNX files

@pytest.mark.parametrize("kind,msg", [
    ("classifier", r"gives output 'out' of shape \[1, 3\]"),
    ("classifier_undeclared", r"gives output 'out' of shape \[1, 3\]"),  # onnxruntime infers it
    ("two_inputs", r"takes 2 inputs \(input, extra\)"),
    ("grey_input", r"takes input 'input' of shape \[1, 1, 32, 32\]"),
])
def test_custom_onnx_that_is_not_a_segmentation_network(kind, msg, models_dir, fresh_store):
    not_a_segmenter(models_dir / f"odd_{kind}.onnx", kind)
    with pytest.raises(ModelIncompatibleError, match=r"^Remove Background \(Cutout\): input 'model': model "
                                                     rf"'odd_{kind}' .*{msg}.*expected"):
        _call("CutoutRemoveBackground", model=f"odd_{kind}")
    assert issubclass(ModelIncompatibleError, ModelNotAvailableError)  # the API and the nodes catch it as such


def test_an_output_of_the_wrong_rank_at_run_time_is_refused():
    from cutout.models.session import check_output

    check_output(np.zeros((1, 1, 8, 8), np.float32), "m")
    check_output(np.zeros((1, 8, 8), np.float32), "m")
    for bad in (np.zeros((1, 1000), np.float32), np.zeros((), np.float32), np.zeros((1, 1, 0, 8), np.float32)):
        with pytest.raises(ModelIncompatibleError, match=r"model 'm' gave an output of shape .*expected a mask"):
            check_output(bad, "m")


def test_save_folder_destination_longer_than_the_file_system_allows(comfy_dirs):
    with pytest.raises(CutoutInputError, match=rf"^{SF}: input 'destination' 'aaaa.*cannot be used \(File name too long"):
        _save(destination=["a" * 300])
