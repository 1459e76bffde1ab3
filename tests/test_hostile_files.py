"""Hostile inputs, round two, for files: GIFs and other image types are never silently left out,
folders that cannot be listed are reported, and a temporary file is "in use" while its writer
holds its lock, whatever PID namespace the writer runs in (docs/reliability.md)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from cutout.dataset import reader, writer
from cutout.dataset.job import JobOptions, run_job
from cutout.dataset.manifest import MANIFEST


def _gif(path, colours=((220, 30, 30), (30, 30, 220))):
    frames = [Image.new("RGB", (40, 30), c) for c in colours]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)


def test_gif_is_listed_and_its_first_frame_decoded(tmp_path):
    _gif(tmp_path / "anim.gif")
    items, problems = reader.list_images(tmp_path)
    assert [str(i.rel) for i in items] == ["anim.gif"] and problems == []
    d = reader.decode(items[0])
    assert d.rgb.shape == (30, 40, 3)
    assert np.abs(d.rgb.astype(int) - (220, 30, 30)).max() <= 8  # frame 1 (red), not frame 2


def test_gif_goes_through_the_folder_job_and_is_counted(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    _gif(src / "anim.gif")
    Image.new("RGB", (40, 30), (10, 200, 10)).save(src / "still.png")
    report = run_job(src, dest, JobOptions())
    assert report.total == 2 and not report.failed
    assert sorted(p.name for p in dest.iterdir() if p.name != MANIFEST) == ["anim.png", "still.png"]


def test_image_types_the_pack_does_not_read_are_reported_not_dropped(tmp_path):
    (tmp_path / "phone.HEIC").write_bytes(b"\x00" * 64)
    (tmp_path / "clip.MP4").write_bytes(b"\x00" * 64)
    (tmp_path / "notes.txt").write_text("a caption-like file, not an image")
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    items, problems = reader.list_images(tmp_path)
    assert [str(i.rel) for i in items] == ["ok.png"]
    assert sorted((p.rel, p.reason.split(":")[0]) for p in problems) == [
        ("clip.MP4", "a video, not an image"), ("phone.HEIC", ".heic images are not read by this pack; convert it to PNG, JPEG, WebP or TIFF")]
    assert "cli.py --source VIDEO" in next(p.reason for p in problems if p.rel == "clip.MP4")


def _deep_folder(root, depth=20, name_len=240) -> str:
    """A folder whose full path is longer than PATH_MAX (4096), made step by step with dir_fd."""
    fd = os.open(root, os.O_RDONLY)
    rel = []
    try:
        for i in range(depth):
            name = f"{i:02d}" + "d" * (name_len - 2)
            os.mkdir(name, dir_fd=fd)
            nfd = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nfd
            rel.append(name)
        Image.new("RGB", (8, 8)).save(f"/proc/self/fd/{fd}/deep.png")
    finally:
        os.close(fd)
    return "/".join(rel)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PATH_MAX and /proc are Linux's")
def test_a_folder_too_deep_for_the_os_is_reported_not_silently_unlisted(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "top.png")
    _deep_folder(tmp_path)
    items, problems = reader.list_images(tmp_path)
    assert [str(i.rel) for i in items] == ["top.png"]
    assert problems and all("folder not listed" in p.reason for p in problems)
    assert any("too long" in p.reason.lower() for p in problems), problems
    report = run_job(tmp_path, tmp_path.parent / "out_deep", JobOptions())
    assert report.failed and report.total == 1 + len(problems)


HOLDER = textwrap.dedent("""
    import fcntl, os, sys, time
    path = sys.argv[1]
    f = open(path, "xb")
    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    f.write(b"half")
    f.flush()
    print("locked", flush=True)
    sys.stdin.readline()
