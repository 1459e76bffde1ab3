"""Composite Background and colour decontamination, on constructed images with a known answer."""

from __future__ import annotations

import math

import pytest
import torch

from cutout.imaging.composite import _blur, composite_background, estimate_foreground, fit_image, parse_color
from cutout.imaging.tensors import CutoutInputError
from cutout.nodes import NODE_CLASS_MAPPINGS
from cutout.nodes.composite import CutoutCompositeBackground


def known_scene(h=160, w=160, bg_color=(0.1, 0.8, 0.1)):
    """A smooth warm subject with a wavy soft edge, over a green screen with stripes: (image, fg, bg, alpha)."""
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    fg = torch.stack([0.8 + 0.2 * x, 0.3 + 0.4 * y, 0.5 + 0.3 * torch.sin(6 * x)], -1).clamp(0, 1)[None]
    bg = torch.tensor(bg_color).view(1, 1, 1, 3) + 0.1 * torch.sin(20 * y)[None, ..., None]
    bg = bg.expand(1, h, w, 3).clamp(0, 1)
    r = torch.sqrt((y - 0.5) ** 2 + (x - 0.5) ** 2)
    edge = 0.3 + 0.03 * torch.sin(40 * torch.atan2(y - 0.5, x - 0.5))
    alpha = ((edge - r) / 0.05 + 0.5).clamp(0, 1)[None]
    image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    return image, fg, bg, alpha


@pytest.mark.parametrize("bg_color", [(0.1, 0.8, 0.1), (0.02, 0.02, 0.02)])
@pytest.mark.parametrize("method", ["blur_fusion", "ml"])
def test_decontamination_recovers_foreground_colour(bg_color, method):
    image, fg, _, alpha = known_scene(bg_color=bg_color)
    band = (alpha > 0.05) & (alpha < 0.95)
    naive = (image - fg).abs().mean(-1)[band].mean()
    est = estimate_foreground(image, alpha, method=method)
    err = (est - fg).abs().mean(-1)[band].mean()
    assert err < 0.25 * naive, (err, naive)
    # outside the band the photo is untouched
    assert torch.equal(est[alpha >= 1], image[alpha >= 1])


def _blur_fusion_reference(image: torch.Tensor, alpha: torch.Tensor, radii=(90, 6)) -> torch.Tensor:
    """Blur-fusion foreground estimation (Forte & Pitié 2021), whole-frame reference version.
    ``image`` [N,3,H,W], ``alpha`` [N,1,H,W]: what the tiled version must agree with."""
    fg = image
    bg = image
    for r in radii:
        stacked = _blur(torch.cat([alpha, fg * alpha, bg * (1 - alpha)], 1), r)
        ba = stacked[:, :1]
        f_hat = stacked[:, 1:4] / (ba + 1e-5)
        b_hat = stacked[:, 4:7] / ((1 - ba) + 1e-5)
        fg = (f_hat + alpha * (image - alpha * f_hat - (1 - alpha) * b_hat)).clamp(0, 1)
        bg = b_hat.clamp(0, 1)
    return fg


def test_tiled_blur_fusion_matches_whole_frame_reference():
    image, fg, _, alpha = known_scene(300, 560)  # several 256² tiles
    band = (alpha > 0.02) & (alpha < 0.98)
    tiled = estimate_foreground(image, alpha)
    ref = _blur_fusion_reference(image.permute(0, 3, 1, 2), alpha[:, None]).permute(0, 2, 3, 1)
    assert (tiled - ref).abs().mean(-1)[band].mean() < 0.01
    assert (tiled - fg).abs().mean(-1)[band].mean() < 0.25 * (image - fg).abs().mean(-1)[band].mean()


