"""The HTTP API under abuse: malformed multipart bodies, limits checked before bytes are kept,
upload memory bounded across concurrent hostile requests, ComfyUI's own upload limit, a
full temp folder, an abandoned batch, a custom ONNX that is not a segmenter (docs/reliability.md)."""

from __future__ import annotations

import asyncio
import errno
import io
import os
import shutil
import subprocess
import time
import zipfile

import numpy as np
import pytest

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import FormData  # noqa: E402
from PIL import Image  # noqa: E402

from cutout import comfy_glue  # noqa: E402
from cutout.service import api as api_mod  # noqa: E402
from cutout.service import uploads as uploads_mod  # noqa: E402
from cutout.service.api import CutoutService, Limits  # noqa: E402

from _api_client import serve  # noqa: E402
from _stand_in_onnx import not_a_segmenter  # noqa: E402

R, B = "/cutout/api/remove", "/cutout/api/batch"


def photo(w=48, h=40, seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


PNG = photo()


async def error(resp, status: int, code: str, *words: str) -> dict:
    body = await resp.json()
    assert resp.status == status, body
    assert body["error"] == code, body
    for w in words:
        assert w in body["message"], body
    return body


def multipart(parts, boundary="XyZ", end=True) -> bytes:
    out = b""
    for headers, data in parts:
        out += b"--" + boundary.encode() + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + data + b"\r\n"
    return out + (b"--" + boundary.encode() + b"--\r\n" if end else b"")


def _one(n=1) -> FormData:
    f = FormData()
    for i in range(n):
        f.add_field("file", PNG, filename=f"p{i}.png", content_type="image/png")
    return f


CD = b'Content-Disposition: form-data; name="file"; filename="a.png"'
MP = {"Content-Type": "multipart/form-data; boundary=XyZ"}
MALFORMED = {
    "missing_boundary": ({"Content-Type": "multipart/form-data"}, multipart([([CD], PNG)]), "boundary"),
    "empty_boundary": ({"Content-Type": 'multipart/form-data; boundary=""'}, multipart([([CD], PNG)]), "boundary"),
    "truncated_part": (MP, multipart([([CD], PNG)])[:-60], "EOF"),
    "no_closing_boundary": (MP, multipart([([CD], PNG)], end=False), "EOF"),
    "duplicate_header": (MP, multipart([([CD, b"Content-Type: image/png", b"Content-Type: text/plain"], PNG)]),
                         "Duplicate 'Content-Type'"),
    "nul_in_file_name": (MP, multipart([([b'Content-Disposition: form-data; name="file"; filename="a\x00b.png"'],
                                         PNG)]), "NUL"),
    "not_multipart_at_all": (MP, b"\x00" * 100, "boundary"),
    "nested_multipart": (MP, multipart([([b'Content-Disposition: form-data; name="file"',
                                          b"Content-Type: multipart/mixed; boundary=QQ"], b"--QQ\r\n\r\nx\r\n--QQ--")]),
                         "nested"),
    "header_line_too_long": (MP, multipart([([CD, b"X-A: " + b"a" * 20000], PNG)]), "8190"),
}


@pytest.mark.parametrize("route", [R, B])
@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_multipart_is_a_400_naming_the_problem(case, route):
    headers, body, word = MALFORMED[case]

    async def t(c, s):
        b = await error(await c.post(route, data=body, headers=headers), 400, "malformed_multipart", word)
        assert len(b["message"]) < 400
        return s

    s = serve(t)
    assert s._pending == 0 and s.memory.used == 0


def test_a_duplicate_content_disposition_and_an_encoded_nul_are_handled():
    """aiohttp takes one of two Content-Disposition headers; a NUL spelled filename*=…%00… is cleaned."""
    body = multipart([([CD, CD.replace(b"a.png", b"b.png")], PNG),
                      ([b"Content-Disposition: form-data; name=\"file\"; filename*=UTF-8''c%00d.png"], PNG)])

    async def t(c, s):
        r = await c.post(B, data=body, headers=MP)
        assert r.status == 200, await r.text()
        return zipfile.ZipFile(io.BytesIO(await r.read())).namelist()

    names = serve(t)
    assert len(names) == 2 and not any("\x00" in n for n in names), names


def test_busy_is_answered_before_a_byte_of_the_body_is_read():
    made = []

    class Spy(uploads_mod.UploadBuffer):
        def __init__(self, *a):
            super().__init__(*a)
            made.append(self)

    async def t(c, s):
        s._pending = s.limits.max_pending  # every slot taken
        r = await c.post(B, data=_one())
        await error(r, 503, "busy", "CUTOUT_API_MAX_PENDING")
        assert r.headers["Retry-After"]
        s._pending = 0
        return s

    orig = api_mod.UploadBuffer
    api_mod.UploadBuffer = Spy
    try:
        s = serve(t, Limits(max_pending=3))
    finally:
        api_mod.UploadBuffer = orig
    assert made == [] and s.memory.peak == 0


def test_request_limit_follows_comfyui_client_max_size(monkeypatch):
    monkeypatch.setattr(comfy_glue, "client_max_size", lambda: 300_000)
    big = [("file", os.urandom(120_000), f"p{i}.png") for i in range(3)]

    def fd():
        f = FormData()
        for name, data, fn in big:
            f.add_field(name, data, filename=fn, content_type="image/png")
        return f

    async def t(c, s):
        assert s.request_limit() == 300_000
        await error(await c.post(B, data=fd()), 413, "request_too_large", "MB")
        assert s.memory.peak == 0  # refused on Content-Length, before reading

        async def chunks():  # no Content-Length: refused while streaming, at the limit
            for _ in range(40):
                yield b"\x89PNG" + b"\x00" * 9996
        r = await c.post(R, data=chunks(), headers={"Content-Type": "image/png"})
        await error(r, 413, "request_too_large")
        return s

    s = serve(t)
    assert s.memory.used == 0

    async def t2(c, s):  # configured above ComfyUI's limit: that is the owner's choice
        r = await c.post(B, data=fd())
        await error(r, 415, "not_an_image")  # read in full, then found not to be an image
        return s.request_limit()

    assert serve(t2, Limits(max_request_bytes=1 << 20)) == 1 << 20


def test_default_request_limit_is_never_above_100_mb(monkeypatch):
    monkeypatch.setattr(comfy_glue, "client_max_size", lambda: 500 << 20)
    assert CutoutService(Limits()).request_limit() == 100 << 20
    monkeypatch.setattr(comfy_glue, "client_max_size", lambda: None)
    assert CutoutService(Limits()).request_limit() == 100 << 20


def test_too_many_parts_before_they_are_read():
    f = FormData()
    for i in range(60):
        f.add_field(f"x{i}", "1")
    f.add_field("file", PNG, filename="p.png", content_type="image/png")  # makes it multipart

    async def t(c, s):
        await error(await c.post(B, data=f), 413, "too_many_parts")
        r = await c.post(R, data=_one(2))
        await error(r, 400, "too_many_files", "takes one")
        return s

    assert serve(t, Limits(max_files=4)).memory.used == 0


def test_upload_memory_stays_within_the_budget_under_concurrent_hostile_batches():
    budget = 1 << 20

    def fd(k):
        f = FormData()
        for i in range(12):
            f.add_field("file", os.urandom(200_000), filename=f"r{k}_{i}.png", content_type="image/png")
        return f

    async def t(c, s):
        rs = await asyncio.gather(*[c.post(B, data=fd(k)) for k in range(4)])
        for r in rs:
            await error(r, 415, "not_an_image")
        return s

    s = serve(t, Limits(memory_bytes=budget))
    assert 0 < s.memory.peak <= budget and s.memory.used == 0


@pytest.fixture
def tiny_temp(tmp_path, monkeypatch):
    """The service's temp folder on a 256 KiB tmpfs (root), else a temp file that reports ENOSPC."""
    d = tmp_path / "tiny"
    d.mkdir()
    mounted = False
    if os.geteuid() == 0 and shutil.which("mount"):
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(d)],
                                 capture_output=True).returncode == 0
    if not mounted:
        class Full(io.BytesIO):
            def write(self, b):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(uploads_mod.tempfile, "TemporaryFile", lambda dir=None: Full())
    monkeypatch.setattr(api_mod, "_temp_dir", lambda: str(d))
    try:
        yield d
    finally:
        if mounted:
            subprocess.run(["umount", str(d)], capture_output=True)


