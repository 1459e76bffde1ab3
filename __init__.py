"""ComfyUI-Cutout: ComfyUI imports this file; the library is the package ``cutout`` beside it."""

from .cutout import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, comfy_glue
from .cutout.service import register as _register_service

comfy_glue.register_model_folder()
_register_service()  # /cutout/ page and /cutout/api/*; no-op outside a ComfyUI server

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
