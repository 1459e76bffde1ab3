"""The folder job: list -> decode (reader threads) -> inference (this thread) -> save (writer threads).

Decoding and encoding overlap with inference, so the job runs close to the speed of the
model alone. Per-item work is three plain functions (``reader.decode``, ``infer_item``,
``writer.save_item``) that the ComfyUI nodes and any other engine reuse. A failure of one item
(unreadable file, write error) is recorded in the report and the job goes on; an interrupt
(Ctrl-C, ComfyUI's Cancel) stops it after the writes in flight have finished, and as every
write is atomic the next run resumes with what is missing.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import comfy_glue
from ..imaging.refine_chain import refine_masks
from ..pipeline import predict_frame
from . import reader, writer
from .reader import DEFAULT_PATTERN, Decoded, Item, ReadError
from .writer import WriteError, WriteOptions

log = logging.getLogger("comfyui_cutout")


@dataclass
class JobOptions:
    model: str = "u2netp"
    device: str = "cpu"
    recursive: bool = True
    pattern: str = DEFAULT_PATTERN
    start: int = 0
    limit: int = 0
    write: WriteOptions = field(default_factory=WriteOptions)
    read_workers: int = 2
    write_workers: int = 2
    prefetch: int = 4  # decoded images waiting for the model (bounds memory)
    refine: dict = field(default_factory=dict)  # keyword arguments of imaging.refine_chain.refine_masks ({} = off)


@dataclass
class Report:
    source: str
    dest: str
    total: int = 0
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted

    def record(self, rel: str, status: str, reason: str = "") -> None:
        """One item's outcome (``done``, ``skipped`` or a failure with its reason); every engine calls this."""
        if status == "done":
            self.done.append(rel)
        elif status == "skipped":
            self.skipped.append(rel)
        else:
            self.failed.append((rel, reason))

    def summary(self, max_failed: int = 50) -> str:
        rate = len(self.done) / self.seconds if self.seconds > 0 else 0.0
        lines = [f"done {len(self.done)}, skipped {len(self.skipped)} (already there), failed {len(self.failed)}"
                 f" — {self.seconds:.1f} s, {rate:.2f} images/s"
                 + (" — INTERRUPTED: run the same command again to finish" if self.interrupted else "")]
        for rel, reason in self.failed[:max_failed]:
            lines.append(f"  failed: {rel}: {reason}")
        if len(self.failed) > max_failed:
            lines.append(f"  ... and {len(self.failed) - max_failed} more")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({"source": self.source, "dest": self.dest, "total": self.total, "done": self.done,
                           "skipped": self.skipped, "failed": [{"file": r, "reason": w} for r, w in self.failed],
                           "seconds": round(self.seconds, 3), "interrupted": self.interrupted}, indent=1)


def prepare(item: Item) -> tuple[Decoded, torch.Tensor]:
    """Reader-thread work for one item: decode it and make the model's float frame."""
    d = reader.decode(item)
    return d, reader.to_frame(d.rgb)


def infer_item(session, decoded: Decoded, frame: torch.Tensor | None = None,
               refine: dict | None = None) -> np.ndarray:
    """Subject alpha float32 ``[H,W]`` for one decoded image (through ``pipeline.predict_frame``).

    ``refine``: keyword arguments of ``imaging.refine_chain.refine_masks`` (the Mask Refine
    node's function, same order and meaning), applied to the model's mask with the photo as
    guide, plus ``refine_edges`` and ``quality`` (``pipeline.predict_frame``'s); empty or
    None = the model's mask as it is.
    A file that had its own alpha channel keeps it: what was transparent stays transparent.
    """
    if frame is None:
        frame = reader.to_frame(decoded.rgb)
    refine = dict(refine or {})
    alpha = predict_frame(session, frame, refine.pop("refine_edges", False), refine.pop("quality", "auto"))
    if refine:
        alpha = refine_masks(alpha[None], frame[None], node="cli.py refine", **refine)[0]
    alpha = alpha.numpy()
    if decoded.alpha is not None:
        alpha = alpha * (decoded.alpha.astype(np.float32) / 255.0)
    return alpha


def plan(source: Path, dest: Path, opts: JobOptions, report: Report) -> list[Item]:
    """The items still to do; fills ``report`` with listing problems, name clashes and resumed items."""
    items, problems = reader.list_images(source, opts.recursive, opts.pattern, opts.start, opts.limit)
    report.total = len(items) + len(problems)
    report.failed.extend((p.rel, p.reason) for p in problems)
    seen: dict[str, str] = {}
    todo = []
    for it in items:
        out = str(writer.output_rel(it.rel, opts.write.fmt)).casefold()
        if out in seen and opts.write.existing != "keep_both":
            report.failed.append((str(it.rel), f"same output name as {seen[out]} (rename one of them)"))
            continue
        seen.setdefault(out, str(it.rel))
        if opts.write.existing == "skip" and writer.is_done(dest, it.rel, opts.write):
            report.skipped.append(str(it.rel))
            continue
        todo.append(it)
    return todo


