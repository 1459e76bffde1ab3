"""Every front door gives the same pixels for the same options (docs/design.md).

Real photos from samples/ plus files built from them here — a 16-bit grey PNG, a palette PNG with
transparency, an RGBA PNG, an EXIF-rotated JPEG — go through:

* the CLI's local engine (``cli.main``): the reference;
* the nodes (Load Image Folder → Remove Background → Mask Refine → Composite Background), each
  result converted as ComfyUI's SaveImage does (``np.clip(255·x, 0, 255).astype(uint8)``, PNG);
* the HTTP API (aiohttp test client, as tests/test_service_api.py);
* the Ray engine (``cli.main --engine ray``), for two of the option sets (Ray is slow to start).

CLI, API and Ray share the pipeline's 8-bit rounding, so they must agree exactly; SaveImage
truncates instead of rounding, so the node door may be one 8-bit step lower (alpha within 1/255).
The node door reads files with Load Image Folder (the pack's decoder); ComfyUI's own LoadImage
decodes differently (16-bit files; JPEG through PyAV from ComfyUI 0.28), so for it only lossless
8-bit inputs are comparable (docs/design.md).
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cli as cli_module
from cutout.nodes import NODE_CLASS_MAPPINGS as N

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
WIDTH = 128  # small photos: the network sees 320x320 anyway, the rest stays cheap


def _small(name: str) -> Image.Image:
    im = Image.open(SAMPLES / name).convert("RGB")
    return im.resize((WIDTH, round(im.height * WIDTH / im.width)), Image.LANCZOS)


def build_inputs(src: Path) -> dict[str, bool]:
    """The input folder; value: whether the file has its own alpha."""
    src.mkdir(parents=True)
    _small("chelsea.png").save(src / "photo.png")
    grey = np.asarray(_small("coffee.png").convert("L"), dtype=np.uint16) * 257  # full 16-bit range
    Image.fromarray(grey).save(src / "grey16.png")
    assert Image.open(src / "grey16.png").mode == "I;16"
    pal = _small("astronaut.png").quantize(48)
    pal.save(src / "palette.png", transparency=pal.getpixel((0, 0)))  # a real colour made transparent
    colour = np.asarray(_small("coffee.png"))
    alpha = np.full(colour.shape[:2], 255, np.uint8)
    alpha[:, : WIDTH // 3] = 0  # left third transparent, then a soft ramp
    alpha[:, WIDTH // 3: WIDTH // 2] = np.linspace(0, 255, WIDTH // 2 - WIDTH // 3).astype(np.uint8)
    Image.fromarray(np.dstack([colour, alpha]), "RGBA").save(src / "rgba.png")
    rocket = _small("rocket.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: a viewer turns it 90° clockwise
    rocket.transpose(Image.Transpose.ROTATE_90).save(src / "rotated.jpg", quality=92, exif=exif.tobytes())
    return {"photo.png": False, "grey16.png": False, "palette.png": True, "rgba.png": True, "rotated.jpg": False}


@dataclass(frozen=True)
class Case:
    """One option set, spelled for each door: CLI flags, API parameters (None: the API has no such
    parameter) and the node graph's settings."""

    name: str
    cli: tuple[str, ...]
    api: dict | None
    decontaminate: bool = True
    background: str = "transparent"  # Composite Background mode
    color: str = "#FFFFFF"
    color2: str = "#000000"
    angle: float = 90.0
    refine: dict = field(default_factory=dict)  # Mask Refine inputs
    refine_edges: bool = False
    mask_only: bool = False
    ray: bool = False


CASES = [
    Case("transparent", (), {"decontaminate": "true"}, ray=True),
    Case("transparent-plain", ("--no-decontaminate",), {}, decontaminate=False),
    Case("colour", ("--background", "#3060c0"), {"background": "#3060c0", "dc": "1"}, background="color",
         color="#3060c0"),
    Case("gradient", ("--background", "gradient:white:#102040:45"),
         {"background": "gradient:white:#102040:45", "decontaminate": "1"}, background="gradient",
         color="white", color2="#102040", angle=45.0, ray=True),
    Case("guided", ("--refine", "guided"), {"refine": "guided", "decontaminate": "1"},
         refine={"edge_refinement": "guided filter"}),
    Case("matting-plain", ("--refine", "matting", "--no-decontaminate", "--background", "white"),
         {"refine": "matting", "background": "white"}, decontaminate=False, background="color",
         refine={"edge_refinement": "matting"}),
    Case("mask", ("--mask-only",), {"om": "true"}, mask_only=True),
    Case("edges-threshold-mask", ("--mask-only", "--refine-edges", "--threshold", "0.5", "--fill-holes"), None,
         refine={"threshold": 0.5, "fill_holes": True}, refine_edges=True, mask_only=True),
    Case("blur", ("--background", "blur"), {"background": "blur", "dc": "true"}, background="blur"),
]


def read(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im).copy()


def cli_door(src: Path, dest: Path, case: Case, engine: str = "local") -> dict[str, np.ndarray]:
    rc = cli_module.main(["--source", str(src), "--dest", str(dest), "--no-progress", "--engine", engine,
                          *case.cli])
    assert rc == 0, case.name
    return {p.stem: read(p) for p in dest.glob("*.png")}


