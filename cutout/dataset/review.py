"""The review page and the doubt table of a folder job.

``write_review`` writes ``review.html`` into the destination: one self-contained file (the
thumbnails are inlined, no script or font from anywhere) showing every cut-out on a
checkerboard next to its original, most doubtful first, so a person looks at the top of the
list instead of at every photo. ``doubt_rows`` is the same ranking as table rows (JSON, CSV).
"""

from __future__ import annotations

import csv
import html
import io
from pathlib import Path

DOUBTFUL = 0.5  # a doubt score at or above this is listed as doubtful

_STYLE = """body{font:14px sans-serif;margin:16px;background:#fafafa}
.r{display:flex;gap:12px;align-items:center;padding:8px;border-bottom:1px solid #ddd}
.r img{max-width:256px;max-height:256px}
.c{background:repeating-conic-gradient(#ccc 0 25%,#fff 0 50%) 0 0/16px 16px}
.d{font-weight:bold}.hi{color:#b00}"""


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


def review_html(items: dict[str, dict], title: str) -> str:
    rows = doubt_rows(items)
    n_doubt = sum(r["doubtful"] for r in rows)
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
           f"<p>{len(rows)} cut-outs, most doubtful first; {n_doubt} with doubt &ge; {DOUBTFUL}. "
           "Left: the original; right: the cut-out on a checkerboard.</p>"]
    for r in rows:
        info = items[r["file"]]
        orig, cut = info.get("thumbs", ("", ""))
        cues = ", ".join(f"{k[4:]} {v:.2f}" for k, v in r.items() if k.startswith("cue_") and v)
        share = (f"subject {100 * r['share_before']:.0f} % of the frame"
                 + (f" &rarr; {100 * r['share_after']:.0f} % cropped" if r["share_after"] != r["share_before"] else ""))
        out.append(f"<div class='r'><img src='{orig}' alt='original'><img class='c' src='{cut}' alt='cut-out'>"
                   f"<div><div class='d{' hi' if r['doubtful'] else ''}'>doubt {r['doubt']:.2f}</div>"
                   f"<div>{html.escape(r['file'])}</div><div>{html.escape(cues)}</div><div>{share}</div></div></div>")
    out.append("</body></html>")
    return "\n".join(out)


def write_review(dest: Path, items: dict[str, dict], title: str = "Cutout review") -> Path | None:
    """``dest``/review.html for the items written this run (atomically); None when there are none."""
    from .writer import atomic_write

    if not any("thumbs" in i for i in items.values()):
        return None
    path = Path(dest) / "review.html"
    atomic_write(path, review_html(items, title).encode("utf-8"))
    return path
