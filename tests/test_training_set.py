"""Training-set features of the folder job: crop to the subject, one subject, doubt score,
review page and report (imaging.crop, imaging.subjects, dataset.review, Crop to Subject)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

import cli
from cutout.imaging.crop import crop_box, parse_aspect, subject_box, subject_share
from cutout.imaging.subjects import doubt, keep_subject
from cutout.nodes.crop import CutoutCropToSubject


def _blob(h=100, w=160, box=(60, 30, 100, 70), value=1.0):
    a = torch.zeros(h, w)
    x0, y0, x1, y1 = box
    a[y0:y1, x0:x1] = value
    return a


@pytest.mark.parametrize("aspect", [None, (1.0,), (16 / 9, 9 / 16, 1.0), (4.0,), (0.25,)])
@pytest.mark.parametrize("box", [(60, 30, 100, 70), (0, 0, 30, 100), (150, 90, 160, 100), (10, 40, 150, 60)])
def test_crop_never_cuts_the_subject_nor_leaves_the_frame(aspect, box):
    a = _blob(box=box)
    x0, y0, x1, y1 = crop_box(a, 0.1, aspect)
    assert 0 <= x0 < x1 <= 160 and 0 <= y0 < y1 <= 100
    bx0, by0, bx1, by1 = subject_box(a)
    assert x0 <= bx0 and y0 <= by0 and bx1 <= x1 and by1 <= y1
    if aspect == (1.0,) and min(x1 - x0, y1 - y0) < 100:  # a square wherever the frame allows one
        assert x1 - x0 == y1 - y0


def test_crop_margin_buckets_and_share():
    a = _blob(box=(60, 30, 100, 70))  # 40 x 40
    assert crop_box(a, 0.0) == (60, 30, 100, 70)
    assert crop_box(a, 0.1) == (56, 26, 104, 74)  # 4 px = 10 % of 40 on each side
    x0, y0, x1, y1 = crop_box(a, 0.0, parse_aspect("16:9,1:1"))
    assert (x1 - x0, y1 - y0) == (40, 40)  # the nearest bucket is the square
    x0, y0, x1, y1 = crop_box(_blob(box=(40, 40, 120, 60)), 0.0, parse_aspect("1:1,4:1"))
    assert (x1 - x0, y1 - y0) == (80, 20)
    assert crop_box(torch.zeros(10, 20), 0.1) == (0, 0, 20, 10)  # no subject: the whole frame
    assert subject_share(a) == pytest.approx(1600 / 16000)
    assert subject_share(a, (60, 30, 100, 70)) == 1.0
    with pytest.raises(ValueError, match="W:H"):
        parse_aspect("wide")


def test_keep_subject_largest_and_centre():
    a = torch.zeros(100, 200)
    a[40:60, 90:110] = 1  # small, in the centre
    a[10:90, 5:60] = 1  # large, on the left
    a[10:90, 60:62] = 0.3  # its soft edge goes with it
    big = keep_subject(a, "largest")
    assert big[50, 30] == 1 and big[50, 100] == 0 and big[50, 61] == pytest.approx(0.3)
    mid = keep_subject(a, "centre")
    assert mid[50, 100] == 1 and mid[50, 30] == 0
    assert torch.equal(keep_subject(a, "all"), a)
    with pytest.raises(ValueError, match="largest"):
        keep_subject(a, "biggest")


def test_doubt_cues():
    clean, _ = doubt(_blob(box=(40, 20, 120, 80)))
    soft, cues = doubt(_blob(box=(40, 20, 120, 80), value=0.5))
    assert cues["soft"] == 1.0 and soft > clean
    assert doubt(_blob(box=(0, 20, 160, 80)))[1]["edge"] > 0.5  # cut by the frame edge
    assert doubt(torch.zeros(50, 50))[1]["tiny"] == 1.0  # nothing found
    assert doubt(torch.ones(50, 50))[1]["huge"] == 1.0
    two = _blob(box=(10, 20, 50, 80))
    two[20:80, 100:140] = 1
    assert doubt(two)[1]["several"] > 0
    assert clean < 0.2


def _photo(w, h, disc, seed):
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 180.0) + rng.normal(0, 6, (h, w, 3))
    yy, xx = np.mgrid[0:h, 0:w]
    cx, cy, r = disc
    img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = (200, 30, 40)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def test_cli_crop_keeps_names_and_captions_and_reports_doubt(tmp_path):
    src = tmp_path / "src" / "10_subject"
    src.mkdir(parents=True)
    _photo(200, 150, (60, 60, 25), 0).save(src / "a.jpg", quality=95)
    (src / "a.txt").write_text("a photo of sks")
    _photo(120, 160, (60, 90, 30), 1).save(src / "b.png")
    dest, report = tmp_path / "dest", tmp_path / "report.json"
    assert cli.main(["--source", str(tmp_path / "src"), "--dest", str(dest), "--no-progress", "--crop", "0.1",
                     "--crop-aspect", "square", "--report", str(report), "--review"]) == 0
    assert (dest / "10_subject" / "a.txt").read_text() == "a photo of sks"
    rep = json.loads(report.read_text())
    assert rep["subject_share"]["after"] > rep["subject_share"]["before"] > 0
    items = {r["file"]: r for r in rep["items"]}
    assert set(items) == {"10_subject/a.jpg", "10_subject/b.png"}
    assert rep["items"] == sorted(rep["items"], key=lambda r: -r["doubt"])
    for rel, r in items.items():
        out = dest / rel.replace(".jpg", ".png")
        x0, y0, x1, y1 = map(int, r["box"].split())
        with Image.open(out) as im:
            assert im.size == (x1 - x0, y1 - y0) and im.width == im.height  # square, never upscaled
            assert im.width < {"10_subject/a.jpg": 150, "10_subject/b.png": 120}[rel]
    rows = list(csv.DictReader(report.with_suffix(".csv").open()))
    assert [r["file"] for r in rows] == [r["file"] for r in rep["items"]]
    page = (dest / "review.html").read_text()
    assert rep["review"] == str(dest / "review.html")
    assert page.count("<img") == 4 and "http://" not in page and "https://" not in page and "<script" not in page
    assert page.index("10_subject/" + rep["items"][0]["file"].split("/")[-1]) < page.index(
        rep["items"][1]["file"])  # most doubtful first


def test_crop_node_returns_crop_mask_and_box():
    img = torch.rand(2, 100, 160, 4)
    m = torch.stack([_blob(box=(60, 30, 100, 70)), _blob(box=(20, 40, 40, 60))])
    out, mask, x, y, w, h = CutoutCropToSubject().run(img, m, 0.0, "free")
    assert (x, y, w, h) == (20, 30, 80, 40)  # the union of the frames' subjects
    assert out.shape == (2, 40, 80, 4) and mask.shape == (2, 40, 80)
    assert torch.equal(out, img[:, 30:70, 20:100]) and torch.equal(mask, m[:, 30:70, 20:100])
    _, _, _, _, w, h = CutoutCropToSubject().run(img, m, 0.0, "square")
    assert w == h == 80
    with pytest.raises(Exception, match="Crop to Subject.*buckets"):
        CutoutCropToSubject().run(img, m, 0.0, "buckets", "wide")
