"""Model catalog, where weights live, and the shared ONNX session store.

Nothing here imports onnxruntime at import time.
"""

from .catalog import CATALOG, DEFAULT_MODEL, ModelSpec, UnknownModelError, get_spec  # noqa: F401
from .weights import ModelNotAvailableError  # noqa: F401


def model_choices() -> list[str]:
    """Dropdown entries: the catalog (default first), then any other ONNX file in models/rembg."""
    from .. import comfy_glue

    names = [DEFAULT_MODEL] + [n for n in CATALOG if n != DEFAULT_MODEL]
    for f in comfy_glue.comfy_model_files():
        stem = f[:-5] if f.endswith(".onnx") else f
        if stem not in CATALOG and f not in names:
            names.append(f)
    return names
