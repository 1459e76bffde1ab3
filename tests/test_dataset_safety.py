"""The folder job's safety rules: one output plan (no output lost), resume that never lies,
only the source is read, bounded memory, arguments checked before the job.

Most checks drive ``plan.plan_outputs`` directly (no model); a few run the job on tiny images.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cutout.dataset import plan, reader
from cutout.dataset.job import JobOptions, run_job
from cutout.dataset.writer import WriteOptions

ROOT = Path(__file__).resolve().parents[1]


def _img(path: Path, size=(12, 10), colour=(200, 40, 40)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def _items(src: Path) -> list[reader.Item]:
    items, problems = reader.list_images(src)
    assert not problems
    return items


def _plan(src: Path, dest: Path, fmt="png", **kw):
    return plan.plan_outputs(_items(src), dest, fmt, source_root=src, **kw)


def _refused(out) -> dict[str, str]:
    return {p.rel: p.reason for p in out.refused}


# ---------------------------------------------------------------- the output plan: every naming rule


def test_same_stem_other_extension_and_case_variants_are_refused(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    for name in ("a.jpg", "a.png", "b.JPG", "b.jpeg", "C.webp", "c.png", "d.png"):
        _img(src / name)
    out = _plan(src, dest)
    # listing order (natural, case-insensitive): the first of a clash keeps the name
    assert sorted(p.rel for p in out.planned) == ["a.jpg", "b.jpeg", "c.png", "d.png"]
    refused = _refused(out)
    assert set(refused) == {"a.png", "b.JPG", "C.webp"}
    assert "a.jpg" in refused["a.png"] and "b.jpeg" in refused["b.JPG"] and "c.png" in refused["C.webp"]


def test_keep_both_never_writes_two_inputs_to_one_name(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    for name in ("a.jpg", "a.png", "a_1.jpg"):
        _img(src / name)
    (src / "a.txt").write_text("cap")
    dest.mkdir()
    _img(dest / "a.png")  # from an earlier run
    out = _plan(src, dest, keep_both=True)
    images = {p.rel: str(p.image) for p in out.planned}
    # a.jpg's natural name is taken on disk and a_1.png is a_1.jpg's own name in this run: a_2
    assert images == {"a.jpg": "a_2.png", "a_1.jpg": "a_1.png"}
    assert "a.jpg" in _refused(out)["a.png"]
    assert [str(r) for _s, r in out.planned[0].captions] == ["a_2.txt"]


def test_mask_files_that_collide_with_photos_are_refused(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    _img(src / "x.png")
    _img(src / "x_mask.png")
    out = _plan(src, dest, save_mask=True)
    assert [p.rel for p in out.planned] == ["x.png"]
    assert "mask of x.png" in _refused(out)["x_mask.png"]
    assert len(_plan(src, dest).planned) == 2  # without --save-mask both are fine


def test_mask_dir_inside_dest_refuses_the_clashing_names(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    _img(src / "a.jpg")
    _img(src / "m" / "a.jpg")
    _img(src / "b.jpg")
    out = _plan(src, dest, mask_dir=dest / "m")
    assert sorted(p.rel for p in out.planned) == ["a.jpg", "b.jpg"]
    assert "mask of a.jpg" in _refused(out)["m/a.jpg"]
    # equal to dest: every item's mask is its own image (and the command line refuses it up front)
    same = _plan(src, dest, mask_dir=dest)
    assert not same.planned and all("also the image of" in r for r in _refused(same).values())
    jpg = _plan(src, dest, fmt="jpg", mask_dir=dest)  # jpg images, png masks: no clash
    assert len(jpg.planned) == 3


def test_job_reports_clashes_and_exits_non_zero(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    _img(src / "b.JPG")
    _img(src / "b.jpeg", colour=(10, 200, 10))
    rep = run_job(src, dest, JobOptions(write=WriteOptions(fsync=False)))
    assert rep.done == ["b.jpeg"] and [r for r, _ in rep.failed] == ["b.JPG"] and not rep.ok
    assert "b.jpeg" in rep.failed[0][1] and "rename one of them" in rep.failed[0][1]


def test_cli_mask_dir_errors_name_mask_dir(tmp_path, capsys):
    sys.path.insert(0, str(ROOT))
    import cli

    src = tmp_path / "src"
    _img(src / "a.jpg")
    for mask_dir, words in ((tmp_path / "dest", "is the --dest folder"), (src / "m", "inside --source")):
        code = cli.main(["--source", str(src), "--dest", str(tmp_path / "dest"), "--mask-dir", str(mask_dir)])
        err = capsys.readouterr().err
        assert code == 2 and f"--mask-dir {mask_dir}" in err and words in err, err
        assert len(err.strip().splitlines()) == 1, err  # one line, no usage dump, no traceback


def test_save_image_folder_refuses_two_inputs_for_one_name(comfy_dirs):
    import torch

    from cutout.nodes.dataset_folder import CutoutSaveImageFolder

    _inp, out = comfy_dirs
    imgs = [torch.full((1, 6, 8, 3), 0.2), torch.full((1, 6, 8, 3), 0.8)]
    res = CutoutSaveImageFolder().save(imgs, ["clean"], ["png"], ["skip"], ["transparent"],
                                       relative_path=["a.jpg", "a.png"])
    text = res["result"][0]
    assert "wrote 1," in text and "failed 1" in text and "a.png" in text and "a.jpg" in text, text
    assert np.asarray(Image.open(out / "clean" / "a.png"))[0, 0, 0] == 51  # the first one, not overwritten
    res = CutoutSaveImageFolder().save(imgs, ["kb"], ["png"], ["keep_both"], ["transparent"],
                                       relative_path=["a.jpg", "a.png"])
    assert "failed 1" in res["result"][0]


# ---------------------------------------------------------------- only the source is read; name lengths


def test_caption_symlink_out_of_the_source_is_refused(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0")
    _img(src / "a.jpg")
    (src / "a.txt").symlink_to(secret)
    _img(src / "b.jpg")
    (src / "inside.txt").write_text("fine")
    (src / "b.txt").symlink_to(src / "inside.txt")  # a link inside the source is fine
    rep = run_job(src, dest, JobOptions(write=WriteOptions(fsync=False)))
    assert rep.done == ["b.jpg"] and (dest / "b.txt").read_text() == "fine"
    assert [r for r, _ in rep.failed] == ["a.jpg"] and "outside the source" in rep.failed[0][1]
    assert not (dest / "a.txt").exists() and not (dest / "a.png").exists()


def test_save_image_folder_does_not_copy_a_caption_from_outside(comfy_dirs, tmp_path):
    import torch

    from cutout.nodes.dataset_folder import CutoutSaveImageFolder

    inp, out = comfy_dirs
    (tmp_path / "secret.txt").write_text("root:x:0:0")
    ds = inp / "ds"
    _img(ds / "a.jpg")
    (ds / "a.txt").symlink_to(tmp_path / "secret.txt")
    res = CutoutSaveImageFolder().save([torch.full((1, 6, 8, 3), 0.5)], ["clean"], ["png"], ["skip"],
                                       ["transparent"], relative_path=["a.jpg"], source_folder=[str(ds)])
    assert "failed 1" in res["result"][0] and "outside the source" in res["result"][0]
    assert not (out / "clean" / "a.txt").exists()


def test_long_names_fit_and_too_long_ones_are_refused(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    long = "é" * 100 + "x" * 51  # 251 bytes + '.jpg' = 255, the most a name may have
    _img(src / f"{long}.jpg")
    (src / f"{long}.txt").write_text("cap")
    rep = run_job(src, dest, JobOptions(write=WriteOptions(fsync=False)))
    assert rep.ok and (dest / f"{long}.png").is_file() and (dest / f"{long}.txt").read_text() == "cap"
    rep = run_job(src, tmp_path / "d2", JobOptions(write=WriteOptions(save_mask=True, fsync=False)))
    assert not rep.ok and "255-byte limit" in rep.failed[0][1]  # <stem>_mask.png would not fit


# ---------------------------------------------------------------- resume that never lies


def _job(**w):
    from cutout.options import CutoutOptions, RefineOptions, parse_background

    cut = {"model": w.pop("model", "u2netp"), "refine": RefineOptions(**w.pop("refine", {})),
           "background": parse_background(w.pop("background", "transparent")), "mask_only": w.pop("mask_only", False)}
    return JobOptions(CutoutOptions(**cut), write=WriteOptions(fsync=False, **w))


def test_rerun_redoes_what_other_settings_or_sources_made(tmp_path, models_dir):
    import shutil

    shutil.copy(ROOT / "cutout" / "models" / "u2netp.onnx", models_dir / "mine.onnx")  # another model (name)
    src, dest = tmp_path / "src", tmp_path / "dest"
    _img(src / "a.jpg")
    _img(src / "b.jpg", colour=(20, 30, 200))
    (src / "a.txt").write_text("one")
    first = run_job(src, dest, _job())
    assert sorted(first.done) == ["a.jpg", "b.jpg"] and first.redone == []
    assert (dest / ".cutout-manifest.jsonl").is_file()
    same = run_job(src, dest, _job())
    assert same.done == [] and sorted(same.skipped) == ["a.jpg", "b.jpg"]
    for opts, words in ((_job(background="black"), "background"), (_job(mask_only=True), "mask_only"),
                        (_job(refine={"edge_refinement": "guided filter"}), "refine"),
                        (_job(model="mine"), "model")):
        rep = run_job(src, dest, opts)
        assert sorted(rep.done) == ["a.jpg", "b.jpg"] and rep.skipped == [], rep.summary()
        assert all(why.startswith("settings changed") and words in why for _r, why in rep.redone), rep.redone
        assert "redone" in rep.summary()
    back = run_job(src, dest, _job())  # the default settings again: the outputs are redone to them
    assert len(back.redone) == 2
    # a replaced photo, a changed caption: just that output
    _img(src / "b.jpg", colour=(200, 200, 20))
    (src / "a.txt").write_text("two!")
    rep = run_job(src, dest, _job())
    assert dict(rep.redone) == {"a.jpg": "captions changed", "b.jpg": "source photo changed"}
    assert (dest / "a.txt").read_text() == "two!"
    # a fine-grained mtime that changed: changed (no hash is taken for such files, it would cost time)
    os.utime(src / "b.jpg", ns=(1_000_000_001, 1_000_000_001))
    assert dict(run_job(src, dest, _job()).redone) == {"b.jpg": "source photo changed"}
    # whole-second mtimes (FAT, archives) are too coarse: the record keeps a hash, which decides
    os.utime(src / "b.jpg", ns=(2_000_000_000, 2_000_000_000))
    assert dict(run_job(src, dest, _job()).redone) == {"b.jpg": "source photo changed"}  # now hashed
    os.utime(src / "b.jpg", ns=(3_000_000_000, 3_000_000_000))  # touched, same bytes
    assert run_job(src, dest, _job()).done == []
    _img(src / "b.jpg", colour=(200, 200, 21))  # same JPEG size as (200, 200, 20)
    os.utime(src / "b.jpg", ns=(3_000_000_000, 3_000_000_000))  # same size and time, other bytes
    assert dict(run_job(src, dest, _job()).redone) == {"b.jpg": "source photo changed"}
    # the old rule on request: exists = done
    rep = run_job(src, dest, _job(background="white", existing="trust"))
    assert rep.done == [] and sorted(rep.skipped) == ["a.jpg", "b.jpg"]


def test_output_without_record_or_changed_is_redone(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    _img(src / "a.jpg")
    _img(src / "b.jpg")
    run_job(src, dest, _job())
    (dest / "a.png").write_bytes((dest / "a.png").read_bytes() + b"")  # rewritten: new mtime
    os.utime(dest / "a.png", ns=(5, 5))
    m = dest / ".cutout-manifest.jsonl"
    lines = m.read_text().splitlines()
    m.write_text("\n".join(line for line in lines if '"out": "b.png"' not in line) + "\n{\"out\": \"tor")  # torn
    rep = run_job(src, dest, _job())
    why = dict(rep.redone)
    assert "changed or vanished" in why["a.jpg"] and "no record" in why["b.jpg"]
    assert run_job(src, dest, _job()).done == []  # the torn line cost nothing more


def test_save_image_folder_resume_follows_the_pixels(comfy_dirs):
    import torch

    from cutout.nodes.dataset_folder import CutoutSaveImageFolder

    _inp, out = comfy_dirs
    node = CutoutSaveImageFolder()
    a, b = torch.full((1, 6, 8, 3), 0.2), torch.full((1, 6, 8, 3), 0.6)
    assert "wrote 1," in node.save([a], ["c"], ["png"], ["skip"], ["transparent"], relative_path=["x.jpg"])["result"][0]
    assert "skipped 1" in node.save([a], ["c"], ["png"], ["skip"], ["transparent"], relative_path=["x.jpg"])["result"][0]
    assert "wrote 1," in node.save([b], ["c"], ["png"], ["skip"], ["transparent"], relative_path=["x.jpg"])["result"][0]
    assert np.asarray(Image.open(out / "c" / "x.png"))[0, 0, 0] == 153
    assert "wrote 1," in node.save([b], ["c"], ["png"], ["skip"], ["#ff0000"], relative_path=["x.jpg"])["result"][0]


# ---------------------------------------------------------------- bounded memory, checks before the job


def test_pixel_limit_fails_just_that_file_from_its_header(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    _img(src / "small.png")
    Image.new("L", (10000, 10000), 0).save(src / "huge.png", optimize=True)  # 100 MP, ~100 KB on disk
    assert (src / "huge.png").stat().st_size < 1_000_000
    opts = _job()
    opts.max_megapixels = 40
    rep = run_job(src, dest, opts)
    assert rep.done == ["small.png"] and [r for r, _ in rep.failed] == ["huge.png"]
    assert "10000x10000 = 100.0 MP" in rep.failed[0][1] and "--max-megapixels" in rep.failed[0][1]


@pytest.mark.parametrize("case", ["dest_is_file", "dest_parent_is_file", "report_dir_missing", "report_is_dir",
                                  "dest_read_only"])
def test_cli_destination_problems_fail_before_the_job(tmp_path, capsys, case):
    sys.path.insert(0, str(ROOT))
    import cli

    src = tmp_path / "src"
    _img(src / "a.jpg")
    (tmp_path / "file").write_text("x")
    dest, report = tmp_path / "dest", tmp_path / "r.json"
    if case == "dest_is_file":
        dest = tmp_path / "file"
    elif case == "dest_parent_is_file":
        dest = tmp_path / "file" / "sub"
    elif case == "report_dir_missing":
        report = tmp_path / "nowhere" / "r.json"
    elif case == "report_is_dir":
        report = src
    elif os.geteuid() == 0:
        dest = Path("/sys/cutout-test-dest")  # read-only even for root
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        dest = ro / "dest"
    code = cli.main(["--source", str(src), "--dest", str(dest), "--report", str(report), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    flag = "--report" if case.startswith("report") else "--dest"
    assert err.startswith(f"cli.py: {flag} "), err
    assert not (tmp_path / "dest").exists()


def test_a_slow_write_does_not_hold_up_the_others(tmp_path, monkeypatch):
    """Writes are collected as they finish: while one writer is busy with a slow (large) photo, the
    network's thread goes on feeding the other writer instead of waiting for the oldest write."""
    import threading

    from cutout.dataset import writer

    src, dest = tmp_path / "src", tmp_path / "dest"
    for i in range(8):
        _img(src / f"p{i}.png", colour=(30 * i, 50, 50))
    release, real_save = threading.Event(), writer.save_item

    def save(dest_, planned, *a, **k):
        if planned.rel == "p0.png":
            assert release.wait(10), "the other photos never finished while p0 was being written"
        return real_save(dest_, planned, *a, **k)

    order = []

    def on_item(rel, status, finished, to_do):
        order.append(rel)
        if finished == to_do - 1:  # every other photo is written: let p0 finish
            release.set()

    monkeypatch.setattr(writer, "save_item", save)
    rep = run_job(src, dest, _job(), on_item=on_item)
    assert rep.ok and len(rep.done) == 8
    assert order[-1] == "p0.png" and sorted(order[:-1]) == [f"p{i}.png" for i in range(1, 8)]


