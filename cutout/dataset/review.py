"""The review page and the doubt table of a folder job.

``review.html`` in the destination is one self-contained file (thumbnails inlined, no script or
font from anywhere) showing every cut-out on a checkerboard next to its original, most doubtful
first, so a person looks at the top of the list instead of at every photo. ``doubt_rows`` is the
same ranking as table rows (JSON, CSV).

Bounded cost: ``thumbnails`` is made from pictures that already exist at a small size (the photo
as the network saw it, the 512 px mask copy of the doubt cues), never from the full-size output.
Each pair is appended to ``.cutout-review.jsonl`` in the destination as soon as its output is in
place (``ReviewStore.add``), so no picture stays in memory; ``write_page`` assembles the page at
the end, in doubt order, from that file. The file outlives the run: a rerun that skips up-to-date
outputs still shows them, marked as from an earlier run, when the output is still the very file
its entry was made for (size and mtime).
"""

from __future__ import annotations

import base64
import csv
import functools
import html
import io
import json
import logging
import os
from pathlib import Path

import numpy as np

from .manifest import append_lines, ends_torn

log = logging.getLogger("comfyui_cutout")

DOUBTFUL = 0.5  # a doubt score at or above this is listed as doubtful
STORE = ".cutout-review.jsonl"
PAGE = "review.html"
THUMB = 256  # thumbnail side, px
PICTURES = 1000  # rows with pictures, the most doubtful first (~25 kB each); the rest are text rows
_CHECK = 8  # checkerboard square, px

_STYLE = """body{font:14px sans-serif;margin:16px;background:#fafafa}
.r{display:flex;gap:12px;align-items:center;padding:8px;border-bottom:1px solid #ddd}
.r img{height:192px;max-width:256px;object-fit:contain}
.d{font-weight:bold}.hi{color:#b00}.e{color:#666}"""


def doubt_rows(items: dict[str, dict]) -> list[dict]:
    """One row per written item, most doubtful first."""
    rows = []
    for rel, info in items.items():
        if "doubt" not in info:
            continue
        rows.append({"file": rel, "doubt": info["doubt"], "doubtful": info["doubt"] >= DOUBTFUL,
                     **{f"cue_{k}": v for k, v in info.get("cues", {}).items()},
                     "share_before": info.get("share_before"), "share_after": info.get("share_after"),
                     "box": " ".join(map(str, info.get("box", [])))})
    rows.sort(key=lambda r: (-r["doubt"], r["file"]))
    return rows


