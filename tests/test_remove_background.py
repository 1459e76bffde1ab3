import pytest
import torch

import cutout
from bench.metrics import load_rgb
from cutout.imaging.tensors import CutoutInputError
from cutout.nodes.remove_background import CutoutRemoveBackground

SAMPLES = __import__("pathlib").Path(__file__).resolve().parents[1] / "samples"


def test_mappings_and_metadata():
    m = cutout.NODE_CLASS_MAPPINGS
    assert "CutoutRemoveBackground" in m
    assert cutout.NODE_DISPLAY_NAME_MAPPINGS["CutoutRemoveBackground"] == "Remove Background (Cutout)"
    for node_id, cls in m.items():
        assert node_id.startswith("Cutout") and cls.CATEGORY == "Cutout" and cls.DESCRIPTION
        inputs = cls.INPUT_TYPES()
        for group in inputs.values():
            for name, spec in group.items():
                assert spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
        assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES)


def test_model_dropdown_has_default_first():
    choices, opts = CutoutRemoveBackground.INPUT_TYPES()["required"]["model"]
    assert choices[0] == "u2netp" == opts["default"] and "u2net" in choices


def test_photo_batch_gives_one_mask_per_frame_and_straight_rgba():
    astro = load_rgb(SAMPLES / "astronaut.png")
    coffee = torch.nn.functional.interpolate(load_rgb(SAMPLES / "coffee.png").permute(0, 3, 1, 2), size=astro.shape[1:3]).permute(0, 2, 3, 1)
    batch = torch.cat([astro, coffee, astro.flip(2)])
    rgba, mask, _ = CutoutRemoveBackground().run(batch, "u2netp", decontaminate=False)
    assert rgba.shape == (3, *batch.shape[1:3], 4) and mask.shape == batch.shape[:3]
    assert rgba.dtype == mask.dtype == torch.float32
    seen = mask >= 0.5 / 255  # original colours where alpha > 0, black where it is 0 (imaging.clear); straight alpha
    assert torch.equal(rgba[..., :3][seen], batch[seen]) and torch.equal(rgba[..., 3], mask)
    assert float(rgba[..., :3][~seen].abs().sum()) == 0
    assert 0 <= mask.min() and mask.max() <= 1
    for i in range(3):
        frac = (mask[i] > 0.5).float().mean().item()
        assert 0.05 < frac < 0.95, f"frame {i}: subject covers {frac:.2f} of the frame"
    # frames are processed independently: a frame's mask does not depend on its batch neighbours
    _, alone, _ = CutoutRemoveBackground().run(batch[1:2], "u2netp")
    assert torch.equal(alone[0], mask[1])
    assert (mask[2] - mask[0]).abs().mean() > 0.01  # the flipped frame got its own mask


@pytest.mark.parametrize("shape", [(1, 1, 1, 3), (1, 2, 3, 3), (2, 17, 331, 4), (1, 16, 10000, 3)])
def test_odd_sizes_and_rgba_input(shape):
    img = torch.rand(shape)
    rgba, mask, _ = CutoutRemoveBackground().run(img, "u2netp", decontaminate=False, clear_fill="photo")
    assert rgba.shape == (*shape[:3], 4) and mask.shape == shape[:3]
    assert torch.equal(rgba[..., :3], img[..., :3])


def test_fourth_channel_is_the_images_own_alpha():
    """An RGBA input keeps its transparency (as the CLI and the API keep a file's own alpha)."""
    img = load_rgb(SAMPLES / "coffee.png")[:, ::4, ::4]
    own = torch.ones_like(img[..., :1])
    own[:, :, : img.shape[2] // 2] = 0.0  # left half transparent
    _, m1, _ = CutoutRemoveBackground().run(img, "u2netp")
    _, m2, _ = CutoutRemoveBackground().run(torch.cat([img, own], dim=-1), "u2netp")
    assert m1.max() > 0.5 and torch.equal(m2, m1 * own[..., 0])
    _, m3, _ = CutoutRemoveBackground().run(torch.cat([img, torch.ones_like(own)], dim=-1), "u2netp")
    assert torch.equal(m3, m1)


def test_bad_inputs_name_the_node():
    node = CutoutRemoveBackground()
    with pytest.raises(CutoutInputError, match=r"^Remove Background \(Cutout\): input 'image' is an empty batch"):
        node.run(torch.rand(0, 8, 8, 3), "u2netp")
    with pytest.raises(ValueError, match=r"^Remove Background \(Cutout\): input 'model': unknown model 'nope'"):
        node.run(torch.rand(1, 8, 8, 3), "nope")
