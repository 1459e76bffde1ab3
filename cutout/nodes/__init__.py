"""Node classes, one module per node family; this file only collects them."""

from .composite import DISPLAY_NAME as _CB_NAME
from .composite import CutoutCompositeBackground
from .crop import NAMES as _CROP_NAMES
from .crop import NODES as _CROP_NODES
from .mask_refine import DISPLAY_NAME as _MR_NAME
from .mask_refine import CutoutMaskRefine
from .dataset_folder import NAMES as _DATASET_NAMES
from .dataset_folder import NODES as _DATASET_NODES
from .remove_background import DISPLAY_NAME as _RB_NAME
from .remove_background import CutoutRemoveBackground

NODE_CLASS_MAPPINGS = {
    "CutoutRemoveBackground": CutoutRemoveBackground,
    "CutoutMaskRefine": CutoutMaskRefine,
    "CutoutCompositeBackground": CutoutCompositeBackground,
    **_DATASET_NODES,
    **_CROP_NODES,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "CutoutRemoveBackground": _RB_NAME,
    "CutoutMaskRefine": _MR_NAME,
    "CutoutCompositeBackground": _CB_NAME,
    **_DATASET_NAMES,
    **_CROP_NAMES,
}
