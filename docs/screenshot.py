"""Screenshot of the ComfyUI web page with example_workflows/Remove background from a photo.json loaded and run.

    python docs/screenshot.py [--out docs/comfyui_remove_background.png] [--photo samples/astronaut.png]

Needs: Debian's chromium (``apt-get install -y chromium``) and the Playwright Python client
(``pip install playwright``; its own browser download is not used, never run ``playwright install``).
Starts the same cached ComfyUI as the e2e tests (tests/e2e/comfy_env.py: first run downloads
ComfyUI and builds its venv), loads the workflow into the page with ``app.loadGraphData``,
queues it from the page (the frontend's own graph -> prompt conversion), waits for the
result and takes the picture. Also prints whether the frontend's prompt equals the one the
e2e converter (tests/e2e/workflows.py) makes from the same file.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

import comfy_env  # noqa: E402
import workflows  # noqa: E402

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]


def default_photo() -> Path:
    for p in (ROOT / "samples" / "astronaut.png",):
        if p.is_file():
            return p
    import skimage  # scikit-image bundles the same public-domain photo

    return Path(skimage.__file__).parent / "data" / "astronaut.png"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "comfyui_remove_background.png")
    ap.add_argument("--workflow", type=Path, default=ROOT / "example_workflows" / "Remove background from a photo.json")
    ap.add_argument("--photo", type=Path, default=None)
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--size", default="1400x680")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    photo = args.photo or default_photo()
    wf = workflows.load(args.workflow)
    for node in wf["nodes"]:  # what a user does first: pick their photo in Load Image
        if node["type"] == "LoadImage":
            node["widgets_values"][0] = photo.name
    width, height = (int(v) for v in args.size.split("x"))

    with tempfile.TemporaryDirectory(prefix="cutout-shot-") as tmp:
        server = comfy_env.start_server(Path(tmp), with_fixture_pack=False)
        try:
            server.put_input(photo.name, photo)
            # a clean page: no minimap, no first-run dialogs
            server.post("/settings", {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False})
            with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
                ctx = pw.chromium.launch_persistent_context(
                    profile, executable_path=args.chromium, headless=True, args=CHROMIUM_FLAGS,
                    viewport={"width": width, "height": height})
                page = ctx.pages[0] if ctx.pages else ctx.new_page()
                page.goto(server.url, wait_until="domcontentloaded", timeout=120_000)
                page.wait_for_function("() => window.app && window.app.graph && window.app.canvas", timeout=120_000)
                page.wait_for_timeout(1500)
                page.evaluate("async ([wf, name]) => { await window.app.loadGraphData(wf, true, true, name); }",
                              [wf, args.workflow.name])
                # dismiss the "Introducing ..." announcement bar: its icon-only close button
                page.evaluate("""() => {
                    for (const el of document.querySelectorAll('div, section, aside')) {
                        if (!/^\s*Introducing/.test(el.textContent || '') || el.children.length > 6) continue;
                        let box = el;
                        for (let up = 0; up < 4 && box; up++, box = box.parentElement) {
                            const close = [...box.querySelectorAll('button')].find(b => !(b.textContent || '').trim());
                            if (close) { close.click(); return true; }
                        }
                    }
                    return false; }""")
                page.wait_for_timeout(1000)
                ui_prompt = page.evaluate("async () => (await window.app.graphToPrompt()).output")
                ours = workflows.to_api(wf, server.object_info())
                strip = lambda p: {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in p.items()}  # noqa: E731
                same = strip(ui_prompt) == strip(ours)
                print("frontend prompt == tests/e2e/workflows.py prompt:", same)
                if not same:
                    print(json.dumps({"frontend": strip(ui_prompt), "ours": strip(ours)}, indent=1))
                t0 = time.time()
                page.evaluate("async () => { await window.app.queuePrompt(0, 1); }")
                entry = None
                while time.time() - t0 < 300:
                    _, hist = server.get("/history?max_items=1")
                    if hist:
                        entry = next(iter(hist.values()))
                        if entry.get("status", {}).get("completed") or entry.get("status", {}).get("status_str") == "error":
                            break
                    time.sleep(0.3)
                print("run:", (entry or {}).get("status", {}).get("status_str"), f"{time.time() - t0:.1f} s")
                page.wait_for_timeout(2500)  # previews load into the nodes
                try:
                    page.evaluate("() => window.app.extensionManager.command.execute('Comfy.Canvas.FitView')")
                    page.wait_for_timeout(800)
                except Exception as e:  # older/newer frontends: keep the default view
                    print("fit view skipped:", e)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out))
                ctx.close()
            print("saved", args.out)
        finally:
            server.stop()
    return 0 if entry and entry["status"].get("status_str") == "success" and same else 1


if __name__ == "__main__":
    sys.exit(main())
