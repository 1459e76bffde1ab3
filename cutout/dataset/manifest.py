"""What made each output: a small manifest in the destination, so that resume never lies.

``<dest>/.cutout-manifest.jsonl`` holds one JSON line per written output: the source's identity
(size and mtime_ns; a SHA-256 too where the mtime is whole seconds), the fingerprint of every setting that changes pixels (the model's
name and file MD5, ``PIPELINE_VERSION``, the write options except the ones that only change
bytes or names), the caption sources it copied, and the size and mtime of every file it wrote.
A second kind of line stores each fingerprint's settings once, so a report can say what changed.

Only the process that plans the run appends (the local engine's main thread, the Ray driver,
the Save Image Folder node), after the output's files are in place: a kill -9 in between leaves
an output without a record, which the next run redoes. Lines are appended with ``O_APPEND``
and parsed one by one, so a torn last line costs only that record. The file is compacted
(rewritten atomically) when superseded lines outnumber live ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
from pathlib import Path

MANIFEST = ".cutout-manifest.jsonl"

# Write options that change only file bytes, names or which extra files exist, never the pixels
# of an output: they stay out of the fingerprint. Any other option (one added later included)
# is part of it, so a new option can only make a rerun redo more, never skip a stale output.
NOT_PIXELS = {"existing", "copy_captions", "png_compress", "webp_method", "webp_effort", "fsync", "save_mask",
              "mask_dir", "review"}
JPEG_ONLY = {"jpeg_quality", "jpeg_background"}

_md5_cache: dict[tuple, str] = {}


def file_digest(path: Path, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_md5(path: Path) -> str:
    st = os.stat(path)
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _md5_cache:
        _md5_cache[key] = file_digest(path, "md5")
    return _md5_cache[key]


def settings_values(write_opts, cutout=None, model_path: Path | None = None, extra: dict | None = None) -> dict:
    """Every setting that changes an output's pixels, as plain JSON values: the write options that
    do, the pipeline's ``CutoutOptions`` (``cutout``; model file MD5 with ``model_path``) and
    ``extra`` (the job's own options of that kind)."""
    from ..pipeline import PIPELINE_VERSION

    w = {k: v for k, v in dataclasses.asdict(write_opts).items() if k not in NOT_PIXELS}
    if w.get("fmt") != "jpg":
        w = {k: v for k, v in w.items() if k not in JPEG_ONLY}
    values = {"pipeline": PIPELINE_VERSION, **w}
    if cutout is not None:
        values.update({k: v for k, v in cutout.to_dict().items() if k != "device"})
        if model_path is not None:
            values["model_md5"] = model_md5(model_path)
    values.update(extra or {})
    return json.loads(json.dumps(values, sort_keys=True, default=str))


def fingerprint(values: dict) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:20]


def coarse(mtime_ns: int) -> bool:
    """A whole-second mtime: FAT, some network disks, files unpacked from archives — too coarse to
    tell a replaced file from the original."""
    return mtime_ns % 1_000_000_000 == 0


def identify(path: Path, always_hash: bool = False) -> dict:
    """A source file's identity: size and mtime_ns, plus the SHA-256 of its bytes when the mtime is
    coarse (or ``always_hash``: captions are small). Hashing every photo would cost the job time."""
    st = os.stat(path)
    ident = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if always_hash or coarse(st.st_mtime_ns):
        ident["sha256"] = file_digest(path)
    return ident


def identify_around(path: Path, read):
    """``read()`` with the identity of what it read: None when the file changed meanwhile."""
    ident = identify(path)
    out = read()
    try:
        st = os.stat(path)
        if (st.st_size, st.st_mtime_ns) != (ident["size"], ident["mtime_ns"]):
            ident = None
    except OSError:
        ident = None
    return out, ident


def same_source(path: Path, recorded: dict | None) -> bool:
    """Is the file still what ``recorded`` describes? Size and a fine-grained mtime decide; with a
    coarse mtime, or a changed one where the record has a hash, the hash decides (a file copied
    with new times but equal bytes is the same); without a hash a changed mtime means changed."""
    if not recorded or "size" not in recorded:
        return False
    try:
        st = os.stat(path)
    except OSError:
        return False
    if st.st_size != recorded["size"]:
        return False
    if st.st_mtime_ns == recorded["mtime_ns"] and not coarse(st.st_mtime_ns):
        return True
    if "sha256" not in recorded:
        return False
    try:
        return file_digest(path) == recorded["sha256"]
    except OSError:
        return False


def file_key(dest: Path, path: Path) -> str:
    """How a written file is named in a record: relative to dest when inside it, else absolute."""
    real, root = os.path.realpath(path), os.path.realpath(dest)
    return os.path.relpath(real, root) if real.startswith(root + os.sep) else real


def stat_pair(path: Path) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def make_record(dest: Path, planned, source: dict | None, fp: str, files: list[Path],
                captions: dict[str, dict]) -> dict | None:
    """The record of one written output (None when the source changed while it was read)."""
    if source is None:
        return None
    return {"out": str(planned.image), "src": planned.rel, "source": source, "fp": fp,
            "files": {file_key(dest, p): stat_pair(p) for p in files}, "captions": captions}