def test_final_step_on_band_tiles_only_gives_the_same_pixels(monkeypatch):
    """The full-resolution step runs only on tiles holding band pixels; running it on every tile
    must give the same pixels (float and 8-bit paths, full-size and low-resolution estimates).
    Other windows may round the upsampled estimates differently in the last bit (vectorised vs
    scalar tails), hence the float tolerance."""
    from cutout.imaging import composite

    image, _, _, alpha = known_scene(600, 800)
    rgb8, a = (image[0] * 255 + 0.5).to(torch.uint8), alpha[0]
    tiles = composite.band_tiles(composite.edge_band(a))
    assert 0.05 < tiles.float().mean() < 0.8  # tiles inside the subject and around it are skipped
    got8 = composite.cutout_rgba8(rgb8, a)
    got = estimate_foreground(image, alpha, work_megapixels=0.1)
    got_full = estimate_foreground(image, alpha)
    monkeypatch.setattr(composite, "band_tiles", lambda band, tile=composite.TILE: torch.ones(
        -(-band.shape[0] // tile), -(-band.shape[1] // tile), dtype=torch.bool))
    assert (composite.cutout_rgba8(rgb8, a).int() - got8.int()).abs().max() <= 1
    torch.testing.assert_close(estimate_foreground(image, alpha, work_megapixels=0.1), got, atol=1e-6, rtol=0)
    torch.testing.assert_close(estimate_foreground(image, alpha), got_full, atol=1e-6, rtol=0)


def test_blur_fusion_low_resolution_path_still_decontaminates():
    image, fg, _, alpha = known_scene(600, 800)
    band = (alpha > 0.02) & (alpha < 0.98)
    est = estimate_foreground(image, alpha, work_megapixels=0.1)  # estimates at 1/3 size, tiles at full
    naive = (image - fg).abs().mean(-1)[band].mean()
    assert (est - fg).abs().mean(-1)[band].mean() < 0.4 * naive
    solid = (alpha == 0) | (alpha == 1)
    assert torch.equal(est[solid], image[solid])


def test_decontaminated_composite_on_white_has_no_green_fringe():
    image, fg, _, alpha = known_scene()
    truth = composite_background(fg, alpha, "white", decontaminate=False)
    naive = composite_background(image, alpha, "white", decontaminate=False)
    clean = composite_background(image, alpha, "white")
    band = (alpha > 0.05) & (alpha < 0.95)
    e_naive = (naive - truth).abs()[band].mean()
    e_clean = (clean - truth).abs()[band].mean()
    assert e_clean < 0.25 * e_naive
    # green excess in the edge: naive shows it, decontaminated not
    green = lambda im: (im[..., 1] - (im[..., 0] + im[..., 2]) / 2)[band].mean()  # noqa: E731
    assert green(naive) > green(truth) + 0.05
    assert abs(green(clean) - green(truth)) < 0.02


def test_transparent_returns_rgba_and_other_modes_rgb():
    image, _, _, alpha = known_scene(32, 48)
    rgba = composite_background(image, alpha, "transparent")
    assert rgba.shape == (1, 32, 48, 4) and torch.equal(rgba[..., 3], alpha)
    for bg in ["white", "#00ff00", (0.2, 0.3, 0.4), "blur", "checkerboard"]:
        assert composite_background(image, alpha, bg).shape == (1, 32, 48, 3)
    assert composite_background(image, alpha, "red", color2="blue").shape == (1, 32, 48, 3)


def test_alpha_one_and_zero_extremes():
    image = torch.rand(2, 16, 16, 3)
    ones, zeros = torch.ones(2, 16, 16), torch.zeros(2, 16, 16)
    assert torch.allclose(composite_background(image, ones, "white"), image)
    assert torch.allclose(composite_background(image, zeros, "#336699"),
                          torch.tensor([0x33, 0x66, 0x99]).float().div(255).expand(2, 16, 16, 3))


def test_parse_color():
    assert parse_color("white") == (1.0, 1.0, 1.0)
    assert parse_color("#FF0000") == (1.0, 0.0, 0.0)
    assert parse_color("00ff00") == (0.0, 1.0, 0.0)
    assert parse_color("#00f") == (0.0, 0.0, 1.0)
    assert parse_color("rgb(255, 0, 0)") == (1.0, 0.0, 0.0)
    assert parse_color("255,128,0") == pytest.approx((1.0, 128 / 255, 0.0))
    assert parse_color("0.5, 0.5, 0.5") == (0.5, 0.5, 0.5)
    assert parse_color((0, 0, 255)) == (0.0, 0.0, 1.0)
    for bad in ["notacolour", "", "#12", "1,2", (1, 2)]:
        with pytest.raises(ValueError):
            parse_color(bad)


def test_gradient_direction():
    image = torch.zeros(1, 20, 30, 3)
    alpha = torch.zeros(1, 20, 30)
    lr = composite_background(image, alpha, "black", color2="white", angle=0)
    assert lr[0, 10, 0].sum() == pytest.approx(0.0, abs=1e-6) and lr[0, 10, -1].sum() == pytest.approx(3.0)
    assert torch.allclose(lr[0, 0], lr[0, -1])  # constant down a column
    tb = composite_background(image, alpha, "black", color2="white", angle=90)
    assert tb[0, 0, 15].sum() == pytest.approx(0.0, abs=1e-6) and tb[0, -1, 15].sum() == pytest.approx(3.0)


def test_fit_modes():
    bg = torch.rand(1, 10, 40, 3)  # wide
    cover = fit_image(bg, 20, 20, "cover")
    contain = fit_image(bg, 20, 20, "contain", pad="red")
    stretch = fit_image(bg, 20, 20, "stretch")
    assert cover.shape == contain.shape == stretch.shape == (1, 20, 20, 3)
    assert torch.allclose(contain[0, 0, 10], torch.tensor([1.0, 0, 0]))  # padding above
    assert not torch.allclose(cover[0, 0, 10], torch.tensor([1.0, 0, 0]))


def test_blur_background_keeps_subject_colour_out():
    # a red subject on a blue photo background: the blurred backdrop near the subject stays blue
    image = torch.zeros(1, 64, 64, 3)
    image[..., 2] = 1
    alpha = torch.zeros(1, 64, 64)
    image[0, 16:48, 16:48] = torch.tensor([1.0, 0, 0])
    alpha[0, 16:48, 16:48] = 1
    from cutout.imaging.composite import _blurred_backdrop

    bd = _blurred_backdrop(image, alpha, 12)
    assert bd[0, 12, 32, 0] < 0.05 and bd[0, 12, 32, 2] > 0.95


def test_node_modes_and_errors():
    node = CutoutCompositeBackground()
    image, _, _, alpha = known_scene(24, 24)
    img2 = image.expand(2, -1, -1, -1)
    out, m = node.run(img2, "color", "white", mask=alpha)
    assert out.shape == (2, 24, 24, 3) and m.shape == (2, 24, 24)
    rgba, _ = node.run(img2, "transparent", mask=alpha)
    assert rgba.shape == (2, 24, 24, 4)
    # RGBA in, no mask: the alpha channel is the mask
    out2, m2 = node.run(rgba, "color", "white")
    assert torch.allclose(m2, alpha.expand(2, -1, -1))
    # background batch 1 broadcast, 2 -> 2, 3 -> error naming the input
    out3, _ = node.run(img2, "image", mask=alpha, background_image=torch.rand(1, 50, 30, 3))
    assert out3.shape == (2, 24, 24, 3)
    node.run(img2, "image", mask=alpha, background_image=torch.rand(2, 8, 8, 3))
    with pytest.raises(CutoutInputError, match=r"Composite Background \(Cutout\): input 'background_image'"):
        node.run(img2, "image", mask=alpha, background_image=torch.rand(3, 8, 8, 3))
    with pytest.raises(CutoutInputError, match="input 'mask'"):
        node.run(img2, "color", mask=torch.rand(3, 24, 24))
    with pytest.raises(CutoutInputError, match="input 'mask'"):
        node.run(image, "color")  # RGB, no mask
    with pytest.raises(CutoutInputError, match="input 'color'"):
        node.run(image, "color", "nocolour", mask=alpha)
    with pytest.raises(CutoutInputError, match="input 'background_image'"):
        node.run(image, "image", mask=alpha)
    for mode in ["gradient", "blur", "checkerboard"]:
        assert node.run(image, mode, mask=alpha)[0].shape == (1, 24, 24, 3)


def test_nodes_registered_with_tooltips():
    for key in ["CutoutMaskRefine", "CutoutCompositeBackground", "CutoutRemoveBackground"]:
        cls = NODE_CLASS_MAPPINGS[key]
        assert cls.CATEGORY == "Cutout" and cls.DESCRIPTION
        spec = cls.INPUT_TYPES()
        for section in spec.values():
            for name, (_, opts) in section.items():
                assert opts.get("tooltip"), (key, name)
        assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES)
    assert "decontaminate" in NODE_CLASS_MAPPINGS["CutoutRemoveBackground"].INPUT_TYPES()["optional"]


def test_remove_background_decontaminates_by_default():
    from cutout.pipeline import remove_background

    image, _, _, _ = known_scene(96, 96)
    rgba_on, mask = remove_background(image, "u2netp")
    rgba_off, mask_off = remove_background(image, "u2netp", decontaminate=False)
    assert torch.equal(mask, mask_off)
    clear = mask < 0.5 / 255  # 0 once stored in 8 bits: black there (imaging.clear), the photo elsewhere
    assert torch.equal(rgba_off[..., :3][~clear], image[~clear]) and float(rgba_off[..., :3][clear].abs().sum()) == 0
    solid = (mask > 1 - 1e-3) | ((mask < 1e-3) & ~clear)
    assert torch.equal(rgba_on[..., :3][solid], image[solid])
    assert not math.isclose((rgba_on[..., :3] - image).abs().sum().item(), 0.0)


def test_decontaminated_composite_is_the_estimated_foreground_over_the_background():
    """composite_background fuses the estimate into the composite (no full-size copy): same result."""
    g = torch.Generator().manual_seed(3)
    img = torch.rand(2, 70, 90, 3, generator=g)
    alpha = torch.zeros(2, 70, 90)
    alpha[:, 20:50, 30:70] = 1.0
    alpha[:, 15:55, 25:75] = torch.maximum(alpha[:, 15:55, 25:75], torch.rand(2, 40, 50, generator=g))
    fg = estimate_foreground(img, alpha)
    for bg, colour in (("white", torch.ones(3)), ("#00ff00", torch.tensor([0.0, 1.0, 0.0]))):
        want = torch.lerp(colour.expand_as(img), fg, alpha[..., None]).clamp(0, 1)
        assert torch.allclose(composite_background(img, alpha, bg), want, atol=1e-6)
    backdrop = torch.rand(1, 70, 90, 3, generator=g)
    want = torch.lerp(backdrop.expand_as(img), fg, alpha[..., None]).clamp(0, 1)
    assert torch.allclose(composite_background(img, alpha, backdrop, fit="stretch"), want, atol=1e-6)
    # and Remove Background's RGBA carries the same colours
    from cutout.imaging.composite import estimate_foreground as ef
    out = torch.zeros(70, 90, 4)
    ef(img[0], alpha[0], out=out[..., :3])
    assert torch.equal(out[..., :3], fg[0])


def test_rgba_image_with_a_grown_mask_keeps_its_own_transparency():
    """A graph's Composite gets the file's RGBA and a mask Mask Refine grew: what the file made
    transparent stays transparent (as the pipeline caps the refined mask by the own alpha), and a
    mask that already carries the alpha is not changed (a cap, not a second multiplication)."""
    image, _fg, _bg, _alpha = known_scene()
    own = torch.ones(image.shape[:3])
    own[:, :, :40] = 0.0
    own[:, :, 40:60] = torch.linspace(0, 1, 20)
    rgba = torch.cat([image, own[..., None]], -1)
    grown = torch.ones_like(own)  # a mask grown over everything
    out, used = CutoutCompositeBackground().run(rgba, "transparent", mask=grown)
    assert (out[..., 3][:, :, :40] == 0).all() and torch.equal(used, own)
    soft = own * 0.7
    _out, used = CutoutCompositeBackground().run(rgba, "transparent", mask=soft)
    assert torch.equal(used, soft)
