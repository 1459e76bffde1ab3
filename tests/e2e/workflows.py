"""UI-format workflows (what the ComfyUI frontend saves: ``nodes``/``links``) -> API prompts.

The frontend turns a graph into a prompt in ``graphToPrompt``: every node's widget values
are matched, in order, to the node's widget inputs (``input_order`` required, then optional,
leaving out inputs that only take links), and links fill the rest. Two kinds of widgets have
no input behind them and are skipped here as the frontend skips them:

* ``control_after_generate`` ("fixed" / "increment" / "decrement" / "randomize") after a seed;
* the "image" upload button value after LoadImage's file combo (``image_upload``).

Frontend-only nodes (notes, reroutes) are not sent to the server. Muted (mode 2) and
bypassed (mode 4) nodes are not supported: a workflow shipped with the pack has none.
"""

from __future__ import annotations

import json
from pathlib import Path

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
FRONTEND_ONLY = {"Note", "MarkdownNote"}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
UPLOAD_FLAGS = ("image_upload", "video_upload", "audio_upload", "animated_image_upload")


# The shipped workflows: builder in make_workflows.py -> file name. ComfyUI 0.28's template browser shows a
# pack's workflow by its bare file name (frontend 1.45 reads no title from the JSON), so the file name is
# the title a user reads there. Keep them URL-plain: the frontend puts them into the template URLs as they are.
FILES = {"remove_background": "Remove background from a photo",
         "refine_and_composite": "Refine mask and composite on a new background",
         "dataset_prep": "Dataset prep for LoRA training",
         "inpaint_mask": "Inpainting mask for a new background",
         "video_frames": "Video frames without flicker",
         "video_cutout": "Cut out a video file",
         "core_birefnet_refine": "Core BiRefNet mask refined and composited"}

# Workflows that use core nodes of a newer ComfyUI (validated there; skipped on older servers).
MIN_COMFYUI = {FILES["core_birefnet_refine"]: (0, 28),  # LoadBackgroundRemovalModel / RemoveBackground
               FILES["video_cutout"]: (0, 28)}  # 0.3.75: Save WEBM drops the alpha, Create Video has no bit_depth


def needs_newer(path: Path, version: str) -> str | None:
    """Why ``path`` does not apply to ComfyUI ``version`` (None when it does)."""
    need = MIN_COMFYUI.get(Path(path).stem)
    have = tuple(int(x) for x in version.split(".") if x.isdigit())
    if need and have < need:
        return f"{Path(path).stem} uses core nodes of ComfyUI >= {'.'.join(map(str, need))} (this is {version})"
    return None


MODEL_TYPES = {"MODEL", "CLIP", "VAE", "CONTROL_NET", "UPSCALE_MODEL", "BACKGROUND_REMOVAL"}


def is_model_loader(spec: dict) -> bool:
    """A core loader on any version: category ``loaders`` (0.3.75) or ``model/loaders`` (0.28),
    or a node that outputs a model (the category may move again)."""
    category = (spec.get("category") or "").split("/")
    return "loaders" in category or bool(MODEL_TYPES & set(spec.get("output") or []))


def load(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def _input_specs(info: dict) -> dict[str, list]:
    specs = {}
    for section in ("required", "optional"):
        specs.update(info.get("input", {}).get(section, {}) or {})
    return specs


def _ordered_inputs(info: dict) -> list[str]:
    order = info.get("input_order") or {}
    names = list(order.get("required", [])) + list(order.get("optional", []))
    if not names:  # very old servers
        names = list(_input_specs(info))
    return names


def input_type(spec: list) -> str:
    """The type of an /object_info input spec: lists (old-style combos) are COMBO."""
    t = spec[0]
    return "COMBO" if isinstance(t, list) else str(t)


def is_widget(spec: list) -> bool:
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return input_type(spec) in WIDGET_TYPES and not opts.get("forceInput")


def _has_control_widget(name: str, spec: list) -> bool:
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if "control_after_generate" in opts:
        return bool(opts["control_after_generate"])
    return input_type(spec) == "INT" and name in ("seed", "noise_seed")


def _has_upload_widget(spec: list) -> bool:
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return any(opts.get(f) for f in UPLOAD_FLAGS)


class WorkflowError(AssertionError):
    pass


def links_by_id(workflow: dict) -> dict[int, tuple]:
    """link id -> (origin node, origin slot, target node, target slot, type)."""
    out = {}
    for link in workflow.get("links", []):
        if isinstance(link, dict):  # newer serialisation
            out[link["id"]] = (link["origin_id"], link["origin_slot"], link["target_id"],
                               link["target_slot"], link["type"])
        else:
            lid, o, oslot, t, tslot, typ = link[:6]
            out[lid] = (o, oslot, t, tslot, typ)
    return out


def default_value(spec: list):
    """What the frontend puts in a widget the saved workflow has no value for."""
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if "default" in opts:
        return opts["default"]
    if isinstance(spec[0], list):
        return spec[0][0] if spec[0] else None
    if input_type(spec) == "COMBO":
        return (opts.get("options") or [None])[0]
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(input_type(spec))


def widget_names(info: dict) -> list[str]:
    specs = _input_specs(info)
    return [n for n in _ordered_inputs(info) if is_widget(specs[n])]


def widget_inputs(node: dict, info: dict) -> dict:
    """The widget values of a UI node, by input name. Widgets the saved workflow has no value
    for (the node gained an input since) get their defaults, as the frontend does."""
    specs = _input_specs(info)
    values = list(node.get("widgets_values") or [])
    if isinstance(node.get("widgets_values"), dict):  # some nodes save a name -> value dict
        return dict(node["widgets_values"])
    out, i = {}, 0
    for name in _ordered_inputs(info):
        spec = specs[name]
        if not is_widget(spec):
            continue
        if i >= len(values):
            out[name] = default_value(spec)
            continue
        out[name] = values[i]
        i += 1
        if _has_control_widget(name, spec) and i < len(values) and values[i] in CONTROL_VALUES:
            i += 1
        if _has_upload_widget(spec) and i < len(values) and isinstance(values[i], str) \
                and values[i] in ("image", "video", "audio"):
            i += 1
    if i != len(values):
        raise WorkflowError(f"node {node['id']} ({node['type']}): {len(values)} widget values, {i} used: "
                            f"{values!r}; the node's widget inputs are "
                            f"{[n for n in _ordered_inputs(info) if is_widget(specs[n])]}")
    return out


def to_api(workflow: dict, object_info: dict) -> dict:
    """The API prompt ``{id: {"class_type", "inputs"}}`` the frontend would queue for this workflow."""
    links = links_by_id(workflow)
    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] in FRONTEND_ONLY:
            continue
        if node.get("mode", 0) not in (0,):
            raise WorkflowError(f"node {node['id']} ({node['type']}) is muted/bypassed (mode {node['mode']})")
        info = object_info.get(node["type"])
        if info is None:
            raise WorkflowError(f"node {node['id']}: type {node['type']} is not registered in this ComfyUI")
        inputs = widget_inputs(node, info)
        for slot in node.get("inputs") or []:
            if slot.get("link") is None:
                continue
            origin, oslot, _, _, _ = links[slot["link"]]
            inputs[slot["name"]] = [str(origin), oslot]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs,
                                   "_meta": {"title": node.get("title") or info.get("display_name", node["type"])}}
    return prompt


