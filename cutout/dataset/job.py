"""The folder job: list -> decode (reader threads) -> inference (this thread) -> save (writer threads).

Decoding and encoding overlap with inference, so the job runs close to the speed of the
model alone. Per-item work is plain functions that the Ray engine reuses: ``reader.decode``,
``infer_item`` (the pipeline's mask half, ``pipeline.frame_alpha``, in this thread),
``render_item`` (its pixel half, ``pipeline.render_pixels``) and ``writer.save_item`` (writer threads).
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
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from .. import comfy_glue
from ..options import CutoutOptions
from ..imaging.model_io import shrink_for_model
from ..pipeline import frame_alpha, render_pixels
from ..quality import Deferred
from . import manifest, reader, resume, writer
from .plan import Planned, plan_outputs
from .reader import DEFAULT_PATTERN, Decoded, Item, ReadError
from .writer import WriteError, WriteOptions

if TYPE_CHECKING:
    from .review import ReviewStore

log = logging.getLogger("comfyui_cutout")

PIXEL_BUDGET_IMAGES = 1.5  # pixels in flight (decoded, in inference, being written), in images at the limit


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
    max_megapixels: float = reader.DEFAULT_MAX_MEGAPIXELS  # a larger image fails (bounded memory); 0 = no limit

    def __post_init__(self):
        if self.write.fmt == "jpg" and self.cutout.form == "rgba":
            raise ValueError("format jpg has no alpha channel: give an opaque background "
                             "(options.flattened_for_jpeg) or use png/webp")
        if self.cutout.refine.temporal > 0:
            raise ValueError("temporal smoothing is for video batches (Mask Refine), not a folder of photos")

    @property
    def model(self) -> str:
        return self.cutout.model

    @property
    def device(self) -> str:
        return self.cutout.device


@dataclass
class Report:
    source: str
    dest: str
    total: int = 0
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    redone: list[tuple[str, str]] = field(default_factory=list)  # existing outputs made again, and why
    notes: list[tuple[str, str]] = field(default_factory=list)  # done, with a remark (e.g. only TIFF page 1)
    seconds: float = 0.0
    interrupted: bool = False
    items: dict[str, dict] = field(default_factory=dict)  # rel -> doubt, cues, subject share, crop box
    review: str | None = None  # the review page written, if any
    peak_pixels: int = 0  # most pixels in flight at once (bounded by pixel_budget)
    earlier: dict[str, dict] = field(default_factory=dict)  # rel -> doubt info of outputs up to date (review spool)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted

    def result(self, rel: str, info: dict | None = None, notes=()) -> None:
        """What one item's processing left for the report, whichever engine ran it: its decode notes
        and, once written, its doubt, cues, subject share and crop box (``writer.Saved.info``)."""
        self.notes.extend((rel, n) for n in notes)
        if info:
            self.items[rel] = info

    def record(self, rel: str, status: str, reason: str = "") -> None:
        """One item's outcome (``done``, ``skipped`` or a failure with its reason); every engine calls this."""
        if status == "done":
            self.done.append(rel)
        elif status == "skipped":
            self.skipped.append(rel)
        else:
            self.failed.append((rel, reason))

    def redone_reasons(self) -> dict[str, int]:
        """How many outputs were redone for each kind of reason ('settings changed', ...)."""
        out: dict[str, int] = {}
        for _rel, why in self.redone:
            kind = why.split(":")[0]
            out[kind] = out.get(kind, 0) + 1
        return out

    def summary(self, max_failed: int = 50) -> str:
        rate = len(self.done) / self.seconds if self.seconds > 0 else 0.0
        redone = ""
        if self.redone:
            kinds = ", ".join(f"{n} {k}" for k, n in self.redone_reasons().items())
            redone = f" ({len(self.redone)} redone: {kinds})"
        lines = [f"done {len(self.done)}{redone}, skipped {len(self.skipped)} (up to date), failed {len(self.failed)}"
                 f" — {self.seconds:.1f} s, {rate:.2f} images/s"
                 + (" — INTERRUPTED: run the same command again to finish" if self.interrupted else "")]
        shown = {}
        for rel, why in self.redone:  # one example per reason: the settings diff says what changed
            shown.setdefault(why.split(":")[0], (rel, why))
        for rel, why in shown.values():
            lines.append(f"  redone: {rel}: {why}")
        for rel, note in self.notes[:max_failed]:
            lines.append(f"  note: {rel}: {note}")
        rows = self.doubt_rows()
        if rows:
            doubtful = [r["file"] for r in rows if r["doubtful"]]
            shares = self.shares()
            lines.append(f"  subject share of the frame: {100 * shares[0]:.0f} % -> {100 * shares[1]:.0f} %; "
                         f"{len(doubtful)} doubtful" + (f" (first: {', '.join(doubtful[:5])})" if doubtful else "")
                         + (f"; review: {self.review}" if self.review else ""))
        elif self.review:
            lines.append(f"  review: {self.review}")
        for rel, reason in self.failed[:max_failed]:
            lines.append(f"  failed: {rel}: {reason}")
        if len(self.failed) > max_failed:
            lines.append(f"  ... and {len(self.failed) - max_failed} more")
        return "\n".join(lines)

    def doubt_rows(self) -> list[dict]:
        """The written items, most doubtful first (``dataset.review.doubt_rows``)."""
        from .review import doubt_rows

        return doubt_rows(self.items)

    def shares(self) -> tuple[float, float] | None:
        """Mean subject share of the frame before and after cropping, over the written items."""
        got = [(i["share_before"], i["share_after"]) for i in self.items.values() if "share_before" in i]
        if not got:
            return None
        return sum(b for b, _ in got) / len(got), sum(a for _, a in got) / len(got)

    def to_json(self) -> str:
        from .review import doubt_rows

        rows = self.doubt_rows()
        shares = self.shares()
        return json.dumps({"source": self.source, "dest": self.dest, "total": self.total, "done": self.done,
                           "skipped": self.skipped, "failed": [{"file": r, "reason": w} for r, w in self.failed],
                           "redone": [{"file": r, "reason": w} for r, w in self.redone],
                           "notes": [{"file": r, "note": n} for r, n in self.notes],
                           "seconds": round(self.seconds, 3), "interrupted": self.interrupted,
                           "subject_share": None if shares is None else
                           {"before": round(shares[0], 4), "after": round(shares[1], 4)},
                           "doubtful": [r["file"] for r in rows if r["doubtful"]],
                           "review": self.review, "items": rows,
                           "earlier_items": doubt_rows(self.earlier)}, indent=1)

    def to_csv(self) -> str:
        from .review import rows_csv

        return rows_csv(self.doubt_rows())


