"""example_workflows/*.json: listed by the server, valid against /object_info, and executed.

Generic: every JSON in the folder is checked; every one without a model loader (category
``loaders``: it would need a checkpoint) is converted to an API prompt as the frontend does and
run on a real photo; its outputs are checked. Add per-workflow expectations to EXPECT.
"""

from __future__ import annotations

import copy
import io
import json

import pytest
from conftest import report
from PIL import Image

import comfy_env
import workflows
from comfy_env import PACK_DIR_NAME

WORKFLOW_DIR = comfy_env.PACK_ROOT / "example_workflows"
WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.json"))
REQUIRED = {"remove_background", "inpaint_mask"}

# Per workflow, per output node id: "rgba" = a transparent PNG with a real cut-out (some alpha 0,
# some 255); "mask" = a grey mask with a subject (not empty, not full).
EXPECT = {
    "remove_background": {"3": "rgba", "4": "mask"},
}


def test_required_workflows_exist():
    assert REQUIRED <= {p.stem for p in WORKFLOWS}, [p.name for p in WORKFLOWS]


def test_workflow_templates_lists_the_pack_folder(comfy_server):
    status, templates = comfy_server.get("/workflow_templates")
    assert status == 200
    assert sorted(templates.get(PACK_DIR_NAME, [])) == sorted(p.stem for p in WORKFLOWS), templates
    status, body = comfy_server.get(f"/api/workflow_templates/{PACK_DIR_NAME}/remove_background.json")
    assert status == 200 and body == workflows.load(WORKFLOW_DIR / "remove_background.json")


@pytest.fixture(scope="module")
def object_info(comfy_server):
    return comfy_server.object_info()


def _needs_checkpoint(wf: dict, object_info: dict) -> bool:
    return any((object_info.get(n["type"], {}).get("category") or "").startswith("loaders")
               for n in wf["nodes"])


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_workflow_matches_object_info(path, object_info):
    wf = workflows.load(path)
    assert wf.get("nodes") and "links" in wf, "not a UI-format workflow (nodes/links)"
    problems = workflows.check_against_object_info(wf, object_info)
    assert not problems, "\n".join(problems)
    assert any(object_info[n["type"]].get("output_node") for n in wf["nodes"] if n["type"] in object_info), \
        "no output node: nothing would run"
    assert any(n["type"].startswith("Cutout") for n in wf["nodes"]), "the workflow uses no Cutout node"


def test_checker_catches_a_mismatched_link(object_info):
    wf = copy.deepcopy(workflows.load(WORKFLOW_DIR / "remove_background.json"))
    rb = next(n for n in wf["nodes"] if n["type"] == "CutoutRemoveBackground")
    save = next(n for n in wf["nodes"] if n["type"] == "SaveImage")
    link = next(ln for ln in wf["links"] if ln[3] == save["id"])
    link[2] = 1  # MASK output into SaveImage.images (IMAGE)
    rb["outputs"][1]["links"] = (rb["outputs"][1]["links"] or []) + [link[0]]
    assert any("gives MASK" in p for p in workflows.check_against_object_info(wf, object_info))


def test_converter_skips_seed_control_and_upload_widgets(object_info):
    wf = workflows.load(WORKFLOW_DIR / "inpaint_mask.json")
    api = workflows.to_api(wf, object_info)
    ks = next(v for v in api.values() if v["class_type"] == "KSampler")
    assert ks["inputs"]["seed"] == 42 and ks["inputs"]["steps"] == 20 and ks["inputs"]["denoise"] == 1.0
    load = next(v for v in api.values() if v["class_type"] == "LoadImage")
    assert load["inputs"] == {"image": "example.png"}


def _image(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def _check_rgba(im: Image.Image, where: str) -> str:
    assert im.mode == "RGBA", f"{where}: {im.mode} PNG, expected RGBA"
    hist = im.getchannel("A").histogram()
    n = sum(hist)
    clear = sum(hist[:6]) / n  # SaveImage truncates 255*x, so "opaque" is 250..255
    solid = sum(hist[250:]) / n
    assert clear > 0.05 and solid > 0.05, f"{where}: alpha {clear:.1%} clear, {solid:.1%} opaque"
    return f"alpha <=5 on {clear:.0%}, >=250 on {solid:.0%}"


def _check_mask(im: Image.Image, where: str) -> str:
    hist = im.convert("L").histogram()
    fg = sum(hist[128:]) / sum(hist)
    assert 0.02 < fg < 0.98, f"{where}: subject covers {fg:.1%} of the mask"
    return f"subject {fg:.0%}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_workflow_executes(path, comfy_server, object_info, photo):
    wf = workflows.load(path)
    if _needs_checkpoint(wf, object_info):
        pytest.skip("needs a checkpoint: validated against /object_info only")
    api = workflows.to_api(wf, object_info)
    size = Image.open(photo).size
    for node in api.values():  # every LoadImage gets the test photo under the name it asks for
        if node["class_type"] == "LoadImage":
            comfy_server.put_input(node["inputs"]["image"], photo)
    entry = comfy_server.run(api)
    outputs = entry["outputs"]
    expected_outputs = {str(n["id"]) for n in wf["nodes"]
                        if n["type"] in object_info and object_info[n["type"]].get("output_node")}
    assert expected_outputs <= set(outputs), (expected_outputs, outputs)
    notes = []
    for node_id, out in outputs.items():
        for ref in out.get("images", []):
            f = comfy_server.output_path(ref)
            assert f.is_file(), f
            im = _image(comfy_server.view(ref))
            where = f"{path.stem} node {node_id} ({api[node_id]['class_type']}) {ref['filename']}"
            assert im.size == size, f"{where}: {im.size}, input was {size}"
            kind = EXPECT.get(path.stem, {}).get(node_id)
            if kind == "rgba":
                notes.append(f"node {node_id}: {_check_rgba(im, where)}")
            elif kind == "mask":
                notes.append(f"node {node_id}: {_check_mask(im, where)}")
    for node_id in EXPECT.get(path.stem, {}):
        assert outputs.get(node_id, {}).get("images"), f"{path.stem}: node {node_id} gave no image"
    report(f"workflow {path.stem}: ran, {size[0]}x{size[1]} in and out; " + "; ".join(notes))