def check_against_object_info(workflow: dict, object_info: dict) -> list[str]:
    """Problems found (empty when fine): unknown node types, links between mismatched types,
    dangling link ids, required inputs left unconnected, widget values that do not fit."""
    problems = []
    nodes = {n["id"]: n for n in workflow["nodes"]}
    links = links_by_id(workflow)
    for lid, (o, oslot, t, tslot, typ) in links.items():
        if o not in nodes or t not in nodes:
            problems.append(f"link {lid}: node {o if o not in nodes else t} does not exist")
            continue
        src, dst = nodes[o], nodes[t]
        src_info, dst_info = object_info.get(src["type"]), object_info.get(dst["type"])
        if src_info is None or dst_info is None:
            continue  # reported below
        outs = src_info["output"]
        if oslot >= len(outs):
            problems.append(f"link {lid}: {src['type']} has no output {oslot}")
            continue
        out_type = outs[oslot]
        out_type = "COMBO" if isinstance(out_type, list) else out_type
        dst_slot = (dst.get("inputs") or [])[tslot] if tslot < len(dst.get("inputs") or []) else None
        if dst_slot is None or dst_slot.get("link") != lid:
            problems.append(f"link {lid}: target {dst['type']} input slot {tslot} does not point back to it")
            continue
        spec = _input_specs(dst_info).get(dst_slot["name"])
        if spec is None:
            problems.append(f"link {lid}: {dst['type']} has no input '{dst_slot['name']}'")
            continue
        in_type = input_type(spec)
        if not ({out_type, in_type, typ} <= {out_type} or "*" in (out_type, in_type)):
            problems.append(f"link {lid}: {src['type']}[{oslot}] gives {out_type}, {dst['type']}."
                            f"{dst_slot['name']} takes {in_type}, link says {typ}")
        if lid not in ((src.get("outputs") or [{}] * (oslot + 1))[oslot].get("links") or []):
            problems.append(f"link {lid}: not listed in {src['type']} output {oslot} links")
    for node in workflow["nodes"]:
        if node["type"] in FRONTEND_ONLY:
            continue
        info = object_info.get(node["type"])
        if info is None:
            problems.append(f"node {node['id']}: type {node['type']} does not exist")
            continue
        connected = {s["name"] for s in node.get("inputs") or [] if s.get("link") is not None}
        try:
            widgets = widget_inputs(node, info)
        except WorkflowError as e:
            problems.append(str(e) + " (regenerate with tests/e2e/make_workflows.py)")
            continue
        n_values = len(node.get("widgets_values") or [])
        n_widgets = len(widget_names(info)) + sum(
            1 for name in widget_names(info)
            if _has_control_widget(name, _input_specs(info)[name]) or _has_upload_widget(_input_specs(info)[name]))
        if n_values < n_widgets:
            missing = widget_names(info)[len(widget_names(info)) - (n_widgets - n_values):]
            problems.append(f"node {node['id']} ({node['type']}): {n_values} widget values for {n_widgets} widgets; "
                            f"the node has gained {missing} since the file was made "
                            f"(regenerate with tests/e2e/make_workflows.py)")
        required = (info.get("input_order") or {}).get("required") or list(info["input"].get("required", {}))
        for name in required:
            if name not in connected and name not in widgets:
                problems.append(f"node {node['id']} ({node['type']}): required input '{name}' is not connected")
        specs = _input_specs(info)
        for name, value in widgets.items():
            spec = specs[name]
            if isinstance(spec[0], list) and node["type"] not in ("LoadImage",) and value not in spec[0] \
                    and not name.endswith("_name"):
                problems.append(f"node {node['id']} ({node['type']}): '{name}'={value!r} is not one of {spec[0]}")
        for i, out in enumerate(node.get("outputs") or []):
            if i < len(info["output"]) and out.get("type") not in (info["output"][i], "*"):
                problems.append(f"node {node['id']} ({node['type']}): output {i} saved as {out.get('type')}, "
                                f"server says {info['output'][i]}")
    return problems