def prepare(item: Item, max_megapixels: float = 0.0,
            size: int = 0) -> tuple[Decoded, torch.Tensor, torch.Tensor | None, dict | None]:
    """Reader-thread work for one item: check its size, decode it, and with ``size`` shrink it to the
    network's square input (off the network's thread), and identify the source (for the manifest; None
    when it changed while being read). The frame stays 8-bit (``pipeline.frame_alpha`` takes it so):
    no full-size float copy of the photo is made unless a step reads it (Mask Refine, refine_edges)."""
    reader.check_pixels(item.path, max_megapixels)
    d, ident = manifest.identify_around(item.path, lambda: reader.decode(item))
    frame = torch.from_numpy(np.ascontiguousarray(d.rgb))
    return d, frame, (shrink_for_model(frame[None], size) if size else None), ident


def pixel_budget(max_megapixels: float) -> float:
    """Both engines' bound on the pixels in flight (admitted before their read, released after their
    write): ``PIXEL_BUDGET_IMAGES`` images at the per-file limit (one image always goes)."""
    return PIXEL_BUDGET_IMAGES * (max_megapixels or reader.DEFAULT_MAX_MEGAPIXELS) * 1e6


def admission_pixels(path: Path, max_megapixels: float) -> int:
    """What an item counts against ``pixel_budget``: its header's pixels, 0 when it will be refused
    from its header (it never holds memory)."""
    px = reader.header_pixels(path)
    return 0 if max_megapixels and px > max_megapixels * 1e6 else px


