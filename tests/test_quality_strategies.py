"""The quality strategies (cutout/quality/) on stand-in networks whose answer is known.

A stand-in "network" returns the red channel of the photo it was shown, so a red subject on a
black frame is its own ground truth; every catalog family is fed through the same code.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cutout.models import catalog
from cutout.quality import QUALITIES, Plan, predict_frame_quality
from cutout.quality.confidence import unsure_share
from cutout.quality.zoom import merge_box, subject_boxes


class StandIn:
    """Answers with the red channel of what it is shown (undoing the family's normalisation)."""

    def __init__(self, family, name="stand-in", bend=None):
        self.family, self.name, self.providers = family, name, ["CPUExecutionProvider"]
        self.shown = []
        self.bend = bend

    def run(self, batch, should_stop=None):
        fam = self.family
        assert batch.shape == (1, 3, fam.size, fam.size) and batch.dtype == np.float32
        red = batch[:, :1] * fam.std[0] + fam.mean[0]
        self.shown.append(red.copy())
        out = red if self.bend is None else self.bend(red)
        if fam.logits:
            out = np.log(np.clip(out, 1e-4, 1 - 1e-4) / np.clip(1 - out, 1e-4, 1))
        return out.astype(np.float32)


def scene(h=240, w=400, boxes=((100, 150, 140, 200),)):
    """Black frame with red subjects (y0, x0, y1, x1) and a faint green floor for the per-image max."""
    img = torch.zeros(h, w, 3)
    img[..., 1] = 0.05
    gt = torch.zeros(h, w)
    for y0, x0, y1, x1 in boxes:
        img[y0:y1, x0:x1, 0] = 1.0
        gt[y0:y1, x0:x1] = 1.0
    return img, gt


FAMILIES = sorted({spec.family for spec in catalog.CATALOG.values()}, key=lambda f: f.name)


@pytest.mark.parametrize("fam", FAMILIES, ids=lambda f: f.name)
@pytest.mark.parametrize("quality", list(QUALITIES))
def test_every_setting_finds_the_subject_for_every_family(fam, quality):
    img, gt = scene()
    net = StandIn(fam)
    r = predict_frame_quality(net, img, quality)
    assert r.mask.shape == gt.shape and r.mask.dtype == torch.float32
    assert 0.0 <= r.mask.min() and r.mask.max() <= 1.0
    assert ((r.mask > 0.5) == (gt > 0.5)).float().mean() > 0.995
    assert r.passes == len(net.shown) <= QUALITIES[quality].looks_per_frame(False)
    assert 0.0 <= r.confidence <= 1.0


def test_zoom_looks_at_each_subject_box_with_the_margin():
    img, _ = scene(boxes=((20, 20, 60, 80), (150, 300, 200, 360)))  # two subjects far apart
    small = torch.nn.functional.interpolate(img[..., 0][None, None], size=(320, 320), mode="area")
    boxes = subject_boxes(small, 240, 400, margin=0.25, max_area=0.7)
    assert len(boxes) == 2
    (a, b) = sorted(boxes)
    assert a[0] <= 20 - 9 and a[1] <= 20 - 14 and a[2] >= 60 + 9 and a[3] >= 80 + 14  # 25 % of 40x60 each side
    assert b[0] <= 150 - 11 and b[2] >= 200 + 11
    net = StandIn(catalog.U2NET)
    r = predict_frame_quality(net, img, Plan(zoom=True, zoom_max_area=0.7))
    assert r.passes == 3  # the frame, then each subject's box


def test_no_zoom_when_the_subject_fills_the_frame_and_none_without_subject():
    net = StandIn(catalog.U2NET)
    img, _ = scene(boxes=((10, 10, 230, 390),))
    assert predict_frame_quality(net, img, Plan(zoom=True, zoom_max_area=0.5)).passes == 1
    empty, _ = scene(boxes=())
    r = predict_frame_quality(StandIn(catalog.U2NET), empty, Plan(flip=True, zoom=True))
    assert r.passes == 2 and r.mask.shape == (240, 400)  # mirrored look, no box to zoom on


def test_nearby_boxes_are_joined_and_specks_ignored():
    m = torch.zeros(1, 1, 100, 100)
    m[..., 10:30, 10:30] = 1
    m[..., 32:50, 12:28] = 1  # overlaps the first once both grow by the margin
    m[..., 90:91, 90:91] = 1  # a speck
    boxes = subject_boxes(m, 100, 100, margin=0.15, max_area=0.9)
    assert len(boxes) == 1 and boxes[0][0] <= 10 and boxes[0][2] >= 50


def test_merge_box_replaces_or_averages_inside_the_box_only():
    mask = torch.zeros(10, 10)
    merge_box(mask, torch.ones(4, 4), (2, 2, 6, 6), 1.0)
    assert mask.sum() == 16 and mask[2:6, 2:6].min() == 1
    merge_box(mask, torch.zeros(4, 4), (2, 2, 6, 6), 0.5)
    assert torch.allclose(mask[2:6, 2:6], torch.full((4, 4), 0.5)) and mask.sum() == 8


def test_mirrored_look_is_mirrored_back():
    img, gt = scene(boxes=((50, 20, 120, 90),))  # far left: a look left unmirrored would land right
    net = StandIn(catalog.U2NET)
    r = predict_frame_quality(net, img, Plan(flip=True))
    assert len(net.shown) == 2 and np.allclose(net.shown[1], net.shown[0][..., ::-1])
    assert ((r.mask > 0.5) == (gt > 0.5)).float().mean() > 0.995


def test_fusion_weighs_the_partner_and_confidence_sees_disagreement():
    img, gt = scene()
    main, partner = StandIn(catalog.U2NET, "a"), StandIn(catalog.U2NET, "b", bend=lambda r: 1.0 - r)
    agree = predict_frame_quality(main, img, Plan(fuse=True), partner=StandIn(catalog.U2NET, "c"))
    disagree = predict_frame_quality(main, img, Plan(fuse=True, partner_weight=0.25), partner=partner)
    assert len(partner.shown) == 1
    # 3:1 for the main model: the subject stays above 0.5, the background below
    assert ((disagree.mask > 0.5) == (gt > 0.5)).float().mean() > 0.995
    assert disagree.confidence < 0.5 < agree.confidence


def test_unsure_share_counts_the_in_between_pixels_per_subject_pixel():
    m = torch.zeros(10, 10)
    m[:5] = 1.0
    m[5] = 0.5  # 10 unsure pixels; subject 50 (> 0.5 only)
    assert unsure_share(m) == pytest.approx(10 / 50)
    assert unsure_share(torch.zeros(4, 4)) == 1.0


def test_unknown_quality_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="fast"):
        predict_frame_quality(StandIn(catalog.U2NET), scene()[0], "ultra")


