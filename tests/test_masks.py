"""Mask Refine: every operation's direction pinned on small masks with a known answer."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cutout.imaging import masks as M
from cutout.imaging.refine import auto_trimap, guided_filter, matte, temporal_smooth
from cutout.imaging.tensors import CutoutInputError
from cutout.nodes.mask_refine import CutoutMaskRefine, refine_masks


def disc(radius: float, size: int = 96, center=None) -> torch.Tensor:
    cy, cx = center or (size / 2 - 0.5, size / 2 - 0.5)
    y, x = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    return (((y - cy) ** 2 + (x - cx) ** 2) <= radius ** 2).float()[None]


def radius_of(mask: torch.Tensor) -> float:
    return math.sqrt(mask.sum().item() / math.pi)


@pytest.mark.parametrize("n", [1, 3, 7, -3, -7])
def test_grow_and_shrink_move_disc_radius_by_n(n):
    m = disc(20)
    out = M.grow(m, n)
    assert radius_of(out) == pytest.approx(20 + n, abs=0.6)
    # round element: the grown disc is still a disc (its bounding box is square and matches)
    ys, xs = torch.nonzero(out[0] > 0.5, as_tuple=True)
    assert (ys.max() - ys.min()).item() == (xs.max() - xs.min()).item()
    assert ((xs.max() - xs.min() + 1) / 2).item() == pytest.approx(20 + n, abs=1.0)


def test_grow_is_round_not_square():
    m = torch.zeros(1, 41, 41)
    m[0, 20, 20] = 1
    out = M.grow(m, 10)
    assert out[0, 20, 30] == 1 and out[0, 30, 20] == 1  # along the axes: reached
    assert out[0, 28, 28] == 0  # the square's corner (distance 11.3) is not


def test_grow_keeps_soft_values_and_shrink_is_dual():
    m = torch.rand(2, 30, 40)
    g = M.grow(m, 2)
    s = M.grow(m, -2)
    assert (g >= m).all() and (s <= m).all()
    assert torch.allclose(M.grow(1 - m, 2), 1 - s)


def test_fill_holes_fills_a_ring():
    ring = disc(30) - disc(12)
    out = M.fill_holes(ring)
    assert torch.equal(out, disc(30))
    # a C shape (the hole opens to the outside through a gap) is not a hole
    c = ring.clone()
    c[0, 44:52, 40:] = 0
    assert torch.equal(M.fill_holes(c), c)


def test_fill_holes_takes_the_soft_rim():
    ring = M.feather(disc(30) - disc(12), 2)
    out = M.fill_holes(ring)
    assert out[0, 48, 48] == 1.0
    assert out[0, 48, 48 + 12] == 1.0  # old rim of the hole
    assert torch.allclose(out[0, 0], ring[0, 0])  # outside untouched


def test_remove_islands_pixels_and_fraction():
    m = disc(20) + disc(2, center=(5, 5))
    assert M.remove_islands(m, 100)[0, 5, 5] == 0
    assert M.remove_islands(m, 100)[0, 48, 48] == 1
    assert torch.equal(M.remove_islands(m, 5), m)  # the speck has 13 px > 5
    frac = 100 / (96 * 96)
    assert M.remove_islands(m, frac)[0, 5, 5] == 0
    # nothing survives a limit above the big disc's area
    assert M.remove_islands(m, 0.99).sum() == 0


def test_levels_directions():
    m = torch.linspace(0, 1, 101)[None, None].expand(1, 4, 101).clone()
    hi_black = M.levels(m, black=0.3)
    assert (hi_black <= m + 1e-6).all() and hi_black[0, 0, 30] == 0 and hi_black[0, 0, 100] == 1
    lo_white = M.levels(m, white=0.7)
    assert (lo_white >= m - 1e-6).all() and lo_white[0, 0, 70] == 1 and lo_white[0, 0, 0] == 0
    hard = M.levels(m, threshold=0.4)
    assert set(hard.unique().tolist()) == {0.0, 1.0}
    assert hard[0, 0, 39] == 0 and hard[0, 0, 41] == 1
    assert torch.equal(M.levels(m), m)


def test_feather_softens_edge_and_keeps_mass():
    m = disc(20)
    f = M.feather(m, 6)
    soft = ((f > 0.02) & (f < 0.98)).sum()
    assert soft > ((m > 0) & (m < 1)).sum() + 100
    assert f.sum().item() == pytest.approx(m.sum().item(), rel=0.02)
    assert f[0, 48, 48] == pytest.approx(1.0, abs=1e-4) and f[0, 0, 0] == pytest.approx(0.0, abs=1e-4)
    wider = M.feather(m, 12)
    assert ((wider > 0.02) & (wider < 0.98)).sum() > soft


@pytest.mark.parametrize("radius", [3, 4, 8, 12, 40])
def test_wide_feather_on_a_shrunk_copy_matches_the_full_size_blur(radius):
    """feather's shortcut (blur a shrunk copy, upsample) against three full-size box passes."""
    rb = max(1, round(radius / 2))
    m = disc(70, 300, center=(140.2, 160.7))
    m[0, 20:60, 230:290] = 1.0  # a second shape near the border
    exact = m
    for _ in range(3):
        exact = M.box_filter(exact, rb)
    fast = M.feather(m, radius)
    assert M._feather_plan(rb) is not None  # the shortcut really ran
    assert fast.shape == m.shape and fast.is_contiguous()
    diff = (fast - exact).abs()[0]
    b = 3 * rb  # at the image border the two normalise their clipped windows differently
    assert diff[b:-b, b:-b].max() < 0.025 and diff.max() < 0.05
    assert fast.sum().item() == pytest.approx(exact.sum().item(), rel=5e-3)


