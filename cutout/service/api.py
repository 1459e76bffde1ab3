"""The cut-out service: plain aiohttp handlers that any aiohttp app can mount.

Inside ComfyUI, ``comfy_glue.register_routes`` hands us the PromptServer's route table; in
tests, ``mount(web.Application())`` does the same on a bare app. Model work runs through the
pack's one code path (``codec.decode_image`` → ``pipeline.cut_out`` → ``codec.encode_image``,
options from ``params.cutout_options``) in ONE worker thread, so the event loop stays free, requests are served one at a time in arrival order,
sessions are the shared ones of ``models.session.STORE``, and before each image the worker
waits while ComfyUI is running a prompt.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import re
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from .. import comfy_glue
from ..models import CATALOG, DEFAULT_MODEL, ModelNotAvailableError, UnknownModelError, weights
from ..models.session import STORE, ModelIncompatibleError, locate
from . import params as P
from .errors import ApiError
from .uploads import MemoryBudget, RequestBudget, UploadBuffer, clean_name, read_into, temp_full

log = logging.getLogger("comfyui_cutout")

PREFIX = "/cutout"
PAGE_DIR = Path(__file__).resolve().parent / "page"
PAGE_FILES = {"index.html": "text/html", "app.js": "application/javascript", "style.css": "text/css"}
FILE_FIELDS = ("file", "files", "image")
NODE = "Cutout API"


def features() -> dict:
    """What this build can do (the page offers exactly this)."""
    return {
        "refine": list(P.REFINE_CHOICES),
        "decontaminate": True,
        "backgrounds": ["transparent", "colour", "blur", "checkerboard"],  # the page's choices
    }


_DECODE_STATUS = {"not_an_image": 415, "too_many_pixels": 413, "corrupt": 400}
_DECODE_CODE = {"not_an_image": "not_an_image", "too_many_pixels": "too_many_pixels", "corrupt": "corrupt_image"}


def decode_upload(fp, name: str, max_pixels: int):
    """``codec.decode_image`` with its errors as the API's (status, code)."""
    from ..codec import DecodeError, decode_image

    try:
        return decode_image(fp, name, max_pixels)
    except DecodeError as e:
        msg = e.reason + (" (CUTOUT_API_MAX_MEGAPIXELS)" if e.kind == "too_many_pixels" else "")
        raise ApiError(_DECODE_STATUS[e.kind], _DECODE_CODE[e.kind], msg, file=name) from None


_SPOOL = 8 << 20  # a result zip above this size spills to the temp folder
_FORM_PARTS = 32  # multipart parts that are not files (parameters) a request may carry


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        log.warning("Cutout API: %s=%r is not a number; using %s", name, raw, default)
        return default


@dataclass
class Limits:
    max_bytes: int = 50 << 20  # per uploaded file
    max_pixels: int = 50_000_000  # per image (w * h)
    max_files: int = 100  # per batch request
    max_pending: int = 64  # requests being read or waiting for the worker; more get 503 before any byte is read
    max_request_bytes: int | None = None  # whole request; None: ComfyUI's client_max_size (100 MB default)
    memory_bytes: int = 64 << 20  # upload bytes held in memory by all requests together; the rest goes to disk
    busy_wait: float = 300.0  # seconds to wait for a running ComfyUI prompt before 503
    allow_download: bool = False  # may a request trigger a model download?
    device: str = "cpu"

    @classmethod
    def from_env(cls) -> "Limits":
        d = cls()
        return cls(
            max_bytes=int(_env_number("CUTOUT_API_MAX_MB", d.max_bytes / (1 << 20)) * (1 << 20)),
            max_pixels=int(_env_number("CUTOUT_API_MAX_MEGAPIXELS", d.max_pixels / 1e6) * 1e6),
            max_files=int(_env_number("CUTOUT_API_MAX_FILES", d.max_files)),
            max_pending=int(_env_number("CUTOUT_API_MAX_PENDING", d.max_pending)),
            max_request_bytes=(int(_env_number("CUTOUT_API_MAX_REQUEST_MB", 0) * (1 << 20)) or None),
            memory_bytes=int(_env_number("CUTOUT_API_MEMORY_MB", d.memory_bytes / (1 << 20)) * (1 << 20)),
            busy_wait=_env_number("CUTOUT_API_BUSY_WAIT", d.busy_wait),
            allow_download=os.environ.get("CUTOUT_API_ALLOW_DOWNLOAD", "").lower() in ("1", "true", "yes"),
            device=os.environ.get("CUTOUT_API_DEVICE", d.device),
        )


