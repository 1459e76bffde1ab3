"""Where model weights live, how they are verified, and how a missing one is fetched.

Lookup order for a catalog model:
1. the pack's own folder (:func:`own_dir`: ``CUTOUT_MODELS_DIR``, else ComfyUI's ``models/cutout``,
   else ``~/.cache/comfyui-cutout/models``), where downloads and built variants go;
2. ComfyUI's ``models/rembg/`` folders (including ``--extra-model-paths-config`` ones);
3. rembg's folders, so rembg's downloads are reused: its current layout
   ``<REMBG_HOME>/models/<model>/<model>.onnx`` (``REMBG_HOME``, else ``$XDG_DATA_HOME/rembg``,
   else ``~/.rembg``; ``U2NET_HOME`` wins when set, as in rembg 2.0.86) and its old flat one
   (``U2NET_HOME``, else ``~/.u2net``);
4. the copy embedded in the pack (u2netp only).
A file is used only when its md5 matches the catalog. Every folder but the pack's own belongs to
someone else (ComfyUI, rembg, other packs): files there are only ever read, a wrong-hash one is
skipped with a log line naming it. Looking (e.g. ``GET /cutout/api/models``) never changes
anything on disk. A missing model is downloaded over HTTPS from its catalog URL into the pack's
own folder, atomically.
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
OWN_FOLDER = "cutout"  # ComfyUI's models/cutout: the pack's own


class ModelNotAvailableError(RuntimeError):
    """The model is neither on disk (with the right hash) nor downloadable right now."""


def legacy_rembg_home() -> Path:
    """rembg's old flat folder (``<dir>/<model>.onnx``); rembg 2.0.86 still reads it."""
    base = os.environ.get("U2NET_HOME") or os.path.join(os.environ.get("XDG_DATA_HOME", "~"), ".u2net")
    return Path(os.path.expanduser(base))


def rembg_home() -> Path:
    """rembg 2.0.86's root: models are in ``<root>/models/<model>/<file>``."""
    if os.environ.get("U2NET_HOME"):
        return legacy_rembg_home()
    xdg = os.environ.get("XDG_DATA_HOME")
    default = os.path.join(xdg, "rembg") if xdg else os.path.join("~", ".rembg")
    return Path(os.path.expanduser(os.environ.get("REMBG_HOME") or default))


def own_dir() -> Path:
    """The pack's own folder: the only one it writes model files into."""
    override = os.environ.get("CUTOUT_MODELS_DIR")
    if override:
        return Path(os.path.expanduser(override))
    models = comfy_glue.comfy_models_dir()
    if models is not None:
        return models / OWN_FOLDER
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(os.path.expanduser(cache)) / "comfyui-cutout" / "models"


def _dedup(dirs: list[Path]) -> list[Path]:
    seen, out = set(), []
    for d in dirs:
        key = os.path.abspath(d)
        if key not in seen:
            seen.add(key)
            out.append(Path(d))
    return out


def search_dirs() -> list[Path]:
    """Flat folders searched for ``<name>.onnx``, in order: the pack's own, ComfyUI's models/rembg,
    rembg's old flat folder (rembg's per-model folders and the embedded copy are handled per model)."""
    return _dedup([own_dir(), *comfy_glue.comfy_model_dirs(), legacy_rembg_home()])


def candidates(spec: ModelSpec) -> list[Path]:
    """Every place a catalog model's file may be, in lookup order."""
    paths = [d / spec.filename for d in search_dirs()]
    paths.insert(len(paths) - 1, rembg_home() / "models" / spec.name / spec.filename)
    if spec.embedded:
        paths.append(EMBEDDED_DIR / spec.filename)
    return _dedup(paths)


def download_dir() -> Path:
    """Where a downloaded model (or a built variant) goes: the pack's own folder."""
    return own_dir()


def is_own(path: Path) -> bool:
    return os.path.abspath(Path(path).parent) == os.path.abspath(own_dir())


_md5_cache: dict[tuple[str, int, int, str], str] = {}
_md5_lock = threading.Lock()


def file_md5(path: Path, algorithm: str = "md5") -> str:
    """md5 (or ``algorithm``) of a file, remembered per (path, size, mtime) so a 1 GB model is hashed once."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, algorithm)
    with _md5_lock:
        if key in _md5_cache:
            return _md5_cache[key]
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    digest = h.hexdigest()
    with _md5_lock:
        _md5_cache[key] = digest
    return digest


_reported: set[tuple[str, int, int]] = set()


def find_verified(spec: ModelSpec, problems: list[str] | None = None) -> Path | None:
    """The first file for ``spec`` whose md5 (or sha256) matches, or None. Read-only: a wrong-hash
    file is skipped and named in the log (once per file version), never renamed, moved or deleted.
    A ``found_only`` model (no published hash) is taken as found."""
    algorithm, expected = spec.checksum
    for path in candidates(spec):
        if not path.is_file():
            continue
        if not expected:
            return path
        try:
            digest = file_md5(path, algorithm)
            st = path.stat()
        except OSError as e:
            if problems is not None:
                problems.append(f"{path}: unreadable ({e.strerror})")
            continue
        if digest == expected:
            return path
        what = "the pack's copy is damaged" if path.parent == EMBEDDED_DIR else "skipped, left as it is"
        msg = f"{path}: {algorithm} {digest} does not match {expected} (truncated or a different file); {what}"
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in _reported:
            _reported.add(key)
            log.warning("Cutout: %s", msg)
        if problems is not None:
            problems.append(msg)
    return None


def _set_aside(path: Path) -> None:
    """Before a download replaces a wrong file in the pack's own folder, keep it as ``*.bad``."""
    if not path.is_file():
        return
    bad = path.with_name(f"{path.name}.{file_md5(path)[:8]}.bad")
    try:
        os.replace(path, bad)
        log.warning("Cutout: %s had the wrong md5; kept as %s", path, bad.name)
    except OSError as e:
        log.warning("Cutout: %s could not be set aside (%s); it is replaced", path, e.strerror)


def _manual_instructions(spec: ModelSpec) -> str:
    if spec.found_only:
        return (f"'{spec.name}' is not downloaded by the pack: rembg makes it (`rembg` converts birefnet-general "
                f"on first use); or save your own file as {download_dir() / spec.filename}")
    algorithm, expected = spec.checksum
    return (
        f"Download {spec.url} ({algorithm} {expected}, about {spec.size_mb:.0f} MB) and save it as "
        f"{download_dir() / spec.filename} (or put it in ComfyUI's models/rembg)"
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
        algorithm, expected = spec.checksum
        h = hashlib.new(algorithm or "md5")
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
        if h.hexdigest() != expected:
            raise ModelNotAvailableError(
                f"download of '{spec.name}' from {spec.url} has {algorithm} {h.hexdigest()}, expected {expected}; "
                "not used"
            )
        _set_aside(target)
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
    if not allow_download or os.environ.get("CUTOUT_OFFLINE") or spec.found_only:
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
