"""Folder job speed vs the model alone, measured side by side in one run.

    U2NET_HOME=/work/wheels python bench/bench_dataset.py [--photos DIR] [--n 110] [--model u2netp]

Builds a temporary folder of >= 100 photos of mixed sizes (the photos of ``--photos``, by
default ../shared/eval/dev, plus upscaled copies up to ~2.5k px so decode/encode costs look like
camera photos), then times, chunk by chunk (interleaved, so load changes hit all sides alike):

1. model alone: ``pipeline.predict_frame`` over every decoded frame (decoding not timed);
2. the folder job (``dataset.job.run_job``: reader threads -> model -> writer threads, PNG RGBA);
3. the same work without overlap (decode, model, save one after the other in one thread).

Prints images/s of each and the ratios job/model (goal >= 0.9) and job/serial. Nothing is kept.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_set(photos: Path, out: Path, n: int, seed: int = 0) -> list[tuple[int, int]]:
    from PIL import Image

    files = sorted(p for p in photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")
                   and ".mask" not in p.name and not p.name.endswith("_gt.png"))
    if not files:
        raise SystemExit(f"no photos in {photos}")
    rng = random.Random(seed)
    sizes = []
    sub = out / "10_subject"
    sub.mkdir(parents=True)
    for i in range(n):
        src = files[i % len(files)]
        with Image.open(src) as im:
            im = im.convert("RGB")
            if i >= len(files):  # copies: scaled up to look like camera photos of mixed sizes
                s = rng.uniform(1.5, 3.0)
                im = im.resize((int(im.width * s), int(im.height * s)), Image.BICUBIC)
            im.save(sub / f"img{i:04d}.jpg", quality=92)
            (sub / f"img{i:04d}.txt").write_text(f"photo {i}")
            sizes.append(im.size)
    return sizes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "eval" / "dev")
    ap.add_argument("--n", type=int, default=110)
    ap.add_argument("--model", default="u2netp")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-serial", action="store_true", help="skip the no-overlap pass")
    ap.add_argument("--chunk", type=int, default=22, help="images per interleaved chunk")
    a = ap.parse_args()

    import cutout
    from cutout.dataset import job, plan, reader, writer
    from cutout.models import ModelNotAvailableError
    from cutout.models.session import get_session
    from cutout.pipeline import predict_frame

    if not a.photos.is_dir():
        print(f"skipped: photos folder {a.photos} not found")
        return 0
    try:
        session = get_session(a.model)
    except ModelNotAvailableError as e:
        print(f"skipped: model {a.model} not available ({e})")
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="cutout-bench-"))
    try:
        src = tmp / "src"
        sizes = build_set(a.photos, src, a.n)
        mp = [w * h / 1e6 for w, h in sizes]
        print(f"{len(sizes)} photos, {min(mp):.2f}-{max(mp):.2f} MP (mean {sum(mp) / len(mp):.2f}), model {a.model}, "
              f"{a.workers} reader + {a.workers} writer threads", flush=True)
        items, _ = reader.list_images(src)
        # warm-up (first run allocations)
        d0 = reader.decode(items[0])
        predict_frame(session, reader.to_frame(d0.rgb))

        # Interleaved in chunks, so that a change of machine load hits both sides alike:
        # per chunk, 1. the model alone on its frames, 2. the folder job on the same files,
        # 3. (optional) the same work without overlap. The job restarts its pipeline per chunk
        # (first decode and last encode not overlapped), which counts against it.
        opts = job.JobOptions(model=a.model, read_workers=a.workers, write_workers=a.workers)
        t_model = t_job = 0.0
        t_serial = None if a.no_serial else 0.0
        for start in range(0, len(items), a.chunk):
            chunk = items[start:start + a.chunk]
            for it in chunk:  # 1. model alone (decoding not timed)
                frame = reader.to_frame(reader.decode(it).rgb)
                t0 = time.perf_counter()
                predict_frame(session, frame)
                t_model += time.perf_counter() - t0
            o = job.JobOptions(**{**opts.__dict__, "start": start, "limit": len(chunk)})
            t0 = time.perf_counter()  # 2. the folder job
            rep = job.run_job(src, tmp / "job", o)
            t_job += time.perf_counter() - t0
            assert len(rep.done) == len(chunk) and not rep.failed, rep.summary()
            if t_serial is not None:  # 3. serial: same work, no overlap
                t0 = time.perf_counter()
                planned = plan.plan_outputs(chunk, tmp / "serial", opts.write.fmt, source_root=src).planned
                for p in planned:
                    d = reader.decode(p.item)
                    alpha = job.infer_item(session, d)
                    writer.save_item(tmp / "serial", p, d.rgb, alpha, opts.write, d.icc)
                t_serial += time.perf_counter() - t0
            print(f"  {start + len(chunk)}/{len(items)}: model {t_model:.1f} s, job {t_job:.1f} s"
                  + (f", serial {t_serial:.1f} s" if t_serial is not None else ""), flush=True)
        n = len(items)
        print(f"model alone : {t_model:7.1f} s  {n / t_model:6.2f} img/s")
        print(f"folder job  : {t_job:7.1f} s  {n / t_job:6.2f} img/s   job/model speed = {t_model / t_job:.2f}")
        if t_serial is not None:
            print(f"serial      : {t_serial:7.1f} s  {n / t_serial:6.2f} img/s   job/serial speed = {t_serial / t_job:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
