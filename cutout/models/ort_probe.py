"""Which onnxruntime build is installed, and which provider is really used.

Standard library only: ``install.py`` loads this file by path before any requirement is there,
to decide whether onnxruntime must be installed (see install.py).
"""

from __future__ import annotations

import importlib.metadata


def onnxruntime_distributions() -> list[str]:
    """Names of the installed distributions that provide the ``onnxruntime`` module
    (onnxruntime, onnxruntime-gpu, -directml, -openvino, -silicon, ...). Packages such as
    ``onnxruntime-extensions`` that ship another module are not counted."""
    names = set()
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if not name.startswith(("onnxruntime", "ort-")):
            continue
        top = (dist.read_text("top_level.txt") or "").split()
        files = [str(f).replace("\\", "/") for f in (dist.files or [])]
        if "onnxruntime" in top or "onnxruntime/__init__.py" in files:
            names.add(name)
    return sorted(names)


def runtime_info(in_use: dict[str, str] | None = None) -> dict:
    """For the page and the API: the build, its version, the providers it offers and, per loaded
    model, the provider its session really runs on (``in_use``: model -> provider)."""
    info = {"distributions": onnxruntime_distributions(), "version": None, "available_providers": [],
            "in_use": dict(in_use or {})}
    try:
        import onnxruntime as ort
    except ImportError as e:
        info["error"] = f"onnxruntime cannot be imported ({e}); run the pack's install.py"
        return info
    info["version"] = getattr(ort, "__version__", None)
    info["available_providers"] = list(ort.get_available_providers())
    return info
