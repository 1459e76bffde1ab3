"""The folder job on Ray Data: the same job as ``dataset.job.run_job``, spread over a Ray cluster.

    python cli.py --source raw --dest clean --engine ray                      # local Ray on this machine
    python cli.py --source /mnt/raw --dest /mnt/clean --engine ray --ray-address auto --actors 8

The driver plans exactly as the local engine does (``job.plan``: listing, refused entries,
name clashes, resume), then streams the items through three Ray Data stages that overlap:

1. ``map(decode_row)``         — tasks decode files (``reader.decode``);
2. ``map_batches(InferActor)`` — a pool of actors, each holding one model session from the
   pack's store, runs ``job.infer_item`` (``pipeline.predict_frame``) per image;
3. ``map(write_row)``          — tasks encode and write atomically (``writer.save_item``).

The driver collects one status row per item into the same ``job.Report`` the local engine
returns, in the planned order. Actors are restarted and their batches retried when a worker
dies (Ray's ``max_restarts``/``max_task_retries``); since every write is atomic and the output
names are fixed by the driver's plan (``plan.plan_outputs``), a retried write replaces its own
files: a lost worker neither loses nor duplicates an output, ``keep_both`` included.

``ray`` is imported here only inside functions, and nothing in the pack imports this module
except ``cli.py --engine ray``: ComfyUI never loads Ray.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .job import JobOptions, Report, begin, pixel_budget, write_review_page
from . import ray_stages, writer
from .plan import Planned

log = logging.getLogger("comfyui_cutout")

MAX_BLOCKS = 10_000
ROOT = str(Path(__file__).resolve().parents[2])  # the pack's folder (holds the package cutout/)


class RayNotInstalled(RuntimeError):
    pass


@dataclass
class RayOptions:
    address: str | None = None  # None: start a local Ray on this machine; else "auto", "host:6379", "ray://host:10001"
    actors: int = 1  # inference actors (each loads the model once)
    batch_size: int = 4  # images per inference call
    cpus_per_actor: float = 1.0  # Ray logical CPUs reserved per actor
    gpus_per_actor: float = 0.0  # GPUs per actor (use with --device gpu and onnxruntime-gpu on the workers)
    ort_threads: int = 0  # onnxruntime intra-op threads per actor; 0: onnxruntime's default (all cores of the node)
    io_tasks: int = 2  # decode tasks and write tasks running at a time (each)
    io_cpus: float = 0.5  # Ray logical CPUs per decode/write task
    num_cpus: int | None = None  # logical CPUs of a local Ray (default: this machine's cores + 1, see start_ray)
    ship_code: bool | None = None  # upload the pack to the cluster as working_dir (default: when address is given)


def _ray():
    try:
        import ray  # optional extra: requirements-ray.txt
    except ImportError:
        raise RayNotInstalled("--engine ray needs Ray Data: pip install -r requirements-ray.txt") from None
    return ray


def runtime_env(ship_code: bool) -> dict:
    """Job runtime_env: with ``ship_code``, the pack's folder is uploaded to every node as working_dir.

    Without it the workers load the pack from ``ROOT`` (same machine, or the same path on a
    shared disk of every node).
    """
    if not ship_code:
        return {}
    return {"working_dir": ROOT, "excludes": [".git", "tests", "bench", "**/__pycache__", "*.part"]}


def start_ray(address: str | None = None, num_cpus: int | None = None, ship_code: bool | None = None) -> bool:
    """Connect to ``address`` or start a local Ray; returns True when this call started/connected it.

    A local Ray gets one more logical CPU than the machine has cores: the inference actor takes
    one logical CPU but onnxruntime spreads over all cores, and decode/write tasks (half a
    logical CPU each) must still get scheduled beside it, as the local engine's reader and
    writer threads run beside its inference.
    """
    ray = _ray()
    if ray.is_initialized():
        return False
    ship = bool(address) if ship_code is None else ship_code
    kwargs = dict(runtime_env=runtime_env(ship), include_dashboard=False, logging_level=logging.WARNING,
                  log_to_driver=True)
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus or (os.cpu_count() or 1) + 1, **kwargs)
    return True


def _wopts_dict(w: writer.WriteOptions) -> dict:
    d = dataclasses.asdict(w)
    d["mask_dir"] = str(Path(w.mask_dir).absolute()) if w.mask_dir is not None else None
    return d


def _abs_plan(p: Planned) -> Planned:
    """The plan with absolute paths: workers do not run in the driver's current folder."""
    return dataclasses.replace(p, masks=tuple((Path(r).absolute(), m) for r, m in p.masks),
                               captions=tuple((Path(s).absolute(), r) for s, r in p.captions))


