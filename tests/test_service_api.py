"""The HTTP service, in-process on a bare aiohttp app (no ComfyUI): every route and error case.

The same handlers are registered on ComfyUI's server by ``comfy_glue.register_routes``;
tests/e2e/test_service_e2e.py repeats the round trip there.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import struct
import sys
import types
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

aiohttp = pytest.importorskip("aiohttp", reason="aiohttp is needed for the service tests (requirements-dev.txt)")
from aiohttp import FormData, web  # noqa: E402
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402
from PIL import Image  # noqa: E402

from cutout import comfy_glue  # noqa: E402
from cutout.models.session import STORE  # noqa: E402
from cutout.nodes.remove_background import CutoutRemoveBackground  # noqa: E402
from cutout.service import api as api_mod  # noqa: E402
from cutout.service import params as P  # noqa: E402
from cutout.service.api import Limits  # noqa: E402

from _api_client import serve  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- helpers
def synthetic_photo(w: int = 200, h: int = 150, seed: int = 0) -> bytes:
    """A subject (a shaded disc) on a textured background, as PNG bytes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    bg = np.stack([60 + 80 * xx / w, 140 + 40 * yy / h, 90 + 0 * xx], -1) + rng.normal(0, 6, (h, w, 3))
    d = np.hypot(xx - w * 0.5, yy - h * 0.55) / (min(w, h) * 0.32)
    fg = np.stack([230 - 60 * d, 60 + 40 * d, 50 + 0 * d], -1)
    img = np.where((d < 1)[..., None], fg, bg)
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def png(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def node_alpha(photo: bytes) -> np.ndarray:
    """The Remove Background node's mask for the same photo, loaded as ComfyUI's LoadImage does."""
    rgb = np.array(Image.open(io.BytesIO(photo)).convert("RGB")).astype(np.float32) / 255.0
    _, mask, _ = CutoutRemoveBackground().run(torch.from_numpy(rgb)[None], "u2netp")
    return (mask[0].clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()


def form(*files: tuple[str, bytes], **fields) -> FormData:
    fd = FormData()
    for k, v in fields.items():
        fd.add_field(k, str(v))
    for name, data in files:
        fd.add_field("file", data, filename=name, content_type="application/octet-stream")
    return fd


async def expect_error(resp, status: int, code: str, *words: str) -> dict:
    body = await resp.json()
    assert resp.status == status, body
    assert resp.content_type == "application/json"
    assert body["error"] == code, body
    for w in words:
        assert w in body["message"], body
    return body


@pytest.fixture(scope="module")
def photo() -> bytes:
    return synthetic_photo()


@pytest.fixture(scope="module")
def real_photo() -> tuple[str, bytes]:
    shared = Path(os.environ.get("CUTOUT_SHARED", ROOT.parent / "shared"))  # as tests/conftest.py
    path = shared / "eval" / "dev" / "davis16_blackswan_00000.jpg"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path.name, path.read_bytes()


# ---------------------------------------------------------------------------- round trips
def test_round_trip_multipart_matches_the_node(real_photo):
    name, data = real_photo

    async def t(c, s):
        r = await c.post("/cutout/api/remove", data=form((name, data)))
        assert r.status == 200, await r.text()
        assert r.content_type == "image/png"
        assert r.headers["X-Cutout-Model"] == "u2netp"
        assert "davis16_blackswan_00000.png" in r.headers["Content-Disposition"]
        return await r.read()

    out = png(serve(t))
    src = Image.open(io.BytesIO(data))
    assert out.mode == "RGBA" and out.size == src.size
    a = np.asarray(out)
    alpha = a[..., 3]
    seen = alpha > 0  # colours untouched where visible; black under alpha 0 (imaging.clear), as rembg
    assert np.array_equal(a[..., :3][seen], np.asarray(src.convert("RGB"))[seen])
    assert a[..., :3][~seen].max(initial=0) == 0
    assert alpha.min() == 0 and alpha.max() == 255  # a real cut-out: some background, some subject
    np.testing.assert_array_equal(alpha, node_alpha(data))  # same code path as the node


def test_raw_body_equals_multipart(photo):
    async def t(c, s):
        r1 = await c.post("/cutout/api/remove", data=photo, headers={"Content-Type": "image/png"})
        r2 = await c.post("/cutout/api/remove", data=form(("p.png", photo)))
        assert r1.status == r2.status == 200
        return await r1.read(), await r2.read()

    a, b = serve(t)
    assert a == b
    np.testing.assert_array_equal(np.asarray(png(a))[..., 3], node_alpha(photo))


def test_only_mask_is_the_alpha(photo):
    async def t(c, s):
        r = await c.post("/cutout/api/remove?om=true", data=photo, headers={"Content-Type": "image/png"})
        assert r.status == 200 and r.content_type == "image/png"
        return await r.read()

    m = png(serve(t))
    assert m.mode == "L" and m.size == (200, 150)
    np.testing.assert_array_equal(np.asarray(m), node_alpha(photo))


def test_bgc_is_rembg_alpha_composite(photo):
    async def t(c, s):
        plain = await (await c.post("/cutout/api/remove", data=form(("p.png", photo)))).read()
        r = await c.post("/cutout/api/remove", data=form(("p.png", photo), bgc="255,0,255,255"))
        assert r.status == 200
        half = await c.post("/cutout/api/remove", data=form(("p.png", photo), bgc="0,0,255,128"))
        return plain, await r.read(), await half.read()

    plain, opaque, half = (png(x) for x in serve(t))
    assert opaque.mode == "RGBA" and opaque.size == plain.size
    o = np.asarray(opaque)
    assert (o[..., 3] == 255).all()
    expected = Image.alpha_composite(Image.new("RGBA", plain.size, (255, 0, 255, 255)), plain)
    # the pipeline composites the float alpha, rembg the 8-bit one: at most one step apart
    assert np.abs(o.astype(int) - np.asarray(expected).astype(int)).max() <= 1
    bg = np.asarray(plain)[..., 3] == 0
    assert bg.any() and (o[bg][:, :3] == [255, 0, 255]).all()
    h = np.asarray(half)
    assert (h[bg][:, 3] == 128).all()  # a translucent colour stays translucent, as in rembg


def test_background_colour_gives_opaque_rgb(photo):
    async def t(c, s):
        plain = await (await c.post("/cutout/api/remove", data=form(("p.png", photo)))).read()
        r = await c.post("/cutout/api/remove", data=form(("p.png", photo), background="#00ff00"))
        assert r.status == 200
        r2 = await c.post("/cutout/api/remove", data=form(("p.png", photo), background="lime"))
        return plain, await r.read(), await r2.read()

    plain, out, named = serve(t)
    assert out == named  # '#00ff00' and the CSS name 'lime' are the same colour
    out = png(out)
    assert out.mode == "RGB"
    p = np.asarray(png(plain))
    o = np.asarray(out).astype(int)
    a = p[..., 3:].astype(float) / 255.0
    expected = np.round(p[..., :3] * a + np.array([0, 255, 0]) * (1 - a))
    assert np.abs(o - expected).max() <= 1


def test_formats(photo):
    async def t(c, s):
        p = await c.post("/cutout/api/remove", data=form(("p.png", photo)))
        w = await c.post("/cutout/api/remove?format=webp", data=form(("p.png", photo)))
        assert w.status == 200 and w.content_type == "image/webp"
        j = await c.post("/cutout/api/remove?format=jpeg&background=white", data=form(("p.png", photo)))
        assert j.status == 200 and j.content_type == "image/jpeg"
        assert "p.jpg" in j.headers["Content-Disposition"]
        bad = await c.post("/cutout/api/remove?format=jpeg", data=form(("p.png", photo)))
        await expect_error(bad, 400, "bad_parameter", "jpeg", "alpha")
        return await p.read(), await w.read(), await j.read()

    p, w, j = serve(t)
    np.testing.assert_array_equal(np.asarray(png(p)), np.asarray(png(w)))  # lossless WebP keeps alpha
    assert png(j).mode == "RGB" and png(j).size == (200, 150)


def test_ppm_matches_rembg_post_process(photo):
    rembg_bg = pytest.importorskip("rembg.bg")

    async def t(c, s):
        m = await (await c.post("/cutout/api/remove?om=1", data=form(("p.png", photo)))).read()
        r = await c.post("/cutout/api/remove?om=1&ppm=true", data=form(("p.png", photo)))
        assert r.status == 200
        return m, await r.read()

    m, pm = serve(t)
    ours = np.asarray(png(pm))
    theirs = rembg_bg.post_process(np.asarray(png(m)))
    assert set(np.unique(ours)) <= {0, 255}
    assert (ours == theirs).mean() >= 0.999, (ours != theirs).sum()


def test_batch_zip(photo):
    other = synthetic_photo(120, 90, seed=3)

    async def t(c, s):
        r = await c.post("/cutout/api/batch", data=form(("a.png", photo), ("b.jpg", other), ("a.png", photo)))
        assert r.status == 200, await r.text()
        assert r.content_type == "application/zip"
        assert r.headers["X-Cutout-Images"] == "3"
        single = await (await c.post("/cutout/api/remove", data=form(("b.jpg", other)))).read()
        return await r.read(), single

    data, single = serve(t)
    z = zipfile.ZipFile(io.BytesIO(data))
    assert z.namelist() == ["a.png", "b.png", "a-2.png"]  # upload order, names kept, no clash
    sizes = [Image.open(z.open(n)).size for n in z.namelist()]
    assert sizes == [(200, 150), (120, 90), (200, 150)]
    assert all(Image.open(z.open(n)).mode == "RGBA" for n in z.namelist())
    assert z.read("b.png") == single  # the batch is the single endpoint, file by file
    np.testing.assert_array_equal(np.asarray(Image.open(z.open("a.png")))[..., 3], node_alpha(photo))


# ---------------------------------------------------------------------------- errors
def corrupt_variants(photo: bytes) -> dict[str, bytes]:
    return {"truncated.png": photo[: len(photo) // 2], "garbled.png": photo[:60] + b"\x00" * 500 + photo[560:]}


def test_error_cases(photo):
    async def t(c, s):
        R = "/cutout/api/remove"
        img = {"Content-Type": "image/png"}
        body = await expect_error(await c.post(R + "?foo=1&bar=2", data=photo, headers=img), 400,
                                  "unknown_parameter", "'foo'", "'bar'", "model", "bgc")
        assert body["valid"] == list(P.VALID)
        await expect_error(await c.post(R, data=form(("p.png", photo), colour="red")), 400, "unknown_parameter",
                           "'colour'")
        await expect_error(await c.post(R + "?vm=true", data=photo, headers=img), 400, "unsupported_parameter",
                           "ViTMatte")
        await expect_error(await c.post(R + "?url=http://x", data=photo, headers=img), 400, "unsupported_parameter")
        await expect_error(await c.post(R + "?om=maybe", data=photo, headers=img), 400, "bad_parameter", "'om'")
        await expect_error(await c.post(R + "?af=300", data=photo, headers=img), 400, "bad_parameter", "0..255")
        await expect_error(await c.post(R + "?bgc=1,2", data=photo, headers=img), 400, "bad_parameter", "r,g,b,a")
        await expect_error(await c.post(R + "?refine=magic", data=photo, headers=img), 400, "bad_parameter",
                           "none, guided, matting")
        await expect_error(await c.post(R + "?format=gif", data=photo, headers=img), 400, "bad_parameter")
        await expect_error(await c.post(R + "?background=notacolour", data=photo, headers=img), 400,
                           "bad_parameter", "'background'")
        await expect_error(await c.post(R + "?bgc=1,2,3,4&background=red", data=photo, headers=img), 400,
                           "conflicting_parameters")
        await expect_error(await c.post(R + "?om=1&bgc=1,2,3,4", data=photo, headers=img), 400,
                           "conflicting_parameters")
        await expect_error(await c.post(R + "?a=1&refine=guided", data=photo, headers=img), 400,
                           "conflicting_parameters")
        await expect_error(await c.post(R + "?om=1", data=form(("p.png", photo), om="0")), 400, "bad_parameter",
                           "twice")
        await expect_error(await c.post(R, data=form(("p.png", photo), model="x" * 5000)), 400, "bad_parameter",
                           "1000 bytes")
        # what comes in
        await expect_error(await c.post(R, data=b"", headers=img), 400, "no_image", "empty")
        await expect_error(await c.post(R, data=form(("empty.png", b""))), 400, "no_image", "empty.png")
        only_fields = aiohttp.MultipartWriter("form-data")
        only_fields.append("u2netp").set_content_disposition("form-data", name="model")
        await expect_error(await c.post(R, data=only_fields), 400, "no_image", "'file'")
        await expect_error(await c.post(R, data={"x": "1"}), 415, "no_image", "multipart")
        await expect_error(await c.post(R, data=form(("notes.txt", b"hello, not an image " * 20))), 415,
                           "not_an_image", "notes.txt")
        for name, bad in corrupt_variants(photo).items():
            await expect_error(await c.post(R, data=form((name, bad))), 400, "corrupt_image", name)
        await expect_error(await c.post(R, data=form(("a.png", photo), ("b.png", photo))), 400, "too_many_files",
                           "/cutout/api/batch")
        fd = FormData()
        fd.add_field("picture", photo, filename="p.png")
        await expect_error(await c.post(R, data=fd), 400, "unknown_parameter", "'picture'")
        await expect_error(await c.get(R + "?url=http://example.com/a.jpg"), 405, "method_not_allowed", "POST")
        # models
        body = await expect_error(await c.post(R + "?model=nosuchnet", data=photo, headers=img), 400,
                                  "unknown_model", "nosuchnet", "u2netp")
        assert "u2netp" in body["valid"]
        await expect_error(await c.post(R + "?model=u2net", data=photo, headers=img), 404, "model_not_installed",
                           "u2net")
        # limits (the service here has small limits)
        big = synthetic_photo(400, 300)
        await expect_error(await c.post(R, data=form(("big.png", big))), 413, "too_many_pixels", "big.png",
                           "megapixels")
        await expect_error(await c.post(R, data=form(("huge.bin", b"\x89PNG" + b"\x00" * 300_000))), 413,
                           "file_too_large", "huge.bin")
        many = form(*[(f"p{i}.png", photo) for i in range(4)])
        await expect_error(await c.post("/cutout/api/batch", data=many), 413, "too_many_files", "3")
        # a corrupt file in a batch names that file
        await expect_error(await c.post("/cutout/api/batch", data=form(("ok.png", photo), ("bad.png", photo[:80]))),
                           400, "corrupt_image", "bad.png")
        # nothing was processed twice or left pending
        return s

    s = serve(t, Limits(max_bytes=250_000, max_pixels=100_000, max_files=3))
    assert s._pending == 0


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels (header only: what a decompression bomb shows first)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused():
    async def t(c, s):
        for w, h in ((30000, 30000), (9000, 6000)):  # above Pillow's bomb guard; above our 50 MP limit
            await expect_error(await c.post("/cutout/api/remove", data=form(("bomb.png", png_header_only(w, h)))),
                               413, "too_many_pixels", "bomb.png")

    serve(t)


def test_refinement_options_run(photo):
    """refine/decontaminate/background go through Mask Refine / Composite Background's functions."""

    async def t(c, s):
        out = {}
        for q in ("refine=guided", "a=true", "dc=true", "background=blur", "background=checkerboard"):
            out[q] = await c.post("/cutout/api/remove?" + q, data=form(("p.png", photo)))
        return {k: (v.status, await v.read()) for k, v in out.items()}

    res = serve(t)
    for q, (status, body) in res.items():
        assert status == 200, (q, body)
        assert png(body).size == (200, 150)


def test_request_options_are_the_pipelines_with_the_one_defaults_table():
    """A request becomes the pipeline's CutoutOptions through the shared parsers; the only default
    that differs from the nodes' is the documented API_DEFAULTS table."""
    from cutout.options import Background, CutoutOptions, RefineOptions, parse_background

    assert P.cutout_options(P.parse({}), "u2netp", "cpu") == CutoutOptions(**P.API_DEFAULTS)
    assert set(P.API_DEFAULTS) <= {f for f in CutoutOptions.__dataclass_fields__}
    o = P.cutout_options(P.parse({"background": "#336699", "dc": "1", "refine": "guided", "ppm": "1"}), "u2netp", "cpu")
    assert o == CutoutOptions(post_process=True, refine=RefineOptions(edge_refinement="guided filter"),
                              decontaminate=True, background=parse_background("#336699"))
    assert o.background == Background("color", color=(0x33 / 255, 0x66 / 255, 0x99 / 255))
    o = P.cutout_options(P.parse({"bgc": "0,0,255,128", "om": "0"}), "u2netp", "cpu")
    assert o.background.opacity == 128 / 255 and o.form == "rgba"
    assert P.cutout_options(P.parse({"om": "true"}), "u2netp", "cpu").form == "mask"
    assert P.cutout_options(P.parse({"a": "true"}), "u2netp", "cpu").refine.edge_refinement == "matting"


# ---------------------------------------------------------------------------- info routes
def test_models_route(tmp_path, monkeypatch):
    home = tmp_path / "u2net"
    home.mkdir()
    shutil.copyfile(ROOT / "cutout" / "models" / "u2netp.onnx", home / "my_net.onnx")
    monkeypatch.setenv("U2NET_HOME", str(home))
    photo = synthetic_photo(64, 48)

    async def t(c, s):
        r = await c.get("/cutout/api/models")
        assert r.status == 200
        data = await r.json()
        r2 = await c.post("/cutout/api/remove?model=my_net", data=photo, headers={"Content-Type": "image/png"})
        assert r2.status == 200, await r2.text()
        data["runtime_after"] = (await (await c.get("/cutout/api/models")).json())["runtime"]
        return data

    data = serve(t)
    import onnxruntime

    rt = data["runtime"]  # which build and provider: shown on the page
    assert rt["version"] == onnxruntime.__version__ and "CPUExecutionProvider" in rt["available_providers"]
    assert rt["distributions"] and all(d.startswith("onnxruntime") for d in rt["distributions"])
    assert data["runtime_after"]["in_use"].get("my_net (cpu)") == "CPUExecutionProvider", data["runtime_after"]
    rows = {m["name"]: m for m in data["models"]}
    assert data["default"] == "u2netp"
    assert rows["u2netp"]["installed"] and rows["u2netp"]["embedded"]
    assert not rows["u2net"]["installed"] and not rows["u2net"]["downloadable"]
    assert rows["my_net"]["installed"] and rows["my_net"]["family"] == "custom"
    assert set(rows) >= {"u2net", "isnet-general-use", "birefnet-general"}
    f = data["features"]  # what the page offers; everything is part of the pack
    assert f["refine"] == ["none", "guided", "matting"] and f["decontaminate"] is True
    assert f["backgrounds"] == ["transparent", "colour", "blur", "checkerboard"]


def test_openapi_describes_every_route_and_parameter():
    async def t(c, s):
        r = await c.get("/cutout/api/openapi.json")
        assert r.status == 200
        return await r.json(), [(d.method, d.path) for d in s.route_defs()]

    spec, routes = serve(t)
    assert spec["openapi"].startswith("3.")
    for method, path in routes:
        if "{" in path or path == "/cutout":
            continue
        assert method.lower() in spec["paths"][path], path
    try:
        from openapi_spec_validator import validate
    except ImportError:
        validate = None
    if validate is not None:  # requirements-dev.txt; the structural checks below run regardless
        validate(spec)
    names = {p["name"] for p in spec["paths"]["/cutout/api/remove"]["post"]["parameters"]}
    assert names == set(P.VALID)
    assert "50 MB per file" in spec["info"]["description"]


def test_page_is_served_and_self_contained():
    async def t(c, s):
        r = await c.get("/cutout", allow_redirects=False)
        assert r.status == 302 and r.headers["Location"] == "/cutout/"
        out = {}
        for path in ("/cutout/", "/cutout/page/app.js", "/cutout/page/style.css"):
            r = await c.get(path)
            assert r.status == 200, path
            out[path] = await r.text()
        assert (await c.get("/cutout/page/api.py")).status == 404
        assert (await c.get("/cutout/page/..%2f__init__.py")).status == 404
        return out

    files = serve(t)
    assert "<script src=\"page/app.js\">" in files["/cutout/"]
    for path, text in files.items():  # works offline: no CDN, no external URL of any kind
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path


# ---------------------------------------------------------------------------- concurrency
def test_twenty_concurrent_requests_share_one_model_load():
    distinct = [synthetic_photo(96 + 8 * i, 72, seed=i) for i in range(5)]
    expected_distinct = [node_alpha(p) for p in distinct]
    photos = [distinct[i % 5] for i in range(20)]
    expected = [expected_distinct[i % 5] for i in range(20)]
    STORE.clear()  # the first request loads u2netp; the 19 others must wait for that one load
    before = STORE.load_count.get(("u2netp", "cpu"), 0)

    async def t(c, s):
        async def one(i):
            r = await c.post(f"/cutout/api/remove?om=true", data=form((f"p{i}.png", photos[i])))
            return i, r.status, await r.read()

        tasks = [asyncio.create_task(one(i)) for i in range(20)]
        await asyncio.sleep(0)
        # the event loop stays free while the worker thread cuts out: a cheap route answers
        # before the model work is over
        r = await c.get("/cutout/api/openapi.json")
        assert r.status == 200
        unfinished = sum(not t.done() for t in tasks)
        return await asyncio.gather(*tasks), unfinished

    results, unfinished = serve(t)
    assert unfinished > 0
    for i, status, body in results:
        assert status == 200, body
        np.testing.assert_array_equal(np.asarray(png(body)), expected[i])
    assert STORE.load_count[("u2netp", "cpu")] == before + 1


def test_too_many_waiting_requests_get_503():
    photo = synthetic_photo(64, 48)

    async def t(c, s):
        rs = await asyncio.gather(*[c.post("/cutout/api/remove", data=form(("p.png", photo))) for _ in range(6)])
        return [(r.status, r.headers.get("Retry-After")) for r in rs]

    got = serve(t, Limits(max_pending=2))
    assert sum(st == 200 for st, _ in got) >= 2
    assert any(st == 503 and ra for st, ra in got)
    assert all(st in (200, 503) for st, _ in got)


# ---------------------------------------------------------------------------- ComfyUI integration points
def test_waits_for_a_running_prompt(monkeypatch):
    busy = {"n": 1}
    monkeypatch.setattr(comfy_glue, "prompts_pending", lambda: busy["n"])
    photo = synthetic_photo(64, 48)

    async def t(c, s):
        task = asyncio.create_task(c.post("/cutout/api/remove", data=form(("p.png", photo))))
        await asyncio.sleep(1.0)
        waited = not task.done()
        busy["n"] = 0  # the prompt finished
        r = await task
        return waited, r.status

    waited, status = serve(t)
    assert waited and status == 200


def test_gives_up_on_a_busy_comfy_with_503(monkeypatch):
    monkeypatch.setattr(comfy_glue, "prompts_pending", lambda: 2)

    async def t(c, s):
        r = await c.post("/cutout/api/remove", data=form(("p.png", synthetic_photo(64, 48))))
        assert r.headers.get("Retry-After")
        return await expect_error(r, 503, "comfy_busy", "CUTOUT_API_BUSY_WAIT")

    serve(t, Limits(busy_wait=0.3))


def test_detached_worker_never_touches_comfy_interrupt_or_progress(monkeypatch):
    calls = []
    fake_mm = types.SimpleNamespace(throw_exception_if_processing_interrupted=lambda: calls.append("interrupt"))
    fake_comfy = types.ModuleType("comfy")
    fake_comfy.model_management = fake_mm
    monkeypatch.setitem(sys.modules, "comfy", fake_comfy)
    monkeypatch.setitem(sys.modules, "comfy.model_management", fake_mm)
    monkeypatch.setattr(comfy_glue, "IN_COMFY", True)
    comfy_glue.check_interrupt()
    assert calls == ["interrupt"]  # attached (a prompt's thread): the interrupt point works
    with comfy_glue.detached():
        comfy_glue.check_interrupt()
        assert comfy_glue.Progress(3)._bar is None
    assert calls == ["interrupt"]


def test_register_routes_on_a_comfy_like_server(monkeypatch):
    from cutout import service as service_pkg

    table = web.RouteTableDef()
    fake_server = types.ModuleType("server")
    fake_server.PromptServer = types.SimpleNamespace(instance=types.SimpleNamespace(
        routes=table, prompt_queue=types.SimpleNamespace(get_tasks_remaining=lambda: 3)))
    monkeypatch.setitem(sys.modules, "server", fake_server)
    monkeypatch.setattr(comfy_glue, "IN_COMFY", True)
    for name, value in (("comfy_model_dirs", []), ("comfy_model_files", []), ("temp_directory", None)):
        monkeypatch.setattr(comfy_glue, name, lambda v=value: v)  # no folder_paths in this fake
    monkeypatch.setattr(service_pkg, "_service", None)
    assert service_pkg.register() is True
    assert comfy_glue.prompts_pending() == 3
    paths = {(r.method, r.path) for r in table}
    assert ("POST", "/cutout/api/remove") in paths and ("GET", "/cutout/") in paths
    assert service_pkg.register() is True  # a second call adds nothing
    assert len(list(table)) == len(paths)

    async def t():  # ComfyUI does app.add_routes(routes) after loading the packs
        app = web.Application()
        app.add_routes(table)
        async with TestClient(TestServer(app)) as c:
            return (await c.get("/cutout/api/models")).status

    assert asyncio.run(t()) == 200


def test_service_can_be_switched_off(monkeypatch):
    from cutout import service as service_pkg

    monkeypatch.setenv("CUTOUT_SERVICE", "0")
    monkeypatch.setattr(comfy_glue, "register_routes", lambda add: pytest.fail("registered although switched off"))
    assert service_pkg.register() is False


def test_register_is_a_no_op_outside_comfy(monkeypatch):
    from cutout import service as service_pkg

    monkeypatch.setattr(comfy_glue, "IN_COMFY", False)
    assert comfy_glue.register_routes(lambda table: pytest.fail("called")) is False
    assert comfy_glue.prompts_pending() == 0
    monkeypatch.setattr(service_pkg, "_service", None)
    assert service_pkg.register() is False


def test_nothing_is_left_in_the_temp_folder(tmp_path, monkeypatch, photo):
    temp = tmp_path / "comfy_temp"
    monkeypatch.setattr(comfy_glue, "temp_directory", lambda: temp)
    monkeypatch.setattr(api_mod, "_SPOOL", 1000)  # force the zip to spill to disk
    monkeypatch.chdir(tmp_path)
    seen = []
    real_spool, real_buffer = api_mod._spool, api_mod.UploadBuffer

    def spy():
        f = real_spool()
        seen.append(f)
        return f

    class SpyBuffer(real_buffer):
        def __init__(self, *a):
            super().__init__(*a)
            seen.append(self)

    monkeypatch.setattr(api_mod, "_spool", spy)
    monkeypatch.setattr(api_mod, "UploadBuffer", SpyBuffer)

    async def t(c, s):
        r = await c.post("/cutout/api/batch", data=form(("a.png", photo), ("b.png", photo)))
        assert r.status == 200
        await r.read()
        bad = await c.post("/cutout/api/remove", data=form(("x.png", photo[:100])))
        assert bad.status == 400

    serve(t, Limits(memory_bytes=1000))  # uploads beyond 1000 bytes in memory go to disk
    ups = [f for f in seen if isinstance(f, SpyBuffer)]
    assert len(ups) == 3 and ups[0].spilled and ups[1].spilled  # the photos went to disk (the 100 bytes did not)...
    assert any(f._rolled for f in seen if not isinstance(f, SpyBuffer))
    assert all(f.closed for f in seen if not isinstance(f, SpyBuffer))
    assert all(f._file is None and f._mem is None for f in seen if isinstance(f, SpyBuffer))  # closed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["comfy_temp"]  # ...only into the temp folder
    assert list(temp.iterdir()) == []  # ...and nothing is left there