def node_door(folder: str, case: Case, comfy_out: Path) -> dict[str, np.ndarray]:
    """The graph a ComfyUI user builds for these options; each result saved as SaveImage does."""
    images, rels, *_ = N["CutoutLoadImageFolder"]().load(folder, True, "*", 0, 0, False)
    out = {}
    for img, rel in zip(images, rels):
        rgba, mask, _ = N["CutoutRemoveBackground"]().run(img, "u2netp", "cpu", decontaminate=case.decontaminate,
                                                       refine_edges=case.refine_edges)
        if case.refine:
            mask = N["CutoutMaskRefine"]().run(mask, image=img, **case.refine)[0]
        if case.mask_only:
            result = mask
        elif case.refine or case.background != "transparent":
            result = N["CutoutCompositeBackground"]().run(
                img, case.background, case.color, case.color2, case.angle, decontaminate=case.decontaminate,
                mask=mask)[0]
        else:
            result = rgba
        pixels = np.clip(255.0 * result[0].cpu().numpy(), 0, 255).astype(np.uint8)  # ComfyUI's SaveImage
        path = comfy_out / f"{Path(rel).stem}.png"
        Image.fromarray(pixels).save(path)
        out[path.stem] = read(path)
    return out


def api_door(src: Path, case: Case) -> dict[str, np.ndarray]:
    from aiohttp import FormData, web
    from aiohttp.test_utils import TestClient, TestServer

    from cutout.service.api import CutoutService, Limits, mount

    async def main():
        app = web.Application()
        mount(app, CutoutService(Limits()))
        out = {}
        async with TestClient(TestServer(app)) as c:
            for p in sorted(src.iterdir()):
                fd = FormData()
                for k, v in case.api.items():
                    fd.add_field(k, v)
                fd.add_field("file", p.read_bytes(), filename=p.name, content_type="application/octet-stream")
                r = await c.post("/cutout/api/remove", data=fd)
                assert r.status == 200, (case.name, p.name, await r.text())
                out[p.stem] = np.asarray(Image.open(io.BytesIO(await r.read()))).copy()
        return out

    return asyncio.run(main())


def assert_same(ref: dict, got: dict, door: str, case: Case, tolerance: int = 0) -> None:
    names = sorted(ref)
    assert names and set(names) <= set(got), (door, case.name, sorted(got))
    for name in names:
        a, b = ref[name].astype(int), got[name].astype(int)
        assert a.shape == b.shape, (door, case.name, name, a.shape, b.shape)
        diff = np.abs(a - b).max()
        assert diff <= tolerance, f"{door} / {case.name} / {name}: differs by up to {diff}/255 from the CLI"
        if tolerance:  # SaveImage truncates: never above the rounded value
            assert (b <= a).all(), (door, case.name, name)


@pytest.fixture(scope="module")
def doors(tmp_path_factory):
    base = tmp_path_factory.mktemp("doors")
    src = base / "src"
    own_alpha = build_inputs(src)
    return base, src, own_alpha


def test_inputs_are_what_they_claim(doors):
    _base, src, _ = doors
    with Image.open(src / "palette.png") as im:
        assert im.mode == "P" and "transparency" in im.info
    upright = _small("rocket.jpg").size
    with Image.open(src / "rotated.jpg") as im:
        assert im.getexif()[0x0112] == 6 and im.size == upright[::-1]  # stored on its side


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_front_door_gives_the_same_pixels(case, doors, comfy_dirs, monkeypatch):
    base, src, own_alpha = doors
    inp, out = comfy_dirs
    work = base / case.name
    ref = cli_door(src, work / "cli", case)
    assert set(ref) == {Path(n).stem for n in own_alpha}
    # what the inputs must show: the 16-bit file is not blown out, the rotation is applied, own alpha kept
    assert ref["rotated"].shape[:2] == _small("rocket.jpg").size[::-1]  # (H, W) of the upright photo
    if case.mask_only:
        assert ref["grey16"].ndim == 2 and 0 < (ref["grey16"] > 127).mean() < 0.95
        assert (ref["rgba"][:, : WIDTH // 3] == 0).all()  # what was transparent stays transparent
    elif case.background == "transparent":
        assert (ref["rgba"][:, : WIDTH // 3, 3] == 0).all()
        pal_src = np.asarray(Image.open(src / "palette.png").convert("RGBA"))[..., 3]
        assert (ref["palette"][..., 3][pal_src == 0] == 0).all()
        g = ref["grey16"]
        assert (g[..., 0] == g[..., 1]).all() and g[..., :3].std() > 10  # grey, with detail (not all white)

    # the node door reads from ComfyUI's input folder
    import shutil

    shutil.copytree(src, inp / case.name)
    (out / case.name).mkdir()
    nodes = node_door(case.name, case, out / case.name)
    # every file at every door: a graph applies the own alpha in Remove Background, then Mask Refine;
    # the pipeline does the same, in that order
    assert_same(ref, nodes, "node", case, tolerance=1)

    if case.api is not None:
        assert_same(ref, api_door(src, case), "api", case)


@pytest.mark.slow
def test_ray_engine_gives_the_same_pixels(doors):
    pytest.importorskip("ray")
    from cutout.dataset import ray_engine

    base, src, _ = doors
    started = ray_engine.start_ray(num_cpus=2)
    try:
        for case in (c for c in CASES if c.ray):
            ref = cli_door(src, base / f"ray-ref-{case.name}", case)
            assert_same(ref, cli_door(src, base / f"ray-{case.name}", case, engine="ray"), "ray", case)
    finally:
        if started:
            import ray

            ray.shutdown()