def test_pixels_in_flight_are_bounded(tmp_path, monkeypatch):
    """Between its read and the end of its write an image holds memory: at most 1.5 images at the
    pixel limit are in flight (prefetch and write queues are counted in pixels, not only images)."""
    import threading
    import time

    from cutout.dataset import job, writer

    src, dest = tmp_path / "src", tmp_path / "dest"
    for i in range(8):
        _img(src / f"p{i}.png", size=(12, 10), colour=(30 * i, 50, 50))  # 120 px each
    live, peak, lock = [0], [0], threading.Lock()
    real_prepare, real_save = job.prepare, writer.save_item

    def prepare(*a, **k):
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        return real_prepare(*a, **k)

    def save(*a, **k):
        time.sleep(0.05)  # slow writes: without the budget, reads and writes would pile up
        try:
            return real_save(*a, **k)
        finally:
            with lock:
                live[0] -= 1

    monkeypatch.setattr(job, "prepare", prepare)
    monkeypatch.setattr(writer, "save_item", save)
    opts = _job()
    opts.max_megapixels = 400 / 1e6  # budget: 1.5 x 400 px = five 120-px images
    rep = run_job(src, dest, opts)
    assert len(rep.done) == 8 and rep.ok
    assert peak[0] <= 5, peak[0]
    live[0] = peak[0] = 0
    opts.max_megapixels = 160 / 1e6  # budget 240 px: two at a time
    rep = run_job(src, tmp_path / "d2", opts)
    assert len(rep.done) == 8 and peak[0] <= 2, peak[0]
