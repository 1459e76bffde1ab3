"""Motion-compensated temporal smoothing (Mask Refine temporal_mode 'motion')."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("cv2")

from cutout.imaging.refine import temporal_smooth  # noqa: E402
from cutout.imaging.tensors import CutoutInputError  # noqa: E402
from cutout.imaging.temporal_flow import flow_smooth  # noqa: E402
from cutout.nodes.mask_refine import CutoutMaskRefine  # noqa: E402


def smooth_texture(h, w, g, lo, hi):
    small = torch.rand(1, 3, h // 8, w // 8, generator=g)
    return lo + (hi - lo) * F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False)[0].permute(1, 2, 0)


def moving_square(n=10, step=4, size=(144, 192), seed=0):
    """A textured square sliding ``step`` px per frame over a static textured background, and
    masks of it whose edges jitter by ±2 px and that carry random specks (per-frame network
    noise). Returns (frames [n,H,W,3], noisy masks, true masks)."""
    g = torch.Generator().manual_seed(seed)
    bg = smooth_texture(*size, g, 0.0, 0.5).clamp(0, 1)
    tex = smooth_texture(48, 48, g, 0.5, 1.0).clamp(0, 1)
    frames, noisy, truth = [], [], []
    for t in range(n):
        x0 = 10 + step * t
        img = bg.clone()
        img[40:88, x0:x0 + 48] = tex
        m = torch.zeros(size)
        m[40:88, x0:x0 + 48] = 1.0
        j = torch.randint(-2, 3, (4,), generator=g).tolist()
        mn = torch.zeros(size)
        mn[40 + j[0]:88 + j[1], x0 + j[2]:x0 + 48 + j[3]] = 1.0
        mn = torch.maximum(mn, (torch.rand(size, generator=g) > 0.997).float())
        frames.append(img)
        noisy.append(mn)
        truth.append(m)
    return torch.stack(frames), torch.stack(noisy), torch.stack(truth)


def err(a, truth):
    """Share of pixels on the wrong side of 0.5 (L1 cannot see jitter averaged into a soft edge)."""
    return ((a > 0.5).float() - truth).abs().mean().item()


def flick(m):
    return (m[1:] - m[:-1]).abs().mean().item()


def test_motion_mode_follows_the_subject_and_beats_the_colour_mode():
    img, noisy, truth = moving_square()
    moved = flow_smooth(noisy, img)
    colour = temporal_smooth(noisy, 1.0, img)
    # closer to the truth than the per-frame masks, and than the same-position average
    assert err(moved, truth) < 0.7 * err(noisy, truth)
    assert err(moved, truth) < err(colour, truth)
    # no ghost of the square where it was
    assert (moved[-1, 40:88, :40] > 0.5).float().mean() < 0.01
    # flicker down, but the square's real motion is kept
    assert 0.9 * flick(truth) < flick(moved) < 0.75 * flick(noisy)


def test_fast_motion_is_followed_hop_by_hop():
    # 12 px a frame: 36 px between a frame and its farthest neighbour; the flows are only ever
    # taken between consecutive frames and chained, so the far neighbours still line up
    img, noisy, truth = moving_square(n=10, step=12, size=(144, 256))
    moved = flow_smooth(noisy, img)
    assert err(moved, truth) < 0.6 * err(noisy, truth)
    assert (moved[-1, 40:88, :100] > 0.5).float().mean() < 0.01  # no ghost behind it
    assert flick(moved) < 0.9 * flick(noisy)


def test_logit_average_outvotes_a_stray_frame_and_adds_no_haze():
    # a still, textured scene (colours jitter a little, so no pixel is "the same in every frame")
    # with an empty mask, except one frame that carries a faint false patch
    g = torch.Generator().manual_seed(1)
    scene = smooth_texture(96, 128, g, 0.2, 0.8).clamp(0, 1)
    img = (scene + 0.004 * torch.randn(7, 96, 128, 3, generator=g)).clamp(0, 1)
    masks = torch.zeros(7, 96, 128)
    masks[3, 30:60, 40:80] = 0.6
    by = {a: flow_smooth(masks, img, average=a) for a in ("logit", "mean")}
    # the stray patch is voted down in its own frame ...
    assert by["logit"][3, 35:55, 45:75].max() < 0.1
    # ... and spreads far less into the neighbours than a plain mean spreads it
    haze = {a: o[[2, 4], 35:55, 45:75].mean().item() for a, o in by.items()}
    assert haze["logit"] < 0.5 * haze["mean"]
    # pixels that are 0 in every frame stay exactly 0 (the clip before the logit leaves no floor)
    assert torch.equal(by["logit"][:, :, :20], masks[:, :, :20])
    with pytest.raises(ValueError, match="average"):
        flow_smooth(masks, img, average="median")


def test_pixels_the_same_in_every_frame_keep_their_exact_value():
    img, noisy, _ = moving_square(n=6)
    noisy[:, :, :8] = 0.37  # a strip with the same (odd) mask value in every frame
    img[:, :, :8] = img[0, :, :8]  # and the same colour
    out = flow_smooth(noisy, img)
    assert torch.equal(out[:, :, :8], noisy[:, :, :8])
    still = torch.rand(5, 40, 50)
    still[:] = still[0].clone()
    frames = torch.rand(1, 40, 50, 3).expand(5, -1, -1, -1)
    assert torch.equal(flow_smooth(still, frames), still)  # a frozen clip is untouched


def test_strength_zero_is_off_and_frames_stream_with_progress_and_cancel():
    img, noisy, _ = moving_square(n=9)
    assert torch.equal(flow_smooth(noisy, img, strength=0.0), noisy)
    calls = []
    flow_smooth(noisy, img, on_frame=lambda: calls.append(1))
    assert len(calls) == 9

    class Cancelled(Exception):
        pass

    def cancel_at_3():
        calls.append(1)
        if len(calls) == 12:
            raise Cancelled

    with pytest.raises(Cancelled):
        flow_smooth(noisy, img, on_frame=cancel_at_3)


def test_mask_refine_motion_mode_errors_and_output():
    node = CutoutMaskRefine()
    img, noisy, truth = moving_square(n=6)
    with pytest.raises(CutoutInputError, match=r"Mask Refine \(Cutout\): input 'image' is missing but temporal_mode"):
        node.run(noisy, temporal=1.0, temporal_mode="motion")
    with pytest.raises(CutoutInputError, match="temporal_mode"):
        node.run(noisy, temporal=1.0, temporal_mode="optical", image=img)
    out, preview = node.run(noisy, temporal=1.0, temporal_mode="motion", image=img)
    assert out.shape == noisy.shape and preview.shape == (*noisy.shape, 3)
    assert torch.equal(out, flow_smooth(noisy, img))
    # the old mode is still the default
    assert torch.equal(node.run(noisy, temporal=0.5, image=img)[0], temporal_smooth(noisy, 0.5, img))


def test_the_window_reaches_radius_frames_each_side_and_no_further():
    # what the video path's chunk context relies on: a change in frame 0 reaches frame `radius`
    # (through the chain of consecutive flows) and stops there
    from cutout.imaging.temporal_flow import FLOW_DEFAULTS

    r = FLOW_DEFAULTS["radius"]
    img, noisy, _ = moving_square(n=r + 4, step=2)
    changed = noisy.clone()
    changed[0, 40:88, 10:30] = 0.0  # a bite out of the square in the first frame only
    a, b = flow_smooth(noisy, img), flow_smooth(changed, img)
    diff = (a - b).abs().flatten(1).amax(1)
    assert diff[r] > 1e-3
    assert torch.equal(a[r + 1:], b[r + 1:])


@pytest.mark.parametrize("step", [4, 12])
def test_spread_trust_lets_the_moving_edge_borrow_its_neighbours_alignment(step):
    # along the moving edge the flow's trust is patchy (occlusion, jitter): spreading each
    # neighbour's trust to the next pixel averages more frames there, so the jittering edge settles
    img, noisy, truth = moving_square(n=10, step=step, size=(144, 256))
    patchy = err(flow_smooth(noisy, img, trust_spread=1), truth)
    spread = err(flow_smooth(noisy, img), truth)
    assert spread < 0.8 * patchy
