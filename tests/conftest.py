"""Fixtures shared by the tests (no ComfyUI needed) and where the shared eval data lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CUTOUT_SHARED", ROOT.parent / "shared"))
EVAL_DEV = SHARED / "eval" / "dev"


@pytest.fixture
def eval_dev() -> Path:
    if not (EVAL_DEV / "manifest.csv").is_file():
        pytest.skip(f"eval set not found at {EVAL_DEV}")
    return EVAL_DEV


@pytest.fixture(autouse=True)
def _isolated_model_dirs(tmp_path_factory, monkeypatch):
    """Keep tests away from the user's ~/.u2net, ~/.rembg, CUTOUT_MODELS_DIR and ~/.cache: the
    pack's own folder is ``<tmp>/models/cutout``, as if ComfyUI's models/ were ``<tmp>/models``."""
    from cutout import comfy_glue

    home = tmp_path_factory.mktemp("u2net_home")
    monkeypatch.setenv("U2NET_HOME", str(home))
    monkeypatch.setenv("REMBG_HOME", str(tmp_path_factory.mktemp("rembg_home")))
    monkeypatch.delenv("CUTOUT_MODELS_DIR", raising=False)
    models = tmp_path_factory.mktemp("comfy_models")
    monkeypatch.setattr(comfy_glue, "comfy_models_dir", lambda: models)
    yield


@pytest.fixture
def comfy_dirs(tmp_path, monkeypatch):
    """ComfyUI's input/output folders for the folder nodes' path guard, without ComfyUI."""
    from cutout import comfy_glue
    from cutout.dataset import paths

    inp, out = tmp_path / "comfy" / "input", tmp_path / "comfy" / "output"
    inp.mkdir(parents=True)
    out.mkdir(parents=True)
    monkeypatch.setattr(comfy_glue, "input_directory", lambda: inp)
    monkeypatch.setattr(comfy_glue, "output_directory", lambda: out)
    monkeypatch.delenv(paths.ALLOW_ENV, raising=False)
    return inp, out


@pytest.fixture
def fresh_store(monkeypatch):
    """An empty session store in place of the process-wide one (models load anew)."""
    from cutout.models import session as session_mod

    store = session_mod.SessionStore()
    monkeypatch.setattr(session_mod, "STORE", store)
    return store


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    """An empty ComfyUI models/rembg folder (shared with other packs: the pack only reads it)."""
    from cutout import comfy_glue

    d = tmp_path / "models" / "rembg"
    d.mkdir(parents=True)
    monkeypatch.setattr(comfy_glue, "comfy_models_dir", lambda: tmp_path / "models")
    monkeypatch.setattr(comfy_glue, "comfy_model_dirs", lambda: [d])
    return d


@pytest.fixture
def own_models_dir(models_dir):
    """The pack's own folder beside ``models_dir`` (ComfyUI's models/cutout): downloads go here."""
    return models_dir.parent / "cutout"