def rows_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    if rows:
        keys = list(rows[0])
        for r in rows:
            keys += [k for k in r if k not in keys]
        w = csv.DictWriter(buf, keys, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


# ----------------------------------------------------------------------------- thumbnails

def _fit(w: int, h: int, side: int = THUMB) -> tuple[int, int]:
    s = side / max(w, h, 1)
    return max(1, round(w * s)), max(1, round(h * s))


def _uri(im) -> str:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


@functools.lru_cache(maxsize=16)
def _checker(w: int, h: int):
    from PIL import Image

    yy, xx = np.indices((h, w))
    return Image.fromarray(np.where((yy // _CHECK + xx // _CHECK) % 2 == 0, 204, 255).astype(np.uint8)).convert("RGB")


def thumbnails(small_photo: np.ndarray, small_alpha: np.ndarray, size: tuple[int, int],
               box: tuple[int, int, int, int] | None = None) -> tuple[str, str]:
    """(the original, the cut-out on a checkerboard) as JPEG data URIs, at most ``THUMB`` px a side.

    ``small_photo`` uint8 ``[s,s',3]``: the whole photo at a small size, any aspect (the network's
    square view is stretched back to the photo's); ``small_alpha`` float ``[h,w]`` 0..1: the whole
    frame's mask at a small size; ``size`` the photo's (H, W); ``box`` the written crop (x0, y0, x1,
    y1) in photo pixels, None = all of it. About a millisecond: a few resizes of small pictures.
    """
    from PIL import Image

    H, W = size
    x0, y0, x1, y1 = box or (0, 0, W, H)
    photo = Image.fromarray(np.ascontiguousarray(small_photo))
    sh, sw = small_photo.shape[:2]
    orig = photo.resize(_fit(W, H), Image.BILINEAR)
    cw, ch = _fit(x1 - x0, y1 - y0)
    cut = photo.resize((cw, ch), Image.BILINEAR, box=(x0 * sw / W, y0 * sh / H, x1 * sw / W, y1 * sh / H))
    ah, aw = small_alpha.shape
    mask = Image.fromarray(np.ascontiguousarray(small_alpha, dtype=np.float32), "F").resize(
        (cw, ch), Image.BILINEAR, box=(x0 * aw / W, y0 * ah / H, x1 * aw / W, y1 * ah / H))
    mask = mask.point(lambda v: v * 255.0).convert("L")  # clipped to 0..255
    return _uri(orig), _uri(Image.composite(cut, _checker(cw, ch), mask))


def square_view_u8(small: "torch.Tensor") -> np.ndarray:  # noqa: F821 - torch only typed here
    """The network's shrunk photo ``[1,3,s,s]`` float 0..1 -> uint8 ``[s,s,3]`` (a thumbnail's source)."""
    a = small[0].detach().cpu().numpy().transpose(1, 2, 0)
    return (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# ----------------------------------------------------------------------------- the spool and the page

def _stat(path: Path) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


class ReviewStore:
    """``dest``/.cutout-review.jsonl: one line per written output (its doubt, crop, thumbnails and the
    output file's size and mtime), appended by the one process that plans the run; the last line of
    an output wins. ``written`` remembers this run's outputs (names only)."""

    def __init__(self, dest: Path):
        self.dest = Path(dest)
        self.path = self.dest / STORE
        self.written: dict[str, str] = {}  # rel -> output, this run
        self._newline = ends_torn(self.path)  # a kill mid-line: the next line must not join it

    def add(self, rel: str, out: str, info: dict, thumbs: tuple[str, str] | None) -> None:
        """One written output's entry (``info``: doubt, cues, shares, box; ``thumbs``: data URIs)."""
        self.written[rel] = out
        try:
            line = json.dumps({"out": out, "src": rel, "stat": _stat(self.dest / out), "info": info,
                               "thumbs": list(thumbs) if thumbs else None})  # ASCII: any file name
            append_lines(self.path, [line], self._newline)
            self._newline = False
        except (OSError, ValueError, TypeError) as e:  # the page then shows this one as a text row
            log.warning("Cutout dataset: could not keep the review thumbnails of %s: %s", rel, e)

    def _index(self) -> tuple[dict[str, tuple[int, dict]], int]:
        """out -> (offset of its last line, that line without its thumbnails); and the line count."""
        index: dict[str, tuple[int, dict]] = {}
        lines = 0
        try:
            f = open(self.path, "rb")
        except OSError:
            return index, 0
        with f:
            off = 0
            for line in f:
                lines += 1
                try:
                    e = json.loads(line)
                    if isinstance(e, dict) and "out" in e:
                        e.pop("thumbs", None)
                        index[str(e["out"])] = (off, e)
                except ValueError:
                    pass  # a line torn by a kill: that output shows as a text row
                off += len(line)
        return index, lines

    def _thumbs(self, f, offset: int) -> tuple[str, str] | None:
        f.seek(offset)
        try:
            t = json.loads(f.readline()).get("thumbs")
        except ValueError:
            return None
        return tuple(t) if t else None

    def write_page(self, earlier: list[tuple[str, str]], title: str, items: dict[str, dict],
                   found: dict | None = None) -> Path | None:
        """``dest``/review.html: this run's outputs (``items``: rel -> info) and the ``earlier`` ones
        (rel, output) that were up to date, most doubtful first; None when there is nothing to show.
        ``found`` gets the stored info (doubt, cues, ...) of the earlier ones, rel -> info. Then the
        spool is compacted when superseded lines are the majority."""
        from .writer import _atomic_file

        index, lines = self._index()
        rows = []  # (doubt or -1, rel, info, offset or None, earlier)
        for rel, out in self.written.items():
            got = index.get(out)
            info = items.get(rel) or (got[1]["info"] if got else {})
            rows.append((info.get("doubt", -1.0), rel, info, got[0] if got else None, False))
        for rel, out in earlier:
            if rel in self.written:
                continue
            got = index.get(out)
            if got and got[1].get("src") == rel and got[1].get("stat") == _stat(self.dest / out):
                rows.append((got[1]["info"].get("doubt", -1.0), rel, got[1]["info"], got[0], True))
                if found is not None:
                    found[rel] = got[1]["info"]
            else:
                rows.append((-1.0, rel, {}, None, True))
        if not rows:
            return None
        rows.sort(key=lambda r: (-r[0], r[1]))
        path = self.dest / PAGE
        n_doubt = sum(r[0] >= DOUBTFUL for r in rows)
        n_earlier = sum(r[4] for r in rows)
        with open(self.path, "rb") if self.path.exists() else io.BytesIO() as spool, \
                _atomic_file(path, fsync=False) as out:
            def put(text: str) -> None:
                out.write(text.encode("utf-8", "replace"))  # a file name that is not UTF-8: shown with '?'

            put(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>\n"
                f"<p>{len(rows)} cut-outs ({len(rows) - n_earlier} from this run, {n_earlier} up to date from "
                f"earlier runs), most doubtful first; {n_doubt} with doubt &ge; {DOUBTFUL}. Left: the original; "
                "right: the cut-out on a checkerboard."
                + (f" Pictures for the {PICTURES} most doubtful, the rest as text rows." if len(rows) > PICTURES
                   else "") + "</p>\n")
            for k, (score, rel, info, offset, old) in enumerate(rows):
                thumbs = self._thumbs(spool, offset) if offset is not None and k < PICTURES else None
                put(_row(rel, info, thumbs, old))
            put("</body></html>\n")
        self._compact(index, lines)
        return path

    def _compact(self, index: dict, lines: int) -> None:
        """Rewrite the spool with only each output's last line (atomically), when that halves it."""
        from .writer import _atomic_file

        if lines <= 2 * len(index) + 50:
            return
        try:
            with open(self.path, "rb") as f, _atomic_file(self.path, fsync=False) as out:
                for off, _e in sorted(index.values(), key=lambda v: v[0]):
                    f.seek(off)
                    out.write(f.readline())
        except OSError as e:
            log.warning("Cutout dataset: could not compact %s: %s", self.path, e)


def _row(rel: str, info: dict, thumbs, earlier: bool) -> str:
    pics = ""
    if thumbs:
        pics = (f"<img src='{html.escape(thumbs[0])}' alt='original'>"
                f"<img src='{html.escape(thumbs[1])}' alt='cut-out'>")
    head = []
    if "doubt" in info:
        hi = " hi" if info["doubt"] >= DOUBTFUL else ""
        head.append(f"<div class='d{hi}'>doubt {info['doubt']:.2f}</div>")
    head.append(f"<div>{html.escape(rel)}</div>")
    cues = ", ".join(f"{k} {v:.2f}" for k, v in (info.get("cues") or {}).items() if v)
    if cues:
        head.append(f"<div>{html.escape(cues)}</div>")
    if "share_before" in info:
        b, a = info["share_before"], info.get("share_after", info["share_before"])
        head.append(f"<div>subject {100 * b:.0f} % of the frame"
                    + (f" &rarr; {100 * a:.0f} % cropped" if a != b else "") + "</div>")
    if earlier and not info:
        head.append("<div class='e'>up to date from an earlier run; no thumbnail or doubt stored for it "
                    "(made with --no-review, or before review pages existed)</div>")
    elif earlier:
        head.append("<div class='e'>up to date from an earlier run</div>")
    return f"<div class='r'>{pics}<div>{''.join(head)}</div></div>\n"