def ends_torn(path: Path) -> bool:
    """Does the JSON-lines file end inside a line (a kill while appending)? False when missing or empty."""
    try:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
    except OSError:
        return False


def append_lines(path: Path, lines: list[str], torn: bool = False, fsync: bool = False) -> None:
    """Append ``lines`` to a JSON-lines file in one ``O_APPEND`` write (the manifest, the review
    spool). ``torn``: the file ends inside a line, which is ended first so the new line does not join it."""
    data = ("\n" if torn else "") + "".join(line + "\n" for line in lines)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data.encode())
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


class Manifest:
    """The records of one destination, keyed by output path; appended by one process at a time."""

    def __init__(self, dest: Path, fsync: bool = True):
        self.dest = Path(dest)
        self.path = self.dest / MANIFEST
        self.fsync = fsync
        self.records: dict[str, dict] = {}
        self.settings: dict[str, dict] = {}
        self._lines = 0
        self._written_fps: set[str] = set()
        self._needs_newline = False
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        try:
            data = self.path.read_bytes()
        except OSError:
            return
        self._needs_newline = bool(data) and not data.endswith(b"\n")
        for line in data.splitlines():
            self._lines += 1
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line torn by a kill: that output has no record and is redone
            if not isinstance(rec, dict):
                continue
            if "settings" in rec and "fp" in rec:
                self.settings[rec["fp"]] = rec["settings"]
                self._written_fps.add(rec["fp"])
            elif "out" in rec:
                self.records[rec["out"]] = rec

    def _append_lines(self, lines: list[str]) -> None:
        self.dest.mkdir(parents=True, exist_ok=True)
        append_lines(self.path, lines, self._needs_newline, self.fsync)
        self._needs_newline = False
        self._lines += len(lines)

    def add(self, record: dict | None, values: dict, masks_only: bool = False) -> None:
        """Append one record (and its fingerprint's settings, the first time). ``masks_only``: the
        output was up to date and only masks were written: they join its existing record."""
        if record is None:
            return
        with self._lock:
            old = self.records.get(record["out"])
            if masks_only and old is not None:
                record = {**old, "files": {**(old.get("files") or {}), **record["files"]}}
            lines = []
            fp = record["fp"]
            self.settings.setdefault(fp, values)
            if fp not in self._written_fps:
                self._written_fps.add(fp)
                lines.append(json.dumps({"fp": fp, "settings": values}, sort_keys=True))
            lines.append(json.dumps(record, sort_keys=True))
            self._append_lines(lines)
            self.records[record["out"]] = record

    def compact(self) -> None:
        """Rewrite without superseded lines, atomically, when they are the majority."""
        from .writer import atomic_write

        live = len(self.records) + len(self.settings)
        if self._lines <= 2 * live + 50:
            return
        used = {r["fp"] for r in self.records.values()}
        lines = [json.dumps({"fp": fp, "settings": v}, sort_keys=True) for fp, v in self.settings.items() if fp in used]
        lines += [json.dumps(r, sort_keys=True) for r in self.records.values()]
        atomic_write(self.path, "".join(line + "\n" for line in lines).encode(), self.fsync)
        self._lines, self._needs_newline = len(lines), False
        self._written_fps = set(used)

    def know(self, fp: str, values: dict) -> None:
        """This run's settings, so that a report can say how they differ from a record's."""
        self.settings.setdefault(fp, values)

    def why_stale(self, planned, fp: str, source_ok) -> tuple[str, tuple]:
        """('', masks still to write) when the output of ``planned`` is what these settings make of
        this source, else (the reason it must be redone, ()). ``source_ok(recorded identity)``
        says whether the source is unchanged."""
        rec = self.records.get(str(planned.image))
        if rec is None:
            return "no record of what made it (an older version or an interrupted run)", ()
        if rec.get("fp") != fp:
            return "settings changed: " + self.diff(rec.get("fp"), fp), ()
        if rec.get("src") != planned.rel or not source_ok(rec.get("source")):
            return "source photo changed", ()
        caps = rec.get("captions") or {}
        if set(caps) != {str(r) for _s, r in planned.captions}:
            return "captions changed", ()
        if any(not same_source(s, caps.get(str(r))) for s, r in planned.captions):
            return "captions changed", ()
        files = rec.get("files") or {}
        mine = [self.dest / planned.image] + [self.dest / r for _s, r in planned.captions]
        for p in mine:
            got = stat_pair(p)
            if got is None or files.get(file_key(self.dest, p)) != got:
                return f"output changed or vanished since it was written: {p.name}", ()
        missing = []
        for root, rel in planned.masks:
            p = Path(root) / rel
            got = stat_pair(p)
            if got is None or files.get(file_key(self.dest, p)) != got:
                missing.append((root, rel))
        return "", tuple(missing)

    def diff(self, old_fp: str | None, new_fp: str) -> str:
        old, new = self.settings.get(old_fp or ""), self.settings.get(new_fp)
        if old is None or new is None:
            return "unknown earlier settings"
        keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        return ", ".join(f"{k} {_short(old.get(k))} -> {_short(new.get(k))}" for k in keys) or "fingerprint"


def _short(v) -> str:
    s = json.dumps(v)
    return s if len(s) <= 40 else s[:37] + "..."
