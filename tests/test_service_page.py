"""The /cutout/ page in headless Chromium against the service on an in-process aiohttp server.

tests/e2e/test_service_e2e.py runs the same drive against a real ComfyUI. Skips without
playwright (pip) or chromium (apt). ``CUTOUT_DOCS_SCREENSHOT=docs/service-page.png`` saves the
screenshot for the README.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _page_driver import check_page_result, chromium_or_skip, drive_page  # noqa: E402

pytest.importorskip("aiohttp")
from aiohttp import web  # noqa: E402

from cutout.service.api import mount  # noqa: E402

pytestmark = pytest.mark.slow


class ServerThread:
    """The service on 127.0.0.1:<free port>, in its own thread and event loop."""

    def __init__(self):
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        mount(app)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(30)
        return self

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


@pytest.fixture
def two_photos(tmp_path) -> list[Path]:
    from PIL import Image

    shared = Path(os.environ.get("CUTOUT_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "eval" / "dev"
    names = ["davis16_blackswan_00000.jpg", "alphamatting_GT01.png"]
    if all((shared / n).is_file() for n in names):
        return [shared / n for n in names]
    out = []  # no eval data: two synthetic photos of different sizes
    for i, (w, h) in enumerate(((320, 240), (200, 260))):
        yy, xx = np.mgrid[0:h, 0:w]
        d = np.hypot(xx - w / 2, yy - h / 2) / (min(w, h) * 0.3)
        img = np.where((d < 1)[..., None], [220, 50, 40], [40 + 100 * xx[..., None] / w, [150], [90]][0])
        p = tmp_path / f"synthetic{i}.png"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(p)
        out.append(p)
    return out


def test_page_uploads_previews_and_zip(tmp_path, two_photos):
    chromium_or_skip()
    shot = os.environ.get("CUTOUT_DOCS_SCREENSHOT")
    with ServerThread() as server:
        origin = f"http://127.0.0.1:{server.port}"
        result = drive_page(origin + "/cutout/", two_photos, tmp_path,
                            screenshot=Path(shot) if shot else tmp_path / "page.png")
    check_page_result(result, two_photos, origin)
    assert "2 photos" in result["status"]
