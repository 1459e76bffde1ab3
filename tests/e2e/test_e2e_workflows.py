"""example_workflows/*.json: listed by the server, valid against /object_info, and executed.

Generic: every JSON in the folder is checked; every one without a model loader (category
``loaders`` / ``model/loaders``, or a node that outputs a MODEL: it would need weights we do not
have) is converted to an API prompt as the frontend does and
run on a real photo; its outputs are checked. Add per-workflow expectations to EXPECT.
"""

from __future__ import annotations

import copy
import re
import io
import shutil
import urllib.request
from urllib.parse import quote
from pathlib import Path

import pytest
from conftest import report
from PIL import Image

import comfy_env
import workflows
from comfy_env import PACK_DIR_NAME

pytestmark = pytest.mark.e2e

WORKFLOW_DIR = comfy_env.PACK_ROOT / "example_workflows"
WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.json"))
F = workflows.FILES
REQUIRED = set(F.values())

# Per workflow, per output node id: "rgba" = a transparent PNG with a real cut-out (some alpha 0,
# some 255); "mask" = a grey mask with a subject (not empty, not full); "color:#RRGGBB" = an
# opaque composite whose background is that colour (a real part of it, not all of it);
# "new_background" = an opaque composite that replaced a real part of the photo.
# For a CutoutSaveImageFolder node the check applies to every file it wrote (its names are checked
# for every folder workflow). Node ids are those make_workflows.py gives (regenerate with it).
EXPECT = {
    F["remove_background"]: {"3": "rgba", "4": "mask"},
    F["refine_and_composite"]: {"7": "color:#2E7DD7", "8": "new_background", "9": "mask"},
    F["video_frames"]: {"6": "color:#00B140"},
    F["dataset_prep"]: {"3": "color:#FFFFFF"},
    F["video_cutout"]: {"8": "video:#00B140", "9": "video_rgba"},
}
VIDEO_FRAMES, VIDEO_FPS = 8, 12  # the clip LoadVideo gets: a pan across the photo, with a tone
EXECUTED = REQUIRED - {F["inpaint_mask"], F["core_birefnet_refine"]}  # they need a checkpoint / BiRefNet weights
SUBJECT_IMAGE = "example.png"  # LoadImage widgets with another name get the background photo


def test_required_workflows_exist():
    assert REQUIRED <= {p.stem for p in WORKFLOWS}, [p.name for p in WORKFLOWS]


def test_file_names_read_as_titles():
    """ComfyUI 0.28's template browser shows the bare file name: words, nothing a URL would mangle."""
    for path in WORKFLOWS:
        assert re.fullmatch(r"[A-Z][A-Za-z0-9 -]{2,59}", path.stem), path.name


def test_every_executed_workflow_has_expectations():
    """A workflow that runs is checked for more than "some image came out"."""
    assert EXECUTED <= set(EXPECT), sorted(EXECUTED - set(EXPECT))


def test_every_workflow_has_a_thumbnail():
    """The template browser (frontend 1.45, ComfyUI 0.28) shows ``<name>.jpg`` beside each workflow."""
    for path in WORKFLOWS:
        thumb = path.with_suffix(".jpg")
        assert thumb.is_file(), f"{thumb.name} missing (make it with tests/e2e/make_thumbnails.py)"
        im = Image.open(thumb)
        assert im.format == "JPEG" and min(im.size) >= 256, (thumb.name, im.format, im.size)


def test_workflow_templates_lists_the_pack_folder(comfy_server):
    status, templates = comfy_server.get("/workflow_templates")
    assert status == 200
    assert sorted(templates.get(PACK_DIR_NAME, [])) == sorted(p.stem for p in WORKFLOWS), templates
    for path in WORKFLOWS:  # what the template browser fetches: the JSON and its thumbnail, no 404
        url = f"/api/workflow_templates/{PACK_DIR_NAME}/{quote(path.stem)}"  # spaces as a browser sends them
        status, body = comfy_server.get(url + ".json")
        assert status == 200 and body == workflows.load(path), path.name
        req = urllib.request.Request(f"{comfy_server.url}{url}.jpg")
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.status == 200 and r.headers.get_content_type() == "image/jpeg", path.stem
            assert r.read() == path.with_suffix(".jpg").read_bytes()


