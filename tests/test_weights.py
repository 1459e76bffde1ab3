"""Where weights are looked for, how they are verified, and what happens when they are missing."""

import dataclasses
import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import pytest

from cutout import comfy_glue
from cutout.models import weights
from cutout.models.catalog import CATALOG, UnknownModelError, get_spec

EMBEDDED = Path(weights.EMBEDDED_DIR) / "u2netp.onnx"


def fake_spec(payload: bytes, name="tiny", url="https://example.invalid/tiny.onnx"):
    return dataclasses.replace(CATALOG["u2netp"], name=name, url=url, md5=hashlib.md5(payload).hexdigest(),
                               embedded=False)


def test_embedded_default_is_verified_and_used_offline(monkeypatch):
    monkeypatch.setenv("CUTOUT_OFFLINE", "1")
    assert weights.resolve(get_spec("u2netp")) == EMBEDDED
    assert weights.file_md5(EMBEDDED) == "8e83ca70e441ab06c318d82300c84806"


def test_lookup_order_comfy_folder_then_rembg_home(tmp_path, monkeypatch):
    comfy_dir, home = tmp_path / "comfy_models_rembg", tmp_path / "u2net_home"
    comfy_dir.mkdir(), home.mkdir()
    monkeypatch.setenv("U2NET_HOME", str(home))
    monkeypatch.setattr(comfy_glue, "comfy_model_dirs", lambda: [comfy_dir])
    spec = get_spec("u2netp")
    shutil.copy(EMBEDDED, home / "u2netp.onnx")
    assert weights.resolve(spec, allow_download=False) == home / "u2netp.onnx"  # rembg's download is reused
    shutil.copy(EMBEDDED, comfy_dir / "u2netp.onnx")
    assert weights.resolve(spec, allow_download=False) == comfy_dir / "u2netp.onnx"  # ComfyUI's folder first
    assert weights.download_dir() == comfy_dir


def test_bad_hash_is_set_aside_and_never_used(tmp_path, monkeypatch, caplog):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("U2NET_HOME", str(home))
    truncated = home / "u2netp.onnx"
    truncated.write_bytes(EMBEDDED.read_bytes()[:1000])
    assert weights.resolve(get_spec("u2netp"), allow_download=False) == EMBEDDED
    assert not truncated.exists()
    assert len(list(home.glob("u2netp.onnx.*.bad"))) == 1
    assert "does not match" in caplog.text


def test_missing_model_message_names_url_and_path(tmp_path, monkeypatch):
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    spec = get_spec("u2net")
    with pytest.raises(weights.ModelNotAvailableError) as e:
        weights.resolve(spec, allow_download=False)
    msg = str(e.value)
    assert spec.url in msg and str(tmp_path / "u2net.onnx") in msg and spec.md5 in msg


def test_no_network_message_names_url_and_path(tmp_path, monkeypatch):
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    monkeypatch.setattr(weights, "ALLOWED_URL_SCHEMES", ("https://", "http://127.0.0.1"))
    spec = fake_spec(b"x", url="http://127.0.0.1:9/tiny.onnx")  # discard port: connection refused
    with pytest.raises(weights.ModelNotAvailableError) as e:
        weights.resolve(spec)
    msg = str(e.value)
    assert "could not be downloaded" in msg and spec.url in msg and str(tmp_path / "tiny.onnx") in msg
    assert not any(tmp_path.iterdir())  # no partial file left


def test_non_https_url_is_refused(tmp_path):
    with pytest.raises(weights.ModelNotAvailableError, match="non-HTTPS"):
        weights.download(fake_spec(b"x", url="http://127.0.0.1/x.onnx"), tmp_path)


@pytest.fixture
def http_server(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(root), **k)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_download_is_atomic_hash_checked_and_reported(tmp_path, monkeypatch, http_server):
    root, base = http_server
    monkeypatch.setattr(weights, "ALLOWED_URL_SCHEMES", ("https://", "http://127.0.0.1"))
    payload = b"onnx" * 5000
    (root / "tiny.onnx").write_bytes(payload)
    dest = tmp_path / "models"
    seen = []
    path = weights.download(fake_spec(payload, url=f"{base}/tiny.onnx"), dest, progress=lambda d, t: seen.append((d, t)))
    assert path == dest / "tiny.onnx" and path.read_bytes() == payload
    assert seen[-1] == (len(payload), len(payload))
    assert sorted(p.name for p in dest.iterdir()) == ["tiny.onnx"]

    wrong = fake_spec(b"something else", name="wrong", url=f"{base}/tiny.onnx")
    with pytest.raises(weights.ModelNotAvailableError, match="expected"):
        weights.download(wrong, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["tiny.onnx"]  # nothing half-written, nothing kept


def test_unknown_model_lists_the_choices():
    with pytest.raises(UnknownModelError) as e:
        get_spec("u2net_v9_from_an_old_workflow")
    assert "u2netp" in str(e.value) and "isnet-general-use" in str(e.value)


def test_catalog_covers_rembg_fixed_size_models():
    for name in ["u2net", "u2netp", "u2net_human_seg", "silueta", "isnet-general-use", "isnet-anime",
                 "birefnet-general", "birefnet-general-lite"]:
        spec = get_spec(name)
        assert spec.url.startswith("https://") and len(spec.md5) == 32 and spec.family.size in (320, 1024)
