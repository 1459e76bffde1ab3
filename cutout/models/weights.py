"""Where model weights live, how they are verified, and how a missing one is fetched.

Lookup order for a catalog model:
1. ComfyUI's ``models/rembg/`` folders (including ``--extra-model-paths-config`` ones);
2. rembg's own folder (``U2NET_HOME``, else ``~/.u2net``), so existing rembg downloads are reused;
3. the copy embedded in the pack (u2netp only).
A file is used only when its md5 matches the catalog. A file with the wrong hash is set
aside (renamed ``*.bad``) when the folder allows it, and never loaded. A missing model is
downloaded over HTTPS from its catalog URL into the first writable folder, atomically.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import urllib.request
from pathlib import Path
from typing import Callable

from .. import comfy_glue
from .catalog import ModelSpec

log = logging.getLogger("comfyui_cutout")

EMBEDDED_DIR = Path(__file__).resolve().parent
ALLOWED_URL_SCHEMES = ("https://",)  # tests widen this to a loopback http server
_CHUNK = 1 << 20


class ModelNotAvailableError(RuntimeError):
    """The model is neither on disk (with the right hash) nor downloadable right now."""


def rembg_home() -> Path:
    base = os.environ.get("U2NET_HOME") or os.path.join(os.environ.get("XDG_DATA_HOME", "~"), ".u2net")
    return Path(os.path.expanduser(base))


def search_dirs() -> list[Path]:
    """Folders searched for weights, in order (the embedded folder is handled separately)."""
    dirs = list(comfy_glue.comfy_model_dirs())
    override = os.environ.get("CUTOUT_MODELS_DIR")
    if override:
        dirs.insert(0, Path(os.path.expanduser(override)))
    dirs.append(rembg_home())
    seen, out = set(), []
    for d in dirs:
        key = os.path.abspath(d)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def download_dir() -> Path:
    """Where a downloaded model goes: ComfyUI's models/rembg, else CUTOUT_MODELS_DIR or ~/.u2net."""
    return search_dirs()[0]


_md5_cache: dict[tuple[str, int, int], str] = {}
_md5_lock = threading.Lock()


