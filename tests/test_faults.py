"""Issue 6 faults: interrupts leave nothing partial and a rerun does exactly the rest; a corrupt
cached model is detected by hash, set aside and fetched again (or reported), never loaded;
concurrent model loads (same model once, different models in parallel)."""

from __future__ import annotations

import dataclasses
import http.server
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cutout import comfy_glue
from cutout import pipeline
from cutout.dataset.job import JobOptions, run_job
from cutout.dataset.manifest import MANIFEST
from cutout.models import ModelNotAvailableError, weights
from cutout.models import session as session_mod
from cutout.models.catalog import CATALOG
from cutout.nodes import NODE_CLASS_MAPPINGS

EMBEDDED = Path(weights.EMBEDDED_DIR) / "u2netp.onnx"


class InterruptProcessingException(Exception):
    """Same name as ComfyUI's (comfy.model_management), which is what the pack recognises."""


def interrupt_after(monkeypatch, k: int) -> dict:
    calls = {"n": 0}

    def check():
        calls["n"] += 1
        if calls["n"] > k:
            raise InterruptProcessingException()

    monkeypatch.setattr(comfy_glue, "check_interrupt", check)
    return calls


def _photos(root: Path, n: int) -> None:
    root.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(n):
        a = np.zeros((48, 64, 3), np.uint8) + rng.integers(0, 80, 3, dtype=np.uint8)
        a[10 + i % 5:40, 16:48] = rng.integers(150, 255, 3, dtype=np.uint8)
        Image.fromarray(a).save(root / f"f{i:02d}.png")


def _tree(dest: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(dest.iterdir()) if p.name != MANIFEST}


@pytest.mark.parametrize("k", [1, 4])
def test_folder_job_interrupted_leaves_no_partial_file_and_rerun_does_exactly_the_rest(k, tmp_path, monkeypatch):
    src, dest, ref = tmp_path / "src", tmp_path / "dest", tmp_path / "ref"
    _photos(src, 9)
    run_job(src, ref, JobOptions())
    calls = interrupt_after(monkeypatch, k)
    with pytest.raises(InterruptProcessingException):
        run_job(src, dest, JobOptions())
    assert calls["n"] == k + 1
    first = sorted(p.name for p in dest.iterdir() if p.name != MANIFEST)  # the manifest is no temp file
    assert all(not n.startswith(".") for n in first), first  # no temp files left
    assert 0 < len(first) < 9 if k > 1 else len(first) < 9
    for name in first:  # whatever is there is complete and identical to the uninterrupted run
        assert np.array_equal(np.asarray(Image.open(dest / name)), np.asarray(Image.open(ref / name)))
    monkeypatch.setattr(comfy_glue, "check_interrupt", lambda: None)
    done_infer = []
    real_infer = pipeline.predict_frame

    def counting(session, frame, *rest):
        done_infer.append(1)
        return real_infer(session, frame, *rest)

    monkeypatch.setattr(pipeline, "predict_frame", counting)
    again = run_job(src, dest, JobOptions())
    assert sorted(again.skipped) == first  # nothing redone
    assert sorted(again.done) == sorted(set(f"f{i:02d}.png" for i in range(9)) - set(first))  # exactly the rest
    assert len(done_infer) == 9 - len(first)
    assert sorted(_tree(dest)) == sorted(_tree(ref))
    for name, px in _tree(ref).items():
        assert np.array_equal(_tree(dest)[name], px), name


def test_remove_background_interrupt_stops_within_a_frame(monkeypatch):
    runs = []
    real = pipeline.predict_frame
    monkeypatch.setattr(pipeline, "predict_frame", lambda s, f, *rest: runs.append(1) or real(s, f, *rest))
    interrupt_after(monkeypatch, 5)  # two interrupt points per frame: between frames, before each network run
    with pytest.raises(InterruptProcessingException):
        NODE_CLASS_MAPPINGS["CutoutRemoveBackground"]().run(torch.rand(10, 32, 32, 3), "u2netp")
    assert len(runs) == 3  # the third frame stopped before its network run


# --------------------------------------------------------------------------- corrupt cached model

@pytest.fixture
def server(tmp_path, monkeypatch):
    root = tmp_path / "srv"
    root.mkdir()
    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(root), **k)

        def log_message(self, *a):
            pass

        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    monkeypatch.setattr(weights, "ALLOWED_URL_SCHEMES", ("https://", "http://127.0.0.1"))
    yield root, f"http://127.0.0.1:{srv.server_address[1]}", hits
    srv.shutdown()


def _register(monkeypatch, base: str, name="relmodel"):
    spec = dataclasses.replace(CATALOG["u2netp"], name=name, url=f"{base}/{name}.onnx", embedded=False)
    monkeypatch.setitem(CATALOG, name, spec)
    return spec


