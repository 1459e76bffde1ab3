"""The shared session store: one load per (model, device), even under concurrency."""

import logging
import sys
import threading

import pytest

from cutout.models import session as session_mod


@pytest.fixture
def store(monkeypatch):
    fresh = session_mod.SessionStore()
    monkeypatch.setattr(session_mod, "STORE", fresh)
    return fresh


def test_one_load_for_many_calls(store):
    first = session_mod.get_session("u2netp")
    for _ in range(5):
        assert session_mod.get_session("u2netp") is first
    assert store.load_count == {("u2netp", "cpu"): 1}
    assert first.providers[0] == "CPUExecutionProvider"


def test_concurrent_threads_load_once(store, monkeypatch):
    real_load, calls = store._load, []

    def slow_load(*a):
        calls.append(a)
        return real_load(*a)

    monkeypatch.setattr(store, "_load", slow_load)
    barrier = threading.Barrier(8)
    got = []

    def worker():
        barrier.wait()
        got.append(session_mod.get_session("u2netp"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(s) for s in got}) == 1


def test_gpu_request_without_gpu_provider_warns_and_runs_on_cpu(store, caplog):
    import onnxruntime

    if any(p in onnxruntime.get_available_providers() for p in session_mod._GPU_PROVIDERS):
        pytest.skip("this onnxruntime has a GPU provider")
    with caplog.at_level(logging.WARNING, logger="comfyui_cutout"):
        s = session_mod.get_session("u2netp", "gpu")
    assert s.providers[0] == "CPUExecutionProvider"
    assert "GPU asked for" in caplog.text


def test_broken_model_file_gives_a_clear_error(tmp_path, monkeypatch, store):
    from cutout import comfy_glue

    monkeypatch.setattr(comfy_glue, "comfy_model_dirs", lambda: [tmp_path])
    (tmp_path / "my_custom_model.onnx").write_bytes(b"this is not an onnx file")
    with pytest.raises(session_mod.weights.ModelNotAvailableError, match="could not be loaded by onnxruntime"):
        session_mod.get_session("my_custom_model.onnx")


def test_pack_import_is_cheap():
    """No onnxruntime / rembg / pymatting / scipy / numba at import time (fresh interpreter)."""
    import subprocess

    code = (
        "import sys; sys.path.insert(0, %r); import torch\n"
        "import cutout\n"
        "heavy = [m for m in ('onnxruntime', 'rembg', 'pymatting', 'scipy', 'numba', 'cv2') if m in sys.modules]\n"
        "print(heavy)" % str(__import__("pathlib").Path(__file__).resolve().parents[1])
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
