"""The folder job on Ray Data (``--engine ray``): same outputs and report as the local engine.

Runs a local Ray on loopback (one ``ray.init`` for the module, 2 CPUs, no dashboard) on the
small kohya-style tree of ``test_dataset``. Skipped when ray is not installed
(``pip install -r requirements-ray.txt``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from test_dataset import CAPTION_TXT, assert_same_tree, snapshot, tree, tree_pixels  # noqa: E402,F401 (tree: fixture)

from cutout.dataset import ray_engine, ray_stages, writer  # noqa: E402
from cutout.dataset.job import JobOptions, run_job  # noqa: E402
from cutout.options import CutoutOptions, RefineOptions, parse_background  # noqa: E402
from cutout.dataset.ray_engine import RayOptions, run_job_ray  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    started = ray_engine.start_ray(num_cpus=2)
    yield
    if started:
        ray.shutdown()


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_ray_matches_local_engine(local_ray, tree, tmp_path):
    src = tree["src"]
    opts = JobOptions(write=writer.WriteOptions(fsync=False))
    local = run_job(src, tmp_path / "local", opts)
    seen = []
    rep = run_job_ray(src, tmp_path / "ray", opts, RayOptions(batch_size=2),
                      on_item=lambda rel, status, n, todo: seen.append((rel, status)))
    assert sorted(rep.done) == sorted(tree["good"]) == sorted(local.done)
    assert rep.failed == local.failed  # same files, same reasons
    assert [r for r, _ in rep.failed] == tree["bad"] and "cannot decode" in rep.failed[0][1]
    assert not rep.ok and not rep.interrupted
    assert sorted(r for r, _ in seen) == sorted(list(tree["good"]) + tree["bad"])
    a, b = tree_pixels(tmp_path / "local"), tree_pixels(tmp_path / "ray")
    assert_same_tree(a, b)
    for k in a:  # not just within 1/255: the very same bytes
        if hasattr(a[k], "shape"):
            assert (a[k] == b[k]).all(), k
    out = tmp_path / "ray" / "10_subject"
    assert (out / "img001.txt").read_bytes() == CAPTION_TXT
    assert (out / "img002.caption").read_bytes() == b"caption for two"
    assert (out / "nested" / "deep" / "img003.json").is_file()
    assert not (out / "corrupt.png").exists() and not (out / "corrupt.txt").exists()


def test_ray_options_jpg_masks_match_local(local_ray, tree, tmp_path):
    src = tree["src"]
    for name in ("local", "ray"):
        w = writer.WriteOptions(fmt="jpg", save_mask=True, mask_dir=tmp_path / f"{name}_masks", fsync=False)
        # refine options travel to the Ray actors (cli.py --fill-holes --refine guided)
        cut = CutoutOptions(refine=RefineOptions(fill_holes=True, edge_refinement="guided"),
                            background=parse_background("#102030"))
        opts = JobOptions(cut, write=w)
        if name == "local":
            run_job(src, tmp_path / name, opts)
        else:
            rep = run_job_ray(src, tmp_path / name, opts, RayOptions(batch_size=3, actors=1))
            assert len(rep.done) == len(tree["good"])
    assert_same_tree(tree_pixels(tmp_path / "local"), tree_pixels(tmp_path / "ray"))
    assert_same_tree(tree_pixels(tmp_path / "local_masks"), tree_pixels(tmp_path / "ray_masks"))
    assert (tmp_path / "ray" / "10_subject" / "img001_mask.png").is_file()


def test_ray_rerun_writes_nothing(local_ray, tree, tmp_path):
    dest = tmp_path / "out"
    first = run_job_ray(tree["src"], dest, JobOptions(), RayOptions())
    assert len(first.done) == len(tree["good"])
    before = snapshot(dest)
    again = run_job_ray(tree["src"], dest, JobOptions(), RayOptions())
    assert again.done == [] and sorted(again.skipped) == sorted(tree["good"])
    assert [r for r, _ in again.failed] == tree["bad"]  # still reported, still not written
    assert snapshot(dest) == before


def _dying_actor(marker: str, n: int):
    """An inference actor that dies once (``os._exit``, as a killed node would) on the batch that
    holds its n-th image; a class local to a function, so Ray ships it by value to the workers."""

    class DyingActor(ray_stages.InferActor):
        def __call__(self, batch):
            self.seen = getattr(self, "seen", 0) + len(batch["rel"])
            if self.seen >= n and not os.path.exists(marker):
                with open(marker, "w") as f:
                    f.write(str(os.getpid()))
                os._exit(1)  # no cleanup, no exception: the process is simply gone
            return super().__call__(batch)

    return DyingActor


def test_ray_actor_killed_midrun_loses_and_duplicates_nothing(local_ray, tree, tmp_path, monkeypatch):
    src = tree["src"]
    run_job(src, tmp_path / "local", JobOptions(write=writer.WriteOptions(fsync=False)))
    marker = tmp_path / "actor-died"
    monkeypatch.setattr(ray_stages, "InferActor", _dying_actor(str(marker), 4))
    rep = run_job_ray(src, tmp_path / "ray", JobOptions(write=writer.WriteOptions(fsync=False)),
                      RayOptions(batch_size=2))
    assert marker.is_file(), "the actor was meant to die once (os._exit) on its 4th image"
    assert sorted(rep.done) == sorted(tree["good"]) and len(rep.done) == len(set(rep.done))
    assert [r for r, _ in rep.failed] == tree["bad"]
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")  # no extra copy, no temp file left
    assert_same_tree(tree_pixels(tmp_path / "local"), tree_pixels(tmp_path / "ray"))


def test_cli_engine_ray(tree, tmp_path):
    """The command line end to end in its own process (it starts and stops its own local Ray)."""
    dest = tmp_path / "clean"  # relative paths on the command line: workers run elsewhere
    assert tree["src"] == tmp_path / "dataset"
    p = subprocess.run([sys.executable, str(ROOT / "cli.py"), "--source", "dataset", "--dest", "clean",
                        "--engine", "ray", "--actors", "1", "--batch-size", "2", "--no-progress",
                        "--report", str(tmp_path / "r.json")],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert p.returncode == 1, p.stderr[-3000:]  # the corrupt file makes it non-zero
    assert "failed: 10_subject/corrupt.jpg: cannot decode" in p.stderr
    assert f"done {len(tree['good'])}," in p.stderr
    assert (dest / "10_subject" / "img001.txt").read_bytes() == CAPTION_TXT
    assert (dest / "5_other" / "a.png").is_file()


def test_pack_import_never_imports_ray():
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import cutout as p; "
            "import cutout.nodes, cutout.dataset.job; "
            "assert 'ray' not in sys.modules, 'ray imported'; print('ok')")
    p = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "ok" in p.stdout, p.stderr


def test_ray_plan_clashes_and_resume_follow_the_manifest(local_ray, tmp_path):
    """The Ray engine shares the output plan (clashes refused, named) and the manifest (the driver
    appends each write task's record): a rerun skips true matches and redoes other settings."""
    from PIL import Image

    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    for name, colour in (("b.JPG", (200, 30, 30)), ("b.jpeg", (30, 200, 30)), ("c.png", (30, 30, 200))):
        Image.new("RGB", (16, 12), colour).save(src / name)
    w = writer.WriteOptions(fsync=False)
    rep = run_job_ray(src, dest, JobOptions(write=w), RayOptions(batch_size=2))
    assert sorted(rep.done) == ["b.jpeg", "c.png"] and [r for r, _ in rep.failed] == ["b.JPG"]
    assert "b.jpeg" in rep.failed[0][1]
    again = run_job_ray(src, dest, JobOptions(write=w), RayOptions())
    assert again.done == [] and sorted(again.skipped) == ["b.jpeg", "c.png"]
    black = JobOptions(CutoutOptions(background=parse_background("black")), write=w)
    other = run_job_ray(src, dest, black, RayOptions())
    assert sorted(other.done) == ["b.jpeg", "c.png"]
    assert all(why.startswith("settings changed: background") for _r, why in other.redone), other.redone
    assert run_job(src, dest, black).done == []  # the local engine reads the same records


def test_ray_report_has_the_local_reports_items_notes_and_review(local_ray, tree, tmp_path):
    """Per-item doubt, cues, subject share, crop box and decode notes come back from the Ray workers
    into the same report fields as the local engine's, and the review page is written."""
    import json

    from PIL import Image

    src = tree["src"]
    pages = [Image.new("RGB", (40, 30), c) for c in ("red", "blue")]
    pages[0].save(src / "10_subject" / "pages.tif", save_all=True, append_images=pages[1:])
    opts = JobOptions(write=writer.WriteOptions(fsync=False, review=True, crop=0.1))
    local = run_job(src, tmp_path / "local", opts)
    rep = run_job_ray(src, tmp_path / "ray", opts, RayOptions(batch_size=2))
    assert sorted(rep.done) == sorted(local.done)
    assert rep.items == local.items and set(rep.items) == set(local.done)
    assert all("doubt" in i and "share_before" in i and "box" in i and "thumbs" not in i for i in rep.items.values())
    assert sorted(rep.notes) == sorted(local.notes) and any("pages.tif" in r for r, _ in rep.notes)
    assert rep.review and Path(rep.review) == tmp_path / "ray" / "review.html" and Path(rep.review).is_file()
    # the same page, thumbnails included (made from the network's view, which travels with the mask)
    assert Path(rep.review).read_text() == (tmp_path / "local" / "review.html").read_text()
    assert json.loads(rep.to_json())["items"] == json.loads(local.to_json())["items"]


def _squares(src: Path, n: int) -> None:
    from PIL import Image

    src.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(n):
        px = np.full((100, 100, 3), 160, np.uint8)
        px[25:75, 25:75] = rng.integers(0, 255, 3)
        Image.fromarray(px).save(src / f"s{i}.png")


def test_ray_bounds_the_pixels_in_flight_as_the_local_engine(local_ray, tmp_path):
    """The local engine's bound (job.pixel_budget: 1.5 images at --max-megapixels) holds in the Ray
    engine too, counted from before each decode to after each write: with a 0.01 MP limit, one
    100x100 image at a time; without it the same pipeline holds several. A batch larger than the
    budget still fills (one batch always goes) instead of waiting forever."""
    src = tmp_path / "src"
    _squares(src, 8)
    tight = JobOptions(write=writer.WriteOptions(fsync=False, review=True), max_megapixels=0.01)
    local = run_job(src, tmp_path / "local", tight)
    assert len(local.done) == 8 and local.peak_pixels == 10_000
    rep = run_job_ray(src, tmp_path / "a", tight, RayOptions(batch_size=1))
    assert rep.ok and len(rep.done) == 8 and rep.peak_pixels == 10_000
    loose = run_job_ray(src, tmp_path / "b", JobOptions(write=writer.WriteOptions(fsync=False)), RayOptions(batch_size=1))
    assert loose.ok and loose.peak_pixels > 10_000  # what the bound prevents
    batch = run_job_ray(src, tmp_path / "c", tight, RayOptions(batch_size=3))
    assert batch.ok and len(batch.done) == 8 and 10_000 < batch.peak_pixels <= 30_000
    again = run_job_ray(src, tmp_path / "a", tight, RayOptions(batch_size=1))  # nothing to do: no Ray run
    assert again.skipped and not again.done and again.review  # the page still lists every output
    assert "8 up to date from earlier runs" in Path(again.review).read_text()