def file_md5(path: Path) -> str:
    """md5 of a file, remembered per (path, size, mtime) so a 1 GB model is hashed once."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _md5_lock:
        if key in _md5_cache:
            return _md5_cache[key]
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    digest = h.hexdigest()
    with _md5_lock:
        _md5_cache[key] = digest
    return digest


def _set_aside(path: Path, digest: str) -> str:
    bad = path.with_name(f"{path.name}.{digest[:8]}.bad")
    try:
        os.replace(path, bad)
        return f"set aside as {bad.name}"
    except OSError as e:
        return f"could not be set aside ({e.strerror}); it is ignored"


def find_verified(spec: ModelSpec, problems: list[str] | None = None) -> Path | None:
    """The first file for ``spec`` whose md5 matches, or None. Bad files are set aside."""
    candidates = [d / spec.filename for d in search_dirs()]
    if spec.embedded:
        candidates.append(EMBEDDED_DIR / spec.filename)
    for path in candidates:
        if not path.is_file():
            continue
        try:
            digest = file_md5(path)
        except OSError as e:
            if problems is not None:
                problems.append(f"{path}: unreadable ({e.strerror})")
            continue
        if digest == spec.md5:
            return path
        what = _set_aside(path, digest) if path.parent != EMBEDDED_DIR else "the pack's copy is damaged"
        msg = f"{path}: md5 {digest} does not match {spec.md5} (truncated or a different file); {what}"
        log.warning("Cutout: %s", msg)
        if problems is not None:
            problems.append(msg)
    return None


def _manual_instructions(spec: ModelSpec) -> str:
    return (
        f"Download {spec.url} (md5 {spec.md5}, about {spec.size_mb:.0f} MB) and save it as "
        f"{download_dir() / spec.filename}"
    )


def download(spec: ModelSpec, dest_dir: Path, progress: Callable[[int, int], None] | None = None,
             timeout: float = 30.0) -> Path:
    """Fetch ``spec.url`` into ``dest_dir`` through a temp file; hash-checked before the rename."""
    if not spec.url.startswith(ALLOWED_URL_SCHEMES):
        raise ModelNotAvailableError(f"refusing to download '{spec.name}' from a non-HTTPS URL: {spec.url}")
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / spec.filename
    fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.filename}.", suffix=".partial", dir=dest_dir)
    tmp = Path(tmp_name)
    try:
        h = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(spec.url, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or 0)
            done = 0
            for block in iter(lambda: resp.read(_CHUNK), b""):
                out.write(block)
                h.update(block)
                done += len(block)
                if progress:
                    progress(done, total)
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest() != spec.md5:
            raise ModelNotAvailableError(
                f"download of '{spec.name}' from {spec.url} has md5 {h.hexdigest()}, expected {spec.md5}; not used"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def variant_filename(spec: ModelSpec, source_md5: str) -> str:
    """``u2netp.int8-1a2b3c4d-9f8e7d.onnx``: keyed by the source file's md5 and the recipe's
    digest, so new weights or a changed recipe mean a new build (the old file is then removed)."""
    return f"{spec.derived_from}.{spec.recipe.name}-{source_md5[:8]}-{spec.recipe.digest}.onnx"


_build_locks: dict[str, threading.Lock] = {}


def ensure_variant(spec: ModelSpec, allow_download: bool = True,
                   progress: Callable[[int, int], None] | None = None, rebuild: bool = False) -> Path:
    """The local file of a derived variant, built from its (verified) base model if missing.

    Built next to the downloads (``download_dir()``); a variant file of the same recipe made
    from a different source (other md5) is removed when the new one is written.
    """
    from . import quantize
    from .catalog import get_spec

    base = get_spec(spec.derived_from)
    src = resolve(base, allow_download=allow_download, progress=progress)
    name = variant_filename(spec, file_md5(src))
    with _md5_lock:
        lock = _build_locks.setdefault(spec.name, threading.Lock())
    with lock:
        if not rebuild:
            for d in search_dirs():
                if (d / name).is_file():
                    return d / name
        dest_dir = download_dir()
        try:
            dest_dir.mkdir(parents=True, exist_ok=True)
            probe = tempfile.TemporaryFile(dir=dest_dir)
            probe.close()
        except OSError:
            dest_dir = Path(tempfile.gettempdir()) / "comfyui_cutout"
            log.warning("Cutout: %s is not writable; building '%s' in %s", download_dir(), spec.name, dest_dir)
        log.info("Cutout: building '%s' from %s (recipe '%s')", spec.name, src, spec.recipe.name)
        try:
            path = quantize.build_variant(src, spec.recipe, dest_dir / name)
        except quantize.QuantizeUnavailableError as e:
            raise ModelNotAvailableError(f"model '{spec.name}' cannot be built here: {e}") from None
        for stale in dest_dir.glob(f"{spec.derived_from}.{spec.recipe.name}-*.onnx"):
            if stale.name != name:
                try:
                    stale.unlink()
                except OSError:
                    pass
        return path


def resolve(spec: ModelSpec, allow_download: bool = True,
            progress: Callable[[int, int], None] | None = None) -> Path:
    """A verified local path for ``spec``, downloading it if needed (variants are built)."""
    if spec.is_variant:
        return ensure_variant(spec, allow_download, progress)
    problems: list[str] = []
    found = find_verified(spec, problems)
    if found is not None:
        return found
    where = ", ".join(str(d) for d in search_dirs())
    if not allow_download or os.environ.get("CUTOUT_OFFLINE"):
        raise ModelNotAvailableError(
            f"model '{spec.name}' is not installed (looked in {where}). {_manual_instructions(spec)}."
            + (" Problems: " + "; ".join(problems) if problems else "")
        )
    dest = download_dir()
    log.info("Cutout: downloading model '%s' from %s into %s", spec.name, spec.url, dest)
    try:
        return download(spec, dest, progress)
    except ModelNotAvailableError as e:
        raise ModelNotAvailableError(f"{e}. {_manual_instructions(spec)}.") from None
    except OSError as e:  # no network, DNS, refused, read-only folder, disk full
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or str(e)
        raise ModelNotAvailableError(
            f"model '{spec.name}' is not installed and could not be downloaded ({reason}). "
            f"{_manual_instructions(spec)}."
        ) from None
