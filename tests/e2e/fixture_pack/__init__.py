"""Test-only ComfyUI nodes, loaded next to the pack by the e2e server (never shipped).

Core ComfyUI nodes only ever make well-formed IMAGE/MASK tensors, so a broken upstream node
is simulated here: ``E2EFixtureTensors`` outputs an IMAGE and a MASK of any shape, to check
that the pack's nodes turn bad input into a clear ``execution_error``.
"""

import torch


class E2EFixtureTensors:
    DESCRIPTION = "Test fixture: an IMAGE [B,H,W,C] (diagonal gradient) and a MASK [MB,H,W] (a centred square) of any shape."
    CATEGORY = "e2e_fixtures"
    FUNCTION = "make"
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("image", "mask")
    OUTPUT_TOOLTIPS = ("IMAGE of the requested shape.", "MASK of the requested shape.")

    @classmethod
    def INPUT_TYPES(cls):
        def n(default, lo):
            return ("INT", {"default": default, "min": lo, "max": 4096, "tooltip": "size"})
        return {"required": {"batch": n(1, 0), "height": n(64, 0), "width": n(64, 0),
                             "channels": n(3, 1), "mask_batch": n(1, 0)}}

    def make(self, batch, height, width, channels, mask_batch):
        y = torch.linspace(0, 1, max(height, 1))[:height, None]
        x = torch.linspace(0, 1, max(width, 1))[None, :width]
        grad = ((x + y) / 2).expand(height, width)
        image = grad[None, :, :, None].expand(batch, height, width, channels).contiguous()
        mask = torch.zeros(mask_batch, height, width)
        mask[:, height // 4: 3 * height // 4, width // 4: 3 * width // 4] = 1.0
        return (image, mask)


NODE_CLASS_MAPPINGS = {"E2EFixtureTensors": E2EFixtureTensors}
NODE_DISPLAY_NAME_MAPPINGS = {"E2EFixtureTensors": "E2E Fixture Tensors (tests only)"}