def test_auto_runs_the_setting_the_catalog_names_for_each_model():
    from cutout.quality import auto_quality, plan_for

    assert all(spec.auto_quality in QUALITIES for spec in catalog.CATALOG.values())
    # u2net's one look fell below rembg's IoU on the held-out photos, its int8 build's too (docs/quality.md)
    assert {m: auto_quality(m) for m in ("u2netp", "u2netp-int8", "u2net", "u2net-int8")} == {
        "u2netp": "fast", "u2netp-int8": "fast", "u2net": "best", "u2net-int8": "best"}
    assert plan_for("auto", "u2net-int8").flip and plan_for("auto", "u2net-int8").merge == "logodds"
    assert plan_for("auto", "stand-in") == QUALITIES["fast"]  # not a catalog model


def test_best_merges_each_model_the_way_the_catalog_says():
    """u2netp's mirrored look moved its subject as often for the worse as for the better (docs/quality.md):
    its `best` only sharpens where the looks agree; its int8 build inherits that, u2net keeps log-odds."""
    from cutout.quality import plan_for

    merges = {m: plan_for("best", m).merge for m in ("u2netp", "u2netp-int8", "u2net", "u2net-int8", "stand-in")}
    assert merges == {"u2netp": "agree", "u2netp-int8": "agree", "u2net": "logodds", "u2net-int8": "logodds",
                      "stand-in": "logodds"}
    assert all(spec.look_merge in ("mean", "logodds", "agree") for spec in catalog.CATALOG.values())


def test_agree_merge_sharpens_agreeing_pixels_and_never_moves_the_outline():
    from cutout.quality.passes import keep_side, merge_maps

    first = torch.tensor([0.8, 0.8, 0.3, 0.6]).view(1, 1, 2, 2)
    second = torch.tensor([0.8, 0.3, 0.2, 0.45]).view(1, 1, 2, 2)
    m = merge_maps([first, second], [1.0, 1.0], "agree").flatten()
    assert m[0] > 0.93 and m[2] < 0.1  # both looks on one side: surer than either
    assert m[1] == first.flatten()[1] and m[3] == first.flatten()[3]  # they disagree: the first look stands
    big, ref = torch.tensor([0.2, 0.7, 0.9]), torch.tensor([0.6, 0.4, 0.8])
    assert torch.equal(keep_side(big, ref), torch.tensor([0.6, 0.4, 0.9]))