def _temp_dir() -> str | None:
    d = comfy_glue.temp_directory()
    if d is None:
        return None
    d.mkdir(parents=True, exist_ok=True)
    return str(d)


def _spool():
    """A temp file that lives in memory until it is large, then in ComfyUI's temp folder.

    Its disk copy has no name (unlinked at creation), so nothing is left behind, even on a crash.
    """
    return tempfile.SpooledTemporaryFile(max_size=_SPOOL, dir=_temp_dir())


@dataclass
class Upload:
    name: str
    data: UploadBuffer  # rewound
    size: int


class ClientGone(Exception):
    """The client disconnected; its work is dropped."""


def _safe_stem(name: str) -> str:
    stem = os.path.splitext(os.path.basename(name.replace("\\", "/")))[0]
    stem = re.sub(r"[^A-Za-z0-9._ -]+", "_", stem).strip(" .")
    return stem[:100] or "image"


def _json_errors(handler):
    """ApiError -> its JSON response; any other exception -> a JSON 500 (and the log)."""
    @functools.wraps(handler)
    async def inner(self, request):
        try:
            return await handler(self, request)
        except ApiError as e:
            return _json_error(e)
        except web.HTTPException:
            raise
        except (ClientGone, ConnectionError) as e:
            log.info("Cutout API: client of %s disconnected (%s); its work was dropped", request.path,
                     type(e).__name__)
            return _json_error(ApiError(400, "client_disconnected", "the client disconnected"))
        except Exception as e:
            log.exception("Cutout API: unexpected error in %s", request.path)
            return _json_error(ApiError(500, "internal_error", f"{type(e).__name__}: {e}"))
    return inner


