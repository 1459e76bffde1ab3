"""The HTTP API under abuse, on loopback: memory of the server and latency of a normal request.

    python -m bench.api_abuse [--rounds 3] [--seconds 8] [--hostile 4] [--parts 12] [--part-mb 8]

A server runs ``api.mount`` on a bare aiohttp app (127.0.0.1); quiet and abuse phases alternate, a
normal request (640x480 photo) repeating in both; abuse = ``--hostile`` clients posting batches of
``--parts`` random ``--part-mb`` MB parts, plus abandoned 40-photo batches (docs/reliability.md). Prints
the server's peak RSS over idle and the normal request's median latency, abuse / quiet. Every request
and the whole run have timeouts. ``--code`` serves from another checkout, for a before/after.
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
import urllib.request

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVE = """
import sys
from aiohttp import web
from cutout.service.api import mount
app = web.Application(client_max_size=100 << 20)
mount(app)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def _rss_kb(pid: int, key: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith(key))


def _photo(seed: int, w: int = 640, h: int = 480) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


async def _normal(session, url, photo, until, out):
    import aiohttp

    while time.monotonic() < until:
        t0 = time.perf_counter()
        try:
            async with session.post(url + "/cutout/api/remove", data=photo, headers={"Content-Type": "image/jpeg"},
                                    timeout=aiohttp.ClientTimeout(total=60)) as r:
                await r.read()
                assert r.status == 200, r.status
        except asyncio.TimeoutError:
            pass  # counted as 60 s
        out.append(time.perf_counter() - t0)


async def _batches(session, url, parts, until, give_up_s):
    """Post multipart batches of ``parts`` [(bytes, name, type)] until ``until``; abandon each after
    ``give_up_s`` (a client that disconnects) or read the refusal."""
    from aiohttp import FormData

    while time.monotonic() < until:
        f = FormData()
        for blob, name, ctype in parts:
            f.add_field("file", blob, filename=name, content_type=ctype)
        try:
            async with await asyncio.wait_for(session.post(url + "/cutout/api/batch", data=f), give_up_s) as r:
                await r.read()
        except Exception:  # the server may cut an over-limit upload short; a timeout is the abandon
            pass


async def run(args, pid, url) -> None:
    import aiohttp

    photo = _photo(0)
    blob = os.urandom(args.part_mb << 20)
    junk = [(blob, f"r{i}.png", "image/png") for i in range(args.parts)]
    real = [(_photo(i, 320, 240), f"p{i}.jpg", "image/jpeg") for i in range(40)]
    lat, peak = {"quiet": [], "abuse": []}, {"quiet": 0, "abuse": 0}

    async def phase(name, *coros):
        tasks = [asyncio.ensure_future(c) for c in coros]
        while not all(t.done() for t in tasks):
            peak[name] = max(peak[name], _rss_kb(pid))
            await asyncio.sleep(0.05)
        await asyncio.gather(*tasks)

    def mib(kb):
        return f"{kb / 1024:.0f} MiB"

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as s:
        await _normal(s, url, photo, time.monotonic() + 1, [])  # model loaded, caches warm
        base = _rss_kb(pid)
        for _ in range(args.rounds):
            await phase("quiet", _normal(s, url, photo, time.monotonic() + args.seconds, lat["quiet"]))
            until = time.monotonic() + args.seconds
            await phase("abuse", _normal(s, url, photo, until, lat["abuse"]), _batches(s, url, real, until, 0.5),
                        *(_batches(s, url, junk, until, 30) for _ in range(args.hostile)))
            print(f"  round: RSS peak over idle quiet +{mib(peak['quiet'] - base)}, abuse +{mib(peak['abuse'] - base)}"
                  f"; latency quiet {statistics.median(lat['quiet']):.2f} s, abuse "
                  f"{statistics.median(lat['abuse']):.2f} s", flush=True)
    q, a = (statistics.median(lat[k]) for k in ("quiet", "abuse"))
    print(f"server RSS idle (model loaded) {mib(base)}; peak over it: quiet +{mib(peak['quiet'] - base)}, "
          f"abuse +{mib(peak['abuse'] - base)}; VmHWM {mib(_rss_kb(pid, 'VmHWM'))}")
    print(f"normal request: quiet median {q * 1000:.0f} ms (n={len(lat['quiet'])}), under abuse {a * 1000:.0f} ms "
          f"(n={len(lat['abuse'])}): ratio {a / q:.2f}")
    print(f"hostile: {args.hostile} clients x {args.parts} parts x {args.part_mb} MB, + abandoned 40-photo batches")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for flag, typ, default in (("--rounds", int, 3), ("--seconds", float, 8.0), ("--hostile", int, 4),
                               ("--parts", int, 12), ("--part-mb", int, 8), ("--port", int, 18188)):
        ap.add_argument(flag, type=typ, default=default)
    ap.add_argument("--code", default=ROOT, help="checkout whose cutout/ serves (before/after)")
    args = ap.parse_args()
    print(f"server code: {args.code}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so that the server below is stopped too
    server = subprocess.Popen([sys.executable, "-c", SERVE, str(args.port)], cwd=args.code)
    try:
        url = f"http://127.0.0.1:{args.port}"
        for _ in range(300):
            try:
                urllib.request.urlopen(url + "/cutout/api/openapi.json", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        limit = args.rounds * 2 * (args.seconds + 60) + 60
        asyncio.run(asyncio.wait_for(run(args, server.pid, url), limit))
    finally:
        server.kill()
        server.wait(30)


if __name__ == "__main__":
    main()