def infer_item(session, decoded: Decoded, frame: torch.Tensor | None, opts: CutoutOptions,
               results: list | None = None, small: torch.Tensor | None = None,
               defer: bool = False) -> np.ndarray | Deferred:
    """The mask half of the pipeline (``pipeline.frame_alpha``) for one decoded image: float32 ``[H,W]``.

    A file that had its own alpha channel keeps it: what was transparent stays transparent.
    ``results``: the network's ``quality.FrameResult`` is appended (its small photo makes the
    review page's thumbnail). ``small``, ``defer``: see ``frame_alpha``; a deferred mask is
    resolved by ``_save`` on a writer thread.
    """
    if frame is None:
        frame = reader.to_frame(decoded.rgb)
    own = None if decoded.alpha is None else reader.to_frame(decoded.alpha)
    alpha = frame_alpha(session, frame, opts, own, node="cli.py", results=results, small=small, defer=defer)
    return alpha.then(torch.Tensor.numpy) if isinstance(alpha, Deferred) else alpha.numpy()


def seen(results: list | None, small: bool = True) -> tuple[torch.Tensor | None, float]:
    """From ``infer_item``'s ``results``: the photo as the network saw it (``[1,3,s,s]``, for the review
    thumbnails, ``review.square_view_u8``; None unless ``small``) and its looks' agreement (for the
    doubt score)."""
    r = results[-1] if results else None
    if r is None:
        return None, 1.0
    return (r.small if small else None), r.agreement


def render_item(rgb: np.ndarray, alpha: np.ndarray, opts: CutoutOptions) -> np.ndarray:
    """The pixel half of the pipeline (``pipeline.render_pixels``) for one image: the uint8 pixels to encode."""
    return render_pixels(rgb, torch.from_numpy(np.ascontiguousarray(alpha, dtype=np.float32)), opts)


@dataclass
class Resume:
    """What one run knows about its destination: the manifest and this run's settings fingerprint."""

    manifest: manifest.Manifest
    values: dict
    fp: str
    review: "ReviewStore | None" = None  # the review page's spool (dataset.review), when one is written
    earlier: list = field(default_factory=list)  # (rel, output) of the outputs up to date, made by an earlier run

    def record(self, dest: Path, planned: Planned, ident: dict | None, saved: writer.Saved) -> dict | None:
        return manifest.make_record(dest, planned, ident, self.fp, saved.files, saved.captions)

    def add(self, planned: Planned, record: dict | None) -> None:
        self.manifest.add(record, self.values, masks_only=not planned.write_image)

    def reviewed(self, planned: Planned, info: dict | None) -> dict | None:
        """One written output's thumbnails go to the review spool, not into memory; returns ``info``
        without them."""
        if not info:
            return info
        thumbs = info.pop("thumbs", None)
        if self.review is not None:
            self.review.add(planned.rel, str(planned.image), info, thumbs)
        return info


# Job options that never change an output's pixels; any other (one added later included) is
# part of the manifest's fingerprint, as for the write options (manifest.NOT_PIXELS).
JOB_NOT_PIXELS = {"cutout", "recursive", "pattern", "start", "limit", "write", "read_workers",
                  "write_workers", "prefetch", "max_megapixels"}


def settings_for(opts: JobOptions) -> dict:
    """This run's pixel settings (model file MD5 included)."""
    import dataclasses

    from ..models.session import locate

    extra = {f.name: getattr(opts, f.name) for f in dataclasses.fields(opts) if f.name not in JOB_NOT_PIXELS}
    return manifest.settings_values(opts.write, opts.cutout, locate(opts.model)[1], extra)


