"""Issue 6 security review, as tests: ONNX only, downloads only over HTTPS from the catalog,
atomic and hash-checked; no user string reaches a shell, eval or an unpickler."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest

from cutout import comfy_glue
from cutout.models import UnknownModelError, weights
from cutout.models import session as session_mod
from cutout.models.catalog import CATALOG

ROOT = Path(__file__).resolve().parents[1]
NOT_PACK = {"tests", "bench", "docs", "node_modules", "site-packages"}
# the pack's own modules: hidden folders (.git, a .venv that CI creates in the checkout) are not the pack
PACK_MODULES = sorted(p for p in ROOT.rglob("*.py")
                      if not any(part.startswith(".") or part in NOT_PACK for part in p.relative_to(ROOT).parts))

FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_MODULES = {"subprocess", "pickle", "cPickle", "dill", "marshal", "shelve", "joblib", "pty"}
FORBIDDEN_ATTRS = {("os", "system"), ("os", "popen"), ("os", "execv"), ("os", "execvp"), ("os", "spawnv"),
                   ("torch", "load"), ("numpy", "load"), ("np", "load"), ("yaml", "load")}


# install.py is run by hand or by ComfyUI-Manager, never imported by ComfyUI: it may start pip
# (``[sys.executable, "-m", "pip", "install", DEFAULT_REQUIREMENT]``, a fixed list, no shell, no user string).
ALLOWED = {"install.py": ("subprocess",)}


def test_install_script_runs_only_a_fixed_pip_command():
    tree = ast.parse((ROOT / "install.py").read_text(encoding="utf-8"))
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and isinstance(n.func.value, ast.Name) and n.func.value.id == "subprocess"]
    assert len(calls) == 1 and not calls[0].keywords
    (argv,) = calls[0].args
    assert isinstance(argv, ast.List) and ast.unparse(argv) == "[sys.executable, '-m', 'pip', 'install', DEFAULT_REQUIREMENT]"


def test_pack_modules_found():
    names = {p.relative_to(ROOT).as_posix() for p in PACK_MODULES}
    assert {"cutout/pipeline.py", "cutout/models/weights.py", "cutout/models/session.py", "cli.py",
            "cutout/nodes/remove_background.py"} <= names


@pytest.mark.parametrize("path", PACK_MODULES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_shell_eval_or_unpickling_in_pack_code(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in FORBIDDEN_MODULES:
                found.append(node.module)
        elif isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in FORBIDDEN_CALLS:
                found.append(f.id + "()")
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and (f.value.id, f.attr) in FORBIDDEN_ATTRS:
                found.append(f"{f.value.id}.{f.attr}()")
            for kw in node.keywords:
                if kw.arg == "shell":
                    found.append("shell=")
        elif isinstance(node, ast.Attribute) and node.attr in ("allow_pickle",):
            found.append(node.attr)
    rel = path.relative_to(ROOT).as_posix()
    found = [f for f in found if f not in ALLOWED.get(rel, ())]
    assert not found, f"{rel}: {found}"


def test_only_weights_py_touches_the_network():
    users = [p.relative_to(ROOT).as_posix() for p in PACK_MODULES
             if re.search(r"\burlopen\b|\brequests\b|\bhttp\.client\b|\bsocket\b", p.read_text(encoding="utf-8"))]
    allowed = {"cutout/models/weights.py"}
    # the HTTP service (another branch) serves requests; it must not fetch anything itself
    assert set(users) <= allowed | {u for u in users if u.startswith("cutout/service/")}, users


def test_catalog_urls_are_https_from_the_rembg_releases():
    for spec in CATALOG.values():
        if spec.is_variant:  # built on this machine from a verified catalog model; never downloaded
            assert spec.url == "" and CATALOG[spec.derived_from].url.startswith("https://"), spec
            continue
        if spec.found_only:  # made by rembg on the user's machine (birefnet-general-fp16): never downloaded
            assert spec.url == "" and spec.checksum == ("", ""), spec
            continue
        assert spec.url.startswith("https://github.com/danielgatis/rembg/releases/download/"), spec.url
        algorithm, digest = spec.checksum
        assert spec.filename.endswith(".onnx") and re.fullmatch({"md5": r"[0-9a-f]{32}", "sha256": r"[0-9a-f]{64}"}
                                                                [algorithm], digest), spec
    assert weights.ALLOWED_URL_SCHEMES == ("https://",)


@pytest.mark.parametrize("url", ["http://example.com/u2net.onnx", "file:///etc/passwd", "ftp://x/u2net.onnx",
                                 "HTTPS://evil/x.onnx", " https://x/y.onnx"])
def test_download_refuses_anything_but_https(url, tmp_path):
    import dataclasses

    spec = dataclasses.replace(CATALOG["u2net"], url=url)
    with pytest.raises(weights.ModelNotAvailableError, match="non-HTTPS"):
        weights.download(spec, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_download_target_is_the_catalog_filename_only(tmp_path):
    """The file written is dest/<catalog name>.onnx: a model name never becomes a path."""
    for spec in CATALOG.values():
        assert "/" not in spec.filename and "\\" not in spec.filename and ".." not in spec.filename


@pytest.mark.parametrize("name", ["evil.pkl", "evil.pt", "evil.pth", "evil.bin", "../evil", "/tmp/evil.onnx",
                                  "sub/../../evil.onnx"])
def test_only_onnx_files_in_the_model_folders_are_ever_loaded(name, tmp_path, monkeypatch):
    """A model name from a workflow is a dropdown entry, not a path; non-ONNX files are never considered."""
    models = tmp_path / "models_rembg"
    models.mkdir()
    monkeypatch.setattr(comfy_glue, "comfy_model_dirs", lambda: [models])
    monkeypatch.setattr(comfy_glue, "comfy_model_files", lambda: ["evil.pkl", "evil.pt"])  # even if listed
    src = Path(weights.EMBEDDED_DIR) / "u2netp.onnx"
    for f in ("evil.pkl", "evil.pt", "evil.pth", "evil.bin", "evil"):
        shutil.copy(src, models / f)
    shutil.copy(src, tmp_path / "evil.onnx")
    (Path("/tmp") / "evil.onnx").unlink(missing_ok=True)
    monkeypatch.setattr(session_mod, "STORE", session_mod.SessionStore())
    with pytest.raises(UnknownModelError):
        session_mod.get_session(name)


def test_model_choices_lists_only_onnx(monkeypatch):
    from cutout.models import model_choices

    monkeypatch.setattr(comfy_glue, "comfy_model_files", lambda: ["mine.onnx"])
    assert all(c in CATALOG or c.endswith(".onnx") for c in model_choices())
    assert comfy_glue.MODEL_EXTENSIONS == {".onnx"}


def test_session_is_built_by_onnxruntime_from_a_path(monkeypatch):
    """The only loader is onnxruntime.InferenceSession (protobuf, no code execution)."""
    src = (ROOT / "cutout" / "models" / "session.py").read_text()
    assert "InferenceSession(str(path)" in src
    assert "torch.load" not in src and "pickle" not in src