@pytest.mark.parametrize("where", ["own folder", "models/rembg"])
@pytest.mark.parametrize("damage", ["truncated", "zero bytes", "flipped byte"])
def test_corrupt_cached_model_is_fetched_again(damage, where, server, models_dir, own_models_dir, fresh_store,
                                               monkeypatch):
    """The download goes to the pack's own folder. A damaged file there is kept as ``*.bad``; one in
    models/rembg (other packs' folder) is left exactly as it is."""
    root, base, hits = server
    spec = _register(monkeypatch, base)
    good = EMBEDDED.read_bytes()
    shutil.copy(EMBEDDED, root / spec.filename)
    bad = {"truncated": good[: len(good) // 3], "zero bytes": b"",
           "flipped byte": good[:1000] + bytes([good[1000] ^ 0xFF]) + good[1001:]}[damage]
    folder = own_models_dir if where == "own folder" else models_dir
    folder.mkdir(parents=True, exist_ok=True)
    (folder / spec.filename).write_bytes(bad)
    loaded = []
    import onnxruntime

    real = onnxruntime.InferenceSession
    monkeypatch.setattr(onnxruntime, "InferenceSession",
                        lambda p, *a, **k: loaded.append(Path(p).read_bytes() == good) or real(p, *a, **k))
    rgba, mask, _ = NODE_CLASS_MAPPINGS["CutoutRemoveBackground"]().run(torch.rand(1, 40, 40, 3), spec.name)
    assert mask.shape == (1, 40, 40)
    assert loaded == [True]  # the one file onnxruntime saw was the good one
    assert hits == [f"/{spec.filename}"]
    assert (own_models_dir / spec.filename).read_bytes() == good
    if where == "own folder":
        set_aside = list(own_models_dir.glob(f"{spec.filename}.*.bad"))
        assert len(set_aside) == 1 and set_aside[0].read_bytes() == bad
    else:
        assert sorted(models_dir.iterdir()) == [models_dir / spec.filename]
        assert (models_dir / spec.filename).read_bytes() == bad
    assert not list(own_models_dir.glob(".*partial"))


def test_corrupt_cached_model_and_bad_download_is_reported_never_loaded(server, models_dir, own_models_dir,
                                                                        fresh_store, monkeypatch):
    root, base, hits = server
    spec = _register(monkeypatch, base)
    (root / spec.filename).write_bytes(EMBEDDED.read_bytes()[:-10])  # the server has a damaged copy too
    (models_dir / spec.filename).write_bytes(b"garbage")
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "InferenceSession", lambda *a, **k: pytest.fail("a bad file was loaded"))
    with pytest.raises(ModelNotAvailableError) as e:
        NODE_CLASS_MAPPINGS["CutoutRemoveBackground"]().run(torch.rand(1, 8, 8, 3), spec.name)
    msg = str(e.value)
    assert "input 'model'" in msg and "expected " + spec.md5 in msg and "not used" in msg
    assert sorted(p.name for p in own_models_dir.iterdir()) == []  # nothing kept
    assert (models_dir / spec.filename).read_bytes() == b"garbage"  # and the foreign file left alone


# --------------------------------------------------------------------------- concurrency

def test_two_different_models_at_once_both_work_and_each_loads_once(models_dir, fresh_store, monkeypatch):
    shutil.copy(EMBEDDED, models_dir / "my_copy.onnx")  # a user's own model (custom .onnx)
    real_load, loads = fresh_store._load, []
    in_flight, overlap = {"n": 0}, {"max": 0}
    lock = threading.Lock()

    def load(model, device, progress):
        with lock:
            in_flight["n"] += 1
            overlap["max"] = max(overlap["max"], in_flight["n"])
        try:
            loads.append(model)
            return real_load(model, device, progress)
        finally:
            with lock:
                in_flight["n"] -= 1

    monkeypatch.setattr(fresh_store, "_load", load)
    img = torch.rand(2, 48, 48, 3)
    barrier = threading.Barrier(6)
    results, errors = {}, []

    def worker(i, model):
        try:
            barrier.wait()
            results[i] = (model, NODE_CLASS_MAPPINGS["CutoutRemoveBackground"]().run(img, model)[1])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i, "u2netp" if i % 2 else "my_copy.onnx")) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(loads) == ["my_copy.onnx", "u2netp"]  # each once
    assert fresh_store.load_count == {("u2netp", "cpu"): 1, ("my_copy.onnx", "cpu"): 1}
    masks = [m for model, m in results.values()]
    for m in masks[1:]:  # same weights, same input: same masks whichever session ran them
        assert torch.equal(m, masks[0])


def test_cancel_stops_the_network_run_itself(monkeypatch):
    """Cancel during a frame stops onnxruntime mid-run (RunOptions.terminate), not after the frame."""
    session = session_mod.get_session("u2netp")
    x = np.random.default_rng(0).random((1, 3, 320, 320), dtype=np.float32)
    plain = session.run(x)
    assert np.array_equal(session.run(x, should_stop=lambda: False), plain)  # polled, never stopped
    with pytest.raises(session_mod.RunCancelled):
        session.run(x, should_stop=lambda: True)  # already cancelled: the run does not start
    monkeypatch.setattr(session_mod, "STOP_POLL_S", 0.001)
    calls = []

    def cancel_once_running():  # False for the check before the run, True at the watcher's first poll
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(session_mod.RunCancelled):
        session.run(x, should_stop=cancel_once_running)
    assert len(calls) == 2
    assert np.array_equal(session.run(x), plain)  # the session is fine afterwards


def test_cancel_during_a_frame_raises_comfyuis_interrupt(monkeypatch):
    flag = {"on": False}

    def check():
        if flag["on"]:
            raise InterruptProcessingException()

    monkeypatch.setattr(comfy_glue, "check_interrupt", check)
    monkeypatch.setattr(comfy_glue, "cancel_hook", lambda: (lambda: flag["on"]))
    real_run = session_mod.ModelSession.run
    runs = []

    def run(self, batch, should_stop=None):
        runs.append(1)
        if len(runs) == 2:
            flag["on"] = True  # the user presses Cancel while the second frame is in the network
        return real_run(self, batch, should_stop)

    monkeypatch.setattr(session_mod.ModelSession, "run", run)
    with pytest.raises(InterruptProcessingException):
        NODE_CLASS_MAPPINGS["CutoutRemoveBackground"]().run(torch.rand(5, 32, 32, 3), "u2netp")
    assert len(runs) == 2