def pixel_budget_actor(opts: JobOptions, ropts: RayOptions, n_items: int):
    """The job's ``ray_stages.PixelBudget``: the local engine's bound (``job.pixel_budget``) per
    inference actor. Items of any size always go up to one inference batch plus what decode tasks
    may hold in blocks of several items (above ``MAX_BLOCKS``), so that a batch can always fill."""
    ray = _ray()
    ray.cloudpickle.register_pickle_by_value(ray_stages)
    per_block = -(-max(1, n_items) // MAX_BLOCKS)
    floor = max(1, ropts.batch_size) + max(1, ropts.io_tasks) * (per_block - 1)
    actor = ray.remote(num_cpus=0)(ray_stages.PixelBudget)
    return actor.remote(pixel_budget(opts.max_megapixels) * max(1, ropts.actors), floor)


def build_dataset(todo, dest: Path, opts: JobOptions, ropts: RayOptions, fp: str = "", budget=None):
    """The lazy Ray Dataset: items -> decode tasks -> inference actors -> write tasks -> status rows.
    ``budget``: a ``ray_stages.PixelBudget`` actor bounding the pixels between decode and write."""
    ray = _ray()
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.execution_options.preserve_order = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # cloudpickle ships the stages by value: workers import 'cutout' only once _pack has put ROOT on sys.path.
    ray.cloudpickle.register_pickle_by_value(ray_stages)

    # absolute paths: workers do not run in the driver's current folder
    items = [{"path": str(Path(p.item.path).absolute()), "rel": p.rel, "plan": json.dumps(_abs_plan(p).to_row())}
             for p in todo]
    # one item per block (up to 10 000 blocks): items stream through the stages one by one, no stage
    # waits for a big block; above that, a few items per block keep the per-block bookkeeping small
    ds = ray.data.from_items(items, override_num_blocks=min(len(items), MAX_BLOCKS))
    # tasks are retried by Ray Data by default (max_retries=-1) when their worker dies
    io = dict(num_cpus=ropts.io_cpus, compute=ray.data.TaskPoolStrategy(size=max(1, ropts.io_tasks)))
    ds = ds.map(ray_stages.decode_row, fn_kwargs={"root": ROOT, "max_megapixels": opts.max_megapixels,
                                                  "budget": budget}, **io)
    # Ray Data gives its actors max_restarts=-1 and max_task_retries=-1 by default: a dead actor
    # is restarted (model loaded again) and its batch is run again.
    ds = ds.map_batches(
        ray_stages.InferActor,
        fn_constructor_kwargs={"root": ROOT, "cutout": opts.cutout.to_dict(), "ort_threads": ropts.ort_threads,
                               "small": opts.write.review},
        batch_size=max(1, ropts.batch_size), batch_format="numpy", zero_copy_batch=True,
        compute=ray.data.ActorPoolStrategy(size=max(1, ropts.actors)), num_cpus=ropts.cpus_per_actor, num_gpus=ropts.gpus_per_actor or None)
    ds = ds.map(ray_stages.write_row,
                fn_kwargs={"root": ROOT, "dest": str(Path(dest).absolute()), "wopts": _wopts_dict(opts.write),
                           "cutout": opts.cutout.to_dict(), "fp": fp, "budget": budget},
                **io)
    return ds


def run_job_ray(source: Path, dest: Path, opts: JobOptions, ropts: RayOptions | None = None,
                on_item: Callable[[str, str, int, int], None] | None = None,
                on_start: Callable[[Report, int], None] | None = None) -> Report:
    """``job.run_job`` on Ray: same arguments, same outputs, same ``Report`` (failed files with reasons).

    Model problems (unknown name, weights missing) raise on the driver before anything is
    written. Ctrl-C returns the report so far with ``interrupted`` set.
    """
    from ..models.session import locate

    ropts = ropts or RayOptions()
    _ray()
    source, dest = Path(source), Path(dest)
    t0 = time.perf_counter()
    report = Report(str(source), str(dest))
    locate(opts.model)  # raises UnknownModelError / ModelNotAvailableError here, as the local engine does
    todo, progress, state = begin(source, dest, opts, report, on_start)
    by_rel = {p.rel: p for p in todo}
    if not todo:
        report.seconds = time.perf_counter() - t0
        write_review_page(report, state, source)
        return report

    started = start_ray(ropts.address, ropts.num_cpus, ropts.ship_code)
    order = {p.rel: i for i, p in enumerate(todo)}
    results: dict[str, tuple[str, str]] = {}
    try:
        budget = pixel_budget_actor(opts, ropts, len(todo))
        ds = build_dataset(todo, dest, opts, ropts, state.fp, budget)
        for row in ds.iter_rows():
            rel, status, reason = str(row["rel"]), str(row["status"]), str(row["reason"])
            info = json.loads(str(row.get("info") or "null"))
            if rel not in results:  # its thumbnails to the review spool, before the manifest record
                info = state.reviewed(by_rel[rel], info)
            if status == "done" and str(row["record"]):  # the last answer's files are the ones on disk
                state.add(by_rel[rel], json.loads(str(row["record"])))
            if rel in results:  # a retried task's second answer: never count an item twice
                continue
            results[rel] = (status, reason)
            report.result(rel, info, json.loads(str(row.get("notes") or "[]")))
            progress.update(1)
            if on_item is not None:
                on_item(rel, status, len(results), len(todo))
        report.peak_pixels = int(_ray().get(budget.peak.remote()))
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        if started:
            _ray().shutdown()
        for rel in sorted(results, key=order.__getitem__):
            report.record(rel, *results[rel])
        missing = [p.rel for p in todo if p.rel not in results]
        if missing and not report.interrupted:
            for rel in missing:  # should not happen: say so rather than report success
                report.failed.append((rel, "no result came back from the Ray pipeline"))
        report.seconds = time.perf_counter() - t0
    write_review_page(report, state, source)
    return report
