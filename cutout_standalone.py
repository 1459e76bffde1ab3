"""Load the pack as the package ``comfyui_cutout`` without ComfyUI (command line, tests, benchmarks).

The pack's folder name (``ComfyUI-Cutout``) is not a valid module name and its modules use
relative imports, as ComfyUI loads them; this gives them the same package context.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

PACKAGE = "comfyui_cutout"
ROOT = Path(__file__).resolve().parent


def load_pack():
    if PACKAGE in sys.modules:
        return sys.modules[PACKAGE]
    spec = importlib.util.spec_from_file_location(
        PACKAGE, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[PACKAGE]
        raise
    return module
