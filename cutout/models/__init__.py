"""Model catalog, where weights live, and the shared ONNX session store.

Nothing here imports onnxruntime at import time.
"""

from .catalog import CATALOG, DEFAULT_MODEL, ModelSpec, UnknownModelError, get_spec  # noqa: F401
from .weights import ModelNotAvailableError  # noqa: F401


def offered(spec: ModelSpec) -> bool:
    """A variant is offered only if it passed the quality bar and ``onnx`` (to build it) is installed."""
    if not spec.is_variant:
        return True
    import importlib.util

    return spec.passes_bar and importlib.util.find_spec("onnx") is not None


def model_choices() -> list[str]:
    """Dropdown entries: the catalog (default first), then any other ONNX file in models/rembg."""
    from .. import comfy_glue

    names = [DEFAULT_MODEL] + [n for n in CATALOG if n != DEFAULT_MODEL and offered(CATALOG[n])]
    for f in comfy_glue.comfy_model_files():
        stem = f[:-5] if f.endswith(".onnx") else f
        if stem not in CATALOG and f not in names:
            names.append(f)
    return names