@pytest.fixture(scope="module")
def object_info(comfy_server):
    return comfy_server.object_info()


def _needs_checkpoint(wf: dict, object_info: dict) -> bool:
    return any(workflows.is_model_loader(object_info.get(n["type"], {})) for n in wf["nodes"])


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_workflow_matches_object_info(path, object_info, comfy_server):
    why = workflows.needs_newer(path, comfy_server.version)
    if why:
        pytest.skip(why)
    wf = workflows.load(path)
    assert wf.get("nodes") and "links" in wf, "not a UI-format workflow (nodes/links)"
    problems = workflows.check_against_object_info(wf, object_info)
    assert not problems, "\n".join(problems)
    assert any(object_info[n["type"]].get("output_node") for n in wf["nodes"] if n["type"] in object_info), \
        "no output node: nothing would run"
    assert any(n["type"].startswith("Cutout") for n in wf["nodes"]), "the workflow uses no Cutout node"


def test_checker_catches_a_mismatched_link(object_info):
    wf = copy.deepcopy(workflows.load(WORKFLOW_DIR / f"{F['remove_background']}.json"))
    rb = next(n for n in wf["nodes"] if n["type"] == "CutoutRemoveBackground")
    save = next(n for n in wf["nodes"] if n["type"] == "SaveImage")
    link = next(ln for ln in wf["links"] if ln[3] == save["id"])
    link[2] = 1  # MASK output into SaveImage.images (IMAGE)
    rb["outputs"][1]["links"] = (rb["outputs"][1]["links"] or []) + [link[0]]
    assert any("gives MASK" in p for p in workflows.check_against_object_info(wf, object_info))


def test_converter_skips_seed_control_and_upload_widgets(object_info):
    wf = workflows.load(WORKFLOW_DIR / f"{F['inpaint_mask']}.json")
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