def test_invert():
    m = torch.rand(1, 5, 5)
    assert torch.allclose(M.invert(m), 1 - m)


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_all_zero_and_all_one_masks_survive_everything(value):
    m = torch.full((2, 24, 32), value)
    img = torch.rand(2, 24, 32, 3)
    for kwargs in [dict(black_point=0.2, white_point=0.8), dict(threshold=0.5), dict(fill_holes=True),
                   dict(remove_islands=10.0), dict(grow=3), dict(grow=-3), dict(feather=3.0),
                   dict(edge_refinement="guided filter"), dict(edge_refinement="matting"), dict(temporal=0.7)]:
        out = refine_masks(m, img, **kwargs)
        assert out.shape == m.shape
        assert torch.allclose(out, m, atol=1e-4), kwargs
    assert torch.allclose(refine_masks(m, invert=True), 1 - m)


@pytest.mark.parametrize("r,h,w", [(3, 17, 23), (20, 30, 50), (5, 4, 3), (14, 9, 40)])
def test_box_filter_matches_naive(r, h, w):
    x = torch.rand(2, 3, h, w)
    padded = torch.nn.functional.pad(x, (r, r, r, r))
    ones = torch.nn.functional.pad(torch.ones(1, 1, h, w), (r, r, r, r))
    k = torch.ones(3, 1, 2 * r + 1, 2 * r + 1)
    s = torch.nn.functional.conv2d(padded, k, groups=3)
    c = torch.nn.functional.conv2d(ones, torch.ones(1, 1, 2 * r + 1, 2 * r + 1))
    assert torch.allclose(M.box_filter(x, r), s / c, atol=1e-5)


def test_guided_filter_snaps_blurry_mask_to_photo_edge():
    # photo: a sharp red square on blue; mask: a blurred and shifted version of it
    img = torch.zeros(1, 64, 64, 3)
    img[..., 2] = 1
    img[0, 16:48, 16:48] = torch.tensor([1.0, 0, 0])
    truth = torch.zeros(1, 64, 64)
    truth[0, 16:48, 16:48] = 1
    rough = M.feather(M.grow(truth, 3), 3)  # too big and blurry
    for out in (guided_filter(img, rough, radius=4, eps=1e-4, work_size=0),
                guided_filter(img, rough, radius=2, eps=1e-4, work_size=32)):
        # the 0.5 contour moves towards the photo's edge
        assert ((out > 0.5) != (truth > 0.5)).sum() < 0.6 * ((rough > 0.5) != (truth > 0.5)).sum()


