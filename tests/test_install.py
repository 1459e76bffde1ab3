"""install.py: one onnxruntime, whichever the user has.

A fresh venv that already holds another onnxruntime build (a stand-in wheel named
onnxruntime-gpu, built here, that provides the ``onnxruntime`` module) gets no second one from
the pack's requirements.txt nor from install.py; onnxruntime-extensions (another module) does
not count as a build. A venv with none is told that install.py installs ``onnxruntime``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def build_wheel(dest: Path, name: str, version: str, files: dict[str, str]) -> Path:
    """A minimal pure-Python wheel (no build backend, no network)."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    entries = dict(files)
    entries[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    entries[f"{info}/WHEEL"] = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    entries[f"{info}/top_level.txt"] = "\n".join(sorted({f.split("/")[0] for f in files})) + "\n"
    record = []
    for path, text in entries.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{info}/RECORD,,")
    entries[f"{info}/RECORD"] = "\n".join(record) + "\n"
    wheel = dest / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in entries.items():
            z.writestr(path, text)
    return wheel


def _venv(tmp_path: Path) -> Path:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
    return venv / "bin" / "python"


def _pip(py: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(py), "-m", "pip", "--disable-pip-version-check", *args], capture_output=True,
                          text=True, timeout=600)


def test_another_onnxruntime_build_is_kept_and_no_second_one_added(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    gpu = build_wheel(wheels, "onnxruntime-gpu", "1.99.0",
                      {"onnxruntime/__init__.py": "__version__ = '1.99.0'\n"
                                                  "def get_available_providers():\n"
                                                  "    return ['CUDAExecutionProvider', 'CPUExecutionProvider']\n"})
    ext = build_wheel(wheels, "onnxruntime-extensions", "0.99.0", {"onnxruntime_extensions/__init__.py": ""})
    py = _venv(tmp_path)
    r = _pip(py, "install", "--no-index", "--no-deps", str(gpu), str(ext))
    assert r.returncode == 0, r.stdout + r.stderr

    # what `pip install -r requirements.txt` would add: never onnxruntime
    report = tmp_path / "report.json"
    r = _pip(py, "install", "--dry-run", "--ignore-installed", "--report", str(report), "-r",
             str(ROOT / "requirements.txt"))
    assert r.returncode == 0, r.stdout + r.stderr
    would = {i["metadata"]["name"].lower() for i in json.loads(report.read_text())["install"]}
    assert "numpy" in would and not any(n.startswith("onnxruntime") for n in would), would

    r = subprocess.run([str(py), str(ROOT / "install.py")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "using the installed onnxruntime-gpu" in r.stdout and "not installing" in r.stdout, r.stdout
    listed = {p["name"].lower() for p in json.loads(_pip(py, "list", "--format=json").stdout)}
    assert {n for n in listed if n.startswith("onnxruntime")} == {"onnxruntime-gpu", "onnxruntime-extensions"}
    probe = subprocess.run([str(py), "-c", "import importlib.util as u, sys; sys.path.insert(0, sys.argv[1]);"
                            "s = u.spec_from_file_location('p', sys.argv[1] + '/cutout/models/ort_probe.py');"
                            "m = u.module_from_spec(s); s.loader.exec_module(m); print(m.onnxruntime_distributions())",
                            str(ROOT)], capture_output=True, text=True, timeout=120)
    assert probe.stdout.strip() == "['onnxruntime-gpu']", probe.stdout + probe.stderr  # exactly one build


def test_no_build_means_install_py_installs_onnxruntime(tmp_path):
    py = _venv(tmp_path)
    r = subprocess.run([str(py), str(ROOT / "install.py"), "--check"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "would install onnxruntime>=1.17" in r.stdout, r.stdout + r.stderr
    # (the e2e suite's ComfyUI venvs are built this way: pip install -r requirements.txt, then install.py,
    # which installs onnxruntime there; tests/e2e/comfy_env.py checks onnxruntime imports afterwards)


def test_requirements_never_name_onnxruntime():
    for f in ("requirements.txt",):
        lines = [ln.split("#")[0].strip() for ln in (ROOT / f).read_text().splitlines()]
        assert not [ln for ln in lines if ln.lower().startswith("onnxruntime")], f
    tomllib = pytest.importorskip("tomllib")

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [d for d in deps if d.lower().startswith("onnxruntime")], deps
