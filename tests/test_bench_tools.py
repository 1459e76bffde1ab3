"""The pieces the bench scripts stand on: flicker, video folders, summaries, options, the photo set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench import metrics as M
from bench._common import make_photos, parse_options

ROOT = Path(__file__).resolve().parents[1]


def test_flicker_counts_only_pixels_whose_gt_stayed():
    gts = [torch.zeros(4, 4) for _ in range(3)]
    gts[1][0, 0] = gts[2][0, 0] = 1.0  # GT changes at (0,0) between frame 0 and 1
    masks = [torch.zeros(4, 4) for _ in range(3)]
    masks[1][0, 0] = masks[2][0, 0] = 1.0  # the mask follows the GT: not flicker
    assert M.flicker(masks, gts) == 0.0
    masks[2][3, 3] = 0.8  # the mask jumps where the GT is still: flicker
    # pair (0,1): 0; pair (1,2): 0.8 over 16 static pixels
    assert M.flicker(masks, gts) == pytest.approx((0.0 + 0.8 / 16) / 2)


def test_dtssd_punishes_change_that_the_gt_did_not_make():
    gts = [torch.zeros(4, 4) for _ in range(3)]
    gts[1][0, 0] = gts[2][0, 0] = 1.0
    masks = [g.clone() for g in gts]  # follows the GT exactly: no temporal error
    assert M.dtssd(masks, gts) == 0.0
    masks[2][3, 3] = 0.8  # pair (1,2): sqrt(0.8² / 16) = 0.2
    assert M.dtssd(masks, gts) == pytest.approx((0.0 + 0.2) / 2)


def test_flicker_of_a_still_mask_is_zero_and_lengths_must_match():
    m = [torch.rand(5, 5)] * 4
    assert M.flicker(m, [torch.ones(5, 5)] * 4) == 0.0
    with pytest.raises(ValueError):
        M.flicker(m, m[:3])


def _png(path: Path, value: int, size=(6, 4), mode="L"):
    Image.fromarray(np.full((size[1], size[0]) + (() if mode == "L" else (3,)), value, np.uint8), mode).save(path)


def test_video_folder_without_manifest_in_frame_order(tmp_path):
    for i in (10, 2, 1):
        _png(tmp_path / f"{i:05d}.png", 100, mode="RGB")
        _png(tmp_path / f"{i:05d}.mask.png", 255)
    _png(tmp_path / "00003.png", 0, mode="RGB")  # no GT: left out
    pairs = M.read_video_folder(tmp_path)
    assert [p.name for p in pairs] == ["00001.png", "00002.png", "00010.png"]
    assert {p.source for p in pairs} == {tmp_path.name}
    assert M.is_video_folder(tmp_path)


def test_video_folder_with_manifest_and_photo_folder_is_not_video(tmp_path):
    (tmp_path / "v").mkdir()
    (tmp_path / "p").mkdir()
    for i in range(3):
        _png(tmp_path / "v" / f"{i:05d}.jpg", 10, mode="RGB")
        _png(tmp_path / "v" / f"{i:05d}.mask.png", 255)
    (tmp_path / "v" / "manifest.csv").write_text(
        "file,gt_file\n" + "".join(f"{i:05d}.jpg,{i:05d}.mask.png\n" for i in (2, 0, 1)))
    assert M.is_video_folder(tmp_path / "v")
    assert [p.name for p in M.read_video_folder(tmp_path / "v")] == ["00000.jpg", "00001.jpg", "00002.jpg"]
    _png(tmp_path / "p" / "ecssd_1.jpg", 10, mode="RGB")
    _png(tmp_path / "p" / "ecssd_1.mask.png", 255)
    (tmp_path / "p" / "manifest.csv").write_text("file,gt_file\necssd_1.jpg,ecssd_1.mask.png\n")
    assert not M.is_video_folder(tmp_path / "p")


def test_mean_by_groups():
    rows = [{"s": "a", "x": 1.0}, {"s": "a", "x": 3.0}, {"s": "b", "x": 10.0}]
    out = M.mean_by(rows, ["x"], group="s")
    assert out["all"] == {"x": pytest.approx(14 / 3), "n": 3}
    assert out["a"] == {"x": 2.0, "n": 2} and out["b"] == {"x": 10.0, "n": 1}


def test_options_parse_to_typed_values():
    assert parse_options("edge_refinement=guided filter, guided_radius=4,guided_eps=1e-3,invert=true") == {
        "edge_refinement": "guided filter", "guided_radius": 4, "guided_eps": 1e-3, "invert": True}
    with pytest.raises(SystemExit):
        parse_options("radius")


def test_photo_set_has_mixed_sizes_and_a_caption_each(tmp_path):
    src = tmp_path / "eval"
    src.mkdir()
    for i in range(2):
        _png(src / f"ecssd_{i}.jpg", 40 + i, size=(64, 48), mode="RGB")
    (src / "manifest.csv").write_text("file,gt_file\n" + "".join(f"ecssd_{i}.jpg,x.png\n" for i in range(2)))
    photos = make_photos(src, tmp_path / "set", 6)
    sides = {max(Image.open(p).size) for p in photos}
    assert len(photos) == 6 and len(sides) == 6  # one long side each: 480 … 3000 px
    assert all(p.with_suffix(".txt").is_file() for p in photos)


def test_png_levels_counts_every_png_and_pillows_bytes(tmp_path):
    pytest.importorskip("imagecodecs")
    from bench.png_levels import measure

    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (24, 32, 4), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not a PNG")
    r = measure(tmp_path, [1, 2], repeats=1)
    assert r["n"] == 2 and r["pillow6"] > 2 * 24 * 32 * 4  # noise does not compress
    assert r[1] > 2 * 24 * 32 * 4 and r[2] > 0