def test_guided_upsampling_puts_the_small_maps_edge_on_the_photos_edge():
    """Remove Background's refine_edges: the model's 32² map of a disc, upsampled to 256²."""
    from cutout.imaging.model_io import from_model_output, guided_upsample, shrink_for_model

    truth = disc(70, 256, center=(120.3, 133.7))
    photo = torch.stack([0.2 + 0.7 * truth, 0.6 - 0.4 * truth, 0.3 + 0.0 * truth], -1)  # orange disc on green
    small_photo = shrink_for_model(photo, 32)
    small_map = F.interpolate(truth[None], size=(32, 32), mode="area")  # what a perfect model would say
    plain = from_model_output(small_map.numpy(), 256, 256, logits=False)
    guided = guided_upsample(small_map, small_photo, photo)
    assert guided.shape == plain.shape == truth.shape and guided.dtype == torch.float32
    assert 0 <= guided.min() and guided.max() <= 1
    err_plain, err_guided = (plain - truth).abs().sum(), (guided - truth).abs().sum()
    assert err_guided < 0.5 * err_plain, (err_guided, err_plain)
    # a flat photo gives the filter nothing to follow: a slightly smoothed plain upsampling
    flat = torch.full_like(photo, 0.5)
    same = guided_upsample(small_map, shrink_for_model(flat, 32), flat)
    assert abs(same.sum() - plain.sum()) < 0.01 * plain.sum()
    assert ((same > 0.5) != (plain > 0.5)).sum() < 0.05 * (plain > 0.5).sum()  # < 1 px of contour


def test_matting_trimap_without_foreground_returns_input(caplog):
    img = torch.rand(1, 32, 32, 3)
    m = torch.full((1, 32, 32), 0.3)
    with caplog.at_level("WARNING", logger="comfyui_cutout"):
        out = matte(img, m, band=2)
    assert torch.equal(out, m)
    assert "no sure subject" in caplog.text


def test_matting_follows_photo_and_downscales_above_cap(caplog):
    img = torch.zeros(1, 80, 80, 3)
    img[0, 20:60, 20:60] = 1.0
    truth = torch.zeros(1, 80, 80)
    truth[0, 20:60, 20:60] = 1
    rough = M.feather(truth, 6)
    tri = auto_trimap(rough, 2)
    assert (tri == 0.5).any() and (tri == 1).any() and (tri == 0).any()
    with caplog.at_level("INFO", logger="comfyui_cutout"):
        out = matte(img, rough, band=2, max_megapixels=0.004)
    assert "instead of 80x80" in caplog.text
    assert (out - truth).abs().mean() < 0.5 * (rough - truth).abs().mean()


def jittered_sequence(n=12, seed=0):
    """A still subject (disc) whose mask flickers: edge jitter and random specks; left half-plane
    edge at column 10 is static and exact in every frame."""
    g = torch.Generator().manual_seed(seed)
    frames = []
    for _ in range(n):
        r = 20 + torch.rand(1, generator=g).item() * 3 - 1.5
        m = disc(r, 96, (48, 60))
        m[0, :, :10] = 1.0
        specks = (torch.rand(1, 96, 96, generator=g) > 0.995).float()
        specks[..., :16] = 0
        m = torch.maximum(m, specks)
        frames.append(m)
    return torch.cat(frames)


def flicker(masks):
    return (masks[1:] - masks[:-1]).abs().mean().item()


def test_temporal_smoothing_lowers_flicker_and_keeps_static_edge():
    seq = jittered_sequence()
    smooth = temporal_smooth(seq, 0.8)
    assert flicker(smooth) < 0.5 * flicker(seq)
    assert torch.equal(smooth[:, :, 8:12], seq[:, :, 8:12])  # the static edge did not move
    assert torch.equal(temporal_smooth(seq, 0.0), seq)
    stronger = temporal_smooth(seq, 1.0)
    assert flicker(stronger) < flicker(temporal_smooth(seq, 0.3))


def test_temporal_smoothing_leaves_moving_pixels_when_image_given():
    # a bright square moving 8 px per frame: the photo changes there, so its mask must not ghost
    n = 6
    img = torch.zeros(n, 64, 64, 3)
    masks = torch.zeros(n, 64, 64)
    for t in range(n):
        img[t, 20:36, 4 + 8 * t:20 + 8 * t] = 1.0
        masks[t, 20:36, 4 + 8 * t:20 + 8 * t] = 1.0
    with_img = temporal_smooth(masks, 1.0, img)
    without = temporal_smooth(masks, 1.0)
    assert (with_img - masks).abs().mean() < 0.2 * (without - masks).abs().mean()


