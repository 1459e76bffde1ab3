"""Make ``example_workflows/<name>.jpg`` (the template browser's thumbnails) from each workflow's real result.

    python tests/e2e/make_thumbnails.py [--version 0.28.2] [--only "FILE NAME" ...]

Each workflow is converted to a prompt as the frontend does (tests/e2e/workflows.py) and run in the
cached e2e ComfyUI on samples/astronaut.png (background inputs: samples/coffee.png); the thumbnail is
its first saved image, a transparent one drawn on a checkerboard. Two workflows cannot run here:
the inpainting one needs a checkpoint, so its thumbnail shows the part that runs (the photo with the
area the sampler would repaint, the inverted subject mask, tinted); the core BiRefNet one needs
core's BiRefNet weights, so core's Remove Background is replaced by this pack's (u2netp) for the
picture, the rest of the graph (Mask Refine, Composite Background) runs as shipped.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import comfy_env  # noqa: E402
import workflows as W  # noqa: E402

SAMPLES = comfy_env.PACK_ROOT / "samples"
SIZE = 512


def _loader_ids(api: dict, info: dict) -> set[str]:
    return {k for k, v in api.items() if W.is_model_loader(info.get(v["class_type"], {}))}


def _downstream(api: dict, roots: set[str]) -> set[str]:
    out, changed = set(roots), True
    while changed:
        changed = False
        for k, v in api.items():
            if k not in out and any(isinstance(x, list) and str(x[0]) in out for x in v["inputs"].values()):
                out.add(k)
                changed = True
    return out


def runnable(api: dict, info: dict) -> tuple[dict, str]:
    """The prompt to run for the picture, and how it differs from the workflow."""
    api = {k: {"class_type": v["class_type"], "inputs": dict(v["inputs"])} for k, v in api.items()}
    loaders = _loader_ids(api, info)
    if not loaders:
        return api, "as shipped"
    note = []
    for k, v in api.items():  # core's BiRefNet Remove Background (MASK) -> ours (IMAGE, MASK): slot 0 -> 1
        if v["class_type"] == "RemoveBackground":
            api[k] = {"class_type": "CutoutRemoveBackground", "inputs": {"image": v["inputs"]["image"],
                                                                          "model": "u2netp"}}
            for other in api.values():
                for name, x in other["inputs"].items():
                    if isinstance(x, list) and str(x[0]) == k:
                        other["inputs"][name] = [x[0], 1]
            note.append("core Remove Background replaced by Remove Background (Cutout), u2netp")
    loaders = _loader_ids(api, info)
    dropped = _downstream(api, loaders)
    api = {k: v for k, v in api.items() if k not in dropped}
    for k, v in list(api.items()):  # a mask that fed the dropped part: show it over the photo
        if v["class_type"] == "InvertMask":
            api["900"] = {"class_type": "MaskToImage", "inputs": {"mask": [k, 0]}}
            api["901"] = {"class_type": "SaveImage", "inputs": {"images": ["900", 0],
                                                                "filename_prefix": "thumb/repaint_area"}}
            note.append("the part before the checkpoint: the area the sampler repaints")
    if dropped:
        note.append(f"{len(dropped)} nodes that need weights left out")
    return api, "; ".join(note)


def _checker(size) -> Image.Image:
    w, h = size
    tile = 24
    im = Image.new("RGB", size, (236, 236, 236))
    dark = Image.new("RGB", (tile, tile), (200, 200, 200))
    for y in range(0, h, tile):
        for x in range((y // tile) % 2 * tile, w, 2 * tile):
            im.paste(dark, (x, y))
    return im


def square(im: Image.Image) -> Image.Image:
    w, h = im.size
    s = min(w, h)
    return im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((SIZE, SIZE),
                                                                                           Image.LANCZOS)


def picture(server, api: dict, entry: dict, photo: Path) -> Image.Image:
    refs = [ref for k in sorted(entry["outputs"], key=lambda x: int(x) if x.isdigit() else 0)
            for ref in entry["outputs"][k].get("images", []) if ref.get("type") == "output"]
    if refs:
        im = Image.open(server.output_path(refs[0]))
    else:  # Save Image Folder writes files, not UI images
        dest = next(v["inputs"]["destination"] for v in api.values() if v["class_type"] == "CutoutSaveImageFolder")
        im = Image.open(sorted((server.base_dir / "output" / dest).rglob("*.png"))[0])
    im.load()
    if "thumb/repaint_area" in (refs[0]["subfolder"] + "/" + refs[0]["filename"] if refs else ""):
        base = Image.open(photo).convert("RGB")
        tint = Image.new("RGB", base.size, (214, 46, 160))
        return Image.composite(tint, base, im.convert("L").point(lambda v: v * 0.6))
    if im.mode == "RGBA":
        bg = _checker(im.size)
        bg.paste(im, (0, 0), im)
        return bg
    return im.convert("RGB")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--version", default="0.28.2", choices=sorted(comfy_env.VERSIONS))
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    photo, background = SAMPLES / "astronaut.png", SAMPLES / "coffee.png"
    with tempfile.TemporaryDirectory(prefix="cutout-thumbs-") as tmp:
        server = comfy_env.start_server(Path(tmp), with_fixture_pack=False, version=args.version)
        try:
            info = server.object_info()
            for path in sorted((comfy_env.PACK_ROOT / "example_workflows").glob("*.json")):
                if args.only and path.stem not in args.only:
                    continue
                api, how = runnable(W.to_api(W.load(path), info), info)
                for v in api.values():
                    if v["class_type"] == "LoadImage":
                        server.put_input(v["inputs"]["image"], photo if v["inputs"]["image"] == "example.png"
                                         else background)
                    elif v["class_type"] == "CutoutLoadImageFolder":
                        d = server.base_dir / "input" / v["inputs"]["folder"]
                        d.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(photo, d / photo.name)
                entry = server.run(api)
                thumb = square(picture(server, api, entry, photo))
                thumb.save(path.with_suffix(".jpg"), quality=85, optimize=True)
                print(f"wrote {path.with_suffix('.jpg').name} ({how})")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