""")


@pytest.mark.skipif(writer.fcntl is None, reason="flock is POSIX")
def test_a_locked_temp_file_of_a_pid_unknown_here_is_kept(tmp_path):
    """A writer in another PID namespace: its PID means nothing here (no such process), but it holds
    the lock, so its file stays; once it is gone (lock released), the file is stale and removed."""
    foreign = tmp_path / f".a.png.{2 ** 22 + 4321}.0{writer.TMP_SUFFIX}"
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(foreign)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        assert writer.clean_stale_temps(tmp_path) == 0
        assert foreign.exists()
    finally:
        p.stdin.write("\n")
        p.stdin.close()
        p.wait(30)
    assert writer.clean_stale_temps(tmp_path) == 1 and not foreign.exists()


@pytest.mark.skipif(writer.fcntl is None, reason="flock is POSIX")
def test_a_writer_holds_the_lock_until_the_rename(tmp_path, monkeypatch):
    target = tmp_path / "x.png"
    seen = {}
    real_replace = os.replace

    def check_then_replace(a, b):  # at rename time another open file description cannot take the lock
        fd = os.open(a, os.O_RDONLY)
        try:
            seen["locked_by_writer"] = not writer._try_lock(fd)
        finally:
            os.close(fd)
        return real_replace(a, b)

    monkeypatch.setattr(writer.os, "replace", check_then_replace)
    writer.atomic_write(target, b"data")
    assert seen == {"locked_by_writer": True} and target.read_bytes() == b"data"


def test_a_temp_file_removed_between_create_and_lock_is_made_again(tmp_path, monkeypatch):
    target = tmp_path / "y.png"
    calls = {"n": 0}
    real = writer._try_lock

    def cleaner_wins_once(fd):
        calls["n"] += 1
        if calls["n"] == 1:  # another process's clean-up deletes the new file before we lock it
            for f in tmp_path.glob(f"*{writer.TMP_SUFFIX}"):
                f.unlink()
        return real(fd)

    monkeypatch.setattr(writer, "_try_lock", cleaner_wins_once)
    writer.atomic_write(target, b"data")
    assert target.read_bytes() == b"data" and calls["n"] == 2
    assert not list(tmp_path.glob(f"*{writer.TMP_SUFFIX}"))


@pytest.mark.parametrize("flag", ["--feather", "--remove-islands", "--threshold"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_cli_refuses_nan_and_inf_refine_options_before_any_work(flag, value, tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    r = subprocess.run([sys.executable, "cli.py", "--source", str(tmp_path), "--dest", str(tmp_path.parent / "o"),
                        flag, value], capture_output=True, text=True, timeout=300,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert r.returncode == 2 and flag in r.stderr and "Traceback" not in r.stderr, r.stderr


def _float_tiff(path, value=0.6):
    Image.fromarray(np.full((12, 16), value, np.float32), "F").save(path)


def _two_page_tiff(path):
    pages = [Image.new("RGB", (16, 12), (200, 40, 40)), Image.new("RGB", (16, 12), (40, 40, 200))]
    pages[0].save(path, save_all=True, append_images=pages[1:])


def test_float32_tiff_is_scaled_not_black(tmp_path):
    _float_tiff(tmp_path / "f.tif")
    items, _ = reader.list_images(tmp_path)
    d = reader.decode(items[0])
    assert abs(int(d.rgb[0, 0, 0]) - 153) <= 1, d.rgb[0, 0]  # 0.6 of full scale, grey


def test_multi_page_tiff_uses_page_one(tmp_path):
    _two_page_tiff(tmp_path / "m.tiff")
    items, _ = reader.list_images(tmp_path)
    d = reader.decode(items[0])
    assert np.abs(d.rgb.astype(int) - (200, 40, 40)).max() <= 2


def test_multi_page_tiff_says_only_page_one_was_used(tmp_path, caplog):
    _two_page_tiff(tmp_path / "m.tiff")
    items, _ = reader.list_images(tmp_path)
    with caplog.at_level("WARNING", logger="comfyui_cutout"):
        reader.decode(items[0])
    assert "2 pages; only the first is used" in caplog.text