class CutoutService:
    def __init__(self, limits: Limits | None = None, prefix: str = PREFIX):
        self.limits = limits or Limits.from_env()
        self.prefix = prefix.rstrip("/")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cutout-api")
        self._pending = 0
        self._pending_lock = threading.Lock()
        self.memory = MemoryBudget(self.limits.memory_bytes)
        self.images_done = 0
        self.cancelled = 0  # requests whose client went away before their work was over

    # ---------------------------------------------------------------- routes
    def route_defs(self) -> list[web.RouteDef]:
        p = self.prefix
        return [
            web.get(p, self.redirect_page),
            web.get(p + "/", self.page),
            web.get(p + "/page/{name}", self.page_file),
            web.get(p + "/api/models", self.models),
            web.get(p + "/api/openapi.json", self.openapi),
            web.post(p + "/api/remove", self.remove),
            web.get(p + "/api/remove", self.remove_get),
            web.post(p + "/api/batch", self.batch),
        ]

    def close(self) -> None:
        """Stop the worker thread (after the request in progress, if any)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def add_to(self, table) -> None:
        """Add the routes to an aiohttp ``RouteTableDef`` (ComfyUI's) or ``UrlDispatcher``."""
        for d in self.route_defs():
            if isinstance(table, web.RouteTableDef):
                table.route(d.method, d.path)(d.handler)
            else:
                table.add_route(d.method, d.path, d.handler)

    # ---------------------------------------------------------------- page
    async def redirect_page(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(self.prefix + "/")

    async def page(self, request: web.Request) -> web.Response:
        return self._file("index.html")

    async def page_file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in PAGE_FILES:
            return _json_error(ApiError(404, "not_found", f"no page file '{name}'"))
        return self._file(name)

    def _file(self, name: str) -> web.Response:
        body = (PAGE_DIR / name).read_bytes()
        return web.Response(body=body, content_type=PAGE_FILES[name], charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    # ---------------------------------------------------------------- info
    @_json_errors
    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(await asyncio.to_thread(self.model_list))

    def model_list(self) -> dict:
        rows = []
        for spec in CATALOG.values():
            path = weights.find_verified(spec)
            rows.append({
                "name": spec.name, "installed": path is not None, "embedded": spec.embedded,
                "loaded": STORE.loaded(spec.name, self.limits.device),
                "downloadable": path is None and self.limits.allow_download,
                "size_mb": spec.size_mb, "family": spec.family.name, "description": spec.description,
            })
        seen = set(CATALOG)
        for d in weights.search_dirs():
            if not d.is_dir():
                continue
            for f in sorted(d.glob("*.onnx")):
                if f.stem not in seen:
                    seen.add(f.stem)
                    rows.append({"name": f.stem, "installed": True, "embedded": False, "loaded": False,
                                 "downloadable": False, "size_mb": round(f.stat().st_size / 1e6, 1),
                                 "family": "custom", "description": f"your own ONNX file ({f.name})"})
        from ..models.ort_probe import runtime_info

        return {"default": DEFAULT_MODEL, "models": rows, "allow_download": self.limits.allow_download,
                "features": features(), "runtime": runtime_info(STORE.providers_in_use())}

    async def openapi(self, request: web.Request) -> web.Response:
        from .openapi import spec

        return web.json_response(spec(self.prefix, self.limits))

    # ---------------------------------------------------------------- remove
    @_json_errors
    async def remove_get(self, request: web.Request) -> web.Response:
        # rembg's server fetches ?url=...; here that would let callers reach the network through ComfyUI
        raise ApiError(405, "method_not_allowed", f"send the image with POST to {self.prefix}/api/remove (multipart "
                       "field 'file' or the raw body); fetching images from URLs is not offered",
                       headers={"Allow": "POST"})

    @_json_errors
    async def remove(self, request: web.Request) -> web.StreamResponse:
        async with self._request(request, single=True) as (opts, uploads):
            t0 = time.perf_counter()
            bodies, names, notes = await self._run(request, self._process, uploads, opts)
        headers = {
            "Content-Disposition": f'inline; filename="{names[0]}"',
            "X-Cutout-Model": opts.model or DEFAULT_MODEL,
            "X-Cutout-Seconds": f"{time.perf_counter() - t0:.3f}",
        }
        if notes:  # e.g. only the first frame of an animated GIF was cut out
            headers["X-Cutout-Notes"] = "; ".join(notes).encode("ascii", "replace").decode("ascii")
        return web.Response(body=bodies[0], content_type=opts.content_type, headers=headers)

    @_json_errors
    async def batch(self, request: web.Request) -> web.StreamResponse:
        async with self._request(request, single=False) as (opts, uploads):
            t0 = time.perf_counter()
            zipped = await self._run(request, self._process_zip, uploads, opts)
        try:
            zipped.seek(0, os.SEEK_END)
            size = zipped.tell()
            zipped.seek(0)
            resp = web.StreamResponse(headers={
                "Content-Type": "application/zip",
                "Content-Disposition": 'attachment; filename="cutouts.zip"',
                "Content-Length": str(size),
                "X-Cutout-Model": opts.model or DEFAULT_MODEL,
                "X-Cutout-Images": str(len(uploads)),
                "X-Cutout-Seconds": f"{time.perf_counter() - t0:.3f}",
            })
            await resp.prepare(request)
            while True:
                chunk = zipped.read(1 << 20)
                if not chunk:
                    break
                await resp.write(chunk)
            await resp.write_eof()
            return resp
        finally:
            zipped.close()

    # ---------------------------------------------------------------- reading requests
    @contextlib.asynccontextmanager
    async def _request(self, request: web.Request, single: bool):
        """What every cut-out handler runs in: a slot, then the request read and its options parsed, as
        ``(options, uploads)``; on the way out the uploads are closed (memory and spool files given back), the
        slot freed."""
        with self._slot():
            raw, uploads = await self._read_request(request, single)
            try:
                yield P.parse(raw), uploads
            finally:
                for u in uploads:
                    u.data.close()

    @contextlib.contextmanager
    def _slot(self):
        """A place among the ``max_pending`` requests, taken before any byte of the body is read."""
        with self._pending_lock:
            if self._pending >= self.limits.max_pending:
                raise ApiError(503, "busy", f"{self._pending} requests are already being read or waiting; "
                               "try again shortly (CUTOUT_API_MAX_PENDING)", headers={"Retry-After": "5"})
            self._pending += 1
        try:
            yield
        finally:
            with self._pending_lock:
                self._pending -= 1

    def request_limit(self, request: web.Request | None = None) -> int:
        """Bytes one request may carry: CUTOUT_API_MAX_REQUEST_MB if set, else ComfyUI's own upload
        limit (``client_max_size``, ``--max-upload-size``, 100 MB by default) and never more."""
        if self.limits.max_request_bytes:
            return self.limits.max_request_bytes
        comfy = comfy_glue.client_max_size()
        return min(100 << 20, comfy) if comfy else 100 << 20

    async def _read_request(self, request: web.Request, single: bool) -> tuple[dict, list[Upload]]:
        raw: dict[str, str] = {}
        for k, v in request.query.items():
            if k in raw and raw[k] != v:
                raise ApiError(400, "bad_parameter", f"parameter '{k}' is given twice with different values",
                               parameter=k)
            raw[k] = v
        total = self.request_limit(request)
        length = request.content_length
        if length is not None and length > total:  # refused before a byte is read
            raise ApiError(413, "request_too_large", f"the request is {length / (1 << 20):.2f} MB; the limit is "
                           f"{total / (1 << 20):.2f} MB (CUTOUT_API_MAX_REQUEST_MB; never above ComfyUI's "
                           "--max-upload-size unless set)", max_request_bytes=total)
        budget = RequestBudget(self.limits.max_bytes, total,
                               (1 if single else self.limits.max_files) + _FORM_PARTS)
        uploads: list[Upload] = []
        try:
            if request.content_type.startswith("multipart/"):
                await self._read_multipart(request, raw, uploads, budget, single)
            else:
                if request.content_type in ("application/x-www-form-urlencoded",):
                    raise ApiError(415, "no_image", "send the image as multipart/form-data (field 'file') or as the "
                                   "raw request body (Content-Type image/...)")
                name = clean_name(request.headers.get("X-Filename") or "image")
                buf = await read_into(request.content, UploadBuffer(self.memory, _temp_dir()), name, budget)
                uploads.append(Upload(name, buf, buf.size))
                if buf.size == 0:
                    raise ApiError(400, "no_image", "the request body is empty; send an image as the body or as "
                                   "multipart/form-data field 'file'")
        except BaseException as e:
            for u in uploads:
                u.data.close()
            if isinstance(e, (ApiError, ConnectionError, asyncio.CancelledError)) or not isinstance(e, Exception):
                raise
            if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise temp_full(e, _temp_dir()) from None
            if isinstance(e, OSError):
                raise
            # aiohttp's parser: no or a bad boundary, a truncated part, a duplicate or invalid header
            first = (str(e).strip().splitlines() or [type(e).__name__])[-1].strip()
            if "\\x00" in first or "\x00" in first:
                first = "a part's header contains a NUL character (a file name must not contain one)"
            first = first[:200]
            raise ApiError(400, "malformed_multipart", f"the multipart/form-data body could not be read: {first}; "
                           "send a well-formed multipart body (as curl -F or a browser form does) or the raw "
                           "image as the body") from None
        if not uploads:
            raise ApiError(400, "no_image", "no image in the request: send it as multipart/form-data field 'file' "
                           "(several 'file' fields for /api/batch) or as the raw request body")
        return raw, uploads

    async def _read_multipart(self, request, raw: dict, uploads: list, budget: RequestBudget, single: bool) -> None:
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            budget.new_part(getattr(part, "name", None) or "?")
            if not hasattr(part, "read_chunk"):  # a multipart/mixed part inside the form
                raise ApiError(400, "malformed_multipart", "nested multipart parts are not accepted; send each "
                               "image as its own 'file' field")
            if part.filename is None and part.name not in FILE_FIELDS:  # a form field = a parameter
                value = await self._read_field(part)
                if part.name in raw and raw[part.name] != value:
                    raise ApiError(400, "bad_parameter", f"parameter '{part.name}' is given twice with different "
                                   "values (query and form)", parameter=part.name)
                raw[part.name] = value
                continue
            if part.name not in FILE_FIELDS:
                raise ApiError(400, "unknown_parameter", f"file field '{clean_name(str(part.name))}' is not "
                               f"accepted; send images as 'file'; valid parameters are: {', '.join(P.VALID)}",
                               parameters=[clean_name(str(part.name))], valid=list(P.VALID))
            if single and uploads:  # before the second file is read
                raise ApiError(400, "too_many_files", f"more than one file sent to {self.prefix}/api/remove, which "
                               f"takes one; use {self.prefix}/api/batch for several (a zip comes back)")
            if len(uploads) >= self.limits.max_files:
                raise ApiError(413, "too_many_files", f"more than {self.limits.max_files} files in one request "
                               "(CUTOUT_API_MAX_FILES)", max_files=self.limits.max_files)
            name = clean_name(part.filename or f"image-{len(uploads) + 1}")
            buf = await read_into(part, UploadBuffer(self.memory, _temp_dir()), name, budget)
            uploads.append(Upload(name, buf, buf.size))
            if buf.size == 0:
                raise ApiError(400, "no_image", f"file '{name}' is empty (0 bytes)", file=name)

    async def _read_field(self, part) -> str:
        """A text form field (a parameter); never more than 1000 bytes."""
        data = b""
        while True:
            chunk = await part.read_chunk(1024)
            if not chunk:
                break
            data += chunk
            if len(data) > 1000:
                raise ApiError(400, "bad_parameter", f"form field '{clean_name(str(part.name))}' is longer than "
                               "1000 bytes; parameters are short values (images go in 'file')",
                               parameter=clean_name(str(part.name)))
        return data.decode(part.get_charset("utf-8"), "replace")

    # ---------------------------------------------------------------- the worker
    async def _run(self, request: web.Request, fn, uploads: list[Upload], opts: P.Options):
        """``fn`` in the worker thread; stopped (within one image or one network poll) when the client goes."""
        stop = threading.Event()
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._executor, self._in_worker, fn, uploads, opts, stop)
        try:
            while True:
                done, _ = await asyncio.wait({fut}, timeout=0.1)
                if done:
                    return fut.result()
                if not stop.is_set() and _client_gone(request):
                    stop.set()  # the worker drops the rest; wait for it so the slot means "still working"
                    self.cancelled += 1
        except asyncio.CancelledError:
            stop.set()
            self.cancelled += 1
            raise
        except comfy_glue.StopRequested:
            raise ClientGone() from None

    def _in_worker(self, fn, uploads, opts, stop: threading.Event):
        with comfy_glue.detached(stop.is_set):
            comfy_glue.check_interrupt()  # abandoned while it waited in the queue: nothing to do
            return fn(uploads, opts)

    def _wait_for_comfy(self) -> None:
        """Let a running (or queued) ComfyUI prompt go first; 503 after ``busy_wait`` seconds."""
        deadline = time.monotonic() + self.limits.busy_wait
        logged = False
        while comfy_glue.prompts_pending() > 0:
            comfy_glue.check_interrupt()  # the client may leave while we wait
            if not logged:
                log.info("Cutout API: waiting for ComfyUI's queue to empty before cutting out")
                logged = True
            if time.monotonic() >= deadline:
                raise ApiError(503, "comfy_busy", f"ComfyUI has been busy with prompts for {self.limits.busy_wait:g} s; "
                               "try again later (CUTOUT_API_BUSY_WAIT)", headers={"Retry-After": "30"})
            time.sleep(0.1)

    def _check_model(self, name: str) -> None:
        if STORE.loaded(name, self.limits.device):
            return
        stem = name[:-5] if name.endswith(".onnx") else name
        if stem in CATALOG:
            spec = CATALOG[stem]
            if weights.find_verified(spec) is None and not self.limits.allow_download:
                raise ApiError(404, "model_not_installed", f"model '{stem}' is not installed on this server "
                               f"(about {spec.size_mb:.0f} MB); install it into models/rembg, or start ComfyUI with "
                               "CUTOUT_API_ALLOW_DOWNLOAD=1 to let the API download it", model=stem)
            return
        try:
            locate(name)
        except UnknownModelError:
            names = [r["name"] for r in self.model_list()["models"] if r["installed"]]
            raise ApiError(400, "unknown_model", f"unknown model '{name}'; installed models: {', '.join(names)} "
                           f"(see {self.prefix}/api/models)", model=name, valid=names) from None

    def _cut_one(self, up: Upload, opts: P.Options) -> tuple[bytes, tuple[str, ...]]:
        """One upload through the one pipeline: decode, cut out (as the folder job does), encode."""
        from ..codec import encode_image
        from ..models.session import get_session
        from ..pipeline import cut_out_8bit

        decoded = decode_upload(up.data, up.name, self.limits.max_pixels)
        self._wait_for_comfy()
        model = opts.model or DEFAULT_MODEL
        copts = P.cutout_options(opts, model, self.limits.device)
        try:
            session = get_session(copts.model, copts.device)
        except ModelIncompatibleError as e:
            raise ApiError(422, "model_incompatible", str(e), model=model) from None
        except (ModelNotAvailableError, UnknownModelError) as e:
            raise ApiError(503, "model_not_available", str(e), model=model) from None
        pixels, _mask = cut_out_8bit(session, decoded.rgb, decoded.alpha, copts, node=NODE)
        return encode_image(pixels, opts.format, P.API_ENCODE, decoded.icc), decoded.notes

    def _process(self, uploads: list[Upload], opts: P.Options) -> tuple[list[bytes], list[str], list[str]]:
        self._check_model(opts.model or DEFAULT_MODEL)
        bodies, names, notes = [], [], []
        for up in uploads:
            comfy_glue.check_interrupt()
            body, note = self._cut_one(up, opts)
            bodies.append(body)
            notes += note
            names.append(f"{_safe_stem(up.name)}.{opts.extension}")
            self.images_done += 1
        return bodies, names, notes

    def _process_zip(self, uploads: list[Upload], opts: P.Options):
        self._check_model(opts.model or DEFAULT_MODEL)
        out = _spool()
        used: set[str] = set()
        try:
            with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as z:
                for up in uploads:
                    comfy_glue.check_interrupt()
                    data, _notes = self._cut_one(up, opts)
                    stem, n = _safe_stem(up.name), 1
                    name = f"{stem}.{opts.extension}"
                    while name.lower() in used:
                        n += 1
                        name = f"{stem}-{n}.{opts.extension}"
                    used.add(name.lower())
                    z.writestr(name, data)
                    self.images_done += 1
        except OSError as e:
            out.close()
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise temp_full(e, _temp_dir()) from None
            raise
        except BaseException:
            out.close()
            raise
        return out


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _json_error(e: ApiError) -> web.Response:
    if e.status >= 500 and e.status != 503:
        log.warning("Cutout API: %s", e.message)
    return web.json_response(e.body(), status=e.status, headers=e.headers)


def mount(app: web.Application, service: CutoutService | None = None) -> CutoutService:
    """Mount the service on a stand-alone aiohttp app (tests, or your own server)."""
    service = service or CutoutService()
    service.add_to(app.router)

    async def _close(app):
        service.close()

    app.on_cleanup.append(_close)
    return service