def _check_color(im: Image.Image, hex_color: str, where: str) -> str:
    assert im.mode in ("RGB", "RGBA"), f"{where}: {im.mode}"
    if im.mode == "RGBA":
        assert im.getchannel("A").getextrema()[0] >= 250, f"{where}: composite is not opaque"
    target = tuple(int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    raw = im.convert("RGB").resize((128, 128), Image.NEAREST).tobytes()
    px = [raw[i:i + 3] for i in range(0, len(raw), 3)]
    share = sum(all(abs(a - b) <= 4 for a, b in zip(p, target)) for p in px) / len(px)
    assert 0.1 < share < 0.95, f"{where}: {share:.1%} of the pixels are {hex_color}"
    return f"background {hex_color} on {share:.0%}"


def _check_mask(im: Image.Image, where: str) -> str:
    hist = im.convert("L").histogram()
    fg = sum(hist[128:]) / sum(hist)
    assert 0.02 < fg < 0.98, f"{where}: subject covers {fg:.1%} of the mask"
    return f"subject {fg:.0%}"


@pytest.fixture(scope="module")
def background_photo(tmp_path_factory) -> Path:
    """A second picture, of another size, for background inputs."""
    src = comfy_env.PACK_ROOT / "samples" / "coffee.png"
    dst = tmp_path_factory.mktemp("bg") / "background.png"
    if src.is_file():
        shutil.copyfile(src, dst)
    else:
        Image.linear_gradient("L").resize((640, 400)).convert("RGB").save(dst)
    return dst


def _make_clip(photo: Path, dest: Path) -> tuple[int, int]:
    """A short H.264 + AAC clip panning across the photo (PyAV); returns its (width, height)."""
    import av
    import numpy as np

    im = Image.open(photo).convert("RGB")
    im = im.resize((320, round(320 * im.height / im.width) // 2 * 2))
    w, h = 288, im.height - 16
    with av.open(str(dest), mode="w") as out:
        vs = out.add_stream("libx264", rate=VIDEO_FPS)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        aus = out.add_stream("aac", rate=44100)
        aus.layout = "mono"
        for t in range(VIDEO_FRAMES):
            frame = av.VideoFrame.from_ndarray(np.asarray(im.crop((4 * t, t, 4 * t + w, t + h))), format="rgb24")
            frame.pts = t
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        n = 44100 * VIDEO_FRAMES // VIDEO_FPS
        tone = (0.2 * np.sin(np.arange(n) * 2 * np.pi * 440 / 44100)).astype(np.float32)
        for i in range(0, n, 1024):
            af = av.AudioFrame.from_ndarray(tone[None, i:i + 1024], format="fltp", layout="mono")
            af.sample_rate, af.pts = 44100, i
            for p in aus.encode(af):
                out.mux(p)
        for p in aus.encode():
            out.mux(p)
    return w, h


def _check_video(path: Path, kind: str, size, where: str) -> str:
    """A saved video: every frame, the clip's size and rate; on a colour, or with a real alpha."""
    import av
    import numpy as np

    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        rate, has_audio = vs.average_rate, bool(c.streams.audio)
        if kind == "video_rgba":  # ffmpeg's own vp9 decoder drops the alpha plane; libvpx reads it
            dec = av.CodecContext.create("libvpx-vp9", "r")
            frames = [f.to_ndarray(format="rgba") for p in c.demux(vs) for f in dec.decode(p)]
        else:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(vs)]
    assert len(frames) == VIDEO_FRAMES, f"{where}: {len(frames)} frames, the clip has {VIDEO_FRAMES}"
    assert frames[0].shape[1::-1] == size, f"{where}: {frames[0].shape[1::-1]}, the clip is {size}"
    assert abs(float(rate) - VIDEO_FPS) < 0.01, f"{where}: {rate} fps, the clip has {VIDEO_FPS}"
    if kind == "video_rgba":
        a = np.stack(frames)[..., 3]
        transparent, opaque = (a < 10).mean(), (a > 245).mean()
        assert transparent > 0.05 and opaque > 0.05, f"{where}: alpha {transparent:.0%} clear, {opaque:.0%} solid"
        return f"{len(frames)} frames VP9 with alpha ({transparent:.0%} transparent)"
    if not kind.startswith("video:#"):
        return f"{len(frames)} frames at {float(rate):g} fps"
    want = np.array([int(kind[7:][i:i + 2], 16) for i in (0, 2, 4)])
    near = (np.abs(np.stack(frames).astype(int) - want).max(-1) < 40).mean()
    assert 0.05 < near < 0.95, f"{where}: {near:.0%} of the pixels are {kind[6:]}"
    assert has_audio, f"{where}: the audio was lost"
    return f"{len(frames)} frames at {float(rate):g} fps with audio, {near:.0%} {kind[6:]}"


def _prepare_inputs(server, api: dict, photo: Path, background: Path) -> dict:
    """Files the workflow reads; returns {SaveImageFolder node id: [expected relative stems]}."""
    folders = {}
    for node in api.values():
        ct, inp = node["class_type"], node["inputs"]
        if ct == "LoadVideo":
            folders["video size"] = _make_clip(photo, server.base_dir / "input" / inp["file"])
        elif ct == "LoadImage":
            server.put_input(inp["image"], photo if inp["image"] == SUBJECT_IMAGE else background)
        elif ct == "CutoutLoadImageFolder":
            d = server.base_dir / "input" / inp["folder"]
            (d / "sub").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(photo, d / ("subject" + photo.suffix))
            shutil.copyfile(photo, d / "sub" / ("nested" + photo.suffix))
            (d / "subject.txt").write_text("a caption that must travel with its image\n")
            folders[inp["folder"]] = ["subject", "sub/nested"]
    return folders


def _check_folder_outputs(server, api: dict, sources: dict, size, expect: dict) -> list[str]:
    """Every CutoutSaveImageFolder wrote one image per source file, same relative name, same size
    (and what EXPECT says of that node)."""
    notes = []
    stems = [stem for folder_stems in sources.values() for stem in folder_stems]
    for node_id, node in api.items():
        if node["class_type"] != "CutoutSaveImageFolder":
            continue
        out = server.base_dir / "output" / node["inputs"]["destination"]
        for stem in stems:
            images = [h for h in sorted(out.glob(stem + ".*"))
                      if h.suffix.lower() in (".png", ".webp", ".jpg", ".jpeg")]
            assert images, f"{out}: no output for {stem} (names must be kept): {sorted(out.rglob('*'))}"
            im = Image.open(images[0])
            im.load()
            assert im.size == size, f"{images[0]}: {im.size}, input was {size}"
            kind = expect.get(node_id)
            if kind and kind.startswith("color:"):
                what = _check_color(im, kind[6:], str(images[0]))
            elif kind == "rgba":
                what = _check_rgba(im, str(images[0]))
        notes.append(f"node {node_id}: {len(stems)} files with their names in {out.name}/"
                     + (f", {what}" if expect.get(node_id) else "")
                     + (", caption copied" if (out / "subject.txt").is_file() else ""))
    return notes


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_workflow_executes(path, comfy_server, object_info, photo, background_photo):
    why = workflows.needs_newer(path, comfy_server.version)
    if why:
        pytest.skip(why)
    wf = workflows.load(path)
    if _needs_checkpoint(wf, object_info):
        pytest.skip("needs a checkpoint: validated against /object_info only")
    api = workflows.to_api(wf, object_info)
    size = Image.open(photo).size
    sources = _prepare_inputs(comfy_server, api, photo, background_photo)
    clip_size = sources.pop("video size", None)
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
            kind = EXPECT.get(path.stem, {}).get(node_id)
            if f.suffix.lower() in (".mp4", ".webm", ".mov", ".mkv"):
                where = f"{path.stem} node {node_id} ({api[node_id]['class_type']}) {ref['filename']}"
                notes.append(f"node {node_id}: " + _check_video(f, kind or "video", clip_size, where))
                continue
            im = _image(comfy_server.view(ref))
            where = f"{path.stem} node {node_id} ({api[node_id]['class_type']}) {ref['filename']}"
            assert im.size == size, f"{where}: {im.size}, input was {size}"
            kind = EXPECT.get(path.stem, {}).get(node_id)
            if kind == "rgba":
                notes.append(f"node {node_id}: {_check_rgba(im, where)}")
            elif kind == "mask":
                notes.append(f"node {node_id}: {_check_mask(im, where)}")
            elif kind == "new_background":  # opaque, and not just the input photo again
                assert im.mode == "RGB" or im.getchannel("A").getextrema()[0] >= 250, f"{where}: not opaque"
                a = im.convert("L").resize((128, 128)).tobytes()
                b = Image.open(photo).convert("L").resize((128, 128)).tobytes()
                changed = sum(abs(x - y) > 24 for x, y in zip(a, b)) / len(a)
                assert 0.1 < changed < 0.95, f"{where}: {changed:.1%} of the pixels differ from the photo"
                notes.append(f"node {node_id}: opaque, {changed:.0%} of the pixels replaced")
            elif kind and kind.startswith("color:"):
                notes.append(f"node {node_id}: {_check_color(im, kind[6:], where)}")
    notes += _check_folder_outputs(comfy_server, api, sources, size, EXPECT.get(path.stem, {}))
    for node_id in EXPECT.get(path.stem, {}):
        if api[node_id]["class_type"] != "CutoutSaveImageFolder":
            assert outputs.get(node_id, {}).get("images"), f"{path.stem}: node {node_id} gave no image"
    counts = {n: notes.count(n) for n in notes}  # a batch gives one note per image: say it once
    report(f"workflow {path.stem}: ran, {size[0]}x{size[1]} in and out; "
           + "; ".join(n + (f" (each of {k} images)" if k > 1 else "") for n, k in counts.items()))