def plan(source: Path, dest: Path, opts: JobOptions, report: Report, resume_state: Resume | None = None) -> list[Planned]:
    """The items still to do, with the files each becomes (``plan.plan_outputs``); fills ``report``
    with listing problems, refused items (name clashes, captions outside the source), outputs that
    are up to date (skipped) and the reason each existing output is redone."""
    items, problems = reader.list_images(source, opts.recursive, opts.pattern, opts.start, opts.limit)
    report.total = len(items) + len(problems)
    report.failed.extend((p.rel, p.reason) for p in problems)
    w = opts.write
    out = plan_outputs(items, dest, w.fmt, save_mask=w.save_mask, mask_dir=w.mask_dir,
                       copy_captions=w.copy_captions, keep_both=w.existing == "keep_both", source_root=source)
    report.failed.extend((p.rel, p.reason) for p in out.refused)
    r = resume_state
    todo, done = resume.split_done(out.planned, dest, w.existing, r.manifest if r else None, r.fp if r else "",
                                   lambda p, rec: manifest.same_source(p.item.path, rec))
    report.skipped.extend(p.rel for p in done)
    if r is not None:
        r.earlier = [(p.rel, str(p.image)) for p in done] + [(p.rel, str(p.image)) for p in todo
                                                             if not p.write_image]
    report.redone.extend((p.rel, p.reason) for p in todo if p.reason)
    order = {str(it.rel): i for i, it in enumerate(items)}
    report.failed.sort(key=lambda f: order.get(f[0], -1))
    return todo


def _save(dest: Path, planned: Planned, decoded: Decoded, ident: dict | None, alpha: np.ndarray,
          opts: JobOptions, state: Resume, view: tuple = (None, 1.0)) -> tuple[writer.Saved, dict | None]:
    """Writer-thread work for one item: the pipeline's pixel half, then the atomic writes. ``view``:
    ``seen``'s (small photo, agreement)."""
    from .review import square_view_u8

    small, agreement = view
    photo = None if small is None else square_view_u8(small)  # here, not on the network's thread
    if isinstance(alpha, Deferred):  # the upsample to full size, also off the network's thread
        alpha = alpha.resolve()
    saved = writer.save_item(dest, planned, decoded.rgb, alpha, opts.write, decoded.icc,
                             lambda rgb, a: render_item(rgb, a, opts.cutout), photo, agreement)
    return saved, state.record(dest, planned, ident, saved)


