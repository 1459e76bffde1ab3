"""End-to-end fixtures: one real ComfyUI server for the whole e2e suite.

``comfy_server`` (session scope) is a :class:`comfy_env.ComfyServer`; see tests/e2e/README.md for
its API. The first run on a machine downloads ComfyUI and builds its venv (about 1-2 minutes,
1.6 GB under ``~/.cache/comfyui-cutout-e2e``, or ``CUTOUT_E2E_CACHE``); later runs reuse them.
``CUTOUT_SKIP_E2E=1`` skips the suite.
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


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory):
    """A running ComfyUI 0.3.75 (``--cpu --cache-none``) with the pack in ``custom_nodes/ComfyUI-Cutout``.

    Attributes: ``url``, ``base_dir``, ``extra_models_dir``, ``startup_seconds``; methods:
    ``log_text()``, ``object_info(node=None)``, ``post_prompt(prompt) -> prompt_id``,
    ``wait(prompt_id) -> history entry``, ``run(prompt) -> entry`` (asserts success),
    ``queue_prompt(prompt) -> (status, body)``, ``get/post(path)``, ``interrupt()``,
    ``view(ref)``, ``output_path(ref)``, ``put_input(name, src)``, ``websocket()``.
    ``--cache-none``: every prompt re-executes every node, so repeating a prompt is a real re-run.
    """
    if os.environ.get("CUTOUT_SKIP_E2E") == "1":
        pytest.skip("CUTOUT_SKIP_E2E=1")
    base = tmp_path_factory.mktemp("comfy_base")
    server = comfy_env.start_server(base, extra_args=["--cache-none"])
    for line in comfy_env.SETUP_LOG:
        report(f"set-up: {line}")
    report(f"server start-up (process start to /system_stats 200): {server.startup_seconds:.1f} s")
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
