"""The three stages of the Ray engine, as they run inside Ray worker processes.

Ray workers are fresh Python processes that may not have the pack's folder on ``sys.path``
(a cluster's working_dir, or the driver's path on a shared disk). So this module imports only the
standard library and numpy at module level, ``ray_engine`` asks Ray's cloudpickle to ship
it *by value*, and each stage calls ``_pack(root)`` first, which puts the pack's folder on
``sys.path`` and loads it, then uses the pack's own per-item functions:

* ``decode_row``   -> ``dataset.reader.decode`` (EXIF, 16-bit, the file's own alpha, ICC);
* ``InferActor``   -> ``models.session.get_session`` once per actor, ``dataset.job.infer_item``
  (the pipeline's mask half, ``pipeline.frame_alpha``) per image;
* ``write_row``    -> ``dataset.job.render_item`` (the pipeline's pixel half, ``pipeline.render_pixels``),
  then ``dataset.writer.save_item`` (captions, masks, atomic writes, at the planned names).

The ``CutoutOptions`` travel as plain values (``to_dict`` / ``from_dict``).

Rows carry only plain values (str, int, bytes): pixels travel as raw bytes plus their shape,
so they go through the object store without any pack class in them. The predicted mask
travels as float32, the very array the local engine hands to the writer, so both engines
write the same bytes.
"""

from __future__ import annotations

import os
import sys

import numpy as np


def _pack(root: str):
    """Import the pack in this worker; ``root`` is the folder holding ``cutout/`` on the driver."""
    for cand in (root, os.getcwd()):  # the driver's folder (shared disk / same machine), or Ray's working_dir
        if cand and os.path.isdir(os.path.join(cand, "cutout")):
            if cand not in sys.path:
                sys.path.insert(0, cand)
            break
    import cutout

    return cutout


def _item(row):
    from pathlib import Path, PurePosixPath

    from cutout.dataset.reader import Item

    return Item(Path(str(row["path"])), PurePosixPath(str(row["rel"])))


def _empty(rel, path, plan, error=""):
    return {"rel": rel, "path": path, "plan": plan, "ident": "", "h": 0, "w": 0, "rgb": b"", "alpha": b"",
            "icc": b"", "notes": "[]", "error": error}


class PixelBudget:
    """The local engine's bound on pixels in flight (``job.pixel_budget``), for the whole Ray job: one
    small actor that decode tasks ask before they decode (``acquire``, waits while the budget is
    spent) and write tasks tell when their files are written (``release``).

    Up to ``floor`` items always go whatever their size, so that an inference batch of that many can
    fill (Ray Data waits for a full batch); ``rel`` makes both calls idempotent for retried tasks.
    ``peak`` is the most pixels held at once."""

    def __init__(self, budget: float, floor: int = 1):
        self.budget, self.floor = float(budget), max(1, int(floor))
        self.held: dict[str, int] = {}
        self.total = self.most = 0
        self._cond = None

    def _condition(self):
        import asyncio

        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    async def acquire(self, rel: str, px: int) -> bool:
        cond = self._condition()
        async with cond:
            while rel not in self.held and len(self.held) >= self.floor and self.total + px > self.budget:
                await cond.wait()
            if rel not in self.held:
                self.held[rel] = int(px)
                self.total += int(px)
                self.most = max(self.most, self.total)
        return True

    async def release(self, rel: str) -> None:
        cond = self._condition()
        async with cond:
            self.total -= self.held.pop(rel, 0)
            cond.notify_all()

    async def peak(self) -> int:
        return self.most


def _release(budget, rel: str) -> None:
    if budget is not None:
        budget.release.remote(rel)


def decode_row(row: dict, root: str, max_megapixels: float = 0.0, budget=None) -> dict:
    """Stage 1 (tasks): one file -> its 8-bit RGB (+ own alpha, ICC) as bytes and its identity for
    the manifest, or the reason it failed (``job.prepare``'s steps). ``budget``: a ``PixelBudget``
    actor, asked before decoding."""
    _pack(root)
    rel, path, plan = str(row["rel"]), str(row["path"]), str(row["plan"])
    if budget is not None:
        import ray

        from cutout.dataset.job import admission_pixels

        ray.get(budget.acquire.remote(rel, admission_pixels(path, max_megapixels)))
    out = _decode(rel, path, plan, row, max_megapixels)
    if out["error"]:
        _release(budget, rel)  # holds no pixels (write_row releases again: harmless)
    return out


def _decode(rel: str, path: str, plan: str, row: dict, max_megapixels: float) -> dict:
    import json

    from cutout.dataset import manifest, reader

    try:
        reader.check_pixels(path, max_megapixels)
        d, ident = manifest.identify_around(path, lambda: reader.decode(_item(row)))
    except reader.ReadError as e:
        return _empty(rel, path, plan, str(e))
    except MemoryError:
        return _empty(rel, path, plan, "not enough memory to decode it")
    except Exception as e:  # a decoder bug on one file must not stop the others (as in job.run_job)
        return _empty(rel, path, plan, f"cannot read ({type(e).__name__}: {str(e)[:200]})")
    h, w = d.rgb.shape[:2]
    return {"rel": rel, "path": path, "plan": plan, "ident": json.dumps(ident), "h": int(h), "w": int(w), "rgb": d.rgb.tobytes(),
            "alpha": b"" if d.alpha is None else d.alpha.tobytes(), "icc": d.icc or b"", "notes": json.dumps(list(d.notes)),
            "error": ""}


