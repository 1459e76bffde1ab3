"""The HTTP API under abuse, on loopback: memory of the server and latency of a normal request.

    python -m bench.api_abuse [--rounds 3] [--seconds 8] [--hostile 4] [--parts 12] [--part-mb 8]

A server process runs the service (``api.mount`` on a bare aiohttp app, 127.0.0.1 only). Quiet and
abuse phases alternate ``--rounds`` times; in both, one client sends a normal request (one
640x480 photo) again and again. During abuse, ``--hostile`` clients at once each send a batch of
``--parts`` random parts of ``--part-mb`` MB (12 x 8 MB: under the 100 MB request limit, so read in
full, then refused as not images; 100 x 8 MB is refused on its Content-Length before a byte is read),
and another client starts real 40-photo batches and disconnects after 0.5 s. Printed: the
server's peak RSS over its idle RSS, and the normal request's median latency, abuse / quiet.
Everything stops by itself: every request has a timeout (a normal one counts as 60 s when it
times out), the whole run is cut at rounds x 2 x (seconds + 60) + 60 s, and the server is killed.
``--code`` serves from another checkout (a worktree of an older commit) for a before/after.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import signal
import statistics
import subprocess
import sys
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in KiB."""
    vals = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                vals[line.split(":")[0]] = int(line.split()[1])
    return vals["VmRSS"], vals["VmHWM"]


SERVE = """
import sys
from aiohttp import web
from cutout.service.api import mount
app = web.Application(client_max_size=100 << 20)
mount(app)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def _photo(seed: int, w: int = 640, h: int = 480) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _timeout(seconds):
    import aiohttp

    return aiohttp.ClientTimeout(total=seconds)


async def _normal(session, url, photo, until, out):
    while time.monotonic() < until:
        t0 = time.perf_counter()
        try:
            async with session.post(url + "/cutout/api/remove", data=photo, headers={"Content-Type": "image/jpeg"},
                                    timeout=_timeout(60)) as r:
                await r.read()
                assert r.status == 200, r.status
        except asyncio.TimeoutError:
            pass  # counted as 60 s
        out.append(time.perf_counter() - t0)


async def _hostile(session, url, parts, part_mb, until):
    from aiohttp import FormData

    blob = os.urandom(part_mb << 20)
    while time.monotonic() < until:
        f = FormData()
        for i in range(parts):
            f.add_field("file", blob, filename=f"r{i}.png", content_type="image/png")
        try:
            async with session.post(url + "/cutout/api/batch", data=f, timeout=_timeout(30)) as r:
                await r.read()
        except Exception:  # the server may cut an over-limit upload short
            pass


async def _abandon(session, url, photos, until):
    from aiohttp import FormData

    while time.monotonic() < until:
        f = FormData()
        for i, p in enumerate(photos):
            f.add_field("file", p, filename=f"p{i}.jpg", content_type="image/jpeg")
        try:
            await asyncio.wait_for(session.post(url + "/cutout/api/batch", data=f), 0.5)
        except (asyncio.TimeoutError, Exception):
            pass


async def run(args, pid, url) -> None:
    import aiohttp

    photo = _photo(0)
    photos = [_photo(i, 320, 240) for i in range(40)]
    quiet, abuse = [], []
    peak = {"quiet": 0, "abuse": 0}

    async def watch(phase, *tasks):
        while not all(t.done() for t in tasks):
            peak[phase] = max(peak[phase], _rss_kb(pid)[0])
            await asyncio.sleep(0.05)
        await asyncio.gather(*tasks)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as s:
        await _normal(s, url, photo, time.monotonic() + 1, [])  # model loaded, caches warm
        base = _rss_kb(pid)[0]
        for _ in range(args.rounds):
            await watch("quiet", asyncio.ensure_future(_normal(s, url, photo, time.monotonic() + args.seconds, quiet)))
            until = time.monotonic() + args.seconds
            tasks = [asyncio.ensure_future(_hostile(s, url, args.parts, args.part_mb, until))
                     for _ in range(args.hostile)]
            tasks.append(asyncio.ensure_future(_abandon(s, url, photos, until)))
            await watch("abuse", asyncio.ensure_future(_normal(s, url, photo, until, abuse)), *tasks)
            print(f"  round: RSS peak over idle quiet +{(peak['quiet'] - base) / 1024:.0f} MiB, abuse "
                  f"+{(peak['abuse'] - base) / 1024:.0f} MiB; latency quiet {statistics.median(quiet):.2f} s, "
                  f"abuse {statistics.median(abuse):.2f} s", flush=True)
    hwm = _rss_kb(pid)[1]
    q, a = statistics.median(quiet), statistics.median(abuse)
    print(f"server RSS idle (model loaded) {base / 1024:.0f} MiB; peak over it: quiet +{(peak['quiet'] - base) / 1024:.0f}"
          f" MiB, abuse +{(peak['abuse'] - base) / 1024:.0f} MiB; VmHWM {hwm / 1024:.0f} MiB")
    print(f"normal request: quiet median {q * 1000:.0f} ms (n={len(quiet)}), under abuse {a * 1000:.0f} ms "
          f"(n={len(abuse)}): ratio {a / q:.2f}")
    print(f"hostile: {args.hostile} clients x {args.parts} parts x {args.part_mb} MB, + abandoned 40-photo batches")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--hostile", type=int, default=4)
    ap.add_argument("--parts", type=int, default=12)
    ap.add_argument("--part-mb", type=int, default=8)
    ap.add_argument("--port", type=int, default=18188)
    ap.add_argument("--code", default=str(ROOT), help="checkout whose cutout/ serves (e.g. a worktree of an "
                    "older commit, to compare before/after)")
    args = ap.parse_args()
    print(f"server code: {args.code}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so that the server below is stopped too
    server = subprocess.Popen([sys.executable, "-c", SERVE, str(args.port)], cwd=args.code)
    try:
        url = f"http://127.0.0.1:{args.port}"
        import urllib.request

        for _ in range(300):
            try:
                urllib.request.urlopen(url + "/cutout/api/openapi.json", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        limit = args.rounds * 2 * (args.seconds + 60) + 60  # every request has a timeout: this always ends
        asyncio.run(asyncio.wait_for(run(args, server.pid, url), limit))
    finally:
        server.kill()
        server.wait(30)


if __name__ == "__main__":
    main()
