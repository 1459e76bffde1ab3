"""The folder job: list -> decode (reader threads) -> inference (this thread) -> save (writer threads).

Decoding and encoding overlap with inference, so the job runs close to the speed of the
model alone. Per-item work is plain functions that the Ray engine reuses: ``reader.decode``,
``infer_item`` (the pipeline's mask half, ``pipeline.frame_alpha``, in this thread),
``render_item`` (its pixel half, ``pipeline.render``) and ``writer.save_item`` (writer threads).
A failure of one item
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
from ..options import CutoutOptions
from ..pipeline import frame_alpha, render_pixels
from . import reader, writer
from .reader import DEFAULT_PATTERN, Decoded, Item, ReadError
from .writer import WriteError, WriteOptions

log = logging.getLogger("comfyui_cutout")


@dataclass
class JobOptions:
    cutout: CutoutOptions = field(default_factory=CutoutOptions)  # what each image gets (model, refine, background …)
    recursive: bool = True
    pattern: str = DEFAULT_PATTERN
    start: int = 0
    limit: int = 0
    write: WriteOptions = field(default_factory=WriteOptions)
    read_workers: int = 2
    write_workers: int = 2
    prefetch: int = 4  # decoded images waiting for the model (bounds memory)

    def __post_init__(self):
        if self.write.fmt == "jpg" and self.cutout.form == "rgba":
            raise ValueError("format jpg has no alpha channel: give an opaque background "
                             "(options.flattened_for_jpeg) or use png/webp")
        if self.cutout.refine.temporal > 0:
            raise ValueError("temporal smoothing is for video batches (Mask Refine), not a folder of photos")

    @property
    def model(self) -> str:
        return self.cutout.model


@dataclass
class Report:
    source: str
    dest: str
    total: int = 0
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)  # done, with a remark (e.g. only TIFF page 1)
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
        for rel, note in self.notes[:max_failed]:
            lines.append(f"  note: {rel}: {note}")
        for rel, reason in self.failed[:max_failed]:
            lines.append(f"  failed: {rel}: {reason}")
        if len(self.failed) > max_failed:
            lines.append(f"  ... and {len(self.failed) - max_failed} more")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({"source": self.source, "dest": self.dest, "total": self.total, "done": self.done,
                           "skipped": self.skipped, "failed": [{"file": r, "reason": w} for r, w in self.failed],
                           "notes": [{"file": r, "note": n} for r, n in self.notes],
                           "seconds": round(self.seconds, 3), "interrupted": self.interrupted}, indent=1)


def prepare(item: Item) -> tuple[Decoded, torch.Tensor]:
    """Reader-thread work for one item: decode it and make the model's float frame."""
    d = reader.decode(item)
    return d, reader.to_frame(d.rgb)


def infer_item(session, decoded: Decoded, frame: torch.Tensor | None, opts: CutoutOptions) -> np.ndarray:
    """The mask half of the pipeline (``pipeline.frame_alpha``) for one decoded image: float32 ``[H,W]``.

    A file that had its own alpha channel keeps it: what was transparent stays transparent.
    """
    if frame is None:
        frame = reader.to_frame(decoded.rgb)
    own = None if decoded.alpha is None else reader.to_frame(decoded.alpha)
    return frame_alpha(session, frame, opts, own, node="cli.py").numpy()


def render_item(rgb: np.ndarray, alpha: np.ndarray, opts: CutoutOptions) -> np.ndarray:
    """The pixel half of the pipeline (``pipeline.render_pixels``) for one image: the uint8 pixels to encode."""
    return render_pixels(rgb, torch.from_numpy(np.ascontiguousarray(alpha, dtype=np.float32)), opts)


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


def _save(dest: Path, decoded: Decoded, alpha: np.ndarray, opts: JobOptions) -> writer.Saved:
    """Writer-thread work for one item: the pipeline's pixel half, then the atomic writes."""
    return writer.save_item(dest, decoded.item, render_item(decoded.rgb, alpha, opts.cutout), alpha, opts.write,
                            decoded.icc)


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
    session = get_session(opts.cutout.model, opts.cutout.device)
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
                alpha = infer_item(session, decoded, frame, opts.cutout)
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
            for note in decoded.notes:
                report.notes.append((rel, note))
            writes.append((rel, writers.submit(_save, dest, decoded, alpha, opts)))
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
