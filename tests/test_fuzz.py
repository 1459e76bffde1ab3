"""Fuzzing (hypothesis, bounded: about a minute in all): the nodes' widgets and tensors, Save Image
Folder's paths, and the HTTP API's parameters and bodies get random and adversarial values.

What must hold for every example: a node either works (outputs finite, in 0..1, the right shape)
or raises ``CutoutInputError`` naming itself and an input; the API never answers 500 and never
sends a traceback; nothing is written outside the output and temp folders.
"""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cutout.imaging.tensors import CutoutInputError
from cutout.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

FUZZ = settings(max_examples=int(os.environ.get("CUTOUT_FUZZ_EXAMPLES", 40)), deadline=None,
                suppress_health_check=list(HealthCheck), derandomize=True)

nasty_floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(
    [0.0, -0.0, 1e-300, -1.0, 1.0, 1e308, float("nan"), float("inf"), -float("inf")]))
nasty_ints = st.one_of(st.integers(-(2 ** 70), 2 ** 70), st.sampled_from([0, -1, 1, 2 ** 31, -(2 ** 31)]))
nasty_text = st.one_of(st.text(max_size=40), st.sampled_from(
    ["", " ", "\x00", "..", ".", "/", "\\", "a" * 300, "NaN", "inf", "#GGGGGG", "rgb(1,2)", "off", "matting"]))
odd_values = st.one_of(nasty_floats, nasty_ints, nasty_text, st.none(), st.booleans(), st.just([1, 2]))


def _widgets(key):
    spec = NODE_CLASS_MAPPINGS[key].INPUT_TYPES()
    return {n: d for g in ("required", "optional") for n, d in (spec.get(g) or {}).items()}


def _value_for(decl):
    kind = decl[0]
    if kind == "FLOAT":
        return st.one_of(nasty_floats, st.floats(decl[1].get("min", 0), decl[1].get("max", 1)), odd_values)
    if kind == "INT":
        lo, hi = decl[1].get("min", 0), decl[1].get("max", 8)
        return st.one_of(st.integers(lo, min(hi, lo + 8)), nasty_ints, odd_values)
    if kind == "BOOLEAN":
        return st.booleans()
    if isinstance(kind, list):
        return st.one_of(st.sampled_from(kind), nasty_text)
    if kind == "STRING":
        return nasty_text
    return None


def _widget_strategy(key, skip=()):
    ws = {n: _value_for(d) for n, d in _widgets(key).items() if n not in skip}
    return st.fixed_dictionaries({}, optional={n: s for n, s in ws.items() if s is not None})


@st.composite
def tensors(draw, kind="image"):
    b, h, w = draw(st.integers(1, 2)), draw(st.integers(1, 12)), draw(st.integers(1, 12))
    shape = (b, h, w, draw(st.sampled_from([1, 3, 4]))) if kind == "image" else (b, h, w)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(draw(st.integers(0, 99))))
    if draw(st.booleans()):
        x.view(-1)[draw(st.integers(0, x.numel() - 1))] = draw(st.one_of(
            st.floats(width=32), st.sampled_from([float("nan"), float("inf"), -float("inf"), -3.0, 7.0])))
    if draw(st.booleans()):
        x = x.to(draw(st.sampled_from([torch.float16, torch.float64, torch.uint8])))
    return x


def _check_node_result(display, run):
    try:
        out = run()
    except CutoutInputError as e:
        assert str(e).startswith(f"{display}: input '"), e
        return None
    for t in out if isinstance(out, tuple) else ():
        if isinstance(t, torch.Tensor):
            assert torch.isfinite(t).all(), "NaN/inf in an output"
            assert t.min() >= 0 and t.max() <= 1
    return out


@FUZZ
@given(tensors("mask"), st.one_of(st.none(), tensors("image")), _widget_strategy("CutoutMaskRefine", ("mask", "image")))
def test_fuzz_mask_refine(mask, image, widgets):
    node = NODE_CLASS_MAPPINGS["CutoutMaskRefine"]()
    widgets.pop("temporal_mode", None) if widgets.get("temporal_mode") == "motion" else None  # slow optical flow
    out = _check_node_result(NODE_DISPLAY_NAME_MAPPINGS["CutoutMaskRefine"],
                             lambda: node.run(mask, image=image, **widgets))
    if out is not None:
        assert out[0].dim() == 3


@FUZZ
@given(tensors("image"), st.one_of(st.none(), tensors("mask")), st.one_of(st.none(), tensors("image")),
       _widget_strategy("CutoutCompositeBackground", ("image", "mask", "background_image")))
def test_fuzz_composite(image, mask, bg, widgets):
    node = NODE_CLASS_MAPPINGS["CutoutCompositeBackground"]()
    out = _check_node_result(NODE_DISPLAY_NAME_MAPPINGS["CutoutCompositeBackground"],
                             lambda: node.run(image, mask=mask, background_image=bg, **widgets))
    if out is not None:
        assert out[0].shape[:3] == (image.shape[0], image.shape[1], image.shape[2])


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(tensors("image"), _widget_strategy("CutoutRemoveBackground", ("image", "model")))
def test_fuzz_remove_background(image, widgets):
    node = NODE_CLASS_MAPPINGS["CutoutRemoveBackground"]()
    _check_node_result(NODE_DISPLAY_NAME_MAPPINGS["CutoutRemoveBackground"],
                       lambda: node.run(image, "u2netp", **widgets))


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def fuzz_dirs(tmp_path_factory, monkeypatch):
    from cutout import comfy_glue
    from cutout.dataset import paths

    base = tmp_path_factory.mktemp("fuzz")
    inp, out, temp = base / "input", base / "output", base / "temp"
    for d in (inp, out, temp):
        d.mkdir()
    monkeypatch.setattr(comfy_glue, "input_directory", lambda: inp)
    monkeypatch.setattr(comfy_glue, "output_directory", lambda: out)
    monkeypatch.setattr(comfy_glue, "temp_directory", lambda: temp)
    monkeypatch.delenv(paths.ALLOW_ENV, raising=False)
    monkeypatch.chdir(base)
    return base, out, temp


