"""The cut-out service inside a real ComfyUI 0.3.75 (the e2e harness's ``comfy_server``).

Round trip against the Remove Background node run as a prompt in the same server, only-mask,
bgc, batch zip, errors through ComfyUI's middlewares, 20 concurrent requests on ONE model load
shared with the nodes, waiting behind a running prompt, and the /cutout/ page in Chromium.
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

comfy_env = pytest.importorskip("comfy_env", reason="the e2e harness (tests/e2e/conftest.py) is not here")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _page_driver import check_page_result, chromium_or_skip, drive_page  # noqa: E402

pytestmark = pytest.mark.e2e


# ---------------------------------------------------------------------------- plain-stdlib client
def multipart(files: list[tuple[str, bytes]], fields: dict | None = None) -> tuple[bytes, str]:
    boundary = "cutout-" + uuid.uuid4().hex
    out = io.BytesIO()
    for k, v in (fields or {}).items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    for name, data in files:
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
                  "Content-Type: application/octet-stream\r\n\r\n".encode())
        out.write(data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def call(server, path: str, files=None, fields=None, body=None, content_type=None, timeout=600):
    """(status, content type, body bytes, headers) of a request to the service."""
    if files is not None:
        body, content_type = multipart(files, fields)
    req = urllib.request.Request(server.url + path, data=body, method="POST" if body is not None else "GET",
                                 headers={"Content-Type": content_type} if content_type else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers.get_content_type(), r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get_content_type(), e.read(), e.headers


def image(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def error_of(status, ctype, data) -> dict:
    assert ctype == "application/json", (status, ctype, data[:200])
    return {"status": status, **json.loads(data)}


@pytest.fixture(scope="module")
def photo_bytes(photo) -> bytes:
    return Path(photo).read_bytes()


@pytest.fixture(scope="module")
def node_mask(comfy_server, photo) -> np.ndarray:
    """The Remove Background node's MASK for the photo, from a prompt in the same server (8-bit, as saved)."""
    name = comfy_server.put_input("service_e2e" + Path(photo).suffix, photo)
    prefix = "service_e2e_mask_" + uuid.uuid4().hex[:6]
    entry = comfy_server.run({
        "1": {"class_type": "LoadImage", "inputs": {"image": name}},
        "2": {"class_type": "CutoutRemoveBackground", "inputs": {"image": ["1", 0], "model": "u2netp", "device": "cpu"}},
        "3": {"class_type": "MaskToImage", "inputs": {"mask": ["2", 1]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": prefix}},
    })
    ref = entry["outputs"]["4"]["images"][0]
    return np.asarray(Image.open(comfy_server.output_path(ref)).convert("RGB"))[..., 0]


# ---------------------------------------------------------------------------- tests
def test_routes_are_registered_and_mirrored_under_api(comfy_server):
    assert "Cutout: service at /cutout/" in comfy_server.log_text()
    for path in ("/cutout/api/models", "/api/cutout/api/models"):
        status, ctype, data, _ = call(comfy_server, path)
        assert status == 200 and ctype == "application/json", (path, status)
        rows = {m["name"]: m for m in json.loads(data)["models"]}
        assert rows["u2netp"]["installed"]
    status, ctype, data, _ = call(comfy_server, "/cutout/")
    assert status == 200 and ctype == "text/html" and b"page/app.js" in data
    status, _, data, _ = call(comfy_server, "/cutout/api/openapi.json")
    assert status == 200 and "/cutout/api/remove" in json.loads(data)["paths"]


def test_round_trip_matches_the_node_prompt(comfy_server, photo, photo_bytes, node_mask):
    status, ctype, data, headers = call(comfy_server, "/cutout/api/remove", files=[(Path(photo).name, photo_bytes)])
    assert status == 200, data[:500]
    assert ctype == "image/png"
    out = image(data)
    src = Image.open(photo)
    assert out.mode == "RGBA" and out.size == src.size
    a = np.asarray(out)
    seen = a[..., 3] > 0  # the API keeps the photo's colours where the subject shows (dc off, rembg's meaning)
    assert np.array_equal(a[..., :3][seen], np.asarray(src.convert("RGB"))[seen])
    assert (a[..., :3][~seen] == 0).all()  # and nothing of the background under alpha 0 (clear_fill black)
    alpha = a[..., 3].astype(int)
    assert alpha.min() == 0 and alpha.max() == 255
    # SaveImage truncates 255*m, the API rounds it: the same mask differs by at most 1 level
    diff = alpha - node_mask.astype(int)
    assert diff.min() >= 0 and diff.max() <= 1, (diff.min(), diff.max())


def test_only_mask_bgc_and_raw_body(comfy_server, photo, photo_bytes):
    status, ctype, m, _ = call(comfy_server, "/cutout/api/remove?om=true", body=photo_bytes, content_type="image/png")
    assert status == 200 and image(m).mode == "L"
    status, _, cut, _ = call(comfy_server, "/cutout/api/remove", body=photo_bytes, content_type="image/png")
    assert status == 200
    np.testing.assert_array_equal(np.asarray(image(m)), np.asarray(image(cut))[..., 3])
    status, _, white, _ = call(comfy_server, "/cutout/api/remove", files=[("p.png", photo_bytes)],
                               fields={"bgc": "255,255,255,255"})
    assert status == 200
    w = np.asarray(image(white))
    assert (w[..., 3] == 255).all()
    bg = np.asarray(image(cut))[..., 3] == 0
    assert bg.any() and (w[bg][:, :3] == 255).all()


def test_batch_zip(comfy_server, photo, photo_bytes):
    small = io.BytesIO()
    Image.open(photo).convert("RGB").resize((160, 120)).save(small, "JPEG")
    status, ctype, data, headers = call(comfy_server, "/cutout/api/batch",
                                        files=[("one.png", photo_bytes), ("two.jpg", small.getvalue())])
    assert status == 200 and ctype == "application/zip", data[:300]
    z = zipfile.ZipFile(io.BytesIO(data))
    assert z.namelist() == ["one.png", "two.png"]
    sizes = [Image.open(z.open(n)).size for n in z.namelist()]
    assert sizes == [Image.open(photo).size, (160, 120)]
    assert all(Image.open(z.open(n)).mode == "RGBA" for n in z.namelist())


def test_errors_through_comfy(comfy_server, photo_bytes):
    # the server is shared: PreviewImage/MaskPreview of other tests leave ComfyUI_temp_* files there
    temp = comfy_server.base_dir / "temp"
    before = set(temp.iterdir()) if temp.exists() else set()
    e = error_of(*call(comfy_server, "/cutout/api/remove?colour=red", body=photo_bytes, content_type="image/png")[:3])
    assert e["status"] == 400 and e["error"] == "unknown_parameter" and "bgc" in e["valid"]
    e = error_of(*call(comfy_server, "/cutout/api/remove", files=[("x.txt", b"not an image at all")])[:3])
    assert e["status"] == 415 and "x.txt" in e["message"]
    e = error_of(*call(comfy_server, "/cutout/api/remove", files=[("cut.png", photo_bytes[:200])])[:3])
    assert e["status"] == 400 and e["error"] == "corrupt_image"
    e = error_of(*call(comfy_server, "/cutout/api/remove?model=u2net", body=photo_bytes, content_type="image/png")[:3])
    assert e["status"] == 404 and e["error"] == "model_not_installed"
    e = error_of(*call(comfy_server, "/cutout/api/remove", body=b"", content_type="image/png")[:3])
    assert e["status"] == 400 and e["error"] == "no_image"
    # the temp folder holds nothing of ours afterwards
    after = set(temp.iterdir()) if temp.exists() else set()
    assert after <= before, sorted(after - before)


def test_twenty_concurrent_requests_one_model_load(comfy_server, photo):
    small = io.BytesIO()
    Image.open(photo).convert("RGB").resize((128, 96)).save(small, "PNG")
    data = small.getvalue()
    results = [None] * 20
    loads_before = comfy_server.log_text().count("loaded model 'u2netp'")

    def one(i):
        results[i] = call(comfy_server, "/cutout/api/remove?om=1", files=[(f"p{i}.png", data)])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    bodies = set()
    for status, ctype, body, _ in results:
        assert status == 200 and ctype == "image/png", body[:300]
        assert image(body).size == (128, 96)
        bodies.add(body)
    assert len(bodies) == 1  # the same photo gives the same mask every time
    # one session for the whole server: nodes and API share it ("loaded model" is logged per load);
    # the node_mask prompt or an earlier request may have loaded it already
    loads_after = comfy_server.log_text().count("loaded model 'u2netp'")
    assert loads_after == max(loads_before, 1), (loads_before, loads_after)


def test_waits_behind_a_running_prompt(comfy_server, photo, photo_bytes):
    name = comfy_server.put_input("service_e2e_busy" + Path(photo).suffix, photo)
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": name}},
        "2": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "bilinear",
                                                      "width": 256, "height": 256, "crop": "disabled"}},
        "3": {"class_type": "RepeatImageBatch", "inputs": {"image": ["2", 0], "amount": 24}},
        "4": {"class_type": "CutoutRemoveBackground", "inputs": {"image": ["3", 0], "model": "u2netp", "device": "cpu"}},
        "5": {"class_type": "PreviewImage", "inputs": {"images": ["4", 0]}},
    }
    pid = comfy_server.post_prompt(prompt)
    t0 = time.time()
    while time.time() - t0 < 60:  # wait until it is running
        status, q = comfy_server.get("/queue")
        if any(item[1] == pid for item in q["queue_running"]):
            break
        time.sleep(0.05)
    else:
        pytest.fail("the prompt never started")
    status, _, _, _ = call(comfy_server, "/cutout/api/remove", body=photo_bytes, content_type="image/png")
    answered_ms = time.time() * 1000
    assert status == 200
    entry = comfy_server.wait(pid)
    done = [m for m in comfy_env.messages(entry, "execution_success")]
    assert done, entry["status"]
    assert answered_ms >= done[0]["timestamp"], "the API answered before the running prompt finished"


def test_page_in_chromium(comfy_server, tmp_path, photo):
    chromium_or_skip()
    second = tmp_path / "second.jpg"
    Image.open(photo).convert("RGB").resize((300, 200)).save(second, quality=90)
    photos = [Path(photo), second]
    shot = os.environ.get("CUTOUT_DOCS_SCREENSHOT")
    result = drive_page(comfy_server.url + "/cutout/", photos, tmp_path,
                        screenshot=Path(shot) if shot else tmp_path / "page.png")
    check_page_result(result, photos, comfy_server.url)
