"""Node classes, one module per node family; this file only collects them."""

from .remove_background import DISPLAY_NAME as _RB_NAME
from .remove_background import CutoutRemoveBackground

NODE_CLASS_MAPPINGS = {
    "CutoutRemoveBackground": CutoutRemoveBackground,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "CutoutRemoveBackground": _RB_NAME,
}
