"""Write the example workflows (UI format, as the ComfyUI frontend saves them) from a live /object_info.

    python tests/e2e/make_workflows.py [--out example_workflows] [--pack /path/to/pack] [--only NAME ...]

NAME: a builder below (``remove_background``) or its file name (``workflows.FILES``).

Widget values are built from each node's ``input_order`` and defaults in /object_info (with the
values set below on top, and the extra "randomize"/"image" widget values the frontend adds), so a
node that gains or reorders an input only needs this script re-run. It starts the cached e2e
ComfyUI (tests/e2e/comfy_env.py) with the pack at ``--pack`` (default: this checkout). A workflow
whose node types the server does not have (a node not merged yet) is skipped with a message.
The files are then checked by tests/e2e/test_e2e_workflows.py (and, with chromium,
test_e2e_frontend.py checks the web page converts them to the same prompt).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import comfy_env  # noqa: E402
import workflows as W  # noqa: E402

NOTE_STYLE = {"color": "#432", "bgcolor": "#653"}


class Builder:
    def __init__(self, info: dict):
        self.info, self.nodes, self.links, self.nid, self.lid = info, [], [], 0, 0
        self.missing: set[str] = set()

    def node(self, type_, pos, size=None, title=None, **values):
        self.nid += 1
        n = {"id": self.nid, "type": type_, "pos": list(pos), "size": list(size or (320, 120)), "flags": {},
             "order": self.nid - 1, "mode": 0, "inputs": [], "outputs": [],
             "properties": {"Node name for S&R": type_}, "widgets_values": []}
        if title:
            n["title"] = title
        self.nodes.append(n)
        if type_ == "MarkdownNote":
            n["widgets_values"] = [values.pop("text")]
            n.update(NOTE_STYLE)
            return n
        spec = self.info.get(type_)
        if spec is None:
            self.missing.add(type_)
            return n
        specs = W._input_specs(spec)
        for name in W._ordered_inputs(spec):
            s = specs[name]
            if W.is_widget(s):
                opts = s[1] if len(s) > 1 and isinstance(s[1], dict) else {}
                if name in values:
                    v = values.pop(name)
                elif "default" in opts:
                    v = opts["default"]
                elif isinstance(s[0], list):
                    v = s[0][0] if s[0] else ""
                elif W.input_type(s) == "COMBO":
                    v = (opts.get("options") or [""])[0]
                else:
                    v = {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}[W.input_type(s)]
                n["widgets_values"].append(v)
                if W._has_control_widget(name, s):
                    n["widgets_values"].append(values.pop(name + "_control", "randomize"))
                if W._has_upload_widget(s):
                    n["widgets_values"].append("image")
            else:
                n["inputs"].append({"name": name, "type": W.input_type(s), "link": None})
        names = spec.get("output_name") or spec["output"]
        for i, (t, nm) in enumerate(zip(spec["output"], names)):
            n["outputs"].append({"name": nm, "type": t, "links": None, "slot_index": i})
        if values:
            raise KeyError(f"{type_}: no widget inputs named {sorted(values)}")
        return n

    def link(self, src, out, dst, input_name):
        if src["type"] in self.missing or dst["type"] in self.missing:
            return
        self.lid += 1
        oslot = out if isinstance(out, int) else [o["name"] for o in src["outputs"]].index(out)
        islot = [i["name"] for i in dst["inputs"]].index(input_name)
        t = src["outputs"][oslot]["type"]
        if dst["inputs"][islot]["type"] != t:
            raise TypeError(f"{src['type']}[{oslot}] {t} -> {dst['type']}.{input_name} {dst['inputs'][islot]['type']}")
        dst["inputs"][islot]["link"] = self.lid
        src["outputs"][oslot]["links"] = (src["outputs"][oslot]["links"] or []) + [self.lid]
        self.links.append([self.lid, src["id"], oslot, dst["id"], islot, t])

    def workflow(self, wid: str) -> dict:
        return {"id": wid, "revision": 0, "last_node_id": self.nid, "last_link_id": self.lid,
                "nodes": self.nodes, "links": self.links, "groups": [], "config": {},
                "extra": {"ds": {"scale": 1.0, "offset": [0, 0]}}, "version": 0.4}


def remove_background(b: Builder):
    load = b.node("LoadImage", (40, 120), (320, 380), image="example.png")
    rb = b.node("CutoutRemoveBackground", (400, 120), (320, 110), model="u2netp")
    save = b.node("SaveImage", (760, 120), (380, 420), filename_prefix="cutout/remove_background")
    prev = b.node("MaskPreview", (1170, 120), (380, 420))
    b.node("MarkdownNote", (400, 290), (320, 250), title="About this workflow", text=(
        "### Remove Background (Cutout)\n\n"
        "1. **Load Image**: pick a photo.\n"
        "2. **Remove Background** cuts the subject out with U²-Net. `u2netp` ships with the pack and works offline; "
        "the larger models are taken from `models/rembg` or rembg's folders, else downloaded once into `models/cutout`.\n"
        "3. **Save Image** writes the cut-out as a transparent PNG (`output/cutout/`).\n"
        "4. **Mask Preview** shows the subject mask (white = subject).\n\n"
        "The mask is 1 = subject. ComfyUI's Join Image with Alpha expects the opposite: put an Invert Mask in between."))
    b.link(load, 0, rb, "image")
    b.link(rb, 0, save, "images")
    b.link(rb, 1, prev, "mask")
    return "6b1f6f0e-2f7c-4c55-9d2e-7b8f0c1a9e01"


def inpaint_mask(b: Builder):
    ck = b.node("CheckpointLoaderSimple", (40, 60), (320, 100), ckpt_name="sd-v1-5-inpainting.ckpt")
    load = b.node("LoadImage", (40, 420), (320, 380), image="example.png")
    rb = b.node("CutoutRemoveBackground", (400, 420), (320, 110), model="u2netp")
    inv = b.node("InvertMask", (400, 580), (220, 30), title="Invert Mask (repaint the background)")
    enc = b.node("VAEEncodeForInpaint", (760, 420), (260, 100), grow_mask_by=6)
    pos = b.node("CLIPTextEncode", (400, 60), (420, 160), title="Positive prompt (new background)",
                 text="a sunny beach at golden hour, photo, detailed")
    neg = b.node("CLIPTextEncode", (400, 250), (420, 140), title="Negative prompt",
                 text="blurry, lowres, text, watermark")
    ks = b.node("KSampler", (1060, 60), (320, 470), seed=42, steps=20, cfg=7.0, sampler_name="euler",
                scheduler="normal", denoise=1.0)
    dec = b.node("VAEDecode", (1420, 60), (210, 50))
    save = b.node("SaveImage", (1420, 160), (400, 440), filename_prefix="cutout/new_background")
    b.node("MarkdownNote", (760, 580), (400, 260), title="About this workflow", text=(
        "### New background by inpainting\n\n"
        "**Remove Background** finds the subject; **Invert Mask** turns that into the area to repaint "
        "(everything but the subject), and **VAE Encode (for Inpainting)** hands it to the sampler. "
        "The subject's pixels are kept; the prompt describes the new background.\n\n"
        "Needs an inpainting checkpoint in `models/checkpoints` (e.g. an SD 1.5 inpainting model). "
        "`grow_mask_by` widens the repainted area a little into the edge to hide halos."))
    b.link(load, 0, rb, "image")
    b.link(rb, 1, inv, "mask")
    b.link(load, 0, enc, "pixels")
    b.link(ck, 2, enc, "vae")
    b.link(inv, 0, enc, "mask")
    b.link(ck, 1, pos, "clip")
    b.link(ck, 1, neg, "clip")
    b.link(ck, 0, ks, "model")
    b.link(pos, 0, ks, "positive")
    b.link(neg, 0, ks, "negative")
    b.link(enc, 0, ks, "latent_image")
    b.link(ks, 0, dec, "samples")
    b.link(ck, 2, dec, "vae")
    b.link(dec, 0, save, "images")
    return "0c3d2a9b-5e1f-4b7a-8c6d-2f9e4a1b3c02"


def refine_and_composite(b: Builder):
    load = b.node("LoadImage", (40, 120), (320, 380), image="example.png")
    rb = b.node("CutoutRemoveBackground", (400, 120), (320, 130), model="u2netp", refine_edges=True)
    mr = b.node("CutoutMaskRefine", (400, 280), (340, 520), fill_holes=True, remove_islands=0.001)
    c1 = b.node("CutoutCompositeBackground", (780, 120), (320, 250), title="Composite on a colour",
                background="color", color="#2E7DD7")
    c2 = b.node("CutoutCompositeBackground", (780, 420), (320, 250), title="Composite on an image",
                background="image", fit="cover")
    bg = b.node("LoadImage", (400, 840), (320, 380), title="Load Image (new background)", image="background.png")
    s1 = b.node("SaveImage", (1140, 120), (380, 400), filename_prefix="cutout/on_colour")
    s2 = b.node("SaveImage", (1540, 120), (380, 400), filename_prefix="cutout/on_image")
    prev = b.node("MaskPreview", (1140, 560), (380, 400), title="Refined mask")
    b.node("MarkdownNote", (40, 540), (320, 280), title="About this workflow", text=(
        "### Refine the mask, then composite\n\n"
        "**Remove Background** fits the mask's edge to the photo while scaling it up (`refine_edges`); "
        "**Mask Refine** fills holes and drops specks. "
        "**Composite Background** puts the subject on a solid colour, and on a second photo "
        "(loaded below, scaled to cover). All operations of Mask Refine are off by default."))
    b.link(load, 0, rb, "image")
    b.link(rb, "mask", mr, "mask")
    b.link(load, 0, mr, "image")
    b.link(load, 0, c1, "image")
    b.link(mr, "mask", c1, "mask")
    b.link(load, 0, c2, "image")
    b.link(mr, "mask", c2, "mask")
    b.link(bg, 0, c2, "background_image")
    b.link(c1, 0, s1, "images")
    b.link(c2, 0, s2, "images")
    b.link(mr, "mask", prev, "mask")
    return "3a7e9c21-4b8d-4f0e-9a6c-5d2e1f0b7c03"


def video_frames(b: Builder):
    load = b.node("LoadImage", (40, 120), (320, 380), title="Load Image (a frame; use a video loader for real clips)",
                  image="example.png")
    rep = b.node("RepeatImageBatch", (40, 540), (320, 80), title="Repeat (stand-in for a batch of frames)", amount=4)
    rb = b.node("CutoutRemoveBackground", (400, 120), (320, 110), model="u2netp")
    mr = b.node("CutoutMaskRefine", (400, 280), (340, 520), title="Mask Refine (temporal smoothing)", temporal=0.5)
    comp = b.node("CutoutCompositeBackground", (780, 120), (320, 250), background="color", color="#00B140")
    save = b.node("SaveImage", (1140, 120), (380, 400), filename_prefix="cutout/frames")
    b.node("MarkdownNote", (780, 420), (320, 260), title="About this workflow", text=(
        "### Video frames\n\n"
        "A batch of consecutive frames goes through **Remove Background** one frame at a time "
        "(progress per frame, Cancel stops within a frame). **Mask Refine**'s `temporal` averages each mask "
        "with its neighbours to stop edge flicker. Feed it frames from any video loader instead of the repeat."))
    b.link(load, 0, rep, "image")
    b.link(rep, 0, rb, "image")
    b.link(rb, "mask", mr, "mask")
    b.link(rep, 0, mr, "image")
    b.link(rep, 0, comp, "image")
    b.link(mr, "mask", comp, "mask")
    b.link(comp, 0, save, "images")
    return "8e4b2d6f-1c3a-4e5b-8f7d-9a0c2b4d6e04"


def _linked_widget(node: dict, name: str, type_: str) -> None:
    """Turn a widget into a socket (as dragging a link onto it does in the frontend)."""
    node["inputs"].append({"name": name, "type": type_, "widget": {"name": name}, "link": None})


def video_cutout(b: Builder):
    load = b.node("LoadVideo", (40, 120), (320, 420), file="example.mp4")
    parts = b.node("GetVideoComponents", (40, 580), (320, 100))
    rb = b.node("CutoutRemoveBackground", (400, 120), (320, 110), model="u2netp")
    mr = b.node("CutoutMaskRefine", (400, 280), (340, 560), title="Mask Refine (temporal, motion)", temporal=1.0,
                temporal_mode="motion")
    comp = b.node("CutoutCompositeBackground", (780, 120), (320, 250), background="color", color="#00B140")
    cut = b.node("CutoutCompositeBackground", (780, 420), (320, 250), title="Composite Background (transparent)",
                 background="transparent")
    mk = b.node("CreateVideo", (1140, 120), (300, 100))
    _linked_widget(mk, "fps", "FLOAT")
    save = b.node("SaveVideo", (1480, 120), (380, 420), filename_prefix="cutout/video_on_green")
    webm = b.node("SaveWEBM", (1140, 420), (380, 420), title="Save WEBM (VP9 with alpha)",
                  filename_prefix="cutout/video_cutout", codec="vp9", crf=24.0)
    _linked_widget(webm, "fps", "FLOAT")
    b.node("MarkdownNote", (40, 720), (320, 300), title="About this workflow", text=(
        "### Video cut-out\n\n"
        "**Load Video** + **Get Video Components** give the frames, the audio and the frame rate. "
        "**Remove Background** cuts each frame out; **Mask Refine** with `temporal` 1.0 and `temporal_mode` "
        "`motion` follows the optical flow of the frames to stop the mask's flicker (about 0.07 s of CPU per "
        "480p frame). **Composite Background** puts the subject on green for **Create Video** (with the original "
        "audio and frame rate) and **Save Video**; the transparent composite goes to **Save WEBM** "
        "(VP9 with alpha). Long clips: trim them first (**Trim Video**), every frame is held in memory."))
    b.link(load, 0, parts, "video")
    b.link(parts, "images", rb, "image")
    b.link(rb, "mask", mr, "mask")
    b.link(parts, "images", mr, "image")
    b.link(parts, "images", comp, "image")
    b.link(mr, "mask", comp, "mask")
    b.link(parts, "images", cut, "image")
    b.link(mr, "mask", cut, "mask")
    b.link(comp, 0, mk, "images")
    b.link(parts, "audio", mk, "audio")
    b.link(parts, "fps", mk, "fps")
    b.link(mk, 0, save, "video")
    b.link(cut, 0, webm, "images")
    b.link(parts, "fps", webm, "fps")
    return "c7d8e9f0-1a2b-4c3d-8e4f-5a6b7c8d9e07"


def dataset_prep(b: Builder):
    src = b.node("CutoutLoadImageFolder", (40, 120), (340, 260), folder="dataset")
    rb = b.node("CutoutRemoveBackground", (420, 120), (320, 110), model="u2netp")
    dst = b.node("CutoutSaveImageFolder", (780, 120), (360, 300), destination="dataset_clean", background="white")
    b.node("MarkdownNote", (420, 280), (320, 320), title="About this workflow", text=(
        "### Dataset prep (Cutout)\n\n"
        "1. Put your photos (captions beside them welcome, kohya layout `10_subject/img001.jpg` + `img001.txt`) "
        "in `ComfyUI/input/dataset`.\n"
        "2. **Load Image Folder** outputs a *list*: the nodes after it run once per photo, each at its own size. "
        "Unreadable files are skipped and listed in `report`.\n"
        "3. **Remove Background** cuts each subject out.\n"
        "4. **Save Image Folder** puts each cut-out on white (`background`; `transparent` keeps the alpha) and writes "
        "`ComfyUI/output/dataset_clean/<same folders>/<same name>.png`, copying the `.txt` / `.caption` / `.json` "
        "files. Re-running only adds what is missing (existing = skip).\n\n"
        "Folders outside ComfyUI's input/output are refused unless ComfyUI runs with `CUTOUT_ALLOW_ANY_PATH=1`. "
        "For thousands of photos use the command line: `python cli.py --source raw --dest clean`."))
    b.link(src, 0, rb, "image")
    b.link(rb, 0, dst, "images")
    b.link(src, "relative_path", dst, "relative_path")
    b.link(src, "source_folder", dst, "source_folder")
    return "5f1d3b7a-9e2c-4a6f-8b0d-1c3e5a7b9d05"


def core_birefnet_refine(b: Builder):
    """ComfyUI 0.28's own BiRefNet (LoadBackgroundRemovalModel -> RemoveBackground, MASK only) feeding
    this pack's Mask Refine and Composite Background. Skipped on a ComfyUI without those nodes."""
    ld = b.node("LoadBackgroundRemovalModel", (40, 60), (340, 90), bg_removal_name="birefnet.safetensors")
    load = b.node("LoadImage", (40, 200), (340, 380), image="example.png")
    core = b.node("RemoveBackground", (420, 60), (300, 60), title="Remove Background (ComfyUI core, BiRefNet)")
    mr = b.node("CutoutMaskRefine", (420, 180), (340, 520), fill_holes=True, remove_islands=0.001,
                edge_refinement="guided filter")
    comp = b.node("CutoutCompositeBackground", (800, 60), (320, 250), background="color", color="#2E7DD7")
    cut = b.node("CutoutCompositeBackground", (800, 360), (320, 250), title="Composite Background (transparent)",
                 background="transparent")
    s1 = b.node("SaveImage", (1160, 60), (380, 400), filename_prefix="cutout/core_birefnet_on_colour")
    s2 = b.node("SaveImage", (1160, 500), (380, 400), filename_prefix="cutout/core_birefnet_cutout")
    b.node("MarkdownNote", (40, 620), (340, 300), title="About this workflow", text=(
        "### ComfyUI's own BiRefNet, finished with Cutout\n\n"
        "Needs ComfyUI 0.28 or newer and a BiRefNet model in `models/background_removal`.\n\n"
        "Core's **Remove Background** gives only a MASK (1 = subject, the same convention as this pack), "
        "so it plugs straight into **Mask Refine** (fill holes, drop specks, fit the edge to the photo) and "
        "**Composite Background** (colour, image, blur or transparent, with edge decontamination). "
        "No Invert Mask is needed. Without BiRefNet weights, use **Remove Background (Cutout)** instead."))
    b.link(ld, 0, core, "bg_removal_model")
    b.link(load, 0, core, "image")
    b.link(core, 0, mr, "mask")
    b.link(load, 0, mr, "image")
    b.link(load, 0, comp, "image")
    b.link(mr, "mask", comp, "mask")
    b.link(load, 0, cut, "image")
    b.link(mr, "mask", cut, "mask")
    b.link(comp, 0, s1, "images")
    b.link(cut, 0, s2, "images")
    return "b1e2f3a4-5c6d-4e7f-8a9b-0c1d2e3f4a06"


