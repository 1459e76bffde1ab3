"""The ComfyUI web page itself loads every example workflow, and its own graph -> prompt
conversion gives exactly what tests/e2e/workflows.py gives (so the executed prompts are the ones
a user would queue). Needs Debian's chromium and the Playwright Python client; skipped without.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

import comfy_env
import workflows

pytestmark = pytest.mark.e2e

WORKFLOWS = sorted((comfy_env.PACK_ROOT / "example_workflows").glob("*.json"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def page(comfy_server):
    chromium = os.environ.get("CUTOUT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("no chromium (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        ctx = pw.chromium.launch_persistent_context(profile, executable_path=chromium, headless=True,
                                                    args=FLAGS, viewport={"width": 1280, "height": 800})
        pg = ctx.pages[0] if ctx.pages else ctx.new_page()
        pg.goto(comfy_server.url, wait_until="domcontentloaded", timeout=120_000)
        pg.wait_for_function("() => window.app && window.app.graph && window.app.canvas", timeout=120_000)
        yield pg
        ctx.close()


def test_template_browser_urls_load(page):
    """The template browser puts the bare file name into its URLs (``/api/workflow_templates/<pack>/<name>.jpg``
    and ``.json``, no encoding of its own): the browser's fetch of each, spaces and all, gets the file."""
    listed = page.evaluate("async () => (await (await fetch('/api/workflow_templates')).json())")
    names = listed.get(comfy_env.PACK_DIR_NAME)
    assert sorted(names or []) == sorted(p.stem for p in WORKFLOWS), listed
    for name in names:
        for ext, kind in (("json", "application/json"), ("jpg", "image/jpeg")):
            got = page.evaluate("async (u) => { const r = await fetch(u); "
                                "return [r.status, r.headers.get('content-type')]; }",
                                f"/api/workflow_templates/{comfy_env.PACK_DIR_NAME}/{name}.{ext}")
            assert got[0] == 200 and kind in (got[1] or ""), (name, ext, got)


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_frontend_prompt_equals_converter(path, page, comfy_server):
    why = workflows.needs_newer(path, comfy_server.version)
    if why:
        pytest.skip(why)
    wf = workflows.load(path)
    page.evaluate("async (wf) => { await window.app.loadGraphData(wf); }", wf)
    ui = page.evaluate("async () => (await window.app.graphToPrompt()).output")
    info = comfy_server.object_info()

    def declared(cls):  # what the server reads; the page may add UI-only values (e.g. LoadVideo's 'video-preview')
        spec = info[cls]["input"]
        return {name for part in ("required", "optional", "hidden") for name in spec.get(part, {})}

    def strip(prompt):
        return {k: {"class_type": v["class_type"],
                    "inputs": {n: x for n, x in v["inputs"].items() if n in declared(v["class_type"])}}
                for k, v in prompt.items()}

    assert strip(ui) == strip(workflows.to_api(wf, info))
