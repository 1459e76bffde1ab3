"""Shared bits of the node classes: category, error wrapping, the model inputs."""

from __future__ import annotations

import functools

from ..models import ModelNotAvailableError, UnknownModelError, model_choices
from ..models.session import DEVICES

CATEGORY = "Cutout"

MASK_CONVENTION = (
    "1 = subject (opaque), 0 = background, like other background-removal nodes. "
    "ComfyUI's LoadImage and JoinImageWithAlpha use the opposite (1 − alpha): "
    "put an InvertMask in between when you join it with core nodes."
)


def model_inputs() -> dict:
    choices = model_choices()
    return {
        "model": (choices, {
            "default": choices[0],
            "tooltip": "Segmentation network. u2netp ships with the pack (works offline); the others are "
                       "downloaded on first use into models/rembg (or put there by hand), hash-checked.",
        }),
    }


def device_input() -> dict:
    return {
        "device": (list(DEVICES), {
            "default": "cpu",
            "tooltip": "Where the network runs. 'gpu' needs onnxruntime-gpu (CUDA) or another GPU provider; "
                       "without one it falls back to the CPU with a warning in the log.",
        }),
    }


def node_errors(display_name: str):
    """Give model problems the node's name and input, as input errors already have."""

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except (ModelNotAvailableError, UnknownModelError) as e:
                raise type(e)(f"{display_name}: input 'model': {e}") from None
        return inner

    return wrap


CLEAR_FILL_TIP = (
    "What the RGBA stores where alpha is 0 (invisible, but what a trainer loading the RGB alone sees, e.g. kohya "
    "without --alpha_mask): black (default, as rembg; no background survives), bleed (the subject's edge colours "
    "spread outward) or photo (the photo's own pixels, for kohya's --alpha_mask masked loss)."
)
