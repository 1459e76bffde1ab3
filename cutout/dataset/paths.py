"""The path guard for the folder nodes, and the overlap check for the command line.

ComfyUI can be reached over the network (``--listen``), so a graph must not be able to read
or write arbitrary folders of the machine. By default the folder nodes accept only folders
inside ComfyUI's input and output folders; ``CUTOUT_ALLOW_ANY_PATH=1`` in the environment of
the ComfyUI process lifts that (for people who run ComfyUI only for themselves). In both
modes a path spelled with ``..`` components is refused, and a folder that resolves (through
symlinks) outside the allowed roots is refused.

The command line is run by the owner of the shell and has no root restriction; it only
refuses a destination that overlaps the source (outputs must never overwrite inputs).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath

from ..imaging.tensors import CutoutInputError

ALLOW_ENV = "CUTOUT_ALLOW_ANY_PATH"


class PathRefused(CutoutInputError):
    """A node's folder input that the guard does not allow; the message names node and input and says why."""


class UnsafePath(ValueError):
    """A path that would write outside its destination or over the inputs."""


def any_path_allowed() -> bool:
    return os.environ.get(ALLOW_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def allowed_roots() -> list[Path]:
    """ComfyUI's input and output folders (resolved); [] outside ComfyUI."""
    from .. import comfy_glue

    roots = []
    for d in (comfy_glue.input_directory(), comfy_glue.output_directory()):
        if d is not None:
            roots.append(Path(os.path.realpath(d)))
    return roots


def is_within(path: Path, root: Path) -> bool:
    """True when ``path`` is ``root`` or below it (both should be resolved)."""
    try:
        Path(path).relative_to(root)
        return True
    except ValueError:
        return False


def has_dotdot(text: str) -> bool:
    parts = PurePath(text.replace("\\", "/")).parts
    return any(p == ".." for p in parts)


def guard_folder(text: str, node: str, input_name: str, default_root: Path | None,
                 must_exist: bool) -> Path:
    """Resolve a folder typed into a node, or raise ``PathRefused`` naming node and input.

    A relative path is taken relative to ``default_root`` (ComfyUI's input folder for the
    loader, its output folder for the saver). The returned path is fully resolved (symlinks
    followed), so later checks compare real locations.
    """
    def refuse(problem: str, expected: str):
        raise PathRefused(node, input_name, problem, expected)

    raw = (text or "").strip()
    if not raw:
        refuse("is empty", "a folder name")
    if "\x00" in raw:
        refuse("contains a NUL character", "a folder name")
    if has_dotdot(raw):
        refuse(f"'{raw}' contains '..'", "a folder spelled without parent-directory steps (refused in every mode)")
    p = Path(os.path.expanduser(raw))
    if not p.is_absolute():
        if default_root is None:
            refuse(f"'{raw}' is relative but ComfyUI's folders are unknown here", "an absolute path")
        p = Path(default_root) / p
    real = Path(os.path.realpath(p))
    roots = allowed_roots()
    if not any_path_allowed():
        if not any(is_within(real, r) for r in roots):
            where = " or ".join(str(r) for r in roots) or "(no ComfyUI folders known)"
            refuse(f"'{raw}' resolves to {real}, outside ComfyUI's input/output folders ({where})",
                   f"a folder inside them; to allow any folder, start ComfyUI with the environment variable "
                   f"{ALLOW_ENV}=1")
    elif not Path(os.path.expanduser(raw)).is_absolute() and default_root is not None:
        # Opted in: any absolute folder is fine, but a relative one must still stay in its root
        # (a symlink inside the input folder pointing elsewhere is not a way out).
        root_real = Path(os.path.realpath(default_root))
        if not is_within(real, root_real):
            refuse(f"'{raw}' resolves to {real} through a symlink, outside {root_real}",
                   "a folder inside it (or an absolute path)")
    try:
        is_dir, exists = real.is_dir(), real.exists()
    except OSError as e:  # a name longer than the file system allows, …
        refuse(f"'{raw[:80]}{'…' if len(raw) > 80 else ''}' cannot be used ({e.strerror or e})",
               "a folder path the file system allows (at most 255 bytes per name)")
    if must_exist and not is_dir:
        refuse(f"'{raw}': folder {real} does not exist", "an existing folder")
    if not must_exist and exists and not is_dir:
        refuse(f"'{raw}': {real} is a file", "a folder")
    return real


def check_no_overlap(source: Path, dest: Path, flag: str = "--dest") -> None:
    """Refuse an output folder (``flag`` names it: --dest, --mask-dir) equal to, inside, or containing
    the source (outputs could replace inputs)."""
    s = Path(os.path.realpath(source))
    d = Path(os.path.realpath(dest))
    if s == d:
        raise UnsafePath(f"{flag} {dest} is the source folder; expected a different, new folder "
                          f"(the originals are never overwritten).")
    if is_within(d, s):
        raise UnsafePath(f"{flag} {dest} is inside --source {source}; expected a folder outside it "
                          f"(outputs would be mixed with, or read back as, inputs).")
    if is_within(s, d):
        raise UnsafePath(f"--source {source} is inside {flag} {dest}; expected separate folders "
                          f"(outputs could overwrite the originals).")


def check_mask_dir(dest: Path, mask_dir: Path) -> None:
    """``--mask-dir`` equal to ``--dest`` is refused (each mask would take its image's name); inside
    it is allowed, the output plan refuses the single names that clash."""
    if Path(os.path.realpath(dest)) == Path(os.path.realpath(mask_dir)):
        raise UnsafePath(f"--mask-dir {mask_dir} is the --dest folder; expected another folder "
                          f"(each mask would take the name of its cut-out).")


def _nearest_existing(path: Path) -> Path:
    p = Path(os.path.abspath(path))
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


def _probe(folder: Path) -> str:
    """'' when a file can be created in ``folder`` (tried for real: root ignores permission bits,
    a read-only mount does not), else why not."""
    import tempfile

    try:
        fd, name = tempfile.mkstemp(prefix=".cutout-probe-", dir=folder)
        os.close(fd)
        os.unlink(name)
        return ""
    except OSError as e:
        return e.strerror or str(e)


def check_writable_folder(path: Path, flag: str) -> None:
    """Before the job starts: ``path`` is a folder we can write in, or one we can create."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UnsafePath(f"{flag} {path} is a file; expected a folder")
    base = p if p.is_dir() else _nearest_existing(p)
    if not base.is_dir():
        raise UnsafePath(f"{flag} {path}: {base} is a file, so the folder cannot be created there")
    why = _probe(base)
    if why:
        what = "cannot write in it" if base == p else f"cannot create it in {base}"
        raise UnsafePath(f"{flag} {path}: {what} ({why})")


def check_writable_file(path: Path, flag: str, creatable: Path | None = None) -> None:
    """Before the job starts: ``path`` can be written (its folder exists and takes files; not a
    folder). Its folder may be missing when it is ``creatable`` (the destination, made by the job)."""
    p = Path(path)
    if p.is_dir():
        raise UnsafePath(f"{flag} {path} is a folder; expected a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if creatable is not None and os.path.realpath(parent) == os.path.realpath(creatable) and not parent.exists():
        check_writable_folder(parent, flag)
        return
    if not parent.is_dir():
        raise UnsafePath(f"{flag} {path}: folder {parent} does not exist")
    why = _probe(parent)
    if why:
        raise UnsafePath(f"{flag} {path}: cannot write in {parent} ({why})")
    if p.exists() and not os.access(p, os.W_OK):
        raise UnsafePath(f"{flag} {path}: the file is not writable")

# Most file systems allow 255 bytes per name; hidden temporary names are shortened to fit
# (writer._tmp_name), and the output plan refuses a derived name (<stem>_mask.png) that does not.
MAX_NAME_BYTES = 255


def relative_problem(rel: str) -> str | None:
    """Why ``rel`` cannot be an output's relative path (NUL, empty name, a name too long), or None."""
    if "\x00" in rel:
        return f"{rel!r} contains a NUL character"
    name = rel.replace("\\", "/").split("/")[-1]  # the raw last part: PurePath drops a trailing '.' or '/'
    if name in ("", ".", ".."):
        return f"{rel!r} has no file name"
    for part in PurePath(rel).parts:
        if len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
            return (f"has a file or folder name of {len(part.encode('utf-8', 'surrogateescape'))} bytes "
                    f"('{part[:40]}…'); at most {MAX_NAME_BYTES} bytes per name are accepted")
    return None


def safe_target(dest_root: Path, rel: PurePath) -> Path:
    """``dest_root / rel`` after checking it cannot leave ``dest_root`` (no '..', no escaping symlink)."""
    rel = PurePath(rel)
    if rel.is_absolute() or any(p in ("..", "") for p in rel.parts):
        raise UnsafePath(f"relative path '{rel}' is absolute or contains '..'; refused")
    problem = relative_problem(str(rel))
    if problem:
        raise UnsafePath(f"relative path {problem}; refused")
    target = Path(dest_root) / rel
    root_real = Path(os.path.realpath(dest_root))
    parent_real = Path(os.path.realpath(target.parent))
    if not is_within(parent_real, root_real):
        raise UnsafePath(f"writing {target} would leave the destination {root_real} (through a symlink); refused")
    try:
        link = target.is_symlink()
    except OSError as e:  # e.g. the whole path is longer than the OS allows
        raise UnsafePath(f"{target}: {e.strerror or e}; refused") from None
    if link:
        raise UnsafePath(f"{target} is a symlink; refused to write through it")
    return target