class InferActor:
    """Stage 2 (actors): loads the model once through the pack's session store, runs the tensor path per image."""

    def __init__(self, root: str, cutout: dict, ort_threads: int = 0, small: bool = False):
        import warnings

        # rows arrive as read-only buffers; reader.to_frame copies them into a new float tensor anyway
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        if ort_threads and ort_threads > 0:
            os.environ["CUTOUT_ORT_THREADS"] = str(int(ort_threads))  # read by models.session.session_options
        _pack(root)
        from cutout.models.session import get_session

        from cutout.options import CutoutOptions

        self.opts = CutoutOptions.from_dict(cutout)
        self.small = small  # pass on the photo as the network saw it (the review page's thumbnail)
        self.session = get_session(self.opts.model, self.opts.device)

    def __call__(self, batch: dict) -> dict:
        from cutout.dataset.job import infer_item, seen
        from cutout.dataset.review import square_view_u8
        from cutout.dataset.reader import Decoded

        n = len(batch["rel"])
        masks, errors, smalls, agree = [], [], [], []
        for i in range(n):
            err = str(batch["error"][i])
            smalls.append(b"")
            agree.append(1.0)
            if err:
                masks.append(b"")
                errors.append(err)
                continue
            h, w = int(batch["h"][i]), int(batch["w"][i])
            rgb = np.frombuffer(batch["rgb"][i], np.uint8).reshape(h, w, 3)
            a = batch["alpha"][i]
            alpha = np.frombuffer(a, np.uint8).reshape(h, w) if len(a) else None
            try:
                looked: list = []
                m = infer_item(self.session, Decoded(_item({"path": batch["path"][i], "rel": batch["rel"][i]}),
                                                     rgb, alpha, None), None, self.opts, looked)
                view, agreement = seen(looked, self.small)
                small = b""
                if view is not None:
                    view = square_view_u8(view)
                    small = view.shape[0].to_bytes(4, "little") + view.tobytes()
                mask = np.ascontiguousarray(m, dtype=np.float32).tobytes()
            except Exception as e:  # one bad image must not fail the batch (and be retried forever)
                masks.append(b"")
                errors.append(f"inference failed ({type(e).__name__}: {str(e)[:200]})")
                continue
            masks.append(mask)  # every column gets exactly one value per row
            errors.append("")
            smalls[-1], agree[-1] = small, agreement
        return {"rel": batch["rel"], "path": batch["path"], "plan": batch["plan"], "ident": batch["ident"],
                "h": batch["h"], "w": batch["w"], "rgb": batch["rgb"],
                "icc": batch["icc"], "notes": batch["notes"], "mask": _objects(masks), "error": _objects(errors),
                "small": _objects(smalls), "agreement": np.asarray(agree, dtype=np.float64)}


def _objects(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def write_row(row: dict, root: str, dest: str, wopts: dict, cutout: dict, fp: str, budget=None) -> dict:
    """``_write``, then the item's pixels go back to the ``budget`` (a ``PixelBudget`` actor)."""
    try:
        return _write(row, root, dest, wopts, cutout, fp)
    finally:
        _release(budget, str(row["rel"]))


def _failed(rel: str, reason: str, notes: str) -> dict:
    """``_write``'s status row for an item that was not written."""
    return {"rel": rel, "status": "failed", "reason": reason, "record": "", "info": "", "notes": notes}


def _write(row: dict, root: str, dest: str, wopts: dict, cutout: dict, fp: str) -> dict:
    """Stage 3 (tasks): encode and write one result atomically, at the names the driver planned
    (a retried task writes the same files again: nothing is lost or written twice); returns its
    status for the report, what the report keeps of it (``Saved.info``: doubt, subject share, crop
    box, review thumbnails; the decode notes) and its manifest record, which the driver appends."""
    _pack(root)
    import json
    from pathlib import Path

    from cutout.dataset import manifest, writer
    from cutout.dataset.job import render_item
    from cutout.options import CutoutOptions
    from cutout.dataset.plan import Planned

    rel = str(row["rel"])
    err = str(row["error"])
    notes = str(row.get("notes") or "[]")
    if err:
        return _failed(rel, err, notes)
    opts = writer.WriteOptions(**{**wopts, "mask_dir": Path(wopts["mask_dir"]) if wopts.get("mask_dir") else None})
    h, w = int(row["h"]), int(row["w"])
    rgb = np.frombuffer(row["rgb"], np.uint8).reshape(h, w, 3)
    alpha = np.frombuffer(row["mask"], np.float32).reshape(h, w)
    icc = bytes(row["icc"]) or None
    try:
        planned = Planned.from_row(_item(row), json.loads(str(row["plan"])))
        cut = CutoutOptions.from_dict(cutout)
        small = bytes(row.get("small") or b"")  # height (4 bytes) + uint8 [s,s',3]: the network's view
        view = None
        if small:
            sh = int.from_bytes(small[:4], "little")
            view = np.frombuffer(small, np.uint8, offset=4).reshape(sh, -1, 3)
        saved = writer.save_item(Path(dest), planned, rgb, alpha, opts, icc, lambda x, a: render_item(x, a, cut), view,
                                 float(row.get("agreement", 1.0)))
    except writer.WriteError as e:
        return _failed(rel, str(e), notes)
    except Exception as e:  # a bug in one item must not lose the others
        return _failed(rel, f"{type(e).__name__}: {e}", notes)
    record = manifest.make_record(Path(dest), planned, json.loads(str(row["ident"]) or "null"), fp, saved.files,
                                  saved.captions)
    return {"rel": rel, "status": saved.status, "reason": "", "record": json.dumps(record),
            "info": json.dumps(saved.info), "notes": notes}