rel_paths = st.one_of(nasty_text, st.lists(st.sampled_from(["a", "..", ".", "", "b.png", "\x00", "c" * 250, "/"]),
                                             min_size=1, max_size=4).map("/".join))


@FUZZ
@given(tensors("image"), st.lists(rel_paths, min_size=1, max_size=2), nasty_text,
       _widget_strategy("CutoutSaveImageFolder", ("images", "destination", "relative_path", "source_folder", "mask")))
def test_fuzz_save_image_folder_writes_only_into_the_output_folder(fuzz_dirs, image, rels, destination, widgets):
    base, out, temp = fuzz_dirs
    before = _files(base)
    node = NODE_CLASS_MAPPINGS["CutoutSaveImageFolder"]()
    kw = {k: [v] for k, v in widgets.items()}
    kw.setdefault("format", ["png"])
    kw.setdefault("existing", ["overwrite"])
    kw.setdefault("background", ["transparent"])
    try:
        node.save([image], [destination or "d"], relative_path=rels, **kw)
    except CutoutInputError as e:
        assert str(e).startswith(NODE_DISPLAY_NAME_MAPPINGS["CutoutSaveImageFolder"] + ": input '"), e
    new = _files(base) - before
    assert all(out in p.parents for p in new), sorted(map(str, new))


# ---------------------------------------------------------------------------- the HTTP API

class _Server:
    """The service on a real loopback socket in a thread, for plain blocking requests."""

    def __init__(self):
        from aiohttp import web

        from cutout.service.api import CutoutService, Limits, mount

        self.loop = asyncio.new_event_loop()
        app = web.Application()
        self.service = mount(app, CutoutService(Limits(max_pixels=40_000, max_files=4, max_bytes=300_000)))
        self.runner = web.AppRunner(app)
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.runner.setup())
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            self.loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(30)

    def request(self, method, path, body=b"", headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, r.getheader("Content-Type") or "", r.read()
        finally:
            c.close()

    def close(self):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


@pytest.fixture(scope="module")
def server():
    pytest.importorskip("aiohttp")
    s = _Server()
    yield s
    s.close()


def _png(w=16, h=12) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(w * h).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


PNG = _png()
from cutout.service.params import VALID  # noqa: E402

param_names = st.one_of(st.sampled_from(VALID), st.sampled_from(["url", "vm", "extras", "x", ""]), st.text(max_size=8))
bodies = st.one_of(st.just(PNG), st.binary(max_size=400), st.integers(0, len(PNG)).map(lambda n: PNG[:n]),
                   st.integers(8, len(PNG) - 1).map(lambda n: PNG[:n] + b"\xff" + PNG[n + 1:]))


def _multipart(files, fields, boundary, mutate):
    out = b""
    for k, v in fields.items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n").encode("utf-8", "replace")
        out += v.encode("utf-8", "replace") + b"\r\n"
    for name, data in files:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
                "Content-Type: image/png\r\n\r\n").encode("utf-8", "replace") + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    if mutate == "truncate":
        out = out[: len(out) // 2]
    elif mutate == "drop_final":
        out = out[: -len(boundary) - 6]
    return out


def _check_response(status, ctype, body):
    assert status != 500 and status < 500 or status == 503, (status, body[:300])
    assert b"Traceback" not in body
    if status != 200:
        j = json.loads(body)
        assert j["error"] and j["message"] and j["error"] != "internal_error", j


@FUZZ
@given(st.dictionaries(param_names, nasty_text, max_size=4), bodies, st.sampled_from(["image/png", "application/json",
       "application/x-www-form-urlencoded", "text/plain", ""]))
def test_fuzz_api_raw_bodies_and_parameters(server, params, body, ctype):
    from urllib.parse import quote

    q = "&".join(f"{quote(k)}={quote(v)}" for k, v in params.items())
    headers = {"Content-Type": ctype} if ctype else {}
    _check_response(*server.request("POST", "/cutout/api/remove?" + q, body, headers))


@FUZZ
@given(st.lists(st.tuples(nasty_text, bodies), max_size=5), st.dictionaries(param_names, nasty_text, max_size=3),
       st.sampled_from(["XyZ", "a" * 70, "-", "b c"]), st.sampled_from(["none", "truncate", "drop_final"]),
       st.sampled_from(["/cutout/api/remove", "/cutout/api/batch"]))
def test_fuzz_api_multipart(server, files, fields, boundary, mutate, route):
    body = _multipart(files, fields, boundary, mutate)
    _check_response(*server.request("POST", route, body, {"Content-Type": f'multipart/form-data; boundary="{boundary}"'}))


def test_fuzz_api_left_nothing_behind(server, tmp_path):
    assert server.service._pending == 0 and server.service.memory.used == 0