def test_a_full_temp_folder_is_a_413_naming_it(tiny_temp):
    async def t(c, s):
        f = FormData()
        f.add_field("file", os.urandom(600_000), filename="big.png", content_type="image/png")
        return await error(await c.post(R, data=f), 413, "temp_folder_full", "No space left", str(tiny_temp))

    serve(t, Limits(memory_bytes=0))
    assert list(tiny_temp.iterdir()) == []


def test_an_abandoned_batch_is_dropped_and_the_next_request_is_served_promptly():
    imgs = [photo(320, 240, seed=i) for i in range(40)]

    async def t(c, s):
        f = FormData()
        for i, d in enumerate(imgs):
            f.add_field("file", d, filename=f"p{i}.png", content_type="image/png")
        task = asyncio.ensure_future(c.post(B, data=f))
        t0 = time.monotonic()
        while s.images_done < 2:
            assert time.monotonic() - t0 < 120, "the batch never started"
            await asyncio.sleep(0.02)
        task.cancel()  # the client goes away
        at_cancel = s.images_done
        with pytest.raises(asyncio.CancelledError):
            await task
        t1 = time.monotonic()
        r = await c.post(R, data=_one())
        assert r.status == 200, await r.text()
        return at_cancel, s.images_done, time.monotonic() - t1, s

    at_cancel, done, wait, s = serve(t)
    assert s.cancelled == 1
    assert done - 1 <= at_cancel + 2 < len(imgs), (at_cancel, done)  # stopped within an image or two
    assert s._pending == 0


def test_a_client_gone_while_queued_is_skipped_without_work(monkeypatch):
    calls = []
    real = CutoutService._process

    def counting(self, uploads, opts):
        calls.append(len(uploads))
        time.sleep(0.5)
        return real(self, uploads, opts)

    monkeypatch.setattr(CutoutService, "_process", counting)

    async def t(c, s):
        first = asyncio.ensure_future(c.post(R, data=_one()))
        await asyncio.sleep(0.2)
        second = asyncio.ensure_future(c.post(R, data=_one()))
        await asyncio.sleep(0.1)
        second.cancel()
        r = await first
        assert r.status == 200
        for _ in range(100):
            if s._pending == 0:
                break
            await asyncio.sleep(0.05)
        return s

    s = serve(t)
    assert calls == [1] and s.cancelled == 1


def test_custom_onnx_that_is_not_a_segmenter_is_a_422(models_dir, fresh_store):
    not_a_segmenter(models_dir / "classifier.onnx", "classifier")

    async def t(c, s):
        r = await c.post(R + "?model=classifier", data=PNG, headers={"Content-Type": "image/png"})
        return await error(r, 422, "model_incompatible", "classifier", "output 'out' of shape [1, 3]", "expected")

    assert serve(t)["model"] == "classifier"
