"""What transparent outputs store under alpha = 0 (imaging.clear), through every front door.

A trainer's loader (kohya sd-scripts: ``Image.open(p).convert("RGB")`` unless --alpha_mask)
must see no pixel of the photo's background; semi-transparent and opaque pixels are untouched;
``photo`` keeps the photo for masked-loss training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cli
from cutout.imaging.clear import CLEAR_FILLS, fill_clear
from cutout.imaging.composite import composite_background


def _bright_photo(w: int = 96, h: int = 72, seed: int = 0) -> np.ndarray:
    """A textured bright background (never near black, so a black pixel is never the photo's
    by chance) with a dark-red disc for the model to find."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([120 + 100 * (xx / w), 140 + 80 * (yy / h), np.full(xx.shape, 200.0)], -1)
    img += rng.normal(0, 12, img.shape)
    disc = (xx - w * 0.5) ** 2 + (yy - h * 0.55) ** 2 < (min(w, h) * 0.3) ** 2
    img[disc] = (200, 30, 40)
    return np.clip(img, 60, 255).astype(np.uint8)


def _sdscripts_rgb(path: Path) -> np.ndarray:
    """How kohya's sd-scripts load a training image without --alpha_mask."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _alpha(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA"))[..., 3]


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_fill_changes_only_clear_pixels(dtype):
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(20, 30, 3, generator=g)
    alpha = torch.zeros(20, 30)
    alpha[5:15, 8:20] = 1.0
    alpha[5:15, 20:24] = 0.5  # semi-transparent edge
    if dtype == torch.uint8:
        rgb, alpha = (rgb * 255).to(dtype), (alpha * 255).to(dtype)
    clear = alpha == 0
    for fill in CLEAR_FILLS:
        out = fill_clear(rgb.clone(), alpha, fill)
        assert torch.equal(out[~clear], rgb[~clear]), fill
        if fill == "black":
            assert int(out[clear].abs().sum()) == 0
        elif fill == "photo":
            assert torch.equal(out, rgb)
        else:  # bleed: the colours come from the visible pixels, not from the photo under alpha 0
            vis = rgb[~clear].float()
            bled = out[clear].float()
            assert bool((bled >= vis.min(0).values - 1).all()) and bool((bled <= vis.max(0).values + 1).all())
            assert not torch.equal(out[clear], rgb[clear])
    with pytest.raises(ValueError, match="black, bleed, photo"):
        fill_clear(rgb.clone(), alpha, "white")


def test_bleed_spreads_the_nearest_edge_colour():
    rgb = torch.zeros(8, 40, 3)
    rgb[:, :4] = torch.tensor([1.0, 0.0, 0.0])  # red subject on the left
    rgb[:, -4:] = torch.tensor([0.0, 0.0, 1.0])  # blue subject on the right
    alpha = torch.zeros(8, 40)
    alpha[:, :4] = 1
    alpha[:, -4:] = 1
    out = fill_clear(rgb.clone(), alpha, "bleed")
    # beside each subject: mostly its own colour
    assert out[4, 6, 0] > 0.75 > 0.25 > out[4, 6, 2] and out[4, 33, 2] > 0.75 > 0.25 > out[4, 33, 0]


def test_composite_transparent_blacks_out_clear_pixels():
    rgb = torch.from_numpy(_bright_photo()).float() / 255
    alpha = torch.zeros(rgb.shape[:2])
    alpha[20:50, 30:60] = 1
    alpha[20:50, 60:64] = 0.4
    out = composite_background(rgb, alpha, "transparent", decontaminate=True)
    assert out.shape[-1] == 4
    assert float(out[..., :3][alpha == 0].abs().max()) == 0.0
    assert torch.equal(out[..., :3][alpha == 1], rgb[alpha == 1])
    kept = composite_background(rgb, alpha, "transparent", decontaminate=True, clear_fill="photo")
    assert torch.equal(kept[..., :3][alpha == 0], rgb[alpha == 0])


@pytest.mark.parametrize("fmt", ["png", "webp"])
def test_cli_outputs_hide_the_background_from_a_trainer(tmp_path, fmt):
    src, dest = tmp_path / "src" / "10_subject", tmp_path / "dest"
    src.mkdir(parents=True)
    photos = {}
    for i in range(2):
        photos[f"p{i}"] = _bright_photo(96 + 16 * i, 72, seed=i)
        Image.fromarray(photos[f"p{i}"]).save(src / f"p{i}.jpg", quality=95)
    assert cli.main(["--source", str(tmp_path / "src"), "--dest", str(dest), "--format", fmt, "--no-progress"]) == 0
    seen_clear = 0
    for stem, photo in photos.items():
        out = dest / "10_subject" / f"{stem}.{fmt}"
        rgb, a = _sdscripts_rgb(out), _alpha(out)
        with Image.open(src / f"{stem}.jpg") as im:
            photo = np.asarray(im.convert("RGB"))
        clear = a == 0
        seen_clear += int(clear.sum())
        assert int(rgb[clear].max(initial=0)) == 0  # black, as rembg p: nothing of the street
        same = np.abs(rgb.astype(int) - photo).max(-1) <= 2
        assert not (same & clear).any()
        opaque = a == 255
        assert (same | ~opaque).all()  # opaque pixels keep the photo's colours
    assert seen_clear > 1000  # the check above was not vacuous

    keep = tmp_path / "keep"
    assert cli.main(["--source", str(tmp_path / "src"), "--dest", str(keep), "--format", fmt, "--no-progress",
                     "--clear-fill", "photo"]) == 0
    out = keep / "10_subject" / f"p0.{fmt}"
    with Image.open(src / "p0.jpg") as im:
        photo = np.asarray(im.convert("RGB"))
    clear = _alpha(out) == 0
    assert clear.any() and (np.abs(_sdscripts_rgb(out).astype(int) - photo)[clear].max() <= 2)


def test_node_rgba_and_save_image_folder_hide_the_background(comfy_dirs):
    from cutout.nodes.dataset_folder import CutoutSaveImageFolder
    from cutout.nodes.remove_background import CutoutRemoveBackground

    photo = torch.from_numpy(_bright_photo()).float()[None] / 255
    rgba, mask, _ = CutoutRemoveBackground().run(photo, "u2netp")
    a8 = (mask[0] * 255 + 0.5).to(torch.uint8)
    assert int((a8 == 0).sum()) > 500
    assert float(rgba[0, ..., :3][a8 == 0].max()) == 0.0
    kept, _, _ = CutoutRemoveBackground().run(photo, "u2netp", clear_fill="photo")
    assert torch.equal(kept[0, ..., :3][a8 == 0], photo[0][a8 == 0])

    # Save Image Folder given an RGBA that still holds the photo under alpha 0 (another node's output)
    CutoutSaveImageFolder().save([kept], ["clean"], ["png"], ["skip"], ["transparent"])
    out = next((comfy_dirs[1] / "clean").glob("*.png"))
    rgb, a = _sdscripts_rgb(out), _alpha(out)
    assert (a == 0).any() and int(rgb[a == 0].max()) == 0


def test_api_transparent_result_hides_the_background():
    from cutout.pipeline import render_pixels
    from cutout.service import params as P

    pixels = _bright_photo()
    mask = torch.zeros(pixels.shape[:2])
    mask[20:50, 30:60] = 1

    def api(**raw):
        return render_pixels(pixels, mask, P.cutout_options(P.parse(raw), "u2netp", "cpu"))

    for dc in ("false", "true"):
        out = api(decontaminate=dc)
        assert out.shape[-1] == 4 and int(out[..., :3][out[..., 3] == 0].max()) == 0
    assert int(pixels.min()) >= 60  # the caller's pixels are not touched
    out = api(clear_fill="photo")
    assert np.array_equal(out[..., :3], pixels)


@pytest.mark.parametrize("shape", [(20, 30, 4), (20, 30, 3), (7, 5)])
def test_fast_png_round_trips_pixels_and_colour_profile(shape):
    import io

    from PIL import ImageCms

    from cutout.dataset.writer import WriteOptions, encode

    pytest.importorskip("imagecodecs")
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    px = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    with Image.open(io.BytesIO(encode(px, "png", WriteOptions(), icc))) as im:
        im.load()
        assert np.array_equal(np.asarray(im), px)
        assert im.info.get("icc_profile") == (icc if len(shape) == 3 else None)
