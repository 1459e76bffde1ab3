"""Dataset prep: the folder job, cli.py, the two folder nodes and the path guard.

Runs the embedded u2netp on small generated images (a few seconds in all).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
import torch
from PIL import Image

from cutout import comfy_glue
from cutout.dataset import job, paths, plan, reader, resume, writer
from cutout.dataset.job import JobOptions, run_job
from cutout.options import CutoutOptions
from cutout.imaging.tensors import CutoutInputError
from cutout.nodes.dataset_folder import CutoutLoadImageFolder, CutoutSaveImageFolder

ROOT = Path(__file__).resolve().parents[1]
CAPTION_TXT = "a photo of sks person, smiling\r\nsecond line ✓ é\n".encode("utf-8")


def _photo(w: int, h: int, seed: int = 0) -> Image.Image:
    """A smooth background with a bright disc: something for the model to find."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / max(w, 1), yy / max(h, 1), np.full_like(xx, 0.3)], -1) * 120
    cx, cy, r = w * 0.5, h * 0.55, min(w, h) * 0.3
    disc = ((xx - cx) ** 2 + (yy - cy) ** 2) < r * r
    base[disc] = (230, 60 + 40 * seed % 150, 50)
    base += rng.normal(0, 3, base.shape)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")


def make_tree(root: Path) -> dict:
    """A kohya-style dataset; returns {rel: (width, height)} of the good images, and the bad ones."""
    s = root / "10_subject"
    (s / "nested" / "deep").mkdir(parents=True)
    (root / "5_other").mkdir()
    good = {}
    _photo(64, 48, 1).save(s / "img001.jpg", quality=92)
    (s / "img001.txt").write_bytes(CAPTION_TXT)
    good["10_subject/img001.jpg"] = (64, 48)
    rgba = _photo(40, 40, 2).convert("RGBA")
    a = np.full((40, 40), 255, np.uint8)
    a[:, :10] = 0  # a transparent left band must stay transparent
    rgba.putalpha(Image.fromarray(a))
    rgba.save(s / "img002.png")
    (s / "img002.caption").write_bytes(b"caption for two")
    good["10_subject/img002.png"] = (40, 40)
    _photo(50, 30, 3).save(s / "nested" / "deep" / "img003.jpg")
    (s / "nested" / "deep" / "img003.json").write_bytes(json.dumps({"tags": ["x", "ü"]}).encode())
    good["10_subject/nested/deep/img003.jpg"] = (50, 30)
    Image.new("RGB", (1, 1), (200, 10, 10)).save(s / "tiny.png")
    good["10_subject/tiny.png"] = (1, 1)
    rot = _photo(40, 24, 4)  # stored 40x24 landscape, EXIF says rotate 90° -> shown 24x40
    exif = Image.Exif()
    exif[0x0112] = 6
    rot.save(s / "rotated.jpg", exif=exif.tobytes())
    good["10_subject/rotated.jpg"] = (24, 40)
    _photo(36, 36, 5).save(s / "my photo é.jpg")
    (s / "my photo é.txt").write_bytes("spaces and ünïcode".encode())
    good["10_subject/my photo é.jpg"] = (36, 36)
    _photo(30, 20, 6).save(root / "5_other" / "a.webp", lossless=True)
    good["5_other/a.webp"] = (30, 20)
    full = (s / "img001.jpg").read_bytes()
    (s / "corrupt.jpg").write_bytes(full[: len(full) // 3])
    (s / "corrupt.txt").write_bytes(b"caption of a broken image")
    (root / "notes.md").write_text("not an image")
    return {"good": good, "bad": ["10_subject/corrupt.jpg"]}


def snapshot(root: Path, exclude: Path | None = None) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of every file under root (minus one subtree)."""
    out = {}
    for p in root.rglob("*"):
        if exclude is not None and (p == exclude or exclude in p.parents):
            continue
        if p.is_file():
            st = p.stat()
            out[p.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return out


JOB_FILES = {".cutout-manifest.jsonl", ".cutout-review.jsonl", "review.html"}  # the job's own bookkeeping


def tree_pixels(dest: Path) -> dict[str, object]:
    """{relative path: decoded pixels (images) or bytes (others)} of a result tree."""
    out = {}
    for p in sorted(dest.rglob("*")):
        if p.is_file() and p.name not in JOB_FILES:  # record times, or say what one run did: differ run to run
            rel = p.relative_to(dest).as_posix()
            out[rel] = np.asarray(Image.open(p)) if p.suffix in (".png", ".webp", ".jpg") else p.read_bytes()
    return out


def assert_same_tree(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for k in a:
        if isinstance(a[k], np.ndarray):
            assert a[k].shape == b[k].shape, k
            assert np.abs(a[k].astype(int) - b[k].astype(int)).max() <= 1, k
        else:
            assert a[k] == b[k], k


@pytest.fixture
def tree(tmp_path):
    src = tmp_path / "dataset"
    info = make_tree(src)
    info["src"] = src
    return info


def test_job_writes_every_good_image_at_its_relative_path(tree, tmp_path):
    src, dest = tree["src"], tmp_path / "clean"
    before_outside = snapshot(tmp_path, exclude=dest)
    report = run_job(src, dest, JobOptions())
    assert sorted(report.done) == sorted(tree["good"])
    assert [r for r, _ in report.failed] == tree["bad"]
    assert "cannot decode" in report.failed[0][1]
    assert not report.ok
    for rel, size in tree["good"].items():
        out = dest / PurePosixPath(rel).with_suffix(".png")
        with Image.open(out) as im:
            assert im.mode == "RGBA" and im.size == size, rel
    # captions byte for byte, beside the output, same stem
    s = src / "10_subject"
    assert (dest / "10_subject/img001.txt").read_bytes() == (s / "img001.txt").read_bytes()
    assert (dest / "10_subject/img002.caption").read_bytes() == (s / "img002.caption").read_bytes()
    assert (dest / "10_subject/nested/deep/img003.json").read_bytes() == (s / "nested/deep/img003.json").read_bytes()
    assert (dest / "10_subject/my photo é.txt").read_bytes() == (s / "my photo é.txt").read_bytes()
    assert not (dest / "10_subject/corrupt.txt").exists()  # its image failed: nothing for it
    # the PNG's own transparency is kept
    a = np.asarray(Image.open(dest / "10_subject/img002.png"))[..., 3]
    assert a[:, :10].max() == 0
    # straight alpha: opaque and fully transparent pixels keep the original colours (only the
    # half-transparent edge is decontaminated, the default, as Remove Background does)
    rgba = np.asarray(Image.open(dest / "5_other/a.png")).astype(int)
    orig = np.asarray(Image.open(src / "5_other/a.webp").convert("RGB")).astype(int)
    opaque, clear = rgba[..., 3] == 255, rgba[..., 3] == 0
    assert (opaque | clear).mean() > 0.5
    assert np.abs(rgba[..., :3] - orig)[opaque].max() <= 1
    assert rgba[..., :3][clear].max(initial=0) == 0  # nothing of the background under alpha 0 (imaging.clear)
    # the source is untouched and nothing was written outside dest
    assert snapshot(tmp_path, exclude=dest) == before_outside
    assert not [p for p in dest.rglob(".*") if p.name != ".cutout-manifest.jsonl"]  # no temporary files left


def test_second_run_writes_nothing(tree, tmp_path):
    src, dest = tree["src"], tmp_path / "clean"
    run_job(src, dest, JobOptions())
    first = snapshot(dest)
    time.sleep(0.01)
    again = run_job(src, dest, JobOptions())
    assert again.done == []
    assert sorted(again.skipped) == sorted(tree["good"])
    assert [r for r, _ in again.failed] == tree["bad"]  # still reported
    assert snapshot(dest) == first


def test_rerun_that_adds_masks_writes_only_the_masks(tree, tmp_path):
    """Resume with --save-mask / --mask-dir added: the images stay byte-for-byte, the masks appear."""
    src, dest, masks = tree["src"], tmp_path / "clean", tmp_path / "masks"
    run_job(src, dest, JobOptions())
    images = snapshot(dest)
    wopts = writer.WriteOptions(save_mask=True, mask_dir=masks, fsync=False)
    again = run_job(src, dest, JobOptions(write=wopts))
    assert sorted(again.done) == sorted(tree["good"]) and again.skipped == []
    after = snapshot(dest)
    images.pop(".cutout-manifest.jsonl")  # the manifest records the masks
    assert {k: v for k, v in after.items() if k in images} == images  # not one image rewritten
    after.pop(".cutout-manifest.jsonl")
    added = sorted(set(after) - set(images))
    assert added and all(name.endswith("_mask.png") for name in added)
    assert len(added) == len(tree["good"]) == len(list(masks.rglob("*.png")))
    third = run_job(src, dest, JobOptions(write=wopts))  # now everything is there
    assert third.done == [] and sorted(third.skipped) == sorted(tree["good"])


def test_interrupt_then_rerun_matches_uninterrupted(tree, tmp_path, monkeypatch):
    src = tree["src"]
    reference = tmp_path / "ref"
    run_job(src, reference, JobOptions())
    calls = {"n": 0}
    real = job.infer_item

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C after two images went to the writers
        return real(*a, **k)

    dest = tmp_path / "clean"
    monkeypatch.setattr(job, "infer_item", flaky)
    partial = run_job(src, dest, JobOptions())
    assert partial.interrupted and not partial.ok
    assert 0 < len(partial.done) < len(tree["good"])
    monkeypatch.setattr(job, "infer_item", real)
    rest = run_job(src, dest, JobOptions())
    assert sorted(rest.skipped) == sorted(partial.done)
    assert sorted(rest.done + rest.skipped) == sorted(tree["good"])
    assert_same_tree(tree_pixels(dest), tree_pixels(reference))


def test_write_error_is_reported_and_others_go_on(tree, tmp_path, monkeypatch):
    real = writer.save_item

    def failing(dest, planned, *a, **k):
        if planned.item.rel.name == "img001.jpg":
            raise writer.WriteError("disk full (injected)")
        return real(dest, planned, *a, **k)

    monkeypatch.setattr(writer, "save_item", failing)
    report = run_job(tree["src"], tmp_path / "clean", JobOptions())
    assert ("10_subject/img001.jpg", "disk full (injected)") in report.failed
    assert len(report.done) == len(tree["good"]) - 1


def _cli(*args, **kw):
    """cli.py in a child process (for the kill test and one end-to-end check)."""
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONIOENCODING": "utf-8"}, **kw)


class _Run:
    def __init__(self, returncode, stderr):
        self.returncode, self.stderr = returncode, stderr


@pytest.fixture
def cli(capsys):
    """cli.main in this process (the model stays loaded between calls): returns (exit code, stderr)."""
    sys.path.insert(0, str(ROOT))
    import cli as cli_module

    def run(*args):
        capsys.readouterr()
        try:
            code = cli_module.main([str(a) for a in args])
        except SystemExit as e:  # argparse errors
            code = e.code
        return _Run(code, capsys.readouterr().err)

    return run


def test_cli_exit_codes_jpeg_and_mask_only(tree, tmp_path, cli):
    src = tree["src"]
    r = _cli("--source", src, "--dest", tmp_path / "jpg", "--background", "#00ff00", "--format", "jpg",
             "--no-progress", "--report", tmp_path / "r.json")
    assert r.returncode == 1, r.stderr  # the corrupt file
    assert "failed: 10_subject/corrupt.jpg" in r.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    assert len(rep["done"]) == len(tree["good"]) and rep["failed"][0]["file"] == "10_subject/corrupt.jpg"
    with Image.open(tmp_path / "jpg/10_subject/img002.jpg") as im:
        assert im.mode == "RGB" and im.size == (40, 40)
        left = np.asarray(im)[:, :8].reshape(-1, 3).mean(0)  # transparent band -> the green background
    assert left[1] > 200 and left[0] < 40 and left[2] < 40

    r = cli("--source", src, "--dest", tmp_path / "masks", "--mask-only", "--pattern", "*.jpg", "--no-progress",
            "--no-recursive")
    assert r.returncode == 0, r.stderr  # nothing at the top level: no failure
    assert not (tmp_path / "masks").exists() or not any((tmp_path / "masks").rglob("*.png"))
    r = cli("--source", src / "10_subject", "--dest", tmp_path / "masks", "--mask-only", "--pattern", "img*",
            "--no-progress")
    assert r.returncode == 0, r.stderr
    with Image.open(tmp_path / "masks/img001.png") as im:
        assert im.mode == "L" and im.size == (64, 48)


def test_cli_refine_flags_map_onto_mask_refine(cli):
    import cli as cli_module

    parser = cli_module.build_parser(["u2netp"])
    from cutout.options import CutoutOptions, RefineOptions, parse_background

    a = parser.parse_args(["--source", "s", "--dest", "d"])
    assert cli_module.cutout_options(a) == CutoutOptions()  # the CLI's defaults are the nodes'
    assert not cli_module.cutout_options(a).refine.active
    a = parser.parse_args(["--source", "s", "--dest", "d", "--no-decontaminate", "--refine", "guided", "--fill-holes",
                           "--remove-islands", "200", "--grow", "-2", "--feather", "1.5", "--threshold", "0.4",
                           "--refine-edges", "--background", "gradient:white:#000:45"])
    o = cli_module.cutout_options(a)
    assert o.decontaminate is False and o.refine_edges is True
    assert o.refine == RefineOptions(threshold=0.4, fill_holes=True, remove_islands=200.0, grow=-2,
                                     edge_refinement="guided filter", feather=1.5)
    assert o.background == parse_background("gradient:white:black:45")
    a = parser.parse_args(["--source", "s", "--dest", "d", "--format", "jpg", "--jpeg-background", "red"])
    assert cli_module.cutout_options(a).background == parse_background("red")  # JPEG: flattened
    for bad in (["--threshold", "2"], ["--feather", "-1"], ["--refine", "magic"], ["--background", "gradient:red"]):
        r = cli("--source", ".", "--dest", "/nonexistent-out", *bad)
        assert r.returncode == 2, (bad, r.stderr)


def test_infer_item_refine_is_the_mask_refine_node(tree):
    """The dataset job's refinement is Mask Refine's function: same order, same result as the node."""
    from cutout.options import CutoutOptions, RefineOptions
    from cutout.models.session import get_session
    from cutout.nodes.mask_refine import CutoutMaskRefine
    from cutout.nodes.remove_background import CutoutRemoveBackground

    session = get_session("u2netp", "cpu")
    items, _ = reader.list_images(tree["src"] / "10_subject", recursive=False, pattern="img001.jpg")
    d = reader.decode(items[0])
    frame = reader.to_frame(d.rgb)

    def infer(**changes):
        return job.infer_item(session, d, None, CutoutOptions(**changes))

    raw = infer()
    opts = {"threshold": 0.5, "fill_holes": True, "grow": 2, "edge_refinement": "guided filter", "feather": 1.0}
    got = infer(refine=RefineOptions(**opts))
    node = CutoutMaskRefine().run(torch.from_numpy(raw)[None], image=frame[None], **opts)[0][0].numpy()
    assert got.shape == raw.shape and got.dtype == np.float32
    assert np.allclose(got, node, atol=1e-6)
    assert np.abs(got - raw).max() > 0.05  # the refinement really ran
    thr = infer(refine=RefineOptions(threshold=0.5))
    assert set(np.unique(thr)) <= {0.0, 1.0}
    # --refine-edges is Remove Background's refine_edges (guided upsampling), then the rest
    edges = infer(refine_edges=True, refine=RefineOptions(threshold=0.5))
    rb = CutoutRemoveBackground().run(frame[None], "u2netp", refine_edges=True)[1]
    node = CutoutMaskRefine().run(rb, threshold=0.5)[0][0].numpy()
    assert np.array_equal(edges, node)
    assert not np.array_equal(infer(refine_edges=True), raw)


def test_job_no_decontaminate_keeps_original_colours(tree, tmp_path):
    src = tree["src"]
    run_job(src, tmp_path / "plain", JobOptions(CutoutOptions(decontaminate=False),
                                                write=writer.WriteOptions(fsync=False), pattern="*.webp"))
    rgba = np.asarray(Image.open(tmp_path / "plain/5_other/a.png")).astype(int)
    orig = np.asarray(Image.open(src / "5_other/a.webp").convert("RGB")).astype(int)
    seen = rgba[..., 3] > 0  # under alpha 0: black (imaging.clear)
    assert np.abs(rgba[..., :3] - orig)[seen].max() <= 1 and rgba[..., :3][~seen].max(initial=0) == 0


def test_cli_refuses_overlapping_folders_and_bad_options(tree, tmp_path, cli):
    src = tree["src"]
    for dest in (src, src / "out", tmp_path):
        r = cli("--source", src, "--dest", dest, "--no-progress")
        assert r.returncode == 2 and ("inside" in r.stderr or "is the source" in r.stderr), r.stderr
    assert not (src / "out").exists()
    r = cli("--source", src, "--dest", tmp_path / "x", "--background", "mauve")
    assert r.returncode == 2 and "#RRGGBB" in r.stderr
    r = cli("--source", src, "--dest", tmp_path / "x", "--model", "no_such_model")
    assert r.returncode == 3 and "no_such_model" in r.stderr
    assert not (tmp_path / "x").exists()


def test_cli_resume_overwrite_and_keep_both(tree, tmp_path, cli):
    src, dest = tree["src"] / "10_subject" / "nested", tmp_path / "out"
    assert cli("--source", src, "--dest", dest, "--no-progress").returncode == 0
    def outputs():  # the review page is rewritten by every run: it says what that run did
        return {k: v for k, v in snapshot(dest).items() if k != "review.html"}

    first = outputs()
    r = cli("--source", src, "--dest", dest, "--no-progress")
    assert r.returncode == 0 and "done 0, skipped 1" in r.stderr and outputs() == first
    r = cli("--source", src, "--dest", dest, "--no-progress", "--overwrite")
    assert "done 1" in r.stderr and outputs() != first
    r = cli("--source", src, "--dest", dest, "--no-progress", "--keep-both", "--save-mask")
    assert sorted(k for k in outputs() if not k.startswith(".")) == ["deep/img003.json", "deep/img003.png", "deep/img003_1.json",
                                      "deep/img003_1.png", "deep/img003_1_mask.png"]


@pytest.mark.slow
def test_cli_killed_midway_then_rerun_matches(tmp_path):
    """SIGKILL (no cleanup at all) in the middle, rerun: same tree as one uninterrupted run, no partial files."""
    src = tmp_path / "many" / "10_x"
    src.mkdir(parents=True)
    n = 12
    for i in range(n):
        _photo(96 + i, 64, i).save(src / f"p{i:03d}.jpg")
        (src / f"p{i:03d}.txt").write_text(f"caption {i}")
    dest = tmp_path / "clean"
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "--source", str(tmp_path / "many"),
                             "--dest", str(dest), "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    manifest = dest / ".cutout-manifest.jsonl"
    while time.time() < deadline and proc.poll() is None:  # kill once at least one output is on record
        if len(list(dest.rglob("p*.png"))) >= 2 and manifest.is_file() and b"\"out\"" in manifest.read_bytes():
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = list(dest.rglob("p*.png"))
    assert 0 < len(written) < n, "the run was not killed mid-way"
    for p in written:  # whatever is there under its final name is complete
        with Image.open(p) as im:
            im.load()
    r = _cli("--source", tmp_path / "many", "--dest", dest, "--no-progress")
    assert r.returncode == 0, r.stderr
    # an image renamed into place but killed before its manifest line is redone ("no record"), never trusted
    import re

    skipped = int(re.search(r"skipped (\d+)", r.stderr).group(1))
    assert 0 < skipped <= len(written), r.stderr
    ref = tmp_path / "ref"
    assert not run_job(tmp_path / "many", ref, JobOptions()).failed
    assert_same_tree(tree_pixels(dest), tree_pixels(ref))
    assert not [p for p in dest.rglob(".*") if p.name not in JOB_FILES]
    # the review page (the CLI's default) shows all 12, with thumbnails (spool lines come before records)
    page = (dest / "review.html").read_text()
    assert page.count("<img") == 2 * n and "no thumbnail" not in page


# ---------------------------------------------------------------- path guard


def test_guard_accepts_inside_and_refuses_outside(comfy_dirs, tmp_path, monkeypatch):
    inp, out = comfy_dirs
    (inp / "ds" / "sub").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    g = paths.guard_folder
    assert g("ds", "N", "folder", inp, True) == (inp / "ds").resolve()
    assert g(str(inp / "ds"), "N", "folder", inp, True) == (inp / "ds").resolve()
    assert g(str(out / "new"), "N", "destination", out, False) == (out / "new").resolve()
    for bad in ("../elsewhere", "ds/../../elsewhere", "ds/..", str(outside), "/etc", "~"):
        with pytest.raises(paths.PathRefused):
            g(bad, "N", "folder", inp, True)
    (inp / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(paths.PathRefused, match="outside"):
        g("link", "N", "folder", inp, True)
    # opted in: absolute folders anywhere, but still no '..' and no escaping symlink for relative names
    monkeypatch.setenv(paths.ALLOW_ENV, "1")
    assert g(str(outside), "N", "folder", inp, True) == outside.resolve()
    with pytest.raises(paths.PathRefused, match=r"\.\."):
        g("../elsewhere", "N", "folder", inp, True)
    with pytest.raises(paths.PathRefused, match="symlink"):
        g("link", "N", "folder", inp, True)
    with pytest.raises(paths.PathRefused, match=r"\.\."):
        g(str(inp / ".." / "input"), "N", "folder", inp, True)


def test_guard_refuses_everything_outside_comfy_without_opt_in(monkeypatch, tmp_path):
    monkeypatch.setattr(comfy_glue, "input_directory", lambda: None)
    monkeypatch.setattr(comfy_glue, "output_directory", lambda: None)
    monkeypatch.delenv(paths.ALLOW_ENV, raising=False)
    with pytest.raises(paths.PathRefused, match=paths.ALLOW_ENV):
        paths.guard_folder(str(tmp_path), "N", "folder", None, True)


def test_safe_target_and_listing_stay_inside(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(paths.UnsafePath):
        paths.safe_target(dest, PurePosixPath("../x.png"))
    with pytest.raises(paths.UnsafePath):
        paths.safe_target(dest, PurePosixPath("/tmp/x.png"))
    (dest / "esc").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(paths.UnsafePath):
        paths.safe_target(dest, PurePosixPath("esc/x.png"))
    src = tmp_path / "src"
    src.mkdir()
    _photo(8, 8).save(tmp_path / "secret.png")
    (src / "leak.png").symlink_to(tmp_path / "secret.png")
    _photo(8, 8).save(src / "ok.png")
    items, problems = reader.list_images(src)
    assert [str(i.rel) for i in items] == ["ok.png"]
    assert problems[0].rel == "leak.png" and "outside" in problems[0].reason


# ---------------------------------------------------------------- reader / writer pieces

def test_listing_order_paging_and_exif(tree):
    items, problems = reader.list_images(tree["src"])
    rels = [str(i.rel) for i in items]
    assert sorted(rels) == sorted(list(tree["good"]) + tree["bad"])
    assert rels[0].startswith("5_other")  # natural order: 5 before 10
    assert [str(i.rel) for i in reader.list_images(tree["src"], start=2, limit=3)[0]] == rels[2:5]
    assert reader.list_images(tree["src"], recursive=False)[0] == []
    d = reader.decode(next(i for i in items if i.rel.name == "rotated.jpg"))
    assert d.size == (24, 40)
    with pytest.raises(reader.ReadError):
        reader.decode(next(i for i in items if i.rel.name == "corrupt.jpg"))


def test_colours_and_backgrounds():
    from cutout.options import TRANSPARENT, Background, CutoutOptions, parse_background

    assert parse_background("#ff8000").color == pytest.approx((1.0, 128 / 255, 0.0))
    assert parse_background("#fff") == Background("color", color=(1.0, 1.0, 1.0))
    assert parse_background("10, 20,30").color == pytest.approx((10 / 255, 20 / 255, 30 / 255))
    assert parse_background("White") == parse_background("white")
    assert parse_background("Transparent") == parse_background("none") == TRANSPARENT
    assert parse_background("gradient:red:blue:0") == Background("gradient", color=(1, 0, 0), color2=(0, 0, 1),
                                                                 angle=0.0)
    assert parse_background("blur").kind == "blur" and parse_background("checkerboard").kind == "checkerboard"
    for bad in ("#12345", "300,0,0", "mauve", "", "gradient:red", "gradient:red:blue:north"):
        with pytest.raises(ValueError, match="expected transparent"):
            parse_background(bad)
    rgb = np.full((2, 2, 3), 200, np.uint8)
    alpha = np.array([[1.0, 0.0], [0.5, 0.25]], np.float32)
    t = job.render_item(rgb, alpha, CutoutOptions(decontaminate=False))
    assert t.shape == (2, 2, 4) and t[0, 0, 3] == 255 and t[0, 1, 3] == 0
    assert (t[..., :3] == np.array([[200, 0], [200, 200]])[..., None]).all()  # black under alpha 0
    assert (job.render_item(rgb, alpha, CutoutOptions(decontaminate=False, clear_fill="photo"))[..., :3] == 200).all()
    c = job.render_item(rgb, alpha, CutoutOptions(decontaminate=False, background=parse_background("0,0,100")))
    assert c.shape == (2, 2, 3)
    assert tuple(c[0, 0]) == (200, 200, 200) and tuple(c[0, 1]) == (0, 0, 100)
    assert tuple(c[1, 0]) == (100, 100, 150)


@pytest.mark.parametrize("background", ["transparent", "#208040"])
@pytest.mark.parametrize("decontaminate", [True, False])
def test_writer_background_is_the_composite_background_function(background, decontaminate):
    """One background implementation: the dataset job's pixels are what Composite Background gives."""
    from cutout.imaging.composite import composite_background

    g = torch.Generator().manual_seed(3)
    rgb = (torch.rand(40, 56, 3, generator=g) * 255).round().to(torch.uint8).numpy()
    alpha = torch.zeros(40, 56)
    alpha[10:30, 12:40] = 1.0
    alpha[8:32, 10:42] = torch.maximum(alpha[8:32, 10:42], torch.full((24, 32), 0.5))
    from cutout.options import CutoutOptions, parse_background

    def render(dc):
        return job.render_item(rgb, alpha.numpy(), CutoutOptions(decontaminate=dc,
                                                                background=parse_background(background)))

    got = render(decontaminate)
    ref = composite_background(torch.from_numpy(rgb).float() / 255, alpha, background, decontaminate=decontaminate)
    assert got.shape == (40, 56, 4 if background == "transparent" else 3)
    assert np.abs(got.astype(int) - (ref.numpy() * 255 + 0.5).astype(int)).max() <= 1
    if decontaminate:  # it does change the half-transparent edge, and only there
        plain = render(False)
        edge = (alpha > 0) & (alpha < 1)
        assert (got != plain)[edge.numpy()].any()
        assert (got == plain)[(alpha == 1).numpy()].all()


def _plan_one(src: Path, dest: Path, name: str, **kw):
    item = reader.Item(src / name, PurePosixPath(name))
    out = plan.plan_outputs([item], dest, kw.pop("fmt", "png"), source_root=src, **kw)
    assert not out.refused, out.refused
    return out.planned[0]


def test_existing_policies_and_atomic_writes(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _photo(10, 10).save(src / "a.jpg")
    (src / "a.txt").write_text("cap")
    rgb = np.zeros((10, 10, 3), np.uint8)
    alpha = np.ones((10, 10), np.float32)
    dest = tmp_path / "dest"
    dest.mkdir()
    s1 = writer.save_item(dest, _plan_one(src, dest, "a.jpg", save_mask=True), rgb, alpha, writer.WriteOptions())
    assert s1.status == "done" and (dest / "a.png").is_file() and (dest / "a_mask.png").is_file()
    m1 = (dest / "a.png").stat().st_mtime_ns
    todo, done = resume.split_done([_plan_one(src, dest, "a.jpg")], dest, "skip")
    assert todo == [] and len(done) == 1 and (dest / "a.png").stat().st_mtime_ns == m1
    p3 = _plan_one(src, dest, "a.jpg", keep_both=True)
    writer.save_item(dest, p3, rgb, alpha, writer.WriteOptions())
    assert p3.image.name == "a_1.png" and (dest / "a_1.txt").read_text() == "cap"
    writer.save_item(dest, _plan_one(src, dest, "a.jpg"), rgb + 50, alpha, writer.WriteOptions(existing="overwrite"))
    assert np.asarray(Image.open(dest / "a.png"))[0, 0, 0] == 50
    # a failing encoder leaves neither the target nor a temporary file
    with pytest.raises(RuntimeError):
        writer.atomic_write(dest / "b.png", b"x", fsync=False) or (_ for _ in ()).throw(RuntimeError())
    (dest / "b.png").unlink()

    class Boom(bytes):
        pass

    orig_replace = os.replace

    def broken_replace(a, b):
        raise OSError("injected")

    os.replace = broken_replace
    try:
        with pytest.raises(OSError):
            writer.atomic_write(dest / "c.png", b"data")
    finally:
        os.replace = orig_replace
    assert not (dest / "c.png").exists() and not list(dest.glob(".*"))
    # temporaries of a dead process are cleaned, a live one's are kept
    dead = dest / f".d.png.{2 ** 22 + 12345}.0{writer.TMP_SUFFIX}"
    live = dest / f".e.png.{os.getpid()}.0{writer.TMP_SUFFIX}"
    dead.write_bytes(b"half")
    live.write_bytes(b"half")
    assert writer.clean_stale_temps(dest) == 1
    assert not dead.exists() and live.exists()


# ---------------------------------------------------------------- nodes

def test_nodes_load_list_and_save_tree(tree, comfy_dirs):
    inp, out = comfy_dirs
    os.rename(tree["src"], inp / "dataset")
    loader, saver = CutoutLoadImageFolder(), CutoutSaveImageFolder()
    images, rels, folder, report = loader.load("dataset", True, reader.DEFAULT_PATTERN, 0, 0, False)
    assert len(images) == len(rels) == len(tree["good"])
    assert "corrupt.jpg" in report
    for img, rel in zip(images, rels):
        w, h = tree["good"][rel]
        channels = 4 if rel == "10_subject/img002.png" else 3  # an RGBA file keeps its own alpha
        assert img.shape == (1, h, w, channels) and img.dtype == torch.float32
    from cutout.pipeline import remove_background

    cut = [remove_background(img, "u2netp")[0] for img in images]
    res = saver.save(cut, ["clean"], ["png"], ["skip"], ["transparent"], relative_path=rels,
                     source_folder=[folder], save_mask=[True])
    text = res["result"][0]
    assert f"wrote {len(rels)}" in text
    for rel, (w, h) in tree["good"].items():
        p = out / "clean" / PurePosixPath(rel).with_suffix(".png")
        with Image.open(p) as im:
            assert im.size == (w, h) and im.mode == "RGBA"
        assert p.with_name(p.stem + "_mask.png").is_file()
    assert (out / "clean/10_subject/img001.txt").read_bytes() == CAPTION_TXT
    again = saver.save(cut, ["clean"], ["png"], ["skip"], ["transparent"], relative_path=rels, source_folder=[folder])
    assert f"skipped {len(rels)}" in again["result"][0]
    # stacked: same-size images share a batch, paths joined by line breaks, and still land at their own names
    images, rels2, *_ = loader.load("dataset", True, "*.jpg", 0, 0, True)
    assert sum(i.shape[0] for i in images) == len([r for r in tree["good"] if r.endswith(".jpg")])
    saver.save(images, ["stacked"], ["webp"], ["skip"], ["white"], relative_path=rels2)
    assert (out / "stacked/10_subject/img001.webp").is_file()
    # the guard applies to both nodes
    with pytest.raises(CutoutInputError, match="'..'"):
        loader.load("../", True, "*", 0, 0, False)
    with pytest.raises(CutoutInputError, match="outside"):
        saver.save(cut, [str(inp.parent.parent)], ["png"], ["skip"], ["transparent"], relative_path=rels)
    with pytest.raises(CutoutInputError, match="relative_path"):
        saver.save(cut[:1], ["clean"], ["png"], ["overwrite"], ["transparent"], relative_path=["../../evil.png"])
    assert not (out.parent / "evil.png").exists()


def test_example_workflow_matches_the_nodes():
    """Every Cutout node of the dataset-prep example workflow has the widgets and links its class declares."""
    from cutout import NODE_CLASS_MAPPINGS

    wf = json.loads((ROOT / "example_workflows" / "Dataset prep for LoRA training.json").read_text(encoding="utf-8"))
    by_id = {n["id"]: n for n in wf["nodes"]}
    for n in wf["nodes"]:
        cls = NODE_CLASS_MAPPINGS.get(n["type"])
        if cls is None:
            continue
        spec = cls.INPUT_TYPES()
        inputs = {**spec.get("required", {}), **spec.get("optional", {})}
        widgets = [k for k, (typ, *o) in inputs.items()
                   if (isinstance(typ, list) or typ in ("STRING", "INT", "FLOAT", "BOOLEAN"))
                   and not (o and o[0].get("forceInput"))]
        assert len(n["widgets_values"]) == len(widgets), n["type"]
        for inp in n["inputs"]:
            assert inp["name"] in inputs, (n["type"], inp["name"])
    for _lid, src, slot, dst, dslot, typ in wf["links"]:
        cls = NODE_CLASS_MAPPINGS[by_id[src]["type"]]
        assert cls.RETURN_TYPES[slot] == typ
        assert by_id[dst]["inputs"][dslot]["type"] == typ