def test_node_batch_errors_and_outputs():
    node = CutoutMaskRefine()
    m, preview = node.run(torch.rand(3, 16, 16), grow=1)
    assert m.shape == (3, 16, 16) and preview.shape == (3, 16, 16, 3)
    with pytest.raises(CutoutInputError, match=r"Mask Refine \(Cutout\): input 'image' has a batch of 2"):
        node.run(torch.rand(3, 16, 16), image=torch.rand(2, 16, 16, 3))
    with pytest.raises(CutoutInputError, match="'image'"):
        node.run(torch.rand(1, 16, 16), edge_refinement="guided filter")
    # mask batch 1 broadcasts to the image batch and is resized to the image
    out, _ = node.run(torch.rand(1, 8, 8), image=torch.rand(2, 16, 16, 3), edge_refinement="guided filter")
    assert out.shape == (2, 16, 16)


def test_order_threshold_then_feather():
    # documented order: levels (threshold) before feather -> the result is soft again
    m = M.feather(disc(20), 4)
    out = refine_masks(m, threshold=0.5, feather=4.0)
    assert ((out > 0.05) & (out < 0.95)).any()


@pytest.mark.parametrize("small,big", [((1, 1), (5, 7)), ((3, 4), (3, 4)), ((7, 9), (50, 61)), ((24, 32), (301, 397))])
def test_row_upsampler_is_bilinear_interpolate(small, big):
    """The strip-wise upsampling behind the guided filter and temporal smoothing equals F.interpolate."""
    from cutout.imaging.kernels import STRIP_ROWS, RowUpsampler, apply_coefficients

    g = torch.Generator().manual_seed(sum(big))
    maps = torch.rand(1, 4, *small, generator=g)
    ref = F.interpolate(maps, size=big, mode="bilinear", align_corners=False)[0].permute(1, 0, 2)  # [H,C,W]
    up = RowUpsampler(maps, *big)
    got = torch.cat([up.rows(y, min(big[0], y + STRIP_ROWS)) for y in range(0, big[0], STRIP_ROWS)])
    assert got.shape == ref.shape and (got - ref).abs().max() < 1e-5
    photo = torch.rand(*big, 3, generator=g)
    out = apply_coefficients(maps, photo, torch.empty(big))
    want = (ref[:, 3] + (ref[:, :3] * photo.permute(0, 2, 1)).sum(1)).clamp(0, 1)
    assert (out - want).abs().max() < 1e-5


def _temporal_reference(masks, strength, image, radius=2, tol=0.06):
    """temporal_smooth as first written: every weight map upsampled to full size, summed frame by frame."""
    n, h, w = masks.shape
    f = max(1, min(4, min(h, w) // 8))
    small = F.avg_pool2d(image.permute(0, 3, 1, 2), f, stride=f, ceil_mode=True)
    out = torch.empty_like(masks)
    for t in range(n):
        acc, wsum = masks[t].clone(), torch.ones_like(masks[t])
        for d in range(-radius, radius + 1):
            k = t + d
            if d == 0 or not 0 <= k < n:
                continue
            diff = F.avg_pool2d((small[t] - small[k]).abs().mean(0)[None, None], 3, 1, 1, count_include_pad=False)
            wmap = F.interpolate(torch.exp(-(diff / tol) ** 2) * strength ** abs(d), size=(h, w), mode="bilinear",
                                 align_corners=False)[0, 0]
            acc += wmap * masks[k]
            wsum += wmap
        out[t] = acc / wsum
    return out.clamp(0, 1)


def test_temporal_smoothing_with_motion_check_matches_the_plain_formula():
    g = torch.Generator().manual_seed(5)
    masks = torch.rand(5, 70, 90, generator=g)
    image = torch.rand(5, 70, 90, 3, generator=g)
    image[2:] = image[1]  # a still stretch and a cut: both weight regimes
    got = temporal_smooth(masks, 0.7, image)
    assert (got - _temporal_reference(masks, 0.7, image)).abs().max() < 1e-5