ALL = {W.FILES[f.__name__]: f for f in (remove_background, inpaint_mask, refine_and_composite, video_frames,
                                        dataset_prep, core_birefnet_refine, video_cutout)}  # file name -> builder


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=comfy_env.PACK_ROOT / "example_workflows")
    ap.add_argument("--pack", type=Path, default=comfy_env.PACK_ROOT)
    ap.add_argument("--object-info", type=Path, help="use this saved /object_info JSON instead of a server")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--version", default="0.28.2", choices=sorted(comfy_env.VERSIONS),
                    help="the ComfyUI whose /object_info is used (the core BiRefNet one needs 0.28)")
    args = ap.parse_args()
    if args.object_info:
        info = json.loads(args.object_info.read_text())
    else:
        with tempfile.TemporaryDirectory(prefix="cutout-wf-") as tmp:
            server = comfy_env.start_server(Path(tmp), pack_root=args.pack, with_fixture_pack=False,
                                            version=args.version)
            try:
                info = server.object_info()
            finally:
                server.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, make in ALL.items():
        if args.only and not {name, make.__name__} & set(args.only):
            continue
        b = Builder(info)
        wid = make(b)
        if b.missing:
            print(f"skip {name}: this ComfyUI has no {sorted(b.missing)}")
            continue
        wf = b.workflow(wid)
        problems = W.check_against_object_info(wf, info)
        if problems:
            print(f"{name}: " + "\n  ".join(problems))
            return 1
        (args.out / f"{name}.json").write_text(json.dumps(wf, indent=2, ensure_ascii=False) + "\n")
        print("wrote", args.out / f"{name}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
