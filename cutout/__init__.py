"""ComfyUI-Cutout's library: the nodes, the one cut-out pipeline, the folder job and the HTTP API.

Importable by name (``import cutout``) from the pack's folder: the command line, tests, bench and
Ray workers use it so; ComfyUI reaches it through the pack's root ``__init__.py``.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