def test_u2netp_best_keeps_fast_outline_where_the_mirrored_look_claims_more():
    img, _ = scene(boxes=((20, 100, 220, 300),))  # a thin strip: the looks agree (IoU ≈ 0.9) but differ there
    fast = predict_frame_quality(StandIn(catalog.U2NET, "u2netp", bend=_strip(8)), img, "fast")
    best = predict_frame_quality(StandIn(catalog.U2NET, "u2netp", bend=_strip(8)), img, "best")
    assert best.passes == 2 and torch.equal(best.mask > 0.5, fast.mask > 0.5)
    assert torch.equal(best.mask[:, :5], fast.mask[:, :5]) and torch.equal(best.mask[:, -5:], fast.mask[:, -5:])
    later = predict_frame_quality(StandIn(catalog.U2NET, "u2netp", bend=_strip(8)), img, "best", defer=True)
    assert torch.equal(later.mask.resolve(), best.mask)  # the folder job's deferred upsample keeps it too


def test_remove_background_takes_quality_and_gives_a_confidence_per_frame():
    """The node's `quality` input reaches the network step; `confidence` is its last output, one per frame."""
    from cutout.nodes import NODE_CLASS_MAPPINGS

    node = NODE_CLASS_MAPPINGS["CutoutRemoveBackground"]
    assert "quality" in node.INPUT_TYPES()["optional"]
    assert node.RETURN_NAMES[-1] == "confidence" and node.RETURN_TYPES[-1] == "FLOAT"
    assert node.OUTPUT_IS_LIST == (False, False, True)
    img = torch.stack([scene()[0], scene(boxes=((30, 40, 200, 300),))[0]])
    fast = node().run(img, "u2netp")  # auto: fast for u2netp
    best = node().run(img, "u2netp", quality="best")
    for image, mask, confidence in (fast, best):
        assert image.shape == (2, 240, 400, 4) and mask.shape == (2, 240, 400)
        assert len(confidence) == 2 and all(0.0 <= c <= 1.0 for c in confidence)
    assert not torch.equal(fast[1], best[1])  # the mirrored look changed something


def test_an_unknown_quality_is_refused_by_the_node_naming_the_input():
    from cutout.nodes import NODE_CLASS_MAPPINGS

    with pytest.raises(Exception, match="quality"):
        NODE_CLASS_MAPPINGS["CutoutRemoveBackground"]().run(scene()[0][None], "u2netp", quality="ultra")


def test_cli_quality_reaches_the_network_step(monkeypatch):
    import cli as cli_module
    from cutout import pipeline
    from cutout.dataset import job, reader
    from cutout.models.session import get_session

    a = cli_module.build_parser(["u2netp"]).parse_args(["--source", "s", "--dest", "d", "--quality", "best"])
    opts = cli_module.cutout_options(a)
    assert opts.quality == "best"
    seen, real = [], pipeline.predict_frame
    monkeypatch.setattr(pipeline, "predict_frame",
                        lambda s, f, edges, quality, *rest: seen.append(quality) or real(s, f, edges, quality, *rest))
    decoded = reader.Decoded(None, np.zeros((40, 60, 3), np.uint8), None)
    assert job.infer_item(get_session("u2netp"), decoded, None, opts).shape == (40, 60)
    assert seen == ["best"]


def _strip(width):
    """A stand-in answer that also claims the right ``width`` columns of whatever it is shown."""
    def bend(red):
        out = red.copy()
        out[..., -width:] = 1.0
        return out
    return bend


def test_best_keeps_the_first_look_when_the_mirrored_one_sees_another_subject():
    img, _ = scene()
    fast = predict_frame_quality(StandIn(catalog.U2NET, bend=_strip(100)), img, "fast")
    net = StandIn(catalog.U2NET, bend=_strip(100))  # mirrored back, the strip lands on the left
    best = predict_frame_quality(net, img, "best")
    assert len(net.shown) == 2 and best.passes == 2
    assert torch.equal(best.mask, fast.mask)
    assert best.confidence < 0.7 <= fast.confidence  # the disagreement still shows in the score


