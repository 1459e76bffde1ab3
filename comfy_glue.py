"""The only module that touches ComfyUI (``folder_paths``, ``comfy.*``).

Everything else in the pack is plain torch/numpy and runs without a ComfyUI install
(tests, the command line). Each function here has a stand-alone fallback.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("comfyui_cutout")

MODEL_FOLDER = "rembg"  # models/rembg, shared with other rembg-based packs
MODEL_EXTENSIONS = {".onnx"}

try:  # inside ComfyUI
    import folder_paths  # type: ignore

    IN_COMFY = hasattr(folder_paths, "models_dir") and hasattr(folder_paths, "get_folder_paths")
except ImportError:  # tests, command line
    folder_paths = None
    IN_COMFY = False


def register_model_folder() -> None:
    """Make ``models/rembg`` a ComfyUI model folder that lists only ONNX files.

    ``add_model_folder_path`` on a new name would list every file, so the extension set is
    fixed afterwards, keeping folders that ``--extra-model-paths-config`` added before us.
    """
    if not IN_COMFY:
        return
    default = os.path.join(folder_paths.models_dir, MODEL_FOLDER)
    folder_paths.add_model_folder_path(MODEL_FOLDER, default, is_default=False)
    paths, _ = folder_paths.folder_names_and_paths[MODEL_FOLDER]
    folder_paths.folder_names_and_paths[MODEL_FOLDER] = (paths, set(MODEL_EXTENSIONS))


def comfy_model_dirs() -> list[Path]:
    """ComfyUI's model folders for our weights, default first; [] outside ComfyUI."""
    if not IN_COMFY:
        return []
    try:
        return [Path(p) for p in folder_paths.get_folder_paths(MODEL_FOLDER)]
    except Exception:  # folder not registered (pack imported oddly)
        return [Path(folder_paths.models_dir) / MODEL_FOLDER]


def comfy_model_files() -> list[str]:
    """ONNX files ComfyUI sees in its model folders (mtime-cached by ComfyUI)."""
    if not IN_COMFY:
        return []
    try:
        return list(folder_paths.get_filename_list(MODEL_FOLDER))
    except Exception:
        return []


class Progress:
    """A progress bar that is also an interrupt point inside ComfyUI.

    ComfyUI's progress hook checks for an interrupt on every update, so a long batch stops
    within one frame of the user pressing Cancel. Outside ComfyUI ``callback`` (if any) is
    called with (done, total).
    """

    def __init__(self, total: int, callback=None):
        self.total = max(int(total), 1)
        self.done = 0
        self.callback = callback
        self._bar = None
        if IN_COMFY:
            try:
                import comfy.utils  # type: ignore

                self._bar = comfy.utils.ProgressBar(self.total)
            except Exception:
                self._bar = None

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update_absolute(self.done, self.total)
        if self.callback is not None:
            self.callback(self.done, self.total)


def check_interrupt() -> None:
    """Raise ComfyUI's interrupt exception if the user cancelled; no-op elsewhere."""
    if not IN_COMFY:
        return
    try:
        import comfy.model_management as mm  # type: ignore
    except ImportError:
        return
    mm.throw_exception_if_processing_interrupted()


def torch_device():
    """The device ComfyUI computes on (CPU outside ComfyUI)."""
    import torch

    if IN_COMFY:
        try:
            import comfy.model_management as mm  # type: ignore

            return mm.get_torch_device()
        except Exception:
            pass
    return torch.device("cpu")


def input_directory() -> Path | None:
    return Path(folder_paths.get_input_directory()) if IN_COMFY else None


def output_directory() -> Path | None:
    return Path(folder_paths.get_output_directory()) if IN_COMFY else None


def temp_directory() -> Path | None:
    return Path(folder_paths.get_temp_directory()) if IN_COMFY else None
