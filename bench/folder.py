"""The folder job's throughput: against the model alone, and the Ray engine against the local one.

    python -m bench.folder [--photos 110] [--model u2netp] [--ray] [--rounds 2]

On ``_common.make_photos`` in a temporary folder. Default, chunk by chunk, interleaved: the model alone
(``pipeline.predict_frame`` on decoded frames) vs the folder job (``dataset.job.run_job``, PNG RGBA).
``--ray``: ``cli.py --engine local`` vs ``--engine ray`` (fresh processes, alternating order).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench._common import DEFAULT_EVAL, ROOT, available_models, make_photos, run_timed


def job_vs_model(src: Path, tmp: Path, model: str, chunk: int) -> None:
    from cutout.dataset import job, reader
    from cutout.models.session import get_session
    from cutout.pipeline import predict_frame
    from cutout.options import CutoutOptions

    session = get_session(model)
    items, _ = reader.list_images(src)
    predict_frame(session, reader.to_frame(reader.decode(items[0]).rgb))  # warm-up
    t_model = t_job = 0.0
    for start in range(0, len(items), chunk):
        part = items[start:start + chunk]
        for it in part:
            frame = reader.to_frame(reader.decode(it).rgb)
            t0 = time.perf_counter()
            predict_frame(session, frame)
            t_model += time.perf_counter() - t0
        t0 = time.perf_counter()  # the job restarts its pipeline per chunk: that counts against it
        rep = job.run_job(src, tmp / "job", job.JobOptions(CutoutOptions(model=model), start=start, limit=len(part)))
        t_job += time.perf_counter() - t0
        assert len(rep.done) == len(part) and not rep.failed, rep.summary()
        print(f"  {start + len(part)}/{len(items)}: model {t_model:.1f} s, job {t_job:.1f} s", flush=True)
    n = len(items)
    print(f"model alone {n / t_model:.2f} img/s, folder job {n / t_job:.2f} img/s: RATIO job/model = "
          f"{t_model / t_job:.2f}")


def run_cli(engine: str, src: Path, dest: Path, model: str) -> tuple[float, dict]:
    report = dest.parent / f"{dest.name}.json"
    wall = run_timed([sys.executable, str(ROOT / "cli.py"), "--source", str(src), "--dest", str(dest),
                      "--model", model, "--engine", engine, "--no-progress", "--report", str(report)])
    return wall, json.loads(report.read_text())


def ray_vs_local(src: Path, tmp: Path, model: str, n: int, rounds: int) -> None:
    times = {"local": [], "ray": []}
    for r in range(rounds):
        for engine in (("local", "ray") if r % 2 == 0 else ("ray", "local")):
            wall, rep = run_cli(engine, src, tmp / f"out_{engine}_{r}", model)
            assert len(rep["done"]) == n and not rep["failed"], (engine, rep["failed"])
            times[engine].append(wall)
            print(f"  round {r + 1} {engine:5}: {wall:.1f} s ({n / wall:.2f} img/s)", flush=True)
    print(f"RATIO ray/local throughput = {statistics.median(times['local']) / statistics.median(times['ray']):.2f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=110)
    ap.add_argument("--model", default="u2netp")
    ap.add_argument("--eval", type=Path, default=DEFAULT_EVAL)
    ap.add_argument("--chunk", type=int, default=22, help="images per interleaved chunk")
    ap.add_argument("--ray", action="store_true", help="Ray engine vs local engine instead")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args(argv)
    if not (a.eval / "manifest.csv").is_file():
        print(f"skipped: eval photos not found at {a.eval}")
        return 0
    if not available_models([a.model])[0]:
        print(f"skipped: model {a.model} not available")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="cutout-bench-"))
    try:
        make_photos(a.eval, tmp / "src", a.photos)
        print(f"{a.photos} photos of mixed sizes, model {a.model}", flush=True)
        if a.ray:
            ray_vs_local(tmp / "src", tmp, a.model, a.photos, a.rounds)
        else:
            job_vs_model(tmp / "src", tmp, a.model, a.chunk)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
