"""The pack inside a real ComfyUI: loading, /object_info, model folders, errors, interrupt, progress."""

from __future__ import annotations

import re
import shutil
import time
import uuid

import pytest
from conftest import report

import comfy_env
from comfy_env import PACK_DIR_NAME, messages

pytestmark = pytest.mark.e2e

PACK_MODULE = f"custom_nodes.{PACK_DIR_NAME}"
IMAGE_TYPES = {"IMAGE", "MASK"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
U2NETP = comfy_env.PACK_ROOT / "cutout" / "models" / "u2netp.onnx"


def pack_nodes(info: dict) -> dict:
    return {k: v for k, v in info.items() if v.get("python_module") == PACK_MODULE}


def small_photo_graph(name: str, size: int = 64, model: str = "u2netp", prefix: str | None = None,
                      repeat: int = 1) -> dict:
    """LoadImage -> ImageScale(size) [-> RepeatImageBatch] -> Remove Background -> Save/Preview."""
    g = {
        "1": {"class_type": "LoadImage", "inputs": {"image": name}},
        "2": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "bilinear",
                                                      "width": size, "height": size, "crop": "disabled"}},
    }
    src = ["2", 0]
    if repeat > 1:
        g["3"] = {"class_type": "RepeatImageBatch", "inputs": {"image": src, "amount": repeat}}
        src = ["3", 0]
    g["10"] = {"class_type": "CutoutRemoveBackground", "inputs": {"image": src, "model": model, "device": "cpu"}}
    if prefix:
        g["11"] = {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": prefix}}
    else:
        g["11"] = {"class_type": "PreviewImage", "inputs": {"images": ["10", 0]}}
    return g


@pytest.fixture(scope="module")
def photo_name(comfy_server, photo):
    return comfy_server.put_input("e2e_photo" + photo.suffix, photo)


# -- loading ----------------------------------------------------------------------------------
def test_pack_imports_cleanly(comfy_server):
    log = comfy_server.log_text()
    assert "Import times for custom nodes:" in log, log[-3000:]
    lines = [ln for ln in log.splitlines() if ln.rstrip().endswith(f"custom_nodes/{PACK_DIR_NAME}")
             and "seconds" in ln]
    assert len(lines) == 1, "import-time line for the pack not found:\n" + log[-3000:]
    assert "IMPORT FAILED" not in lines[0], log[-6000:]
    bad = [ln for ln in log.splitlines() if PACK_DIR_NAME in ln and
           ("Cannot import" in ln or "comfy_entrypoint" in ln or "IMPORT FAILED" in ln)]
    assert not bad, bad
    seconds = float(re.search(r"([\d.]+) seconds", lines[0]).group(1))
    startup = log[:log.index("Import times for custom nodes:")]
    warned = [ln for ln in startup.splitlines() if re.search(r"warn|deprecat|error", ln, re.I)
              and re.search(r"cutout", ln, re.I) and "cutout_e2e_fixtures" not in ln]
    assert not warned, f"ComfyUI {comfy_server.version} warned about the pack at start-up:\n" + "\n".join(warned)
    report(f"ComfyUI {comfy_server.version}: pack import time as ComfyUI prints it: {seconds:.1f} s, "
           f"no warning  ({lines[0].strip()})")


def test_object_info_lists_every_node_properly(comfy_server):
    info = comfy_server.object_info()
    ours = pack_nodes(info)
    assert "CutoutRemoveBackground" in ours, sorted(info)[:20]
    stray = [k for k in info if k.startswith("Cutout") and k not in ours]
    assert not stray, f"Cutout* nodes registered by another module: {stray}"
    problems = []
    for node_id, spec in ours.items():
        if not node_id.startswith("Cutout"):
            problems.append(f"{node_id}: id does not start with 'Cutout'")
        if spec["category"] != "Cutout" and not spec["category"].startswith("Cutout/"):
            problems.append(f"{node_id}: category {spec['category']!r}")
        if not (spec.get("description") or "").strip():
            problems.append(f"{node_id}: no description")
        if "(Cutout)" not in spec.get("display_name", "") and "Cutout" not in spec.get("display_name", ""):
            problems.append(f"{node_id}: display name {spec.get('display_name')!r} does not say Cutout")
        for section in ("required", "optional"):
            for name, inp in (spec["input"].get(section) or {}).items():
                typ = "COMBO" if isinstance(inp[0], list) else inp[0]
                opts = inp[1] if len(inp) > 1 else {}
                if not (opts.get("tooltip") or "").strip():
                    problems.append(f"{node_id}.{name}: no tooltip")
                if typ not in IMAGE_TYPES | WIDGET_TYPES and not typ.isupper():
                    problems.append(f"{node_id}.{name}: odd type {typ!r}")
        tips = spec.get("output_tooltips") or []
        if len(tips) != len(spec["output"]) or not all((t or "").strip() for t in tips):
            problems.append(f"{node_id}: output tooltips {tips!r} for outputs {spec['output']}")
        if len(spec.get("output_name") or []) != len(spec["output"]):
            problems.append(f"{node_id}: output names {spec.get('output_name')}")
    assert not problems, "\n".join(problems)
    rb = ours["CutoutRemoveBackground"]
    assert rb["input"]["required"]["image"][0] == "IMAGE"
    assert rb["output"] == ["IMAGE", "MASK", "FLOAT"]
    assert rb["output_name"] == ["image", "mask", "confidence"]
    assert "u2netp" in rb["input"]["required"]["model"][0]
    report(f"pack nodes in /object_info: {sorted(ours)}")


def test_search_aliases_and_advanced_inputs(comfy_server):
    """0.28 sends SEARCH_ALIASES as ``search_aliases`` (0.3.75 has no such field); both pass an
    input's ``"advanced": True`` through to the frontend, which folds those inputs away."""
    ours = pack_nodes(comfy_server.object_info())
    if comfy_env.version_tuple(comfy_server.version) >= (0, 4):
        for node_id, spec in ours.items():
            aliases = spec.get("search_aliases")
            assert aliases and "cutout" in aliases and "rembg" in aliases, (node_id, aliases)
        assert "remove background" in ours["CutoutRemoveBackground"]["search_aliases"]
        assert "matting" in ours["CutoutRemoveBackground"]["search_aliases"]
    else:
        assert all("search_aliases" not in spec for spec in ours.values())
    refine = {**ours["CutoutMaskRefine"]["input"]["required"], **ours["CutoutMaskRefine"]["input"].get("optional", {})}
    assert refine["guided_eps"][1].get("advanced") is True
    assert not refine["fill_holes"][1].get("advanced")


# -- model folders ----------------------------------------------------------------------------
def _model_options(server) -> list[str]:
    return server.object_info("CutoutRemoveBackground")["input"]["required"]["model"][0]


def test_model_folder_registered_and_hot_listed(comfy_server, photo_name):
    status, folders = comfy_server.get("/models")
    assert status == 200 and "rembg" in folders, folders
    name = f"e2e_dropped_{uuid.uuid4().hex[:6]}.onnx"
    assert name not in _model_options(comfy_server)
    shutil.copyfile(U2NETP, comfy_server.base_dir / "models" / "rembg" / name)
    assert name in _model_options(comfy_server), "dropped model not listed without a restart"
    assert name in comfy_server.get("/models/rembg")[1]
    entry = comfy_server.run(small_photo_graph(photo_name, model=name))
    assert entry["status"]["status_str"] == "success"
    assert re.search(rf"Cutout: loaded model '{re.escape(name)}' from .*models/rembg/{re.escape(name)}",
                     comfy_server.log_text()), comfy_server.log_text()[-3000:]


def test_extra_model_paths_config(comfy_server, photo_name):
    log = comfy_server.log_text()
    assert f"Adding extra search path rembg {comfy_server.extra_models_dir}" in log, log[:4000]
    name = f"e2e_extra_{uuid.uuid4().hex[:6]}.onnx"
    shutil.copyfile(U2NETP, comfy_server.extra_models_dir / name)
    assert name in _model_options(comfy_server)
    comfy_server.run(small_photo_graph(photo_name, model=name))
    assert f"Cutout: loaded model '{name}' from {comfy_server.extra_models_dir / name}" in comfy_server.log_text()


def test_non_onnx_file_in_model_folder_is_a_clear_error(comfy_server, photo_name):
    name = f"e2e_broken_{uuid.uuid4().hex[:6]}.onnx"
    (comfy_server.base_dir / "models" / "rembg" / name).write_bytes(b"this is not an onnx file\n" * 10)
    entry = comfy_server.wait(comfy_server.post_prompt(small_photo_graph(photo_name, model=name)))
    assert entry["status"]["status_str"] == "error"
    (err,) = messages(entry, "execution_error")
    assert err["node_type"] == "CutoutRemoveBackground"
    assert "input 'model'" in err["exception_message"] and name in err["exception_message"], err["exception_message"]
    comfy_server.run(small_photo_graph(photo_name))  # the server is fine afterwards


# -- bad input --------------------------------------------------------------------------------
def test_bad_input_is_an_execution_error_naming_input_and_shape(comfy_server, photo_name):
    bad = {
        "1": {"class_type": "E2EFixtureTensors",
              "inputs": {"batch": 2, "height": 16, "width": 24, "channels": 5, "mask_batch": 1}},
        "2": {"class_type": "CutoutRemoveBackground", "inputs": {"image": ["1", 0], "model": "u2netp"}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }
    entry = comfy_server.wait(comfy_server.post_prompt(bad))
    assert entry["status"]["status_str"] == "error"
    assert entry["outputs"] == {}
    (err,) = messages(entry, "execution_error")
    assert err["node_id"] == "2" and err["node_type"] == "CutoutRemoveBackground"
    msg = err["exception_message"]
    assert "Remove Background (Cutout)" in msg and "input 'image'" in msg, msg
    assert "[2, 16, 24, 5]" in msg and "[B,H,W,C]" in msg, msg
    report(f"bad-input execution_error: {err['exception_type']}: {msg.strip()}")
    # the next prompt still works
    entry = comfy_server.run(small_photo_graph(photo_name))
    assert entry["outputs"]["11"]["images"]


def test_mask_batch_mismatch_is_an_execution_error(comfy_server, photo_name):
    """The issue's own example: 3 images with 2 masks into Mask Refine (runs once Mask Refine is merged)."""
    if "CutoutMaskRefine" not in comfy_server.object_info():
        pytest.skip("CutoutMaskRefine not in this branch yet")
    bad = {
        "1": {"class_type": "E2EFixtureTensors",
              "inputs": {"batch": 3, "height": 32, "width": 32, "channels": 3, "mask_batch": 2}},
        "2": {"class_type": "CutoutMaskRefine", "inputs": {"mask": ["1", 1], "image": ["1", 0]}},
        "3": {"class_type": "MaskPreview", "inputs": {"mask": ["2", 0]}},
    }
    # fill every other widget with its default, as the frontend would
    info = comfy_server.object_info("CutoutMaskRefine")
    for name, spec in info["input"]["required"].items():
        if name not in bad["2"]["inputs"] and len(spec) > 1 and "default" in spec[1]:
            bad["2"]["inputs"][name] = spec[1]["default"]
    entry = comfy_server.wait(comfy_server.post_prompt(bad))
    assert entry["status"]["status_str"] == "error" and entry["outputs"] == {}
    (err,) = messages(entry, "execution_error")
    msg = err["exception_message"]
    assert err["node_type"] == "CutoutMaskRefine" and "(Cutout)" in msg, msg
    assert re.search(r"input '(image|mask)'", msg) and "3" in msg and "2" in msg, msg
    report(f"mask/image batch mismatch: {msg.strip()}")
    comfy_server.run(small_photo_graph(photo_name))


# -- progress, interrupt, model reuse -----------------------------------------------------------
def test_progress_advances_per_frame(comfy_server, photo_name):
    frames = 3
    ws = comfy_server.websocket()
    try:
        pid = comfy_server.post_prompt(small_photo_graph(photo_name, size=48, repeat=frames))
        events = ws.events_until(pid)
    finally:
        ws.close()
    prog = [e["data"] for e in events if e.get("type") == "progress" and e["data"].get("node") == "10"]
    assert [p["value"] for p in prog] == list(range(1, frames + 1)), prog
    assert all(p["max"] == frames and p["prompt_id"] == pid for p in prog), prog
    assert comfy_server.wait(pid)["status"]["status_str"] == "success"


def test_interrupt_stops_a_long_batch_without_output(comfy_server, photo_name):
    frames = 400
    prefix = f"e2e_interrupt/{uuid.uuid4().hex[:6]}"
    ws = comfy_server.websocket()
    state = {"t_interrupt": None, "after": 0}

    def on_event(ev):
        d = ev.get("data") or {}
        if ev.get("type") != "progress" or d.get("node") != "10":
            return
        if state["t_interrupt"] is None and d["value"] >= 2:
            comfy_server.interrupt()
            state["t_interrupt"] = time.time()
        elif state["t_interrupt"] is not None:
            state["after"] += 1
        state["last"] = d
        state.setdefault("times", []).append(ev["t"])

    try:
        pid = comfy_server.post_prompt(small_photo_graph(photo_name, size=48, repeat=frames, prefix=prefix))
        events = ws.events_until(pid, on_event=on_event)
    finally:
        ws.close()
    assert state["t_interrupt"] is not None, "no progress seen before the end"
    end = events[-1]
    assert end["type"] == "execution_interrupted", end
    latency = end["t"] - state["t_interrupt"]
    # the frame in flight is stopped inside the network run (RunOptions.terminate); at most a frame
    # that finished while the POST was on its way is reported
    assert state["after"] <= 1, f"{state['after']} frames were still processed after the interrupt"
    assert state["last"]["value"] < frames
    entry = comfy_server.wait(pid)
    assert entry["status"]["status_str"] == "error" and entry["outputs"] == {}
    assert messages(entry, "execution_interrupted")
    out_dir = comfy_server.base_dir / "output" / prefix.split("/")[0]
    assert not out_dir.exists() or not any(out_dir.iterdir()), list(out_dir.iterdir())
    t = state["times"]
    gaps = sorted(b - a for a, b in zip(t, t[1:]))
    frame_s = gaps[len(gaps) // 2] if gaps else float("nan")
    report(f"interrupt: stopped after frame {state['last']['value']}/{frames}, "
           f"{latency:.2f} s from POST /interrupt to execution_interrupted "
           f"(one frame took {frame_s:.2f} s here: the network run in flight is stopped)")
    comfy_server.run(small_photo_graph(photo_name))  # and the queue goes on


def test_two_prompts_reuse_the_loaded_model(comfy_server, photo_name):
    for size in (40, 56):  # different inputs (and --cache-none): both really run
        entry = comfy_server.run(small_photo_graph(photo_name, size=size))
        cached = {n for m in messages(entry, "execution_cached") for n in m.get("nodes", [])}
        assert "10" not in cached, "Remove Background was served from the cache, not re-run"
    loads = re.findall(r"Cutout: loaded model 'u2netp'", comfy_server.log_text())
    assert len(loads) == 1, f"u2netp loaded {len(loads)} times in one server"


def test_startup_failure_shows_the_server_log(comfy_server, tmp_path):
    """A server that cannot start raises at once with its log, instead of a bare timeout."""
    broken_root = tmp_path / "not_comfyui"  # no main.py
    broken_root.mkdir()
    venv = comfy_server.python.parent.parent
    server = comfy_env.ComfyServer(broken_root, venv, tmp_path / "base", with_fixture_pack=False)
    with pytest.raises(RuntimeError) as exc:
        server.start(timeout=120)
    text = str(exc.value)
    assert "exited with code" in text and "--- server log ---" in text, text
    assert "main.py" in text, text  # the traceback from the log is in the message
    assert server.proc.poll() is not None
