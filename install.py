"""Installs onnxruntime for the pack only if no onnxruntime build is there yet.

ComfyUI-Manager runs this after ``pip install -r requirements.txt``; the README's commands run it
too. requirements.txt does not list ``onnxruntime``: pip would put the CPU package next to an
``onnxruntime-gpu`` (``-directml``, ``-openvino``, ``-silicon``, ...) that another pack or the user
installed, both ship the ``onnxruntime`` module, and the GPU would silently go unused. So the
choice is made here: whichever distribution already provides the ``onnxruntime`` module is kept;
with none, the CPU package is installed. ``python install.py --check`` only reports.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

DEFAULT_REQUIREMENT = "onnxruntime>=1.17"


def onnxruntime_distributions() -> list[str]:
    """Names of the installed distributions that provide the ``onnxruntime`` module
    (``onnxruntime-extensions`` and the like, which do not, are not counted)."""
    names = set()
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if not name.startswith(("onnxruntime", "ort-")):
            continue
        top = (dist.read_text("top_level.txt") or "").split()
        files = [str(f).replace("\\", "/") for f in (dist.files or [])]
        if "onnxruntime" in top or "onnxruntime/__init__.py" in files:
            names.add(name)
    return sorted(names)


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
