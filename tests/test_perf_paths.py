"""The cheap paths of issue 7 (pipeline overhead around the model) keep the node's behaviour.

Speed itself is measured by bench/speed.py, never asserted here.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cutout.imaging import kernels
from cutout.imaging.model_io import from_model_output, snap_ends, to_model_input
from cutout.models.catalog import IMAGENET_MEAN, IMAGENET_STD
from cutout.nodes.remove_background import CutoutRemoveBackground


def _one_step(frames, size):
    x = F.interpolate(frames.permute(0, 3, 1, 2), size=(size, size), mode="bilinear", antialias=True,
                      align_corners=False)
    x = x / x.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    m = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    s = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - m) / s


def test_photos_up_to_three_times_the_model_size_take_the_exact_one_step_shrink():
    frames = torch.rand(1, 959, 959, 3)  # < 3 × 320: no box pre-shrink
    assert torch.equal(torch.from_numpy(to_model_input(frames, 320, IMAGENET_MEAN, IMAGENET_STD)),
                       _one_step(frames, 320))


def test_box_pre_shrink_of_large_photos_stays_close_to_the_one_step_shrink():
    torch.manual_seed(0)
    # a smooth photo-like picture (noise is where box and triangle kernels differ most)
    small = torch.rand(1, 3, 40, 50)
    frames = F.interpolate(small, size=(2001, 2999), mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
    new = torch.from_numpy(to_model_input(frames.contiguous(), 320, IMAGENET_MEAN, IMAGENET_STD))
    old = _one_step(frames, 320)
    assert new.shape == old.shape == (1, 3, 320, 320)
    assert (new - old).abs().mean() < 0.03  # normalised units, ≈ 0.007 in 0..1 pixel values (measured 0.016)
    # the partial last block keeps the picture in place: no shift of a bright right edge
    edge = torch.zeros(1, 1000, 3001, 3)
    edge[:, :, -30:] = 1.0
    col = torch.from_numpy(to_model_input(edge, 320, IMAGENET_MEAN, IMAGENET_STD))[0, 0].mean(0)
    ref = _one_step(edge, 320)[0, 0].mean(0)
    to_px = lambda c: c * IMAGENET_STD[0] + IMAGENET_MEAN[0]  # noqa: E731  (peak is 1 here)
    width_new, width_ref = to_px(col).sum().item(), to_px(ref).sum().item()  # bright band, in columns
    # the partial last block (1 px of 3) counts as a whole one: ≤ (k - 1) source px = 0.21 model columns
    assert abs(width_new - width_ref) < 0.25
    centre = lambda c: (to_px(c) * torch.arange(320)).sum().item() / to_px(c).sum().item()  # noqa: E731
    assert abs(centre(col) - centre(ref)) < 0.25  # the edge is not moved (less than a quarter column)


def _plain_2d(m, size):
    """The reference: min-max stretch, the 2-D bicubic kernel, then snap_ends."""
    return snap_ends(F.interpolate((m - m.min()) / (m.max() - m.min()), size=size, mode="bicubic",
                                   align_corners=False)[:, 0])


def test_large_upscale_uses_separable_bicubic_close_to_the_2d_kernel():
    torch.manual_seed(1)
    m = F.avg_pool2d(torch.rand(1, 1, 84, 84), 5, 1)  # 80×80, smooth
    big = from_model_output(m.numpy(), 1000, 1200, logits=False)  # > 4× per side: separable path
    ref = _plain_2d(m, (1000, 1200))
    assert big.shape == (1, 1000, 1200)
    # a noisy map (measured mean 0.0043); on real masks the difference is ~10× smaller (docs/performance.md)
    assert (big - ref).abs().mean() < 8e-3 and (big - ref).abs().max() < 0.08
    small = from_model_output(m.numpy(), 300, 310, logits=False)  # < 4×: the 2-D kernel
    # the same but for the ends' stretch (values within 1/255 of 0 or 1 made exact in one pass)
    ref_small = _plain_2d(m, (300, 310))
    assert (small - ref_small).abs().max() <= 1 / 255 + 1e-6
    assert kernels.SEPARABLE_FROM >= 4


def test_model_output_ends_are_exact_and_the_middle_barely_moves():
    """from_model_output's one-pass snapping: within 1/255 of 0 or 1 -> exactly 0 or 1 (8-bit
    writers truncate: a solid subject must save at 255), every other value moves < 1/255."""
    raw = torch.linspace(0, 1, 256 * 256).reshape(1, 1, 256, 256)  # no resize: value by value
    out = from_model_output(raw.numpy(), 256, 256, logits=False)[0]
    x = raw[0, 0]
    assert torch.all(out[x < 1 / 255] == 0) and torch.all(out[x > 1 - 1 / 255] == 1)
    assert (out - x).abs().max() <= 1 / 255 + 1e-6
    assert torch.all(torch.diff(out.flatten()) >= 0)  # order kept


def test_snap_ends_same_as_boolean_indexing():
    x = torch.linspace(-0.1, 1.1, 100_001)
    ref = x.clone().clamp_(0, 1)
    ref[ref > 1 - 1 / 255] = 1.0
    ref[ref < 1 / 255] = 0.0
    assert torch.equal(snap_ends(x.clone()), ref)


def test_single_frame_mask_output_is_its_own_contiguous_tensor():
    img = torch.rand(1, 90, 120, 3)
    rgba, mask, _ = CutoutRemoveBackground().run(img, "u2netp", decontaminate=False)
    assert mask.shape == (1, 90, 120) and mask.is_contiguous()
    assert torch.equal(rgba[..., 3], mask)
    assert mask.untyped_storage().data_ptr() != rgba.untyped_storage().data_ptr()
    mask.fill_(0.5)  # a downstream node editing the mask in place must not change the image
    assert not torch.equal(rgba[..., 3], mask)
    rgba2, mask2, _ = CutoutRemoveBackground().run(torch.cat([img, img.flip(2)]), "u2netp", decontaminate=False)
    assert mask2.is_contiguous() and torch.equal(rgba2[..., 3], mask2)
    assert torch.equal(rgba2[0, ..., 3], rgba[0, ..., 3])


@pytest.mark.parametrize("h,w", [(2597, 1201), (1001, 3037), (300, 410), (320, 320)])
def test_an_8bit_frame_shrinks_to_the_same_values_without_a_float_copy(h, w):
    """The folder job hands the network's step the decoded 8-bit photo (no full-size float frame):
    its shrink must be the float frame's, value for value, whatever the bands and partial blocks."""
    from cutout.dataset.reader import to_frame
    from cutout.imaging.model_io import shrink_for_model

    x8 = torch.from_numpy(np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8))
    want = shrink_for_model(to_frame(x8.numpy())[None], 320)
    assert torch.equal(kernels.shrink_u8(x8[None], 320, 320, band_pixels=40_000), want)
    assert torch.equal(shrink_for_model(x8[None], 320), want)


@pytest.mark.parametrize("shape,s", [((3, 224, 4621), 4), ((7, 17, 9), 3), ((1, 5, 5), 7), ((2, 8, 8), 2), ((7, 480, 854), 11)])
def test_block_mean_is_avg_pool_with_ceil_mode(shape, s):
    """Decontamination's pooling (``kernels.block_mean``): the means of avg_pool2d(ceil_mode=True),
    last blocks cut by the border averaged over the pixels they have."""
    x = torch.rand(shape, generator=torch.Generator().manual_seed(s))
    want = F.avg_pool2d(x[None], s, stride=s, ceil_mode=True)[0]
    got = kernels.block_mean(x, s)
    assert got.shape == want.shape
    assert torch.allclose(got, want, rtol=0, atol=1e-6)
