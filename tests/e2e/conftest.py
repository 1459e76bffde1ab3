"""End-to-end fixtures: one real ComfyUI server per ComfyUI version for the whole e2e suite.

``comfy_server`` (session scope, parametrised over ``comfy_env.VERSIONS``: 0.3.75 and 0.28.2) is
a :class:`comfy_env.ComfyServer`; see tests/e2e/README.md for its API. Every test that takes it
runs once per version (test ids end in ``[0.3.75]`` / ``[0.28.2]``); pytest groups the tests by
version, so one server runs at a time. The first run on a machine sets up each version and its
venv (1-3 minutes each, under ``~/.cache/comfyui-cutout-e2e``, or ``CUTOUT_E2E_CACHE``); later
runs reuse them. ``CUTOUT_SKIP_E2E=1`` skips the suite; ``CUTOUT_E2E_VERSIONS=0.28.2`` (comma
separated) runs only some versions.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import comfy_env  # noqa: E402

REPORT: list[str] = []  # lines for the terminal summary (import time, latencies, ...)


def report(line: str) -> None:
    REPORT.append(line)


def pytest_terminal_summary(terminalreporter):
    if REPORT:
        terminalreporter.section("ComfyUI end-to-end measurements")
        for line in REPORT:
            terminalreporter.write_line(line)


def _versions() -> list[str]:
    wanted = os.environ.get("CUTOUT_E2E_VERSIONS")
    return [v.strip() for v in wanted.split(",") if v.strip()] if wanted else list(comfy_env.VERSIONS)


@pytest.fixture(scope="session", params=_versions())
def comfy_server(request, tmp_path_factory):
    """A running ComfyUI (``--cpu --cache-none``) with the pack in ``custom_nodes/ComfyUI-Cutout``,
    once per version; ``comfy_server.version`` says which ("0.3.75", "0.28.2").

    Attributes: ``url``, ``base_dir``, ``extra_models_dir``, ``startup_seconds``; methods:
    ``log_text()``, ``object_info(node=None)``, ``post_prompt(prompt) -> prompt_id``,
    ``wait(prompt_id) -> history entry``, ``run(prompt) -> entry`` (asserts success),
    ``queue_prompt(prompt) -> (status, body)``, ``get/post(path)``, ``interrupt()``,
    ``view(ref)``, ``output_path(ref)``, ``put_input(name, src)``, ``websocket()``.
    ``--cache-none``: every prompt re-executes every node, so repeating a prompt is a real re-run.
    """
    if os.environ.get("CUTOUT_SKIP_E2E") == "1":
        pytest.skip("CUTOUT_SKIP_E2E=1")
    version = comfy_env.VERSIONS[request.param]
    why = version.unavailable()
    if why:
        pytest.skip(why)
    base = tmp_path_factory.mktemp(f"comfy_base_{version.version}")
    extra = ["--cache-none"]
    if comfy_env.version_tuple(version.version) >= (0, 4):
        extra += ["--database-url", "sqlite:///:memory:"]  # no user/comfyui.db
    n_log = len(comfy_env.SETUP_LOG)
    server = comfy_env.start_server(base, extra_args=extra, version=version)
    for line in comfy_env.SETUP_LOG[n_log:]:
        report(f"set-up: {line}")
    report(f"ComfyUI {version.version}: server start-up (process start to /system_stats 200): "
           f"{server.startup_seconds:.1f} s")
    status, stats = server.get("/system_stats")
    if status == 200:
        sysinfo = stats.get("system", {})
        report(f"ComfyUI {sysinfo.get('comfyui_version')}, torch {sysinfo.get('pytorch_version')}, "
               f"Python {sysinfo.get('python_version', '').split()[0]}, device {stats['devices'][0]['name']}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def photo(tmp_path_factory) -> Path:
    """A photo with one clear subject: samples/astronaut.png, else scikit-image's copy of it,
    else a photo from ../shared/eval/dev."""
    candidates = [comfy_env.PACK_ROOT / "samples" / "astronaut.png"]
    try:
        import skimage

        candidates.append(Path(skimage.__file__).parent / "data" / "astronaut.png")
    except ImportError:
        pass
    shared = Path(os.environ.get("CUTOUT_SHARED", comfy_env.PACK_ROOT.parent / "shared"))
    candidates.append(shared / "eval" / "dev" / "alphamatting_GT01.png")
    for c in candidates:
        if c.is_file():
            dst = tmp_path_factory.mktemp("photo") / c.name
            shutil.copyfile(c, dst)
            return dst
    pytest.skip("no photo found (samples/astronaut.png, scikit-image, ../shared/eval/dev)")
