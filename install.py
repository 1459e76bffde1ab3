"""Installs onnxruntime for the pack only if no onnxruntime build is there yet.

ComfyUI-Manager runs this after ``pip install -r requirements.txt``; the README's commands run it
too. requirements.txt does not list ``onnxruntime``: pip would put the CPU package next to an
``onnxruntime-gpu`` (``-directml``, ``-openvino``, ``-silicon``, ...) that another pack or the user
installed, both ship the ``onnxruntime`` module, and the GPU would silently go unused. So the
choice is made here: whichever distribution already provides the ``onnxruntime`` module is kept;
with none, the CPU package is installed. ``python install.py --check`` only reports.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

DEFAULT_REQUIREMENT = "onnxruntime>=1.17"


def _probe():
    """cutout/models/ort_probe.py, loaded by path: the package itself needs what is not installed yet."""
    path = Path(__file__).resolve().parent / "cutout" / "models" / "ort_probe.py"
    spec = importlib.util.spec_from_file_location("cutout_ort_probe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def onnxruntime_distributions() -> list[str]:
    return _probe().onnxruntime_distributions()


def main(argv: list[str]) -> int:
    present = onnxruntime_distributions()
    if present:
        print(f"ComfyUI-Cutout: using the installed {', '.join(present)}; not installing onnxruntime"
              + (" (more than one provides the onnxruntime module: keep only one)" if len(present) > 1 else ""))
        return 0
    if "--check" in argv:
        print(f"ComfyUI-Cutout: no onnxruntime installed; `python install.py` would install {DEFAULT_REQUIREMENT}")
        return 1
    print(f"ComfyUI-Cutout: no onnxruntime installed; installing {DEFAULT_REQUIREMENT}")
    return subprocess.call([sys.executable, "-m", "pip", "install", DEFAULT_REQUIREMENT])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
