"""The only module that touches ComfyUI (``folder_paths``, ``comfy.*``).

Everything else in the pack is plain torch/numpy and runs without a ComfyUI install
(tests, the command line). Each function here has a stand-alone fallback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
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


def comfy_models_dir() -> Path | None:
    """ComfyUI's ``models/`` folder; None outside ComfyUI."""
    if not IN_COMFY:
        return None
    return Path(folder_paths.models_dir)


def comfy_model_files() -> list[str]:
    """ONNX files ComfyUI sees in its model folders (mtime-cached by ComfyUI)."""
    if not IN_COMFY:
        return []
    try:
        return list(folder_paths.get_filename_list(MODEL_FOLDER))
    except Exception:
        return []


_local = threading.local()


class StopRequested(Exception):
    """Raised by ``check_interrupt`` inside ``detached(stop)`` once ``stop()`` says so."""


@contextlib.contextmanager
def detached(stop=None):
    """Run pack code outside any ComfyUI prompt (the HTTP API's worker thread).

    Inside, ``Progress`` reports to nobody and ComfyUI's Cancel is not looked at: the API must
    neither swallow the Cancel meant for a running prompt (ComfyUI clears the flag when it
    raises) nor send progress events to the prompt's client. ``stop`` (the API's "client gone")
    takes its place: ``check_interrupt`` raises ``StopRequested`` and ``cancel_hook`` polls it.
    """
    before = getattr(_local, "detached", False), getattr(_local, "stop", None)
    _local.detached, _local.stop = True, stop
    try:
        yield
    finally:
        _local.detached, _local.stop = before


def _attached() -> bool:
    return IN_COMFY and not getattr(_local, "detached", False)


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
        if _attached():
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
    """Raise ComfyUI's interrupt exception if the user cancelled (``StopRequested`` in ``detached(stop)``)."""
    if not _attached():
        stop = getattr(_local, "stop", None)
        if stop is not None and stop():
            raise StopRequested()
        return
    try:
        import comfy.model_management as mm  # type: ignore
    except ImportError:
        return
    mm.throw_exception_if_processing_interrupted()


def interrupt_requested() -> bool:
    """True once the user pressed Cancel (the flag is left for ``check_interrupt`` to clear)."""
    if not _attached():
        return False
    try:
        import comfy.model_management as mm  # type: ignore
    except ImportError:
        return False
    return bool(mm.processing_interrupted())


def cancel_hook():
    """What a long network run polls for Cancel (``ModelSession.run``'s ``should_stop``):
    ``interrupt_requested`` inside a ComfyUI prompt, None elsewhere (nothing to poll)."""
    return interrupt_requested if _attached() else getattr(_local, "stop", None)


def is_interrupt(e: BaseException) -> bool:
    """True for ComfyUI's Cancel (``comfy.model_management.InterruptProcessingException``),
    which must go up rather than count as a failed item; matched by name, so it needs no
    ComfyUI import."""
    return type(e).__name__ == "InterruptProcessingException"


def input_directory() -> Path | None:
    return Path(folder_paths.get_input_directory()) if IN_COMFY else None


def output_directory() -> Path | None:
    return Path(folder_paths.get_output_directory()) if IN_COMFY else None


def temp_directory() -> Path | None:
    return Path(folder_paths.get_temp_directory()) if IN_COMFY else None


def _prompt_server():
    """ComfyUI's ``PromptServer.instance``, or None outside a running ComfyUI server."""
    if not IN_COMFY:
        return None
    try:
        import server  # type: ignore
    except ImportError:
        return None
    return getattr(getattr(server, "PromptServer", None), "instance", None)


def client_max_size() -> int | None:
    """ComfyUI's own limit on a request body (``--max-upload-size``), or None outside its server."""
    app = getattr(_prompt_server(), "app", None)
    size = getattr(app, "_client_max_size", None)
    return int(size) if isinstance(size, int) and size > 0 else None


def register_routes(add_routes) -> bool:
    """Give ComfyUI's route table to ``add_routes(table)`` (an aiohttp ``RouteTableDef``).

    ComfyUI adds the table to its app after all custom nodes are imported (and mirrors each
    route under ``/api``). Returns False, doing nothing, outside a ComfyUI server.
    """
    instance = _prompt_server()
    routes = getattr(instance, "routes", None)
    if routes is None:
        return False
    add_routes(routes)
    return True


def prompts_pending() -> int:
    """Prompts running or waiting in ComfyUI's queue; 0 outside ComfyUI."""
    instance = _prompt_server()
    queue = getattr(instance, "prompt_queue", None)
    if queue is None:
        return 0
    try:
        return int(queue.get_tasks_remaining())
    except Exception:
        return 0
