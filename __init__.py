"""ComfyUI-Cutout: background removal nodes for ComfyUI.

ComfyUI imports this file. It must stay cheap: onnxruntime, rembg, pymatting and scipy are
imported on first use, never here.
"""

from . import comfy_glue
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

comfy_glue.register_model_folder()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