def begin(source: Path, dest: Path, opts: JobOptions, report: Report, on_start=None):
    """What every engine does before the first image: read the manifest, plan (resume, refusals,
    name clashes), create dest, remove temporaries of a killed run, start the progress bar.
    Returns (to do, progress, resume state)."""
    values = settings_for(opts)
    state = Resume(manifest.Manifest(dest, opts.write.fsync), values, manifest.fingerprint(values))
    if opts.write.review:
        from .review import ReviewStore

        state.review = ReviewStore(dest)
    state.manifest.know(state.fp, values)
    todo = plan(source, dest, opts, report, state)
    if todo:
        dest.mkdir(parents=True, exist_ok=True)
        state.manifest.compact()
    removed = writer.clean_stale_temps(dest)
    if removed:
        log.info("Cutout dataset: removed %d temporary files left by an interrupted run", removed)
    progress = comfy_glue.Progress(len(todo))
    if on_start is not None:
        on_start(report, len(todo))
    return todo, progress, state


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
    todo, progress, state = begin(source, dest, opts, report, on_start)
    by_rel = {p.rel: p for p in todo}
    finished = 0

    admitted: dict[str, int] = {}  # rel -> pixels, from admission to the end of its write

    def finish(rel: str, status: str, reason: str = "") -> None:
        nonlocal finished
        finished += 1
        inflight["px"] -= admitted.pop(rel, 0)
        report.record(rel, status, reason)
        progress.update(1)
        if on_item is not None:
            on_item(rel, status, finished, len(todo))

    def collect(rel: str, fut: Future) -> None:
        try:
            saved, record = fut.result()
            info = state.reviewed(by_rel[rel], saved.info)  # before the record: a kill between redoes it
            state.add(by_rel[rel], record)
            report.result(rel, info)
            finish(rel, saved.status)
        except WriteError as e:
            finish(rel, "failed", str(e))
        except Exception as e:  # a bug in one item must not lose the others
            log.exception("Cutout dataset: writing %s failed", rel)
            finish(rel, "failed", f"{type(e).__name__}: {e}")

    def collect_finished(block: bool = False) -> None:
        """Collect the writes that are done, in any order (with ``block``, after at least one is): waiting
        for the oldest would leave a writer idle while a large photo holds the head of the line."""
        if block and not any(f.done() for _, f in writes):
            wait([f for _, f in writes], return_when=FIRST_COMPLETED)
        for item in [w for w in writes if w[1].done()]:
            writes.remove(item)
            collect(*item)

    readers = ThreadPoolExecutor(max(1, opts.read_workers), thread_name_prefix="cutout-read")
    writers = ThreadPoolExecutor(max(1, opts.write_workers), thread_name_prefix="cutout-write")
    reads: deque[tuple[Planned, Future]] = deque()
    writes: deque[tuple[str, Future]] = deque()
    pending = deque(todo)
    max_writes = max(2, 2 * opts.write_workers)
    # Memory is bounded in pixels, not only in images: the items between admission (read) and
    # their finished write hold at most `budget` pixels (one item always goes, whatever its size).
    budget = pixel_budget(opts.max_megapixels)
    inflight = {"px": 0}

    def refill() -> None:
        while pending and len(reads) < max(1, opts.prefetch):
            p = pending[0]
            px = admission_pixels(p.item.path, opts.max_megapixels)
            if admitted and inflight["px"] + px > budget:
                return
            pending.popleft()
            admitted[p.rel] = px
            inflight["px"] += px
            report.peak_pixels = max(report.peak_pixels, inflight["px"])
            reads.append((p, readers.submit(prepare, p.item, opts.max_megapixels, session.family.size)))

    try:
        refill()
        while reads or pending:
            comfy_glue.check_interrupt()
            if not reads:  # the pixel budget is held by writes in flight: wait for one of them
                if writes:
                    collect_finished(block=True)
                refill()
                continue
            planned, fut = reads.popleft()
            refill()
            rel = planned.rel
            try:
                decoded, frame, small, ident = fut.result()
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
            looked: list = []
            try:
                alpha = infer_item(session, decoded, frame, opts.cutout, looked, small, defer=True)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as e:
                if comfy_glue.is_interrupt(e):
                    raise
                finish(rel, "failed", f"inference failed ({type(e).__name__}: {str(e)[:200]})")
                continue
            del frame, small
            while len(writes) >= max_writes:
                collect_finished(block=True)
            report.result(rel, notes=decoded.notes)
            view = seen(looked, opts.write.review)  # not the FrameResult: its full-size mask would stay alive
            del looked
            writes.append((rel, writers.submit(_save, dest, planned, decoded, ident, alpha, opts, state, view)))
            collect_finished()
        while writes:
            collect_finished(block=True)
    except BaseException as e:
        report.interrupted = True
        for _it, f in reads:
            f.cancel()
        for rel, f in writes:  # let writes in flight finish: each is atomic, and counts for the resume
            try:
                saved, record = f.result()
                info = state.reviewed(by_rel[rel], saved.info)
                state.add(by_rel[rel], record)
                report.done.append(rel)
                report.result(rel, info)
            except BaseException:
                pass
        if not isinstance(e, KeyboardInterrupt):  # ComfyUI's Cancel and real errors go up
            raise
    finally:
        readers.shutdown(wait=True, cancel_futures=True)
        writers.shutdown(wait=True)
        report.seconds = time.perf_counter() - t0
    write_review_page(report, state, source)
    return report


def write_review_page(report: Report, state: Resume, source: Path) -> None:
    """Both engines' last step (unless ``--no-review``): ``review.html`` from the review spool, with
    this run's outputs and the earlier ones that were up to date (``review.ReviewStore.write_page``)."""
    if state.review is None or not (report.items or state.earlier):
        return
    try:
        path = state.review.write_page(state.earlier, f"Cutout review: {Path(source).name}", report.items,
                                       report.earlier)
        report.review = None if path is None else str(path)
    except OSError as e:
        log.warning("Cutout dataset: could not write the review page: %s", e)
    except Exception:  # every output is written: the page must not turn the job into a failure
        log.exception("Cutout dataset: could not write the review page")
