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
                       "found in models/rembg or rembg's own folders (~/.rembg, ~/.u2net) when already there, "
                       "else downloaded on first use into models/cutout; hash-checked.",
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


def advanced_inputs(*names: str):
    """Class decorator: mark rarely used inputs ``"advanced": True`` (ComfyUI's frontend folds
    them away; frontends 1.32 (ComfyUI 0.3.75) and 1.45 (0.28) both accept the flag)."""

    def mark(cls):
        original = cls.INPUT_TYPES.__func__

        def INPUT_TYPES(klass):
            spec = original(klass)
            for section in spec.values():
                for name in names:
                    if name in section:
                        typ, *rest = section[name]
                        section[name] = (typ, {**(rest[0] if rest else {}), "advanced": True})
            return spec

        missing = [n for n in names if not any(n in s for s in original(cls).values())]
        if missing:
            raise TypeError(f"{cls.__name__}: no inputs {missing} to mark advanced")
        cls.INPUT_TYPES = classmethod(INPUT_TYPES)
        return cls

    return mark
