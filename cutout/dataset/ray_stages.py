"""The three stages of the Ray engine, as they run inside Ray worker processes.

Ray workers are fresh Python processes that may not have the pack's folder on ``sys.path``
(a cluster's working_dir, or the driver's path on a shared disk). So this module imports only the
standard library and numpy at module level, ``ray_engine`` asks Ray's cloudpickle to ship
it *by value*, and each stage calls ``_pack(root)`` first, which puts the pack's folder on
``sys.path`` and loads it, then uses the pack's own per-item functions:

* ``decode_row``   -> ``dataset.reader.decode`` (EXIF, 16-bit, the file's own alpha, ICC);
* ``InferActor``   -> ``models.session.get_session`` once per actor, ``dataset.job.infer_item``
  (which is ``pipeline.predict_frame``) per image;
* ``write_row``    -> ``dataset.writer.save_item`` (captions, masks, atomic writes, policy).

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


def _empty(rel, path, error=""):
    return {"rel": rel, "path": path, "h": 0, "w": 0, "rgb": b"", "alpha": b"", "icc": b"", "error": error}


def decode_row(row: dict, root: str) -> dict:
    """Stage 1 (tasks): one file -> its 8-bit RGB (+ own alpha, ICC) as bytes, or the reason it failed."""
    _pack(root)
    from cutout.dataset import reader

    rel, path = str(row["rel"]), str(row["path"])
    try:
        d = reader.decode(_item(row))
    except reader.ReadError as e:
        return _empty(rel, path, str(e))
    except MemoryError:
        return _empty(rel, path, "not enough memory to decode it")
    except Exception as e:  # a decoder bug on one file must not stop the others (as in job.run_job)
        return _empty(rel, path, f"cannot read ({type(e).__name__}: {str(e)[:200]})")
    h, w = d.rgb.shape[:2]
    return {"rel": rel, "path": path, "h": int(h), "w": int(w), "rgb": d.rgb.tobytes(),
            "alpha": b"" if d.alpha is None else d.alpha.tobytes(), "icc": d.icc or b"", "error": ""}


class InferActor:
    """Stage 2 (actors): loads the model once through the pack's session store, runs the tensor path per image."""

    def __init__(self, root: str, model: str, device: str, ort_threads: int = 0,
                 refine: dict | None = None):
        import warnings

        # rows arrive as read-only buffers; reader.to_frame copies them into a new float tensor anyway
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        if ort_threads and ort_threads > 0:
            os.environ["CUTOUT_ORT_THREADS"] = str(int(ort_threads))  # read by models.session.session_options
        _pack(root)
        from cutout.models.session import get_session

        self.session = get_session(model, device)
        self.refine = dict(refine or {})  # imaging.refine_chain.refine_masks options (cli.py --refine ...)

    def __call__(self, batch: dict) -> dict:
        from cutout.dataset.job import infer_item
        from cutout.dataset.reader import Decoded

        n = len(batch["rel"])
        masks, errors = [], []
        for i in range(n):
            err = str(batch["error"][i])
            if err:
                masks.append(b"")
                errors.append(err)
                continue
            h, w = int(batch["h"][i]), int(batch["w"][i])
            rgb = np.frombuffer(batch["rgb"][i], np.uint8).reshape(h, w, 3)
            a = batch["alpha"][i]
            alpha = np.frombuffer(a, np.uint8).reshape(h, w) if len(a) else None
            try:
                m = infer_item(self.session, Decoded(_item({"path": batch["path"][i], "rel": batch["rel"][i]}),
                                                     rgb, alpha, None), refine=self.refine)
                masks.append(np.ascontiguousarray(m, dtype=np.float32).tobytes())
                errors.append("")
            except Exception as e:  # one bad image must not fail the batch (and be retried forever)
                masks.append(b"")
                errors.append(f"inference failed ({type(e).__name__}: {str(e)[:200]})")
        return {"rel": batch["rel"], "path": batch["path"], "h": batch["h"], "w": batch["w"], "rgb": batch["rgb"],
                "icc": batch["icc"], "mask": _objects(masks), "error": _objects(errors)}


def _objects(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def write_row(row: dict, root: str, dest: str, wopts: dict, planned_fresh: bool) -> dict:
    """Stage 3 (tasks): encode and write one result atomically; returns its status for the report.

    ``planned_fresh``: the driver planned this item as not yet done (resume policy 'skip'), so an
    output found already there was written by an earlier attempt of this very task (a retried
    task after a lost worker): it counts as done, not as skipped — nothing is lost or written twice.
    """
    _pack(root)
    from pathlib import Path

    from cutout.dataset import writer

    rel = str(row["rel"])
    err = str(row["error"])
    if err:
        return {"rel": rel, "status": "failed", "reason": err}
    opts = writer.WriteOptions(**{**wopts, "mask_dir": Path(wopts["mask_dir"]) if wopts.get("mask_dir") else None})
    h, w = int(row["h"]), int(row["w"])
    rgb = np.frombuffer(row["rgb"], np.uint8).reshape(h, w, 3)
    alpha = np.frombuffer(row["mask"], np.float32).reshape(h, w)
    icc = bytes(row["icc"]) or None
    try:
        saved = writer.save_item(Path(dest), _item(row), rgb, alpha, opts, icc)
    except writer.WriteError as e:
        return {"rel": rel, "status": "failed", "reason": str(e)}
    except Exception as e:  # a bug in one item must not lose the others
        return {"rel": rel, "status": "failed", "reason": f"{type(e).__name__}: {e}"}
    status = saved.status
    if status == "skipped" and planned_fresh:
        status = "done"
    return {"rel": rel, "status": status, "reason": ""}
