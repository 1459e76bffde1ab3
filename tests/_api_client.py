"""Drive the HTTP API in-process (aiohttp's test client on a fresh app), for the service tests."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from cutout.service.api import CutoutService, Limits, mount


def serve(test, limits: Limits | None = None):
    """Run ``await test(client, service)`` against a fresh app."""
    async def main():
        app = web.Application()
        service = mount(app, CutoutService(limits or Limits()))
        async with TestClient(TestServer(app)) as client:
            return await test(client, service)
    return asyncio.run(main())
