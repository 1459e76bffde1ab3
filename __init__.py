"""ComfyUI-Cutout: background removal nodes for ComfyUI.

ComfyUI imports this file. It must stay cheap: onnxruntime, rembg, pymatting and scipy are
imported on first use, never here.
"""

from . import comfy_glue
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from .service import register as _register_service

comfy_glue.register_model_folder()
_register_service()  # /cutout/ page and /cutout/api/*; no-op outside a ComfyUI server

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
