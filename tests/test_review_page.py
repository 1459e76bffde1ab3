"""The review page by default: cheap thumbnails from the network's small view, streamed to a spool
(never held in memory), and a page after a resumed run that still lists every output
(dataset.review, dataset.job); the doubt score's perturbation cue (imaging.subjects.doubt)."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

import cli
from cutout.dataset import review
from cutout.dataset.job import JobOptions, run_job
from cutout.dataset.writer import WriteOptions
from cutout.imaging.subjects import doubt


def _pictures(page: str) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(u)))
            for u in re.findall(r"src='data:image/jpeg;base64,([^']*)'", page)]


def _photo(path, w, h, seed, disc=True):
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 170.0) + rng.normal(0, 5, (h, w, 3))
    if disc:
        yy, xx = np.mgrid[0:h, 0:w]
        img[(xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (min(w, h) / 3) ** 2] = (200, 30, 40)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)


@pytest.fixture
def src(tmp_path):
    s = tmp_path / "src"
    s.mkdir()
    for i, (w, h) in enumerate([(160, 80), (90, 120), (100, 100)]):
        _photo(s / f"p{i}.png", w, h, i)
    return s


def _cli(src, dest, *extra):
    return cli.main(["--source", str(src), "--dest", str(dest), "--no-progress", *extra])


def _report(src, dest, path) -> str:
    assert _cli(src, dest, "--report", str(path)) == 0
    return path.read_text()


def test_thumbnails_keep_the_aspect_and_show_the_crop():
    # the network's square view of a 400x100 photo: left half red, right half blue
    photo = np.zeros((100, 400, 3), np.uint8)
    photo[:, :200] = (255, 0, 0)
    photo[:, 200:] = (0, 0, 255)
    square = np.asarray(Image.fromarray(photo).resize((320, 320), Image.BILINEAR))
    alpha = np.zeros((128, 512), np.float32)  # a small copy of the mask: subject = the left half
    alpha[:, :256] = 1.0
    orig_uri, cut_uri = review.thumbnails(square, alpha, (100, 400))
    orig = np.asarray(_decode(orig_uri)).astype(int)
    cut = np.asarray(_decode(cut_uri)).astype(int)
    assert orig.shape[:2] == (64, 256) and cut.shape[:2] == (64, 256)  # 4:1 as the photo, not square
    assert orig[32, 60, 0] > 200 and orig[32, 200, 2] > 200
    assert cut[32, 60, 0] > 200 and cut[32, 60, 2] < 60  # subject: the photo's red
    right = cut[:, 140:]  # background: the grey checkerboard, no blue
    assert abs(right[..., 0] - right[..., 2]).max() < 40 and right.min() > 150
    # a crop box of the written output: the cut-out thumbnail shows the box, at its aspect
    _o, boxed = review.thumbnails(square, alpha, (100, 400), (0, 0, 100, 100))
    b = np.asarray(_decode(boxed)).astype(int)
    assert b.shape[:2] == (256, 256) and b[128, 128, 0] > 200


def _decode(uri: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_the_page_is_written_by_default_and_no_review_opts_out(src, tmp_path):
    assert _cli(src, tmp_path / "a") == 0
    page = (tmp_path / "a" / "review.html").read_text()
    pics = _pictures(page)
    assert len(pics) == 6 and "http://" not in page and "https://" not in page and "<script" not in page
    assert sorted(p.size for p in pics[::2]) == [(192, 256), (256, 128), (256, 256)]  # the photos' aspects
    assert (tmp_path / "a" / review.STORE).is_file()
    assert _cli(src, tmp_path / "b", "--no-review") == 0
    assert not (tmp_path / "b" / "review.html").exists() and not (tmp_path / "b" / review.STORE).exists()
    assert _cli(src, tmp_path / "c", "--review") == 0  # still accepted
    assert (tmp_path / "c" / "review.html").is_file()


def test_thumbnails_go_to_the_spool_not_into_memory(src, tmp_path):
    rep = run_job(src, tmp_path / "d", JobOptions(write=WriteOptions(fsync=False, review=True)))
    assert len(rep.items) == 3 and not any("thumbs" in i for i in rep.items.values())
    lines = [json.loads(x) for x in (tmp_path / "d" / review.STORE).read_text().splitlines()]
    assert sorted(e["src"] for e in lines) == ["p0.png", "p1.png", "p2.png"]
    assert all(len(e["thumbs"]) == 2 and e["thumbs"][0].startswith("data:image/jpeg") for e in lines)
    assert rep.review == str(tmp_path / "d" / "review.html")


def test_a_resumed_run_still_lists_every_output(src, tmp_path):
    dest, report = tmp_path / "d", tmp_path / "r.json"
    first_items = {r["file"]: r for r in json.loads(_report(src, dest, report))["items"]}
    first = (dest / "review.html").read_text()
    again = json.loads(_report(src, dest, report))  # nothing to do: every output up to date
    assert again["items"] == [] and {r["file"]: r for r in again["earlier_items"]} == first_items
    page = (dest / "review.html").read_text()
    assert "0 from this run, 3 up to date from earlier runs" in page and len(_pictures(page)) == 6
    assert page.count("up to date from an earlier run") == 3
    order = lambda text: re.findall(r"<div>(p\d\.png)</div>", text)  # noqa: E731
    assert order(page) == order(first)  # the same doubt order
    (dest / "p1.png").unlink()
    assert _cli(src, dest) == 0  # redoes p1 only
    page = (dest / "review.html").read_text()
    assert "1 from this run, 2 up to date from earlier runs" in page and len(_pictures(page)) == 6
    # outputs remade with --no-review: the spool's entries are for files that are gone
    assert _cli(src, dest, "--background", "black", "--no-review") == 0
    assert _cli(src, dest, "--background", "black") == 0
    page = (dest / "review.html").read_text()
    assert len(_pictures(page)) == 0 and page.count("no thumbnail or doubt stored") == 3


def test_pictures_only_for_the_most_doubtful_when_many(src, tmp_path, monkeypatch):
    monkeypatch.setattr(review, "PICTURES", 1)
    rep = run_job(src, tmp_path / "d", JobOptions(write=WriteOptions(fsync=False, review=True)))
    page = (tmp_path / "d" / "review.html").read_text()
    assert len(_pictures(page)) == 2 and "Pictures for the 1 most doubtful" in page
    rows = re.findall(r"<div>(p\d\.png)</div>", page)
    assert rows == [r["file"] for r in rep.doubt_rows()]  # all three listed, most doubtful first
    assert page.index("<img") < page.index(rows[1])  # the pictures are the first row's


def test_the_spool_is_compacted(src, tmp_path):
    dest = tmp_path / "d"
    opts = JobOptions(write=WriteOptions(fsync=False, review=True, existing="overwrite"))
    for _ in range(20):
        run_job(src, dest, opts)
    n = len((dest / review.STORE).read_text().splitlines())
    assert n <= 2 * 3 + 50 + 3 and n >= 3  # compacted once superseded lines outnumber live ones
    assert len(_pictures((dest / "review.html").read_text())) == 6


def test_unstable_cue_threshold_shift_and_looks():
    hard = torch.zeros(80, 80)
    hard[20:60, 20:60] = 1.0
    assert doubt(hard)[1]["unstable"] == 0.0
    yy, xx = torch.meshgrid(torch.arange(80.0), torch.arange(80.0), indexing="ij")
    ramp = (1.0 - ((yy - 40) ** 2 + (xx - 40) ** 2).sqrt() / 30).clamp(0, 1)  # a cone: no clear edge
    score, cues = doubt(ramp)
    assert cues["unstable"] == 1.0 and score == 1.0  # IoU(>=0.3, >=0.7) ~ 0.18
    assert doubt(hard, agreement=0.6)[1]["unstable"] == 1.0  # the mirrored look disagrees
    assert doubt(hard, agreement=0.85)[1]["unstable"] == pytest.approx(0.5, abs=0.01)


def test_a_torn_spool_line_and_an_odd_file_name_cost_nothing_else(src, tmp_path):
    import os

    dest = tmp_path / "d"
    assert _cli(src, dest) == 0
    with open(dest / review.STORE, "ab") as f:
        f.write(b'{"out": "p0.png", "thu')  # killed while appending
    (dest / "p0.png").unlink()
    odd = os.fsencode(str(src)) + b"/odd\xff.png"  # a name that is not UTF-8 (Linux allows it)
    _photo(os.fsdecode(odd), 60, 40, 9)
    assert _cli(src, dest) == 0
    page = (dest / "review.html").read_text(errors="replace")
    assert len(_pictures(page)) == 8 and "4 cut-outs (2 from this run, 2 up to date" in page
