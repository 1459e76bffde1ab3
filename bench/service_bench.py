"""What the HTTP service costs on top of the node code path, and whether the server stays responsive.

Measured side by side in one run, on an in-process aiohttp server (the same handlers ComfyUI
mounts), u2netp on the CPU:

1. per photo: the pipeline called directly (decode + predict_masks + PNG encode) vs
   POST /cutout/api/remove (multipart upload, same work, in the worker thread) -> overhead ratio;
2. 20 requests sent at once vs the same 20 one after another (the worker serialises them);
3. latency of a cheap route (GET /cutout/api/openapi.json) when idle vs while those 20 are queued
   (the event loop must not be blocked by model work).

    python bench/service_bench.py [--photos N] [--dir ../shared/eval/dev]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cutout  # noqa: E402

from aiohttp import FormData, web  # noqa: E402
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from cutout.codec import decode_image, encode_image, to_uint8  # noqa: E402
from cutout.pipeline import cut_out  # noqa: E402
from cutout.service import params as P  # noqa: E402
from cutout.service.api import mount  # noqa: E402


def direct(data: bytes) -> bytes:
    d = decode_image(io.BytesIO(data), "x", 10**9)
    r = cut_out(d.frame()[None], P.cutout_options(P.parse({}), "u2netp", "cpu"))
    return encode_image(to_uint8(r.image[0]), "png", P.API_ENCODE, d.icc)


def form(name: str, data: bytes) -> FormData:
    fd = FormData()
    fd.add_field("file", data, filename=name)
    return fd


async def bench(photos: list[tuple[str, bytes]]) -> None:
    app = web.Application()
    mount(app)
    async with TestClient(TestServer(app)) as c:
        direct(photos[0][1])  # load the model once, outside the timings
        d_times, h_times = [], []
        for name, data in photos:  # interleaved, so both see the same machine load
            t = time.perf_counter()
            ref = direct(data)
            d_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            r = await c.post("/cutout/api/remove", data=form(name, data))
            body = await r.read()
            h_times.append(time.perf_counter() - t)
            assert r.status == 200 and body == ref, (name, r.status)
        d, h = statistics.median(d_times), statistics.median(h_times)
        print(f"photos: {len(photos)} ({', '.join(sorted({n.split('_')[0] for n, _ in photos}))})")
        print(f"per photo, median: direct pipeline {d * 1000:.0f} ms, HTTP /api/remove {h * 1000:.0f} ms, "
              f"ratio HTTP/direct {h / d:.2f}")

        idle = []
        for _ in range(10):
            t = time.perf_counter()
            await (await c.get("/cutout/api/openapi.json")).read()
            idle.append(time.perf_counter() - t)

        batch = [photos[i % len(photos)] for i in range(20)]
        t = time.perf_counter()
        for name, data in batch:
            await (await c.post("/cutout/api/remove", data=form(name, data))).read()
        seq = time.perf_counter() - t

        async def one(name, data):
            r = await c.post("/cutout/api/remove", data=form(name, data))
            await r.read()
            return r.status

        t = time.perf_counter()
        tasks = [asyncio.create_task(one(n, d)) for n, d in batch]
        busy = []
        await asyncio.sleep(0.05)
        while not all(x.done() for x in tasks):
            t1 = time.perf_counter()
            await (await c.get("/cutout/api/openapi.json")).read()
            busy.append(time.perf_counter() - t1)
            await asyncio.sleep(0.2)
        statuses = await asyncio.gather(*tasks)
        conc = time.perf_counter() - t
        assert statuses == [200] * 20, statuses
        print(f"20 requests: one after another {seq:.1f} s, all at once {conc:.1f} s (ratio {conc / seq:.2f}; "
              "the worker serialises model work, so ~1 is expected)")
        print(f"GET /cutout/api/openapi.json: idle median {statistics.median(idle) * 1000:.1f} ms; while the 20 "
              f"were queued median {statistics.median(busy) * 1000:.1f} ms, max {max(busy) * 1000:.1f} ms "
              f"({len(busy)} probes; the event loop is not blocked by model work)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=ROOT.parent / "shared" / "eval" / "dev")
    ap.add_argument("--photos", type=int, default=8)
    args = ap.parse_args()
    files = sorted(p for p in args.dir.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")
                   and ".mask" not in p.name)
    files = files[:: max(1, len(files) // max(1, args.photos))][: args.photos]  # spread over the subsets
    if not files:
        print(f"skipped: no photos in {args.dir}")
        return
    asyncio.run(bench([(p.name, p.read_bytes()) for p in files]))


if __name__ == "__main__":
    main()
