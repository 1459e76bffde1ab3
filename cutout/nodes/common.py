"""Shared bits of the node classes: category, error wrapping, the model inputs."""

from __future__ import annotations

import functools
import inspect

from ..imaging.tensors import CutoutInputError, check_number
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
                       "else downloaded on first use into models/cutout; hash-checked. Licences: U²-Net / IS-Net "
                       "Apache-2.0, BiRefNet MIT; bria-rmbg (RMBG-2.0) is NON-COMMERCIAL (CC BY-NC 4.0); "
                       "a BEN2 file of your own: base model MIT, the larger BEN2 models commercial (check yours).",
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


def _widget_checks(cls) -> dict:
    """input name -> (type, options) for every widget (FLOAT, INT, a fixed list of choices) of a node."""
    spec = cls.INPUT_TYPES()
    out = {}
    for group in ("required", "optional"):
        for name, decl in (spec.get(group) or {}).items():
            kind = decl[0]
            opts = decl[1] if len(decl) > 1 else {}
            if kind in ("FLOAT", "INT") or (isinstance(kind, (list, tuple)) and name != "model"):
                out[name] = (kind, opts)
    return out


def check_widget(node: str, name: str, kind, opts: dict, value) -> None:
    """One widget value against its declaration: a finite number in min..max, or one of the choices."""
    if kind == "FLOAT":
        check_number(value, node, name, opts.get("min"), opts.get("max"))
    elif kind == "INT":
        check_number(value, node, name, opts.get("min"), opts.get("max"), integer=True)
    elif not isinstance(value, str) or value not in kind:
        raise CutoutInputError(node, name, f"is {value!r}", "one of: " + " / ".join(map(str, kind)))


def checked_widgets(display_name: str):
    """Class decorator: the node's FUNCTION first checks every FLOAT/INT/choice input it is given.

    ComfyUI's own validation lets NaN through (every comparison with NaN is false) and nodes
    called from Python or from ``/prompt`` JSON can get anything; one check, made from
    ``INPUT_TYPES``, so the message always names the node, the input and what is accepted.
    Lists (``INPUT_IS_LIST`` nodes) are checked element by element.
    """

    def decorate(cls):
        fn_name = cls.FUNCTION
        fn = getattr(cls, fn_name)
        sig = inspect.signature(fn)
        checks = None

        @functools.wraps(fn)
        def inner(self, *args, **kwargs):
            nonlocal checks
            if checks is None:
                checks = _widget_checks(cls)
            bound = sig.bind(self, *args, **kwargs)
            for name, value in bound.arguments.items():
                if name not in checks or value is None:
                    continue
                kind, opts = checks[name]
                values = value if isinstance(value, list) and getattr(cls, "INPUT_IS_LIST", False) else [value]
                for v in values:
                    check_widget(display_name, name, kind, opts, v)
            return fn(self, *args, **kwargs)

        inner.checks_widgets = True  # tests/test_hostile_nodes.py: every node has this
        setattr(cls, fn_name, inner)
        return cls

    return decorate


CLEAR_FILL_TIP = (
    "What the RGBA stores where alpha is 0 (invisible, but what a trainer loading the RGB alone sees, e.g. kohya "
    "without --alpha_mask): black (default, as rembg; no background survives), bleed (the subject's edge colours "
    "spread outward) or photo (the photo's own pixels, for kohya's --alpha_mask masked loss)."
)
