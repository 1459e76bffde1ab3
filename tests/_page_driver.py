"""Drive the /cutout/ upload page in headless Chromium (Playwright) — shared by the in-process
page test and the end-to-end one against a real ComfyUI.

Needs ``pip install playwright`` and Debian's ``chromium`` (``apt-get install -y chromium``);
``playwright install`` is never run: the system browser is launched by path.
"""

from __future__ import annotations

import io
import os
import shutil
import zipfile
from pathlib import Path

import pytest

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def chromium_or_skip() -> str:
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (the browser test drives the page)")
    path = os.environ.get("CUTOUT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path or not Path(path).exists():
        pytest.skip("no chromium (apt-get install -y chromium, or set CUTOUT_CHROMIUM)")
    return path


def drive_page(page_url: str, photos: list[Path], out_dir: Path, screenshot: Path | None = None,
               timeout_ms: int = 240_000) -> dict:
    """Open the page, upload ``photos``, wait for every preview, download the zip.

    Returns {"zip": {name: PIL.Image}, "cards": [...], "console_errors": [...], "requests": [...]}.
    """
    from PIL import Image
    from playwright.sync_api import sync_playwright

    chromium = chromium_or_skip()
    errors, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_url)
            page.wait_for_function("document.querySelectorAll('#model option').length > 0", timeout=30_000)
            page.set_input_files("#files", [str(p) for p in photos])
            page.wait_for_function(
                f"document.querySelectorAll('.card .state.done, .card .state.error').length == {len(photos)}",
                timeout=timeout_ms)
            # after the photos, the page says which provider the loaded model really runs on
            page.wait_for_function("document.querySelector('#runtime').textContent.includes(') on ')",
                                   timeout=30_000)
            runtime = page.text_content("#runtime")
            cards = page.eval_on_selector_all(".card", """cards => cards.map(c => ({
                name: c.dataset.name,
                state: c.querySelector('.state').textContent,
                ok: c.querySelector('.state').classList.contains('done'),
                cutLoaded: c.querySelector('.cut').complete && c.querySelector('.cut').naturalWidth > 0,
                cutSize: [c.querySelector('.cut').naturalWidth, c.querySelector('.cut').naturalHeight],
                origSize: [c.querySelector('.orig').naturalWidth, c.querySelector('.orig').naturalHeight],
                download: c.querySelector('.download').getAttribute('download'),
            }))""")
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)
            with page.expect_download(timeout=timeout_ms) as dl:
                page.click("#zip")
            zpath = out_dir / "cutouts.zip"
            dl.value.save_as(str(zpath))
            suggested = dl.value.suggested_filename
            status = page.text_content("#status")
        finally:
            browser.close()
    images = {}
    with zipfile.ZipFile(zpath) as z:
        for name in z.namelist():
            im = Image.open(io.BytesIO(z.read(name)))
            im.load()
            images[name] = im
    return {"zip": images, "cards": cards, "console_errors": errors, "requests": requests, "status": status,
            "suggested_filename": suggested, "runtime": runtime}


def check_page_result(result: dict, photos: list[Path], origin: str) -> None:
    """What both page tests assert: previews shown, zip with one RGBA PNG per photo, sizes kept."""
    from PIL import Image

    assert not result["console_errors"], result["console_errors"]
    assert "onnxruntime" in result["runtime"] and "ExecutionProvider" in result["runtime"].split("in use:")[1], \
        result["runtime"]
    assert all(u.startswith((origin, "blob:", "data:")) for u in result["requests"]), result["requests"]
    cards = result["cards"]
    assert [c["name"] for c in cards] == [p.name for p in photos]
    for c, p in zip(cards, photos):
        size = list(Image.open(p).size)
        assert c["ok"], c
        assert c["cutLoaded"] and c["cutSize"] == size and c["origSize"] == size, c
        assert c["download"] == p.stem + ".png"
    assert result["suggested_filename"] == "cutouts.zip"
    images = result["zip"]
    assert sorted(images) == sorted(p.stem + ".png" for p in photos)
    for p in photos:
        im = images[p.stem + ".png"]
        assert im.format == "PNG" and im.mode == "RGBA"
        assert im.size == Image.open(p).size
        alpha = im.getchannel("A")
        lo, hi = alpha.getextrema()
        assert lo == 0 and hi == 255, (p.name, lo, hi)  # a real cut-out, not an opaque copy
