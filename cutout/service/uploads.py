"""Reading uploads part by part, with every limit checked before the bytes are kept.

A request's parts are streamed (aiohttp's multipart reader, 64 KiB at a time) into
``UploadBuffer``s: in memory while the service-wide ``MemoryBudget`` has room, else in an
unnamed temporary file (nothing is left behind, even on a crash). So however many hostile
uploads arrive at once, the upload bytes held in memory never exceed the budget; the rest is
disk. Size per part, parts per request and bytes per request are checked on every chunk.
"""

from __future__ import annotations

import errno
import io
import tempfile
import threading

from .errors import ApiError

CHUNK = 1 << 16
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class MemoryBudget:
    """Bytes of uploads that may be held in memory, shared by every request of one service."""

    def __init__(self, limit: int):
        self.limit = max(0, int(limit))
        self.used = 0
        self.peak = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.used + n > self.limit:
                return False
            self.used += n
            self.peak = max(self.peak, self.used)
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.used -= n


def temp_full(e: OSError, where: str | None) -> ApiError:
    return ApiError(413, "temp_folder_full", f"the server's temporary folder ({where or tempfile.gettempdir()}) "
                    f"has no room for the upload ({e.strerror or e}); send fewer or smaller files, or ask the "
                    "server's owner to free space there", temp_dir=str(where or tempfile.gettempdir()))


class UploadBuffer:
    """One upload's bytes: a ``BytesIO`` while the budget allows, then an unnamed temp file."""

    def __init__(self, budget: MemoryBudget, temp_dir: str | None):
        self._budget, self._dir = budget, temp_dir
        self._mem: io.BytesIO | None = io.BytesIO()
        self._file = None
        self._held = 0
        self.size = 0
        self.spilled = False  # went to the temp folder (stays True after close)

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self._file is None:
            if self._budget.take(len(chunk)):
                self._held += len(chunk)
                self._mem.write(chunk)
                return
            try:
                self._file = tempfile.TemporaryFile(dir=self._dir)
                self.spilled = True
                self._file.write(self._mem.getbuffer())
            except OSError as e:
                if e.errno in _FULL:
                    raise temp_full(e, self._dir) from None
                raise
            self._release()
        try:
            self._file.write(chunk)
        except OSError as e:
            if e.errno in _FULL:
                raise temp_full(e, self._dir) from None
            raise

    def _release(self) -> None:
        if self._mem is not None:
            self._mem.close()
            self._mem = None
        if self._held:
            self._budget.give(self._held)
            self._held = 0

    def rewind(self) -> "UploadBuffer":
        (self._file or self._mem).seek(0)
        return self

    # the file-object side PIL needs
    def read(self, n: int = -1) -> bytes:
        return (self._file or self._mem).read(n)

    def seek(self, pos: int, whence: int = 0) -> int:
        return (self._file or self._mem).seek(pos, whence)

    def tell(self) -> int:
        return (self._file or self._mem).tell()

    def __getattr__(self, name):  # readline, readinto, … (image plugins use more than read/seek)
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._file or self._mem, name)

    def close(self) -> None:
        self._release()
        if self._file is not None:
            self._file.close()
            self._file = None


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.0f} MB" if n >= 10 << 20 else f"{n / (1 << 20):.2g} MB"


class RequestBudget:
    """The limits of one request: bytes per part, bytes in all, parts in all."""

    def __init__(self, max_part: int, max_total: int, max_parts: int):
        self.max_part, self.max_total, self.max_parts = max_part, max_total, max_parts
        self.total = 0
        self.parts = 0

    def new_part(self, name: str) -> None:
        self.parts += 1
        if self.parts > self.max_parts:
            raise ApiError(413, "too_many_parts", f"the request has more than {self.max_parts} multipart parts",
                           max_parts=self.max_parts)

    def add(self, n: int, part_size: int, name: str) -> None:
        self.total += n
        if self.total > self.max_total:
            raise ApiError(413, "request_too_large", f"the request is larger than the limit of "
                           f"{_mb(self.max_total)} (CUTOUT_API_MAX_REQUEST_MB; never above ComfyUI's "
                           "--max-upload-size unless set)", max_request_bytes=self.max_total)
        if part_size > self.max_part:
            raise ApiError(413, "file_too_large", f"'{name}' is larger than the limit of {_mb(self.max_part)} "
                           "per file (CUTOUT_API_MAX_MB)", file=name, max_bytes=self.max_part)


async def read_into(stream, buf: UploadBuffer, name: str, budget: RequestBudget) -> UploadBuffer:
    """Stream ``stream`` (a multipart part or the request body) into ``buf``, checking limits per chunk."""
    try:
        while True:
            chunk = await (stream.read_chunk(CHUNK) if hasattr(stream, "read_chunk") else stream.read(CHUNK))
            if not chunk:
                break
            budget.add(len(chunk), buf.size + len(chunk), name)
            buf.write(chunk)
    except BaseException:
        buf.close()
        raise
    return buf.rewind()


def clean_name(name: str) -> str:
    """A client's file name fit for messages and zip entries: no control characters (NUL …)."""
    return "".join(c if c.isprintable() else "_" for c in name)[:200] or "image"