def test_best_merges_agreeing_looks_in_log_odds():
    img, _ = scene(boxes=((20, 100, 220, 300),))  # a large subject: a thin strip leaves IoU ≈ 0.9
    fast = predict_frame_quality(StandIn(catalog.U2NET, bend=_strip(8)), img, "fast")
    best = predict_frame_quality(StandIn(catalog.U2NET, bend=_strip(8)), img, "best")
    right, left = best.mask[:, -5:], best.mask[:, :5]  # each strip seen by one look only
    assert fast.mask[:, -5:].min() > 0.99 and fast.mask[:, :5].max() < 0.01
    assert 0.4 < right.mean() < 0.6 and 0.4 < left.mean() < 0.6
    assert torch.equal(best.mask[30:210, 110:290], fast.mask[30:210, 110:290])  # both sure: unchanged


def test_log_odds_merge_keeps_a_sure_pixel_sure_where_the_mean_greys_it():
    from cutout.quality.passes import merge_maps

    sure, leaning = torch.full((1, 1, 2, 2), 0.98), torch.full((1, 1, 2, 2), 0.4)
    mean = merge_maps([sure, leaning], [1.0, 1.0], "mean")
    logodds = merge_maps([sure, leaning], [1.0, 1.0], "logodds")
    assert torch.allclose(mean, torch.full_like(mean, 0.69))
    assert (logodds > 0.85).all()
    assert torch.equal(merge_maps([sure, 1 - sure], [1.0, 1.0], "logodds", min_agreement=0.7), sure)
    with pytest.raises(ValueError, match="logodds"):
        merge_maps([sure, leaning], [1.0, 1.0], "median")


def test_the_progress_bar_moves_after_every_network_run(monkeypatch):
    """`best` takes two looks a frame: ComfyUI's bar (an interrupt point too) advances after each,
    while the caller's progress callback still counts frames."""
    from cutout import comfy_glue, pipeline
    from cutout.options import CutoutOptions

    updates = []

    class Bar(comfy_glue.Progress):
        def update(self, n=1):
            super().update(n)
            updates.append((self.done, self.total))

    monkeypatch.setattr(comfy_glue, "Progress", Bar)
    frames = []
    img = torch.stack([scene()[0], scene()[0]])
    pipeline.cut_out(img, CutoutOptions(quality="best"), progress=lambda d, t: frames.append((d, t)))
    assert [u for u in updates if u[1] == 4] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert frames == [(1, 2), (2, 2)]


@pytest.mark.parametrize("quality", list(QUALITIES))
@pytest.mark.parametrize("post_process,own", [(False, False), (True, True)])
def test_a_deferred_mask_is_the_mask(quality, post_process, own):
    """The folder job leaves the upsample and the steps after the network to its writer threads
    (``defer``); what they resolve is what the nodes get, and it never holds the frame."""
    from cutout import pipeline
    from cutout.imaging.model_io import shrink_for_model
    from cutout.options import CutoutOptions, RefineOptions
    from cutout.quality import Deferred

    img, _ = scene(boxes=((60, 50, 200, 180), (20, 260, 90, 330)))
    own_alpha = torch.ones(img.shape[:2])
    own_alpha[:, :30] = 0.0
    opts = CutoutOptions(quality=quality, post_process=post_process)
    eager = pipeline.frame_alpha(StandIn(catalog.U2NET), img, opts, own_alpha if own else None)
    small = shrink_for_model(img[None], catalog.U2NET.size)
    net = StandIn(catalog.U2NET)
    deferred = pipeline.frame_alpha(net, img, opts, own_alpha if own else None, small=small, defer=True)
    assert isinstance(deferred, Deferred)
    assert not any(x is img for x in _held(deferred))
    assert torch.equal(deferred.resolve(), eager)
    assert deferred.resolve() is deferred.resolve()  # resolved once
    refined = CutoutOptions(quality=quality, refine=RefineOptions(fill_holes=True))
    assert isinstance(pipeline.frame_alpha(net, img, refined, defer=True), torch.Tensor)  # Mask Refine reads the frame


def _held(obj, seen=None):
    """Every object a ``Deferred`` (or a function) keeps alive through its closures."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    out = [obj]
    make = getattr(obj, "_make", None)
    for cell in (getattr(make if make is not None else obj, "__closure__", None) or ()):
        out += _held(cell.cell_contents, seen)
    return out
