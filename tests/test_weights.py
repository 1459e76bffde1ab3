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


def test_lookup_order_own_then_comfy_then_rembg_layouts(tmp_path, monkeypatch):
    own, comfy_dir = tmp_path / "models" / "cutout", tmp_path / "models" / "rembg"
    legacy, rembg = tmp_path / "u2net_legacy", tmp_path / "rembg_home"
    for d in (comfy_dir, legacy, rembg):
        d.mkdir(parents=True)
    monkeypatch.delenv("U2NET_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("REMBG_HOME", str(rembg))
    monkeypatch.setattr(comfy_glue, "comfy_models_dir", lambda: tmp_path / "models")
    monkeypatch.setattr(comfy_glue, "comfy_model_dirs", lambda: [comfy_dir])
    spec = get_spec("u2netp")
    assert weights.resolve(spec, allow_download=False) == EMBEDDED
    old_flat = tmp_path / "xdg" / ".u2net" / "u2netp.onnx"  # rembg < 2.0.86: $XDG_DATA_HOME/.u2net
    old_flat.parent.mkdir(parents=True)
    shutil.copy(EMBEDDED, old_flat)
    assert weights.resolve(spec, allow_download=False) == old_flat
    new_layout = rembg / "models" / "u2netp" / "u2netp.onnx"  # rembg 2.0.86: REMBG_HOME/models/<model>/
    new_layout.parent.mkdir(parents=True)
    shutil.copy(EMBEDDED, new_layout)
    assert weights.resolve(spec, allow_download=False) == new_layout
    shutil.copy(EMBEDDED, comfy_dir / "u2netp.onnx")
    assert weights.resolve(spec, allow_download=False) == comfy_dir / "u2netp.onnx"
    own.mkdir()
    shutil.copy(EMBEDDED, own / "u2netp.onnx")
    assert weights.resolve(spec, allow_download=False) == own / "u2netp.onnx"
    assert weights.download_dir() == own  # downloads go to the pack's own folder only


def test_rembg_home_follows_rembg_2_0_86(tmp_path, monkeypatch):
    """Same rules as rembg's sessions/base.py: U2NET_HOME wins, then REMBG_HOME, then XDG, then ~/.rembg."""
    from rembg.sessions.base import BaseSession

    for env in ({"U2NET_HOME": str(tmp_path / "u")}, {"REMBG_HOME": str(tmp_path / "r")},
                {"XDG_DATA_HOME": str(tmp_path / "x")}, {}):
        for k in ("U2NET_HOME", "REMBG_HOME", "XDG_DATA_HOME"):
            monkeypatch.delenv(k, raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        assert weights.rembg_home() == Path(BaseSession.rembg_home()), env
        assert weights.legacy_rembg_home() == Path(BaseSession.legacy_home()), env


def test_own_folder_outside_comfyui(tmp_path, monkeypatch):
    monkeypatch.setattr(comfy_glue, "comfy_models_dir", lambda: None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert weights.own_dir() == tmp_path / "comfyui-cutout" / "models"
    monkeypatch.setenv("CUTOUT_MODELS_DIR", str(tmp_path / "mine"))
    assert weights.own_dir() == tmp_path / "mine"


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def test_bad_hash_in_a_foreign_folder_is_skipped_named_and_left_alone(tmp_path, monkeypatch, caplog):
    """A wrong-hash silueta.onnx in rembg's folders or models/rembg: never renamed, moved or deleted."""
    legacy = Path(weights.legacy_rembg_home())
    comfy_dir = tmp_path / "models" / "rembg"
    comfy_dir.mkdir(parents=True)
    monkeypatch.setattr(comfy_glue, "comfy_model_dirs", lambda: [comfy_dir])
    truncated = EMBEDDED.read_bytes()[:1000]
    for folder in (legacy, comfy_dir, Path(weights.rembg_home()) / "models" / "u2netp"):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "u2netp.onnx").write_bytes(truncated)
    before = {d: _tree(d) for d in (legacy, comfy_dir)}
    assert weights.resolve(get_spec("u2netp"), allow_download=False) == EMBEDDED
    assert weights.resolve(get_spec("u2netp"), allow_download=False) == EMBEDDED
    assert {d: _tree(d) for d in (legacy, comfy_dir)} == before
    for folder in (legacy, comfy_dir):
        assert f"{folder / 'u2netp.onnx'}: md5" in caplog.text and "left as it is" in caplog.text
    assert caplog.text.count(f"{comfy_dir / 'u2netp.onnx'}: md5") == 1  # named once, not on every look


def test_model_list_route_never_changes_the_disk(tmp_path, monkeypatch):
    """What GET /cutout/api/models runs: with wrong-hash files everywhere, nothing on disk changes."""
    from cutout.service.api import CutoutService

    legacy = Path(weights.legacy_rembg_home())
    (legacy / "silueta.onnx").write_bytes(b"not silueta")
    (legacy / "u2net.onnx").write_bytes(EMBEDDED.read_bytes()[:5000])
    own = weights.own_dir()
    own.mkdir(parents=True)
    (own / "isnet-anime.onnx").write_bytes(b"half a download")
    before = (_tree(legacy), _tree(own))
    rows = {r["name"]: r for r in CutoutService().model_list()["models"]}
    assert not rows["silueta"]["installed"] and not rows["isnet-anime"]["installed"]
    assert (_tree(legacy), _tree(own)) == before


def test_missing_model_message_names_url_and_path(tmp_path, monkeypatch):
    monkeypatch.setenv("CUTOUT_MODELS_DIR", str(tmp_path))
    spec = get_spec("u2net")
    with pytest.raises(weights.ModelNotAvailableError) as e:
        weights.resolve(spec, allow_download=False)
    msg = str(e.value)
    assert spec.url in msg and str(tmp_path / "u2net.onnx") in msg and spec.md5 in msg


def test_no_network_message_names_url_and_path(tmp_path, monkeypatch):
    monkeypatch.setenv("CUTOUT_MODELS_DIR", str(tmp_path))
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
