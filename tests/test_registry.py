"""Registry-ready: pyproject's [tool.comfy] is complete and ``comfy node validate`` (comfy-cli) passes.

The dependencies in pyproject.toml must be requirements.txt's (the registry installs from there), and
both leave onnxruntime to install.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_tool_comfy_is_complete():
    data = _pyproject()
    comfy, project = data["tool"]["comfy"], data["project"]
    assert comfy["PublisherId"] and comfy["DisplayName"] == "ComfyUI-Cutout"
    assert comfy["Icon"].startswith("https://") and comfy["Icon"].endswith("docs/icon.png")
    assert (ROOT / "docs" / "icon.png").is_file()  # the file the Icon URL points at
    assert isinstance(comfy["includes"], list)
    assert comfy["requires-comfyui"].startswith(">=")
    assert project["version"] and project["license"] == {"file": "LICENSE"} and (ROOT / "LICENSE").is_file()
    for key in ("Repository", "Documentation", "Issues"):
        assert project["urls"][key].startswith("https://"), key
    reqs = [ln.split("#")[0].strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()]
    assert sorted(r for r in reqs if r) == sorted(project["dependencies"])


def test_comfy_node_validate_passes(tmp_path):
    comfy = shutil.which("comfy") or str(Path(sys.executable).parent / "comfy")
    if not Path(comfy).exists():
        pytest.skip("comfy-cli not installed (requirements-dev.txt)")
    env = dict(os.environ, HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"))
    r = subprocess.run([comfy, "--skip-prompt", "--no-enable-telemetry", "node", "validate"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600, env=env)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "All validation checks passed" in out and not re.search(r"(?i)warning|error", out), out