def _save(dest: Path, decoded: Decoded, alpha: np.ndarray, wopts: WriteOptions) -> writer.Saved:
    return writer.save_item(dest, decoded.item, decoded.rgb, alpha, wopts, decoded.icc)


def begin(source: Path, dest: Path, opts: JobOptions, report: Report, on_start=None):
    """What every engine does before the first image: plan (resume, refusals, name clashes),
    create dest, remove temporaries of a killed run, start the progress bar."""
    todo = plan(source, dest, opts, report)
    if todo:
        dest.mkdir(parents=True, exist_ok=True)
    removed = writer.clean_stale_temps(dest)
    if removed:
        log.info("Cutout dataset: removed %d temporary files left by an interrupted run", removed)
    progress = comfy_glue.Progress(len(todo))
    if on_start is not None:
        on_start(report, len(todo))
    return todo, progress


def run_job(source: Path, dest: Path, opts: JobOptions,
            on_item: Callable[[str, str, int, int], None] | None = None,
            on_start: Callable[[Report, int], None] | None = None) -> Report:
    """Process every image of ``source`` into ``dest``; returns the report (never raises for one bad file).

    ``on_item(rel, status, finished, to_do)`` is called once per finished item, status
    being 'done', 'skipped' or 'failed'; ``on_start(report, to_do)`` once the plan is made
    (the report then holds what was skipped or refused while listing). Model loading problems
    raise before anything is written.
    Ctrl-C (KeyboardInterrupt) returns the report so far with ``interrupted`` set; ComfyUI's
    Cancel is raised again after the writes in flight have finished.
    """
    from ..models.session import get_session

    source, dest = Path(source), Path(dest)
    t0 = time.perf_counter()
    report = Report(str(source), str(dest))
    session = get_session(opts.model, opts.device)
    todo, progress = begin(source, dest, opts, report, on_start)
    finished = 0

    def finish(rel: str, status: str, reason: str = "") -> None:
        nonlocal finished
        finished += 1
        report.record(rel, status, reason)
        progress.update(1)
        if on_item is not None:
            on_item(rel, status, finished, len(todo))

    def collect(rel: str, fut: Future) -> None:
        try:
            saved = fut.result()
            finish(rel, saved.status)
        except WriteError as e:
            finish(rel, "failed", str(e))
        except Exception as e:  # a bug in one item must not lose the others
            log.exception("Cutout dataset: writing %s failed", rel)
            finish(rel, "failed", f"{type(e).__name__}: {e}")

    readers = ThreadPoolExecutor(max(1, opts.read_workers), thread_name_prefix="cutout-read")
    writers = ThreadPoolExecutor(max(1, opts.write_workers), thread_name_prefix="cutout-write")
    reads: deque[tuple[Item, Future]] = deque()
    writes: deque[tuple[str, Future]] = deque()
    queue = iter(todo)
    max_writes = max(2, 2 * opts.write_workers)

    def refill() -> None:
        while len(reads) < max(1, opts.prefetch):
            it = next(queue, None)
            if it is None:
                return
            reads.append((it, readers.submit(prepare, it)))

    try:
        refill()
        while reads:
            comfy_glue.check_interrupt()
            it, fut = reads.popleft()
            refill()
            rel = str(it.rel)
            try:
                decoded, frame = fut.result()
            except ReadError as e:
                finish(rel, "failed", str(e))
                continue
            except MemoryError:
                finish(rel, "failed", "not enough memory to decode it")
                continue
            except Exception as e:  # a decoder bug on one file must not stop the others
                log.exception("Cutout dataset: reading %s failed", rel)
                finish(rel, "failed", f"cannot read ({type(e).__name__}: {str(e)[:200]})")
                continue
            try:
                alpha = infer_item(session, decoded, frame, opts.refine)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as e:
                if comfy_glue.is_interrupt(e):
                    raise
                finish(rel, "failed", f"inference failed ({type(e).__name__}: {str(e)[:200]})")
                continue
            del frame
            while len(writes) >= max_writes:
                collect(*writes.popleft())
            writes.append((rel, writers.submit(_save, dest, decoded, alpha, opts.write)))
            while writes and writes[0][1].done():
                collect(*writes.popleft())
        while writes:
            collect(*writes.popleft())
    except BaseException as e:
        report.interrupted = True
        for _it, f in reads:
            f.cancel()
        for rel, f in writes:  # let writes in flight finish: each is atomic, and counts for the resume
            try:
                f.result()
                report.done.append(rel)
            except BaseException:
                pass
        if not isinstance(e, KeyboardInterrupt):  # ComfyUI's Cancel and real errors go up
            raise
    finally:
        readers.shutdown(wait=True, cancel_futures=True)
        writers.shutdown(wait=True)
        report.seconds = time.perf_counter() - t0
    return report
