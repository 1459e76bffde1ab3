import numpy as np
import pytest
import torch

from cutout.imaging.model_io import from_model_output, to_model_input
from cutout.imaging.tensors import CutoutInputError, as_image, as_mask, sanitize, to_rgba
from cutout.models.catalog import IMAGENET_MEAN, IMAGENET_STD


@pytest.mark.parametrize("b,h,w", [(1, 64, 64), (3, 37, 91), (2, 101, 17), (1, 1, 1), (1, 2, 3)])
def test_model_input_shape_dtype_and_normalisation(b, h, w):
    frames = torch.rand(b, h, w, 3)
    x = to_model_input(frames, 320, IMAGENET_MEAN, IMAGENET_STD)
    assert x.shape == (b, 3, 320, 320) and x.dtype == np.float32 and x.flags["C_CONTIGUOUS"]
    # per-image max is stretched to 1: the largest normalised value of channel c is (1 - mean) / std
    top = x.reshape(b, 3, -1).max(axis=2).max(axis=1)
    assert np.all(top <= max((1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)) + 1e-4)


def test_model_input_divides_by_image_max_like_rembg():
    dark = torch.full((1, 40, 40, 3), 0.25)
    bright = torch.full((1, 40, 40, 3), 1.0)
    assert np.allclose(to_model_input(dark, 320, (0, 0, 0), (1, 1, 1)), to_model_input(bright, 320, (0, 0, 0), (1, 1, 1)))


def test_model_input_channels_follow_rgb_order():
    red = torch.zeros(1, 8, 8, 3)
    red[..., 0] = 1.0
    x = to_model_input(red, 16, (0, 0, 0), (1, 1, 1))
    assert x[0, 0].min() > 0.99 and x[0, 1].max() < 1e-6 and x[0, 2].max() < 1e-6


@pytest.mark.parametrize("h,w", [(480, 854), (7, 5), (1, 1), (333, 333)])
def test_model_output_back_to_full_resolution(h, w):
    raw = np.random.rand(2, 1, 320, 320).astype(np.float32) * 0.5 + 0.2
    m = from_model_output(raw, h, w, logits=False)
    assert m.shape == (2, h, w) and m.dtype == torch.float32
    assert m.min() >= 0 and m.max() <= 1


def test_model_output_min_max_stretch_and_logits():
    raw = np.zeros((1, 1, 4, 4), np.float32)
    raw[..., :2] = 5.0
    raw[..., 2:] = -5.0
    m = from_model_output(raw, 4, 4, logits=True)
    assert torch.allclose(m[0, :, :2], torch.ones(4, 2)) and torch.allclose(m[0, :, 2:], torch.zeros(4, 2))


def test_as_image_batch_channels_and_dtypes():
    assert as_image(torch.rand(5, 6, 3), "N").shape == (1, 5, 6, 3)
    rgba = torch.rand(2, 5, 6, 4)
    assert torch.equal(as_image(rgba, "N"), rgba[..., :3])
    grey = as_image(torch.rand(1, 5, 6, 1), "N")
    assert grey.shape == (1, 5, 6, 3) and torch.equal(grey[..., 0], grey[..., 2])
    assert as_image(torch.rand(1, 5, 6, 3, dtype=torch.float64), "N", sanitize_values=True).dtype == torch.float32
    assert as_image(torch.rand(1, 5, 6, 3).half(), "N", sanitize_values=True).dtype == torch.float32
    u8 = torch.full((1, 2, 2, 3), 255, dtype=torch.uint8)
    assert torch.all(as_image(u8, "N", sanitize_values=True) == 1.0)


def test_as_image_accepts_non_contiguous_views():
    base = torch.rand(3, 4, 10, 8)  # B,C,H,W
    view = base.permute(0, 2, 3, 1)[:, :, ::2, :3]
    out = as_image(view, "N", sanitize_values=True)
    assert out.shape == (3, 10, 4, 3) and torch.equal(out, view.contiguous())


@pytest.mark.parametrize("bad,problem", [
    (torch.rand(0, 8, 8, 3), "empty batch"),
    (torch.rand(1, 8, 8, 5), "5 channels"),
    (torch.rand(8, 8), "shape"),
    ("picture.png", "str"),
    (torch.rand(1, 0, 8, 3), "no pixels"),
])
def test_as_image_errors_name_node_input_and_expectation(bad, problem):
    with pytest.raises(CutoutInputError) as e:
        as_image(bad, "Remove Background (Cutout)")
    msg = str(e.value)
    assert msg.startswith("Remove Background (Cutout): input 'image'") and problem in msg and "expected" in msg


def test_sanitize_non_finite_and_out_of_range():
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.5, 0.5, 7.0])
    assert sanitize(x).tolist() == [0.0, 1.0, 0.0, 0.0, 0.5, 1.0]


def test_as_mask_shapes_broadcast_and_resize():
    assert as_mask(torch.rand(6, 7), "N").shape == (1, 6, 7)
    assert as_mask(torch.rand(2, 1, 6, 7), "N").shape == (2, 6, 7)
    assert as_mask(torch.rand(1, 6, 7), "N", batch=4).shape == (4, 6, 7)
    assert as_mask(torch.rand(2, 12, 14), "N", size=(6, 7)).shape == (2, 6, 7)
    with pytest.raises(CutoutInputError, match=r"input 'mask' has a batch of 3 masks but the image batch has 2"):
        as_mask(torch.rand(3, 6, 7), "N", batch=2)


def test_to_rgba_straight_alpha():
    rgb, a = torch.rand(2, 3, 4, 3), torch.rand(2, 3, 4)
    out = to_rgba(rgb, a)
    assert out.shape == (2, 3, 4, 4) and torch.equal(out[..., :3], rgb) and torch.equal(out[..., 3], a)


def test_solid_subject_reaches_full_opacity():
    raw = np.zeros((1, 1, 320, 320), np.float32)
    raw[..., 100:220, 100:220] = 1.0
    m = from_model_output(raw, 1000, 700, logits=False)
    assert m.max() == 1.0 and m.min() == 0.0
    assert ((m * 255).to(torch.uint8) == 255).sum() > 0.1 * m.numel()  # survives a truncating 8-bit writer
