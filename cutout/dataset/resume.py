"""Resume: which planned outputs are up to date, and which must be (re)done and why.

``skip`` (the default) trusts only the manifest (``manifest.Manifest``): an output counts as
done when its record says it was made from this very source, captions included, with these
settings, and its files are still the ones written. ``trust`` is the old rule (an output that
exists is done, whatever made it). ``overwrite`` and ``keep_both`` redo / add everything.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from .plan import Planned


def split_done(planned: list[Planned], dest: Path, existing: str, manifest=None, fp: str = "",
               source_ok: Callable[[Planned, dict | None], bool] | None = None) -> tuple[list[Planned], list[Planned]]:
    """(to do, up to date). An item to redo carries its ``reason``; one that is up to date but
    lacks mask files asked for is planned with only those masks (``write_image`` False)."""
    todo, done = [], []
    for p in planned:
        if existing in ("overwrite", "keep_both") or not (Path(dest) / p.image).is_file():
            todo.append(p)
            continue
        if existing == "trust" or manifest is None:
            missing = tuple(m for m in p.masks if not (Path(m[0]) / m[1]).is_file())
        else:
            why, missing = manifest.why_stale(p, fp, lambda rec, p=p: source_ok(p, rec))
            if why:
                todo.append(dataclasses.replace(p, reason=why))
                continue
        if missing:
            todo.append(dataclasses.replace(p, masks=missing, write_image=False))
        else:
            done.append(p)
    return todo, done
