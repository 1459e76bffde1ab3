"""Node classes, one module per node family; this file only collects them."""

from .dataset_folder import NAMES as _DATASET_NAMES
from .dataset_folder import NODES as _DATASET_NODES
from .remove_background import DISPLAY_NAME as _RB_NAME
from .remove_background import CutoutRemoveBackground

NODE_CLASS_MAPPINGS = {
    "CutoutRemoveBackground": CutoutRemoveBackground,
    **_DATASET_NODES,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "CutoutRemoveBackground": _RB_NAME,
    **_DATASET_NAMES,
}
